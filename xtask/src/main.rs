//! `cargo xtask bundle mdx-stems --release` builds the CLAP and VST3 bundles (nice-plug-xtask),
//! and:
//! - for macOS targets, with the `au` feature, also the Audio Unit `MDX Stems.component`
//!   (`au.rs`), ad-hoc signed when run on macOS;
//! - for a Windows target (`--target x86_64-pc-windows-gnu`, cross-built with mingw-w64), the
//!   Windows bundles and `mdx-stems.exe` in `target/bundled/x86_64-pc-windows-gnu/`
//!   (`windows.rs`), beside rather than over the host's bundles.
//!
//! `cargo xtask dist` packs the bundles, the CLI and the licences into one release archive per
//! platform (`dist.rs`, `licences.rs`).
//!
//! Everything else goes to nice-plug-xtask as it is.

mod au;
mod dist;
#[path = "../../src/plugin/ids.rs"]
#[allow(dead_code)]
mod ids;
mod licences;
mod windows;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str);
    let target = target_arg(&args);
    let macos = target.as_deref().map_or(cfg!(target_os = "macos"), |t| t.ends_with("-apple-darwin"));
    match command {
        Some("dist") => dist::run(&args[1..]),
        Some("bundle") if target.as_deref().is_some_and(|t| t.contains("-windows-")) => {
            let target = target.expect("checked");
            nice_plug_xtask::chdir_workspace_root()?;
            let (packages, rest) = split_packages(&args[1..])?;
            nice_plug_xtask::build(&packages, &rest)?;
            let target_dir = target_dir()?;
            let profile = profile_dir(&rest);
            for p in &packages {
                windows::bundle(&target_dir, &target, &profile, p)?;
            }
            Ok(())
        }
        Some("bundle" | "bundle-universal") if macos || command == Some("bundle-universal") => {
            let mut with_au = args.clone();
            with_au.extend(["--features".to_string(), "au".to_string()]);
            nice_plug_xtask::main_with_args("cargo xtask", with_au)?;
            let target_dir = target_dir()?;
            let (packages, _) = split_packages(&args[1..])?;
            for p in packages.iter().filter(|p| *p == "mdx-stems") {
                let clap_binary = target_dir.join("bundled").join(format!("{}.clap/Contents/MacOS/{}", bundle_name(p), bundle_name(p)));
                let component = au::write_component(&target_dir.join("bundled"), &clap_binary, &package_version(p)?)?;
                au::codesign(&component);
                eprintln!("Created an Audio Unit bundle at '{}'", component.display());
            }
            Ok(())
        }
        _ => nice_plug_xtask::main_with_args("cargo xtask", args),
    }
}

/// The value of `--target X` / `--target=X`.
fn target_arg(args: &[String]) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == "--target" { args.get(i + 1).cloned() } else { a.strip_prefix("--target=").map(str::to_string) }
    })
}

/// `bundle`'s arguments: the packages (`mdx-stems`, or `-p a -p b`) and the rest for cargo.
fn split_packages(args: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut packages = vec![];
    let mut i = 0;
    while args.get(i).map(String::as_str) == Some("-p") {
        packages.push(args.get(i + 1).context("missing package name after -p")?.clone());
        i += 2;
    }
    if packages.is_empty() {
        packages.push(args.first().context("missing package name")?.clone());
        i = 1;
    }
    Ok((packages, args[i..].to_vec()))
}

/// The cargo profile folder the build arguments write to.
fn profile_dir(args: &[String]) -> String {
    let mut dir = "debug".to_string();
    for (i, a) in args.iter().enumerate() {
        match a.as_str() {
            "--release" => dir = "release".into(),
            "--profile" => dir = args.get(i + 1).cloned().unwrap_or(dir),
            _ => {
                if let Some(p) = a.strip_prefix("--profile=") {
                    dir = p.to_string();
                }
            }
        }
    }
    dir
}

/// The workspace's target folder (honours `CARGO_TARGET_DIR` and the cargo config).
fn target_dir() -> Result<PathBuf> {
    let m = cargo_metadata::MetadataCommand::new().no_deps().exec().context("cargo metadata")?;
    Ok(m.target_directory.into_std_path_buf())
}

/// A workspace package's version.
fn package_version(package: &str) -> Result<String> {
    let m = cargo_metadata::MetadataCommand::new().no_deps().exec().context("cargo metadata")?;
    let p = m.packages.iter().find(|p| p.name == package).with_context(|| format!("no package {package}"))?;
    Ok(p.version.to_string())
}

/// The bundles' file name: `bundler.toml`'s name for our package.
fn bundle_name(package: &str) -> String {
    if package == "mdx-stems" { ids::MULTI.name.to_string() } else { package.to_string() }
}

/// Copy `from` to `to`, creating `to`'s folder.
fn copy_into(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.parent().context("no parent folder")?)?;
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}
