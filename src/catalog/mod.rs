//! Models users already have: find them ([`discover`]), recognise them ([`UvrTable`],
//! [`uvr_hash`]), explain them ([`crate::nets::infer`], [`ModelEntry::config`]), and resolve
//! one ([`resolve`]: name -> file -> config -> origin), all before an engine is built. A
//! model's network is a [`NetSpec`]: nothing here knows which family it is.
//!
//! A model's config is, in order: an explicit `--config`; `<model stem>.yaml` beside the model;
//! the config UVR uses for the checkpoint's hash (the built-in table, then UVR's or
//! python-audio-separator's data files in the model's folder). Without any of them the
//! checkpoint's shapes tell part of the config and the error names exactly what is missing.
//!
//! - [`uvr`]: UVR's hash rule and hash -> config table (compiled in from `assets/uvr-mdxc/` and
//!   `assets/uvr-roformer/`).
//! - [`discover`]: the folders searched (sources documented there) and the listing.

pub mod discover;
pub mod quality;
pub mod uvr;

pub use discover::{app_models_dir, audio_separator_dirs, default_dirs, discover, discover_in, inspect, uvr_model_dirs};
pub use uvr::{uvr_hash, UvrTable, UVR_HASH_BYTES};

use crate::nets::builtin::{Builtin, BuiltinBuilder};
use crate::nets::{ConfigError, ModelBuilder, ModelError, ModelInfo, NetSpec, WeightsError};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a model could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// No explicit config, no `<stem>.yaml` beside the model, and an unknown UVR hash; `detail`
    /// says what the weights determine and which values are missing.
    #[error("no config for {model}: {detail}")]
    NoConfig { model: PathBuf, expected: PathBuf, detail: String },
    #[error("model file {0} does not exist")]
    MissingModel(PathBuf),
    /// The file's first bytes say it is no checkpoint (text, empty, truncated, ...).
    #[error("{} is {what}; a model is a PyTorch checkpoint (.ckpt, .pth) or a .safetensors file", path.display())]
    NotAModel { path: PathBuf, what: String },
    #[error("no built-in model `{0}`; the built-ins are {list}", list = crate::nets::builtin::ALL.join(", "))]
    UnknownBuiltin(String),
}

/// A model file with its network (from its config) and where the config came from.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub path: PathBuf,
    pub net: Arc<dyn NetSpec>,
    pub origin: ConfigOrigin,
}

impl ResolvedModel {
    /// Read and check the weights: what the engine builds the model from. `segment`: one of
    /// the network's [`crate::nets::Segments`] (`None`: the config's chunk).
    pub fn open(&self, segment: Option<usize>) -> Result<Box<dyn ModelBuilder>, ModelError> {
        self.net.open(&self.path, segment)
    }
}

/// A model to build: a built-in separator (by name) or a file with its config.
#[derive(Debug, Clone)]
pub enum Resolved {
    Builtin(Builtin),
    File(ResolvedModel),
}

impl Resolved {
    /// What the model needs and gives; a built-in at `rate` (it runs at any rate).
    pub fn info(&self, rate: u32) -> ModelInfo {
        match self {
            Resolved::Builtin(b) => b.info(rate),
            Resolved::File(f) => f.net.info(),
        }
    }

    /// The display name: the built-in's, or UVR's name for the file, else its file stem.
    pub fn name(&self) -> String {
        match self {
            Resolved::Builtin(b) => b.name().to_string(),
            Resolved::File(f) => display_name(&f.path),
        }
    }

    /// The builder the engine loads: a built-in at `rate`; a file's weights, read and checked,
    /// with chunks of `segment` (`None`: the config's chunk).
    pub fn open(&self, segment: Option<usize>, rate: u32) -> Result<Box<dyn ModelBuilder>, ModelError> {
        match self {
            Resolved::Builtin(b) => Ok(Box::new(BuiltinBuilder::new(*b, rate))),
            Resolved::File(f) => f.open(segment),
        }
    }
}

/// UVR's display name for a model file, else its file stem.
pub fn display_name(path: &Path) -> String {
    let file_name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    UvrTable::builtin()
        .display_name(&file_name)
        .unwrap_or_else(|| path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned()))
}

/// Resolve a model: a built-in name (`builtin:hpss`), else a file and its config (see
/// [`resolve`]).
pub fn resolve_any(model: &Path, config: Option<&Path>) -> Result<Resolved, CatalogError> {
    if let Some(name) = model.to_str().filter(|n| Builtin::is_builtin_name(n)) {
        return Builtin::by_name(name).map(Resolved::Builtin).ok_or_else(|| CatalogError::UnknownBuiltin(name.to_string()));
    }
    resolve(model, config).map(Resolved::File)
}

/// The built-in separators as list entries (always ready), in [`crate::nets::builtin::ALL`]'s order.
pub fn builtin_entries() -> Vec<ModelEntry> {
    crate::nets::builtin::ALL
        .iter()
        .filter_map(|n| Builtin::by_name(n))
        .map(|b| ModelEntry {
            path: PathBuf::from(b.name()),
            name: b.name().to_string(),
            stems: b.stems(),
            source: ModelSource::Builtin,
            config: Ok(ConfigOrigin::Builtin),
        })
        .collect()
}

/// Resolve a model file and its config (see [`find_config`]) with UVR's built-in table.
pub fn resolve(model: &Path, config: Option<&Path>) -> Result<ResolvedModel, CatalogError> {
    if !model.is_file() {
        return Err(CatalogError::MissingModel(model.to_path_buf()));
    }
    check_is_checkpoint(model)?;
    let (net, origin) = find_config(model, config, UvrTable::builtin())?;
    Ok(ResolvedModel { path: model.to_path_buf(), net, origin })
}

/// [`CatalogError::NotAModel`] when the file's first bytes say it is no checkpoint
/// ([`crate::sniff::checkpoint_problem`]).
pub fn check_is_checkpoint(model: &Path) -> Result<(), CatalogError> {
    match crate::sniff::checkpoint_problem(model) {
        Some(what) => Err(CatalogError::NotAModel { path: model.to_path_buf(), what }),
        None => Ok(()),
    }
}

/// A model's config (see [`find_config`]) with UVR's built-in table.
pub fn resolve_config(model: &Path, config: Option<&Path>) -> Result<Arc<dyn NetSpec>, CatalogError> {
    find_config(model, config, UvrTable::builtin()).map(|(cfg, _)| cfg)
}

/// Where a model was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModelSource {
    /// Built into the program (no file).
    Builtin,
    /// The app's own models folder ([`app_models_dir`]).
    App,
    /// Ultimate Vocal Remover's `MDX_Net_Models` folder.
    Uvr,
    /// python-audio-separator's model folder.
    AudioSeparator,
    /// A path the user gave.
    Path,
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelSource::Builtin => "built-in",
            ModelSource::App => "app",
            ModelSource::Uvr => "UVR",
            ModelSource::AudioSeparator => "audio-separator",
            ModelSource::Path => "path",
        })
    }
}

/// Where a model's config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// Given by the user (`--config`).
    Explicit(PathBuf),
    /// `<model stem>.yaml` next to the model.
    BesideModel(PathBuf),
    /// Recognised by UVR's hash of the file; `yaml` is the config's file name as UVR names it.
    UvrHash { hash: String, yaml: String },
    /// A built-in separator: no file, nothing to configure.
    Builtin,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::Explicit(p) => write!(f, "{} (--config)", p.display()),
            ConfigOrigin::BesideModel(p) => {
                write!(f, "{}", p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned()))
            }
            ConfigOrigin::UvrHash { yaml, .. } => write!(f, "UVR config {yaml}"),
            ConfigOrigin::Builtin => f.write_str("built in, no file"),
        }
    }
}

/// One model file and what is known about it.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub path: PathBuf,
    /// The name UVR shows for it when UVR has one, else the file name without extension.
    pub name: String,
    /// Stem names in output order (empty when not ready).
    pub stems: Vec<String>,
    pub source: ModelSource,
    /// Where its config comes from, or why it cannot be used.
    pub config: Result<ConfigOrigin, String>,
}

impl ModelEntry {
    /// A config was found and matches the weights.
    pub fn is_ready(&self) -> bool {
        self.config.is_ok()
    }
}

/// Explicit config > `<stem>.yaml` beside the model > UVR hash (the table, then the data files
/// in the model's folder). `Ok(None)`: none of them. A config that exists but is invalid is an
/// error (it is not skipped for the next candidate).
pub(crate) fn lookup_config(
    model: &Path,
    explicit: Option<&Path>,
    table: &UvrTable,
) -> Result<Option<(Arc<dyn NetSpec>, ConfigOrigin)>, CatalogError> {
    if let Some(c) = explicit {
        return Ok(Some((crate::nets::from_yaml_file(c)?, ConfigOrigin::Explicit(c.to_path_buf()))));
    }
    let beside = model.with_extension("yaml");
    if beside.is_file() {
        return Ok(Some((crate::nets::from_yaml_file(&beside)?, ConfigOrigin::BesideModel(beside))));
    }
    let hash = uvr_hash(model).map_err(|source| WeightsError::Io { path: model.to_path_buf(), source })?;
    let (yaml, config) = match table.config_for(&hash) {
        Some(found) => found,
        None => match uvr::lookup_local(model, &hash, table) {
            Some(m) => (m.yaml_name, m.config),
            None => return Ok(None),
        },
    };
    Ok(Some((config?, ConfigOrigin::UvrHash { hash, yaml })))
}

/// Find a model's config (see [`lookup_config`]'s order) using `table` for UVR hashes. When there
/// is none, the error says what the checkpoint's shapes determine and exactly which values are
/// missing.
pub fn find_config(model: &Path, explicit: Option<&Path>, table: &UvrTable) -> Result<(Arc<dyn NetSpec>, ConfigOrigin), CatalogError> {
    match lookup_config(model, explicit, table)? {
        Some(found) => Ok(found),
        None => Err(CatalogError::NoConfig {
            model: model.to_path_buf(),
            expected: model.with_extension("yaml"),
            detail: no_config_detail(model),
        }),
    }
}

/// The explanation for a model with no config: its hash, what its shapes determine, what is
/// missing and how to supply it.
pub fn no_config_detail(model: &Path) -> String {
    let expected = model.with_extension("yaml");
    let mut s = format!(
        "there is no {} next to it",
        expected.file_name().map_or_else(|| expected.display().to_string(), |n| n.to_string_lossy().into_owned())
    );
    if let Ok(h) = uvr_hash(model) {
        s.push_str(&format!(" and its UVR hash {h} is not in UVR's table"));
    }
    match crate::nets::read_shapes(model).and_then(|sh| crate::nets::infer(&sh)) {
        Ok(shape) => {
            s.push_str(&format!("\n  the weights determine: {}", shape.summary()));
            s.push_str(&format!("\n  missing (the weights do not hold them): {}", shape.missing().join("; ")));
        }
        Err(e) => s.push_str(&format!("\n  and no network family reads these weights: {e}")),
    }
    s.push_str(&format!(
        "\n  pass --config <file.yaml> with these values, or put {} next to the model",
        expected.display()
    ));
    s
}

/// A `--model` argument: a path to an existing file, else a model's display name (or file
/// name), else a unique prefix of one, else a unique part of one, among [`discover`]'s list,
/// ignoring case.
pub fn resolve_model_arg(arg: &str) -> Result<PathBuf, String> {
    if Builtin::is_builtin_name(arg) {
        return Builtin::by_name(arg).map(|b| PathBuf::from(b.name())).ok_or_else(|| CatalogError::UnknownBuiltin(arg.to_string()).to_string());
    }
    let p = Path::new(arg);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    resolve_model_arg_in(arg, &discover())
}

/// How a name matched: exactly, as a prefix, or as a part (each rule tried only when the one
/// before matched nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMatch {
    Exact,
    Prefix,
    Part,
}

/// The items whose names (any of `names(item)`) match `query` under the first rule of
/// [`NameMatch`] that matches any, ignoring case; empty when none does. The one name matcher
/// of `--model` and `models --download`.
pub fn match_names<'a, T>(query: &str, items: &'a [T], names: impl Fn(&T) -> Vec<String>) -> (Vec<&'a T>, Option<NameMatch>) {
    let q = query.trim().to_lowercase();
    if q.is_empty() {
        return (vec![], None);
    }
    for rule in [NameMatch::Exact, NameMatch::Prefix, NameMatch::Part] {
        let hits: Vec<&T> = items
            .iter()
            .filter(|it| {
                names(it).iter().map(|n| n.to_lowercase()).any(|n| match rule {
                    NameMatch::Exact => n == q,
                    NameMatch::Prefix => n.starts_with(&q),
                    NameMatch::Part => n.contains(&q),
                })
            })
            .collect();
        if !hits.is_empty() {
            return (hits, Some(rule));
        }
    }
    (vec![], None)
}

/// [`resolve_model_arg`] against a given list (testable core).
pub fn resolve_model_arg_in(arg: &str, entries: &[ModelEntry]) -> Result<PathBuf, String> {
    let p = Path::new(arg);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let names = |e: &ModelEntry| {
        let mut v = vec![e.name.clone()];
        v.extend(e.path.file_name().map(|f| f.to_string_lossy().into_owned()));
        v.extend(e.path.file_stem().map(|f| f.to_string_lossy().into_owned()));
        v
    };
    let (candidates, _) = match_names(arg, entries, names);
    match candidates.len() {
        0 => {}
        1 => return Ok(candidates[0].path.clone()),
        _ => {
            // The same model in several places: take the one that can be used, if only one can.
            let ready: Vec<_> = candidates.iter().filter(|e| e.is_ready()).collect();
            if ready.len() == 1 {
                return Ok(ready[0].path.clone());
            }
            let list: Vec<String> = candidates.iter().map(|e| format!("  {} ({}, {})", e.name, e.source, e.path.display())).collect();
            return Err(format!("`{arg}` matches {} models; give more of the name, or a path:\n{}", candidates.len(), list.join("\n")));
        }
    }
    let looks_like_path = arg.contains('/') || arg.contains('\\') || has_model_ext(p);
    if looks_like_path {
        return Err(format!("model file {arg} does not exist"));
    }
    if entries.is_empty() {
        return Err(format!(
            "no model file or model named `{arg}`, and no models were found (put .ckpt files with their .yaml in {})",
            app_models_dir().display()
        ));
    }
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    Err(format!(
        "no model file or model named `{arg}`; models found: {} (`mdx-stems models` lists them)",
        names.join(", ")
    ))
}

fn has_model_ext(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["ckpt", "safetensors", "pth", "pt", "yaml"].iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Width the models table fits in (columns).
pub const TABLE_WIDTH: usize = 100;

/// `s` cut to `max` characters, the cut marked with `…` at the end.
fn cut_end(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    s.chars().take(max.saturating_sub(1)).collect::<String>() + "…"
}

/// A path cut to `max` characters in its middle (the start and the file name kept), with the
/// home folder written `~`.
pub fn short_path(p: &Path, max: usize) -> String {
    let mut s = p.display().to_string();
    if let Some(home) = dirs::home_dir().filter(|h| h.components().count() > 1) {
        if let Ok(rest) = p.strip_prefix(&home) {
            s = Path::new("~").join(rest).display().to_string();
        }
    }
    let n = s.chars().count();
    if n <= max {
        return s;
    }
    let tail = max * 2 / 3;
    let head = max - tail - 1;
    let chars: Vec<char> = s.chars().collect();
    chars[..head].iter().collect::<String>() + "…" + &chars[n - tail..].iter().collect::<String>()
}

/// `text` wrapped at spaces into lines of at most `width` characters (a longer word is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![];
    let mut line = String::new();
    for word in text.split(' ') {
        let word = cut_end(word, width);
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The model list as a text table of at most [`TABLE_WIDTH`] columns: the built-ins first, then
/// `entries` (the files found). One row per model (name, stems and source cut to their column,
/// the status wrapped under its own), then the file's path on its own indented line (cut in the
/// middle when long).
pub fn print_models_table(entries: &[ModelEntry]) -> String {
    let headers = ["NAME", "STEMS", "SOURCE", "STATUS"];
    let files = entries.iter().filter(|e| e.source != ModelSource::Builtin).count();
    let all: Vec<ModelEntry> = builtin_entries().into_iter().chain(entries.iter().filter(|e| e.source != ModelSource::Builtin).cloned()).collect();
    let rows: Vec<([String; 4], Option<String>)> = all
        .iter()
        .map(|e| {
            let status = match &e.config {
                Ok(origin) => format!("ready ({origin})"),
                Err(reason) => format!("not ready: {reason}"),
            };
            let stems = if e.stems.is_empty() { "-".to_string() } else { e.stems.join(", ") };
            let path = (e.source != ModelSource::Builtin).then(|| short_path(&e.path, TABLE_WIDTH - 4));
            ([e.name.clone(), stems, e.source.to_string(), status], path)
        })
        .collect();
    // Name, stems and source at most 28, 22 and 15 wide; the status gets the rest.
    let caps = [28usize, 22, 15];
    let mut widths = [0usize; 3];
    for (i, w) in widths.iter_mut().enumerate() {
        *w = rows.iter().map(|(r, _)| r[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0).min(caps[i]);
    }
    let status_at: usize = widths.iter().map(|w| w + 2).sum();
    let status_width = TABLE_WIDTH - status_at;
    let row = |cells: [&str; 4]| -> String {
        let mut s = String::new();
        for i in 0..3 {
            let c = cut_end(cells[i], widths[i]);
            s.push_str(&c);
            s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
        }
        let status = wrap(cells[3], status_width);
        s.push_str(&status[0]);
        for more in &status[1..] {
            s.push('\n');
            s.push_str(&" ".repeat(status_at));
            s.push_str(more);
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = row(headers);
    for (r, path) in &rows {
        out.push_str(&row([&r[0], &r[1], &r[2], &r[3]]));
        if let Some(p) = path {
            out.push_str(&format!("    {p}\n"));
        }
    }
    if files == 0 {
        let note = format!(
            "(no model files found: the built-ins are used; `mdx-stems models --available` lists MDX23C models to download \
             into {}, or put .ckpt files with their .yaml there, or install models with UVR)",
            short_path(&app_models_dir(), TABLE_WIDTH - 20)
        );
        for l in wrap(&note, TABLE_WIDTH) {
            out.push_str(&l);
            out.push('\n');
        }
    } else {
        let ready = entries.iter().filter(|e| e.source != ModelSource::Builtin && e.is_ready()).count();
        out.push_str(&format!("{files} model file{}, {ready} ready\n", if files == 1 { "" } else { "s" }));
    }
    out
}
