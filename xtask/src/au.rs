//! The Audio Unit bundle, `MDX Stems.component`: the plugin library built with the `au` feature
//! (clap-wrapper's AUv2 entry points) under `Contents/MacOS`, `Contents/PkgInfo`, and an
//! `Info.plist` whose `AudioComponents` entries (type, subtype, manufacturer, name, version,
//! factory function) are `src/plugin/ids.rs`'s, one per plugin of the CLAP factory. Written the
//! same way on every platform (tested on Linux); only the signing needs macOS.

use crate::ids::{self, AU_MANUFACTURER, BUNDLE_ID_PREFIX, PLUGINS, VENDOR, fourcc};
use anyhow::{Context, Result, bail};
use plist::{Dictionary, Value};
use std::path::{Path, PathBuf};

/// The bundle's folder name and executable name.
pub fn bundle_name() -> String {
    format!("{}.component", ids::MULTI.name)
}

/// An Audio Unit version number: 0xMMMMmmbb from "major.minor.bugfix".
pub fn au_version(version: &str) -> Result<i64> {
    let parts: Vec<i64> = version
        .split(['.', '-', '+'])
        .take(3)
        .map(|p| p.parse::<i64>().with_context(|| format!("version {version}: `{p}` is not a number")))
        .collect::<Result<_>>()?;
    let [major, minor, bugfix] = parts[..] else { bail!("version {version}: expected major.minor.bugfix") };
    if major > 0xFFFF || minor > 0xFF || bugfix > 0xFF {
        bail!("version {version} does not fit an Audio Unit version");
    }
    Ok((major << 16) | (minor << 8) | bugfix)
}

/// The `Info.plist` of the bundle for package version `version`.
pub fn info_plist(version: &str) -> Result<Dictionary> {
    let au_version = au_version(version)?;
    let exec = ids::MULTI.name;
    let mut d = Dictionary::new();
    let s = |v: &str| Value::String(v.to_string());
    d.insert("CFBundleDevelopmentRegion".into(), s("English"));
    d.insert("CFBundleExecutable".into(), s(exec));
    d.insert("CFBundleIdentifier".into(), s(&format!("{BUNDLE_ID_PREFIX}.component")));
    d.insert("CFBundleInfoDictionaryVersion".into(), s("6.0"));
    d.insert("CFBundleName".into(), s(exec));
    d.insert("CFBundleDisplayName".into(), s(exec));
    d.insert("CFBundlePackageType".into(), s("BNDL"));
    d.insert("CFBundleSignature".into(), s("????"));
    d.insert("CFBundleShortVersionString".into(), s(version));
    d.insert("CFBundleVersion".into(), s(version));
    d.insert("LSMinimumSystemVersion".into(), s("10.15"));
    d.insert("NSHighResolutionCapable".into(), Value::Boolean(true));
    let components = PLUGINS
        .iter()
        .map(|p| {
            let mut c = Dictionary::new();
            c.insert("type".into(), s(&fourcc(p.au.kind)));
            c.insert("subtype".into(), s(&fourcc(p.au.subtype)));
            c.insert("manufacturer".into(), s(&fourcc(AU_MANUFACTURER)));
            c.insert("name".into(), s(&format!("{VENDOR}: {}", p.name)));
            c.insert("description".into(), s(p.name));
            c.insert("version".into(), Value::Integer(au_version.into()));
            c.insert("factoryFunction".into(), s(p.au.factory));
            c.insert("sandboxSafe".into(), Value::Boolean(true));
            let tag = if &p.au.kind == b"aumu" { "Synthesizer" } else { "Effects" };
            c.insert("tags".into(), Value::Array(vec![s(tag)]));
            Value::Dictionary(c)
        })
        .collect();
    d.insert("AudioComponents".into(), Value::Array(components));
    Ok(d)
}

/// Write `<bundled>/MDX Stems.component` around the library `binary` (built with the `au`
/// feature); returns the bundle's path. An existing bundle is replaced.
pub fn write_component(bundled: &Path, binary: &Path, version: &str) -> Result<PathBuf> {
    let home = bundled.join(bundle_name());
    if home.exists() {
        std::fs::remove_dir_all(&home).with_context(|| format!("removing the old {}", home.display()))?;
    }
    let contents = home.join("Contents");
    crate::copy_into(binary, &contents.join("MacOS").join(ids::MULTI.name))?;
    std::fs::write(contents.join("PkgInfo"), "BNDL????")?;
    Value::Dictionary(info_plist(version)?).to_file_xml(contents.join("Info.plist")).context("writing Info.plist")?;
    Ok(home)
}

/// Ad-hoc sign the bundle (`codesign --force --sign -`), on macOS only: Apple Silicon loads no
/// unsigned code. A warning, not an error, when it fails.
pub fn codesign(bundle: &Path) {
    if !cfg!(target_os = "macos") {
        return;
    }
    let ok = std::process::Command::new("codesign").args(["--force", "--sign", "-"]).arg(bundle).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("WARNING: could not ad-hoc sign '{}'; macOS may refuse to load it", bundle.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-au-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn string<'a>(d: &'a Dictionary, k: &str) -> &'a str {
        d.get(k).and_then(Value::as_string).unwrap_or_else(|| panic!("missing string key {k}"))
    }

    /// The bundle as macOS reads it: binary, PkgInfo, and an Info.plist (parsed back) with every
    /// bundle key and one AudioComponents entry per CLAP plugin, whose codes are `ids.rs`'s.
    #[test]
    fn component_bundle_has_the_layout_and_the_plugins_codes() {
        let dir = temp("layout");
        let binary = dir.join("libmdx_stems.dylib");
        std::fs::write(&binary, b"\xcf\xfa\xed\xfe fake mach-o").unwrap();
        let home = write_component(&dir, &binary, "0.1.0").unwrap();
        assert_eq!(home, dir.join("MDX Stems.component"));
        let contents = home.join("Contents");
        assert_eq!(std::fs::read(contents.join("MacOS/MDX Stems")).unwrap(), std::fs::read(&binary).unwrap());
        assert_eq!(std::fs::read_to_string(contents.join("PkgInfo")).unwrap(), "BNDL????");

        let plist = Value::from_file(contents.join("Info.plist")).unwrap();
        let d = plist.as_dictionary().expect("a dictionary at the top");
        assert_eq!(string(d, "CFBundleExecutable"), "MDX Stems");
        assert!(contents.join("MacOS").join(string(d, "CFBundleExecutable")).is_file());
        assert_eq!(string(d, "CFBundlePackageType"), "BNDL");
        assert_eq!(string(d, "CFBundleIdentifier"), "io.github.mdx-stems.component");
        assert_eq!(string(d, "CFBundleShortVersionString"), "0.1.0");
        for k in ["CFBundleName", "CFBundleVersion", "CFBundleInfoDictionaryVersion", "CFBundleSignature"] {
            assert!(!string(d, k).is_empty(), "{k}");
        }

        let comps = d.get("AudioComponents").and_then(Value::as_array).expect("AudioComponents array");
        assert_eq!(comps.len(), PLUGINS.len());
        let mut subtypes = vec![];
        for (i, (c, p)) in comps.iter().zip(PLUGINS).enumerate() {
            let c = c.as_dictionary().unwrap();
            // clap-wrapper's `GetPluginFactoryAUV2_<n>` wraps the n-th CLAP plugin.
            assert_eq!(string(c, "factoryFunction"), format!("GetPluginFactoryAUV2_{i}"), "{}", p.clap_id);
            assert_eq!(string(c, "manufacturer"), "MdxS");
            assert_eq!(string(c, "subtype"), fourcc(p.au.subtype));
            assert_eq!(string(c, "name"), format!("MDX Stems: {}", p.name));
            assert_eq!(c.get("version").and_then(Value::as_signed_integer), Some(0x0001_00));
            for k in ["type", "subtype", "manufacturer"] {
                let code = string(c, k);
                assert!(code.len() == 4 && code.is_ascii(), "{k} `{code}` is not a four-character code");
            }
            subtypes.push(string(c, "subtype").to_string());
        }
        // The plugin with stem outputs is the instrument (multi-output, side-chain input in
        // Logic); the stereo one the effect.
        assert_eq!(string(comps[0].as_dictionary().unwrap(), "type"), "aumu");
        assert_eq!(ids::MULTI.clap_id, "io.github.mdx-stems");
        assert_eq!(string(comps[1].as_dictionary().unwrap(), "type"), "aufx");
        assert_eq!(ids::STEREO.clap_id, "io.github.mdx-stems.stereo");
        subtypes.dedup();
        assert_eq!(subtypes.len(), PLUGINS.len(), "subtypes must differ");
        assert!(fourcc(AU_MANUFACTURER).chars().any(|c| c.is_ascii_uppercase()), "all-lower-case manufacturer codes are Apple's");

        // Writing again replaces the bundle.
        std::fs::write(contents.join("stale"), b"x").unwrap();
        write_component(&dir, &binary, "0.1.0").unwrap();
        assert!(!contents.join("stale").exists());
    }

    #[test]
    fn versions_pack_into_audio_unit_numbers() {
        assert_eq!(au_version("0.1.0").unwrap(), 0x0000_0100);
        assert_eq!(au_version("2.10.3").unwrap(), 0x0002_0A03);
        assert_eq!(au_version("1.2.3-beta").unwrap(), 0x0001_0203);
        assert!(au_version("1.2").is_err());
        assert!(au_version("1.300.0").is_err());
    }
}
