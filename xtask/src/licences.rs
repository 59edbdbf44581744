//! `THIRD-PARTY-LICENSES.txt` of a release archive (`dist.rs`): every crate compiled into the
//! shipped package for the archive's targets, found with `cargo metadata --filter-platform`
//! (the normal dependencies of the package, transitively, with the archive's features; crates
//! used only to build or to test are not shipped), each with the licence expression of its
//! manifest and the licence texts its package ships (`LICENSE*`, `LICENCE*`, `COPYING*`,
//! `NOTICE*` and the manifest's `license-file`). `cargo metadata` unifies features over the
//! whole workspace (dev-dependencies' included), so the list may name a few crates more than
//! the build compiles (none fewer): a licence too many, never one missing.

use anyhow::{Context, Result};
use cargo_metadata::{CargoOpt, DependencyKind, MetadataCommand, PackageId};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One shipped crate.
pub struct Crate {
    pub name: String,
    pub version: String,
    /// The manifest's `license` expression ("" when it has none).
    pub licence: String,
    /// Its licence files: (file name, text).
    pub texts: Vec<(String, String)>,
}

/// The crates that `package` (a member of the workspace at `root`) compiles in for any of
/// `triples` with `features`, by name and version.
pub fn shipped_crates(root: &Path, package: &str, triples: &[String], features: &[String]) -> Result<Vec<Crate>> {
    let mut crates = BTreeMap::new();
    for triple in triples {
        let mut cmd = MetadataCommand::new();
        cmd.current_dir(root).other_options(vec!["--filter-platform".to_string(), triple.clone()]);
        if !features.is_empty() {
            cmd.features(CargoOpt::SomeFeatures(features.to_vec()));
        }
        let m = cmd.exec().with_context(|| format!("cargo metadata --filter-platform {triple}"))?;
        let resolve = m.resolve.as_ref().context("cargo metadata gave no dependency graph")?;
        let nodes: HashMap<&PackageId, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
        let packages: HashMap<&PackageId, _> = m.packages.iter().map(|p| (&p.id, p)).collect();
        let top = m.workspace_packages().into_iter().find(|p| p.name.as_str() == package).with_context(|| format!("no workspace package {package}"))?;
        let mut seen = vec![&top.id];
        let mut stack = vec![&top.id];
        while let Some(id) = stack.pop() {
            let node = nodes.get(id).with_context(|| format!("{id} is not in the dependency graph"))?;
            for dep in &node.deps {
                if dep.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal) && !seen.contains(&&dep.pkg) {
                    seen.push(&dep.pkg);
                    stack.push(&dep.pkg);
                }
            }
        }
        for id in seen.into_iter().filter(|id| **id != top.id) {
            let p = packages.get(id).with_context(|| format!("no package {id}"))?;
            let key = (p.name.to_string(), p.version.clone());
            if crates.contains_key(&key) {
                continue;
            }
            let dir = p.manifest_path.parent().context("manifest without a folder")?.as_std_path();
            let c = Crate {
                name: p.name.to_string(),
                version: p.version.to_string(),
                licence: p.license.clone().unwrap_or_default(),
                texts: licence_texts(dir, p.license_file.as_ref().map(|f| f.as_std_path()))?,
            };
            crates.insert(key, c);
        }
    }
    Ok(crates.into_values().collect())
}

/// The licence files of the package in `dir`, by file name; `licence_file` is the manifest's
/// `license-file` (relative to `dir`), wherever it is.
fn licence_texts(dir: &Path, licence_file: Option<&Path>) -> Result<Vec<(String, String)>> {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        let upper = name.to_ascii_uppercase();
        if e.file_type()?.is_file() && ["LICENSE", "LICENCE", "COPYING", "NOTICE"].iter().any(|p| upper.starts_with(p)) {
            files.insert(name, e.path());
        }
    }
    if let Some(f) = licence_file {
        let path = dir.join(f);
        if path.is_file() {
            files.insert(f.to_string_lossy().replace('\\', "/"), path);
        }
    }
    files
        .into_iter()
        .map(|(name, path)| Ok((name, String::from_utf8_lossy(&std::fs::read(&path)?).into_owned())))
        .collect()
}

/// The text of the file: `title`, the list of crates with their licences, then each crate's
/// licence texts; a text that an earlier crate shipped word for word is referred to, not
/// repeated.
pub fn render(crates: &[Crate], title: &str, triples: &[String]) -> String {
    let mut out = format!(
        "Third-party software in {title}\n\n\
         The crates compiled into the plugins and the command-line tool for {},\n\
         as `cargo metadata` lists them: name, version and licence as each declares it, then the\n\
         licence texts that each crate's package ships.\n\n{} crates:\n",
        triples.join(", "),
        crates.len()
    );
    for c in crates {
        let licence = if c.licence.is_empty() { "(no licence expression)" } else { &c.licence };
        out += &format!("  {} {}: {licence}\n", c.name, c.version);
    }
    let mut first_seen: HashMap<&str, String> = HashMap::new();
    for c in crates {
        out += &format!("\n{}\n{} {}\nLicence: {}\n", "=".repeat(78), c.name, c.version, if c.licence.is_empty() { "(none declared)" } else { &c.licence });
        if c.texts.is_empty() {
            out += "(The package ships no licence file; its licence is the expression above.)\n";
        }
        for (file, text) in &c.texts {
            let here = format!("{} {}, {file}", c.name, c.version);
            match first_seen.get(text.trim()) {
                Some(first) => out += &format!("\n--- {file}: the same text as {first}\n"),
                None => {
                    out += &format!("\n--- {file}\n{}\n", text.trim_end());
                    first_seen.insert(text.trim(), here);
                }
            }
        }
    }
    out
}

/// The whole `THIRD-PARTY-LICENSES.txt` of `package` for `triples` with `features`.
pub fn third_party_text(root: &Path, package: &str, triples: &[String], features: &[String], title: &str) -> Result<String> {
    Ok(render(&shipped_crates(root, package, triples, features)?, title, triples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::process::Command;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    /// `cargo tree`'s list of the normal dependencies of mdx-stems for `triple`: the same graph
    /// from cargo's other reader, as "name version".
    fn cargo_tree(triple: &str, features: &[&str]) -> BTreeSet<String> {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root()).args(["tree", "-p", "mdx-stems", "-e", "normal", "--prefix", "none", "--format", "{p}", "--target", triple]);
        if !features.is_empty() {
            cmd.args(["--features", &features.join(",")]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some(format!("{} {}", w.next()?, w.next()?.trim_start_matches('v')))
            })
            .filter(|p| !p.starts_with("mdx-stems "))
            .collect()
    }

    fn names(crates: &[Crate]) -> BTreeSet<String> {
        crates.iter().map(|c| format!("{} {}", c.name, c.version)).collect()
    }

    /// Every crate of cargo tree's graph is listed; the few more that metadata's feature
    /// unification adds are at most 10% of the list.
    fn assert_covers(listed: &BTreeSet<String>, tree: &BTreeSet<String>) {
        let missing: Vec<_> = tree.difference(listed).collect();
        assert!(missing.is_empty(), "compiled in but not listed: {}", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
        let extra = listed.len() - tree.len();
        assert!(extra * 10 <= listed.len(), "{extra} of {} crates listed that cargo tree does not compile in: {}", listed.len(), listed.difference(tree).map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
    }

    /// Linux: every crate of cargo tree's normal graph is listed, no test-only crate and no
    /// crate of another platform; a known MIT/Apache crate comes with both its texts, and a
    /// repeated text is referred to.
    #[test]
    fn linux_list_is_cargo_trees_normal_graph() {
        let triple = "x86_64-unknown-linux-gnu".to_string();
        let crates = shipped_crates(&root(), "mdx-stems", std::slice::from_ref(&triple), &[]).unwrap();
        let listed = names(&crates);
        let tree = cargo_tree(&triple, &[]);
        assert!(tree.len() > 300, "{} crates in cargo tree", tree.len());
        assert_covers(&listed, &tree);
        for dev_or_other in ["clack-host", "windows-sys", "objc2"] {
            assert!(!crates.iter().any(|c| c.name == dev_or_other), "{dev_or_other} is not shipped on Linux");
        }

        let anyhow = crates.iter().find(|c| c.name == "anyhow").expect("anyhow is shipped");
        assert_eq!(anyhow.licence, "MIT OR Apache-2.0");
        let files: Vec<&str> = anyhow.texts.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(files, ["LICENSE-APACHE", "LICENSE-MIT"]);
        assert!(anyhow.texts[1].1.contains("Permission is hereby granted, free of charge"));
        assert!(anyhow.texts[0].1.contains("Apache License"));

        let text = render(&crates, "MDX Stems 0.1.0 (linux-x86_64)", &[triple]);
        assert!(text.starts_with("Third-party software in MDX Stems 0.1.0 (linux-x86_64)\n"));
        assert!(text.contains("\n  anyhow 1."), "anyhow in the list");
        assert!(text.contains(&format!("{} crates:\n", listed.len())));
        let section = text.split(&"=".repeat(78)).find(|s| s.starts_with(&format!("\n{} {}\n", anyhow.name, anyhow.version))).expect("anyhow's section");
        assert!(section.contains("Licence: MIT OR Apache-2.0"));
        assert!(section.contains("--- LICENSE-MIT"));
        // Apache-2.0's text is long and the same in many crates: printed once, then referred to.
        let full_apache = text.matches("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION").count();
        let apache_crates = crates.iter().filter(|c| c.texts.iter().any(|(_, t)| t.contains("TERMS AND CONDITIONS FOR USE, REPRODUCTION"))).count();
        assert!(full_apache < apache_crates / 2, "{full_apache} full Apache texts for {apache_crates} crates");
        assert!(text.contains(": the same text as "));
    }

    /// The list follows the target and the features: Windows' crates for Windows, the Audio Unit
    /// wrapper's for macOS with `au`; each covering cargo tree's graph.
    #[test]
    fn other_platforms_lists_are_theirs() {
        let win = "x86_64-pc-windows-gnu".to_string();
        let crates = shipped_crates(&root(), "mdx-stems", std::slice::from_ref(&win), &[]).unwrap();
        assert_covers(&names(&crates), &cargo_tree(&win, &[]));
        assert!(crates.iter().any(|c| c.name == "windows-sys"));

        let mac = ["x86_64-apple-darwin".to_string(), "aarch64-apple-darwin".to_string()];
        let crates = shipped_crates(&root(), "mdx-stems", &mac, &["au".to_string()]).unwrap();
        let both: BTreeSet<String> = cargo_tree(&mac[0], &["au"]).union(&cargo_tree(&mac[1], &["au"])).cloned().collect();
        assert_covers(&names(&crates), &both);
        assert!(crates.iter().any(|c| c.name == "clap-wrapper"));
        assert!(!crates.iter().any(|c| c.name == "windows-sys"));
    }
}
