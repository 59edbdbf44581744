//! `--name-template`: parsed and checked once ([`NameTemplate::parse`]), then filled per stem
//! into a path that always stays inside `--out-dir` ([`NameTemplate::path`]), with every folder
//! and file name legal on Windows, macOS and Linux ([`safe_name`]).

use std::path::{Path, PathBuf};

/// The placeholders a template may hold, as written in it.
pub const PLACEHOLDERS: [&str; 4] = ["{input}", "{stem}", "{model}", "{parent}"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Input,
    Stem,
    Model,
    Parent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

/// The values of one stem's placeholders.
pub struct Values<'a> {
    /// The input's file name without its extension.
    pub input: &'a str,
    pub stem: &'a str,
    /// The model's name (file stem, or the built-in's name).
    pub model: &'a str,
    /// The name of the input's folder.
    pub parent: &'a str,
}

/// A checked template: folder names and a file name (without extension), each a list of text
/// and placeholders.
#[derive(Debug, Clone)]
pub struct NameTemplate {
    parts: Vec<Vec<Piece>>,
}

impl NameTemplate {
    /// Parse `t`. Errors (one line each): an unknown placeholder (named, with the valid ones),
    /// an unclosed `{`, no `{stem}`, an absolute path or a `.`/`..` folder (the stems would leave
    /// `--out-dir`), nothing at all.
    pub fn parse(t: &str) -> Result<Self, String> {
        let valid = PLACEHOLDERS.join(", ");
        if t.starts_with(['/', '\\']) {
            return Err(format!("--name-template `{t}` is an absolute path: stems are written inside --out-dir, give a name relative to it"));
        }
        let mut parts: Vec<Vec<Piece>> = vec![];
        let mut current: Vec<Piece> = vec![];
        let mut text = String::new();
        let mut chars = t.chars();
        let mut has_stem = false;
        let end_part = |current: &mut Vec<Piece>, text: &mut String, parts: &mut Vec<Vec<Piece>>| -> Result<(), String> {
            if !text.is_empty() {
                current.push(Piece::Text(std::mem::take(text)));
            }
            let part = std::mem::take(current);
            if let [Piece::Text(s)] = part.as_slice() {
                if s == "." || s == ".." {
                    return Err(format!("--name-template `{t}` has a `{s}` folder: stems are written inside --out-dir, `.` and `..` are not allowed"));
                }
            }
            if !part.is_empty() {
                parts.push(part);
            }
            Ok(())
        };
        while let Some(c) = chars.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!("--name-template `{t}` has a `{{` without its `}}`; the placeholders are {valid}"));
                    }
                    let field = match name.as_str() {
                        "input" => Field::Input,
                        "stem" => Field::Stem,
                        "model" => Field::Model,
                        "parent" => Field::Parent,
                        _ => return Err(format!("--name-template: `{{{name}}}` is not a placeholder; the placeholders are {valid}")),
                    };
                    has_stem |= field == Field::Stem;
                    if !text.is_empty() {
                        current.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    current.push(Piece::Field(field));
                }
                '/' | '\\' => end_part(&mut current, &mut text, &mut parts)?,
                c => text.push(c),
            }
        }
        end_part(&mut current, &mut text, &mut parts)?;
        if !has_stem {
            return Err(format!("--name-template `{t}` has no {{stem}}: every stem would go to the same file"));
        }
        Ok(NameTemplate { parts })
    }

    /// The file of one stem: the template filled in, each folder and file name made legal
    /// everywhere ([`safe_name`]), under `out_dir`, with extension `ext`.
    pub fn path(&self, out_dir: &Path, v: &Values, ext: &str) -> PathBuf {
        let mut p = out_dir.to_path_buf();
        for part in &self.parts {
            let mut s = String::new();
            for piece in part {
                match piece {
                    Piece::Text(t) => s.push_str(t),
                    Piece::Field(f) => s.push_str(match f {
                        Field::Input => v.input,
                        Field::Stem => v.stem,
                        Field::Model => v.model,
                        Field::Parent => v.parent,
                    }),
                }
            }
            p.push(safe_name(&s));
        }
        let file = p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        p.set_file_name(format!("{file}.{ext}"));
        p
    }
}

/// Names Windows reserves for devices, with or without an extension.
const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// `s` as one folder or file name legal on every OS: `<>:"/\|?*` and control characters become
/// `_`, so do trailing dots and spaces (so `.` and `..` cannot occur); a reserved device name
/// (`CON`, `nul.txt`, `COM1`, ...) gains a `_` after its base; an empty name is `_`.
pub fn safe_name(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() || "<>:\"/\\|?*".contains(c) { '_' } else { c }).collect();
    let kept = out.trim_end_matches(['.', ' ']).len();
    let trailing = out.len() - kept;
    out.truncate(kept);
    out.push_str(&"_".repeat(trailing));
    let base_len = out.find('.').unwrap_or(out.len());
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(out[..base_len].trim_end())) {
        out.insert(base_len, '_');
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_legal_on_every_os() {
        assert_eq!(safe_name("builtin:hpss"), "builtin_hpss");
        assert_eq!(safe_name("a<b>c\"d|e?f*g\\h/i\u{1}"), "a_b_c_d_e_f_g_h_i_");
        assert_eq!(safe_name("song. "), "song__");
        assert_eq!(safe_name(".."), "__");
        assert_eq!(safe_name(""), "_");
        assert_eq!(safe_name("CON"), "CON_");
        assert_eq!(safe_name("nul.txt"), "nul_.txt");
        assert_eq!(safe_name("com1"), "com1_");
        assert_eq!(safe_name("CONSOLE"), "CONSOLE");
        assert_eq!(safe_name(".hidden"), ".hidden");
    }

    #[test]
    fn a_filled_template_stays_under_the_folder() {
        let t = NameTemplate::parse("{parent}/{model}/{input}_({stem})").unwrap();
        let v = Values { input: "../../etc", stem: "a/b", model: "builtin:hpss", parent: ".." };
        let p = t.path(Path::new("out"), &v, "wav");
        assert_eq!(p, Path::new("out").join("__").join("builtin_hpss").join(".._.._etc_(a_b).wav"));
    }
}
