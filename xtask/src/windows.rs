//! Windows bundles from a cross build (`--target x86_64-pc-windows-gnu`, mingw-w64), written to
//! `target/bundled/<target>/`: `MDX Stems.clap` (the DLL, renamed), `MDX Stems.vst3` (the VST3
//! bundle folder: `Contents/x86_64-win/MDX Stems.vst3`) and the CLI, `mdx-stems.exe`.
//! nice-plug-xtask would write them into `target/bundled/` itself, over the host's CLAP bundle.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

/// The VST3 bundle's architecture folder for a Windows target triple.
fn vst3_arch(target: &str) -> Result<&'static str> {
    Ok(match target.split('-').next() {
        Some("x86_64") => "x86_64-win",
        Some("aarch64") => "arm_64-win",
        Some("i686") => "x86-win",
        _ => bail!("no VST3 folder for {target}"),
    })
}

/// Bundle `package` built for `target` with `profile` under `target_dir`; returns the folder.
pub fn bundle(target_dir: &Path, target: &str, profile: &str, package: &str) -> Result<PathBuf> {
    let built = target_dir.join(target).join(profile);
    let out = target_dir.join("bundled").join(target);
    let name = crate::bundle_name(package);
    let dll = built.join(format!("{}.dll", package.replace('-', "_")));
    if !dll.is_file() {
        bail!("no library at {} (build with --target {target} first)", dll.display());
    }
    crate::copy_into(&dll, &out.join(format!("{name}.clap")))?;
    crate::copy_into(&dll, &out.join(format!("{name}.vst3/Contents/{}/{name}.vst3", vst3_arch(target)?)))?;
    let exe = built.join(format!("{package}.exe"));
    if exe.is_file() {
        crate::copy_into(&exe, &out.join(format!("{package}.exe")))?;
    }
    eprintln!("Created the Windows bundles in '{}'", out.display());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_bundles_sit_beside_the_hosts() {
        let dir = std::env::temp_dir().join(format!("xtask-win-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let built = dir.join("x86_64-pc-windows-gnu/release");
        std::fs::create_dir_all(&built).unwrap();
        std::fs::write(built.join("mdx_stems.dll"), b"MZ dll").unwrap();
        std::fs::write(built.join("mdx-stems.exe"), b"MZ exe").unwrap();
        // The host's own CLAP bundle must survive.
        std::fs::create_dir_all(dir.join("bundled")).unwrap();
        std::fs::write(dir.join("bundled/MDX Stems.clap"), b"ELF").unwrap();
        let out = bundle(&dir, "x86_64-pc-windows-gnu", "release", "mdx-stems").unwrap();
        assert_eq!(out, dir.join("bundled/x86_64-pc-windows-gnu"));
        assert_eq!(std::fs::read(out.join("MDX Stems.clap")).unwrap(), b"MZ dll");
        assert_eq!(std::fs::read(out.join("MDX Stems.vst3/Contents/x86_64-win/MDX Stems.vst3")).unwrap(), b"MZ dll");
        assert_eq!(std::fs::read(out.join("mdx-stems.exe")).unwrap(), b"MZ exe");
        assert_eq!(std::fs::read(dir.join("bundled/MDX Stems.clap")).unwrap(), b"ELF");
        assert!(bundle(&dir, "x86_64-pc-windows-gnu", "debug", "mdx-stems").is_err(), "nothing built in debug");
    }
}
