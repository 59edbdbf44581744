//! `cargo xtask dist`: one release archive per platform, from the bundles that `cargo xtask
//! bundle` already made (nothing is rebuilt but the CLI, when it is missing):
//!
//! ```text
//! cargo xtask dist                                             # this machine's platform, release
//! cargo xtask dist --target x86_64-pc-windows-gnu --profile ci-cross
//! cargo xtask dist --universal                                 # macOS, after `bundle-universal`
//! ```
//!
//! writes `target/dist/mdx-stems-<version>-<platform>.tar.gz` (`.zip` for Windows) holding one
//! folder of that name with the plugin bundles (`MDX Stems.clap`, `MDX Stems.vst3`, on macOS
//! `MDX Stems.component`), the CLI (`mdx-stems`, `mdx-stems.exe`), `README.md`, the project's
//! licence file and `THIRD-PARTY-LICENSES.txt` (`licences.rs`).

use crate::licences;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package that is shipped.
const PACKAGE: &str = "mdx-stems";

/// The operating system an archive is for: its bundles, binary format and archive format.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Linux,
    Windows,
    MacOS,
}

impl Os {
    fn of(triple: &str) -> Result<Os> {
        Ok(if triple.contains("-linux-") {
            Os::Linux
        } else if triple.contains("-windows-") {
            Os::Windows
        } else if triple.ends_with("-apple-darwin") {
            Os::MacOS
        } else {
            bail!("no release archive for target {triple}")
        })
    }

    /// The plugin bundles, by file name.
    fn bundles(self) -> Vec<String> {
        let name = crate::bundle_name(PACKAGE);
        let mut b = vec![format!("{name}.clap"), format!("{name}.vst3")];
        if self == Os::MacOS {
            b.push(crate::au::bundle_name());
        }
        b
    }

    /// Whether `head` (a binary's first bytes) is this system's executable format: ELF, PE, or
    /// Mach-O (64-bit, or a universal "fat" file).
    fn is_binary(self, head: &[u8]) -> bool {
        match self {
            Os::Linux => head.starts_with(b"\x7fELF"),
            Os::Windows => head.starts_with(b"MZ"),
            Os::MacOS => head.starts_with(&[0xcf, 0xfa, 0xed, 0xfe]) || head.starts_with(&[0xca, 0xfe, 0xba, 0xbe]),
        }
    }
}

/// What one archive is made of, and where the parts are.
pub struct Spec {
    pub version: String,
    /// `linux-x86_64`, `windows-x86_64`, `macos-aarch64`, `macos-universal`, ...
    pub platform: String,
    pub os: Os,
    /// The folder that holds the bundles.
    pub bundled: PathBuf,
    /// The CLI binary.
    pub cli: PathBuf,
}

impl Spec {
    /// The archive of `version` for `triples` (two for a universal macOS build) built with
    /// `profile` under `target_dir`. `cross`: the target was named (`--target`), so cargo's
    /// output is under `target/<triple>/`.
    pub fn new(target_dir: &Path, triples: &[String], cross: bool, profile: &str, version: &str) -> Result<Spec> {
        let [first, ..] = triples else { bail!("no target") };
        let os = Os::of(first)?;
        let universal = triples.len() > 1;
        let arch = if universal { "universal" } else { first.split('-').next().unwrap_or(first) };
        let os_name = match os {
            Os::Linux => "linux",
            Os::Windows => "windows",
            Os::MacOS => "macos",
        };
        let exe = if os == Os::Windows { format!("{PACKAGE}.exe") } else { PACKAGE.to_string() };
        let bundled = target_dir.join("bundled");
        Ok(Spec {
            version: version.to_string(),
            platform: format!("{os_name}-{arch}"),
            os,
            // Windows cross builds are bundled beside the host's bundles (`windows.rs`).
            bundled: if cross && os == Os::Windows { bundled.join(first) } else { bundled },
            // A universal CLI is lipo'd into the dist folder (`universal_cli`).
            cli: if universal {
                target_dir.join("dist").join(format!("{PACKAGE}-universal"))
            } else if cross {
                target_dir.join(first).join(profile).join(exe)
            } else {
                target_dir.join(profile).join(exe)
            },
        })
    }

    /// `mdx-stems-<version>-<platform>`: the archive's name and its top folder.
    pub fn name(&self) -> String {
        format!("{PACKAGE}-{}-{}", self.version, self.platform)
    }

    fn archive_path(&self, dist: &Path) -> PathBuf {
        let ext = if self.os == Os::Windows { "zip" } else { "tar.gz" };
        dist.join(format!("{}.{ext}", self.name()))
    }
}

/// `cargo xtask dist [--target T | --universal] [--release | --profile P]` (release by default).
pub fn run(args: &[String]) -> Result<()> {
    nice_plug_xtask::chdir_workspace_root()?;
    let root = std::env::current_dir()?;
    let target_dir = crate::target_dir()?;
    let universal = args.iter().any(|a| a == "--universal");
    let target = crate::target_arg(args);
    let profile = if args.iter().any(|a| a == "--release" || a.starts_with("--profile")) { crate::profile_dir(args) } else { "release".to_string() };
    let triples = if universal {
        vec!["x86_64-apple-darwin".to_string(), "aarch64-apple-darwin".to_string()]
    } else {
        vec![target.clone().map_or_else(host_triple, Ok)?]
    };
    let spec = Spec::new(&target_dir, &triples, target.is_some(), &profile, &crate::package_version(PACKAGE)?)?;
    let features = if spec.os == Os::MacOS { vec!["au".to_string()] } else { vec![] };

    if universal {
        universal_cli(&target_dir, &profile, &features, &spec.cli)?;
    } else if !spec.cli.is_file() {
        eprintln!("No CLI at '{}': building it", spec.cli.display());
        let mut build = Command::new("cargo");
        build.args(["build", "-p", PACKAGE, "--bin", PACKAGE, "--profile", &profile]);
        if let Some(t) = &target {
            build.args(["--target", t]);
        }
        if !features.is_empty() {
            build.args(["--features", &features.join(",")]);
        }
        if !build.status().is_ok_and(|s| s.success()) {
            bail!("could not build the CLI");
        }
    }

    let third_party = licences::third_party_text(&root, PACKAGE, &triples, &features, &format!("MDX Stems {} ({})", spec.version, spec.platform))?;
    let archive = package(&spec, &root, &target_dir.join("dist"), &third_party)?;
    eprintln!("Created the release archive '{}'", archive.display());
    Ok(())
}

/// This machine's target triple (`rustc -vV`).
fn host_triple() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output().context("running rustc -vV")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("host: ")).map(str::to_string).context("no host line in rustc -vV")
}

/// The universal CLI: both macOS builds of the binary (built when missing), joined by `lipo`
/// and ad-hoc signed.
fn universal_cli(target_dir: &Path, profile: &str, features: &[String], out: &Path) -> Result<()> {
    let mut parts = vec![];
    for t in ["x86_64-apple-darwin", "aarch64-apple-darwin"] {
        let bin = target_dir.join(t).join(profile).join(PACKAGE);
        if !bin.is_file() {
            let ok = Command::new("cargo")
                .args(["build", "-p", PACKAGE, "--bin", PACKAGE, "--profile", profile, "--target", t, "--features", &features.join(",")])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                bail!("could not build the CLI for {t}");
            }
        }
        parts.push(bin);
    }
    std::fs::create_dir_all(out.parent().context("no parent folder")?)?;
    let ok = Command::new("lipo").arg("-create").arg("-output").arg(out).args(&parts).status().is_ok_and(|s| s.success());
    if !ok {
        bail!("lipo could not join the CLI binaries (it needs macOS)");
    }
    crate::au::codesign(out);
    Ok(())
}

/// Write the archive of `spec` into `dist` (replacing one of the same name) and return its
/// path: the bundles and the CLI, `README.md` and the licence files of the workspace `root`,
/// and `third_party` as `THIRD-PARTY-LICENSES.txt`, in one folder named after the archive.
pub fn package(spec: &Spec, root: &Path, dist: &Path, third_party: &str) -> Result<PathBuf> {
    let bundles = spec.os.bundles();
    for b in &bundles {
        if !spec.bundled.join(b).exists() {
            bail!("no '{b}' in '{}': run `cargo xtask bundle` for this platform first", spec.bundled.display());
        }
    }
    // The bundles must be this platform's (not another build's left in the same folder).
    let clap = spec.bundled.join(&bundles[0]);
    let clap_binary = if spec.os == Os::MacOS { clap.join("Contents/MacOS").join(crate::bundle_name(PACKAGE)) } else { clap };
    for binary in [&clap_binary, &spec.cli] {
        let head = read_head(binary)?;
        if !spec.os.is_binary(&head) {
            bail!("'{}' is not a {} binary", binary.display(), spec.platform);
        }
    }

    let name = spec.name();
    let staging = dist.join(&name);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    for b in &bundles {
        copy_tree(&spec.bundled.join(b), &staging.join(b))?;
    }
    crate::copy_into(&spec.cli, &staging.join(cli_name(spec)))?;
    crate::copy_into(&root.join("README.md"), &staging.join("README.md"))?;
    let licence_files = project_licence_files(root)?;
    if licence_files.is_empty() {
        eprintln!("WARNING: no LICENSE file in '{}': the archive has no licence of the project itself", root.display());
    }
    for f in licence_files {
        crate::copy_into(&root.join(&f), &staging.join(&f))?;
    }
    std::fs::write(staging.join("THIRD-PARTY-LICENSES.txt"), third_party)?;

    let archive = spec.archive_path(dist);
    if archive.exists() {
        std::fs::remove_file(&archive)?;
    }
    if spec.os == Os::Windows {
        write_zip(dist, &name, &archive)?;
    } else {
        // `tar` is on every runner (GNU tar on Linux, bsdtar on macOS, which with
        // COPYFILE_DISABLE adds no `._` files of extended attributes).
        let ok = Command::new("tar")
            .env("COPYFILE_DISABLE", "1")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(dist)
            .arg(&name)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("tar could not write '{}'", archive.display());
        }
    }
    std::fs::remove_dir_all(&staging)?;
    Ok(archive)
}

/// The CLI's name in the archive.
fn cli_name(spec: &Spec) -> String {
    if spec.os == Os::Windows { format!("{PACKAGE}.exe") } else { PACKAGE.to_string() }
}

/// The project's own licence files at the workspace root (`LICENSE*`, `LICENCE*`, `COPYING*`).
fn project_licence_files(root: &Path) -> Result<Vec<String>> {
    let mut files = vec![];
    for e in std::fs::read_dir(root)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        let upper = name.to_ascii_uppercase();
        if e.file_type()?.is_file() && ["LICENSE", "LICENCE", "COPYING"].iter().any(|p| upper.starts_with(p)) {
            files.push(name);
        }
    }
    files.sort();
    Ok(files)
}

fn read_head(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut head = vec![0; 4];
    let mut f = std::fs::File::open(path).with_context(|| format!("opening '{}'", path.display()))?;
    let n = f.read(&mut head)?;
    head.truncate(n);
    Ok(head)
}

/// Copy a file, or a folder with everything in it.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else {
        crate::copy_into(from, to)
    }
}

/// Zip the folder `dist/<name>` into `archive`, its entries under `<name>/`.
fn write_zip(dist: &Path, name: &str, archive: &Path) -> Result<()> {
    use zip::write::SimpleFileOptions;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(archive)?);
    let mut pending = vec![PathBuf::from(name)];
    while let Some(rel) = pending.pop() {
        let path = dist.join(&rel);
        let entry = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        if path.is_dir() {
            zip.add_directory(format!("{entry}/"), SimpleFileOptions::default())?;
            let mut children: Vec<_> = std::fs::read_dir(&path)?.map(|e| e.map(|e| rel.join(e.file_name()))).collect::<Result<_, _>>()?;
            children.sort();
            pending.extend(children.into_iter().rev());
        } else {
            let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).unix_permissions(0o755);
            zip.start_file(entry, options)?;
            std::io::copy(&mut std::fs::File::open(&path)?, &mut zip)?;
        }
    }
    zip.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-dist-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// A workspace root with the files an archive takes from it.
    fn fake_root(dir: &Path) -> PathBuf {
        let root = dir.join("root");
        write(&root.join("README.md"), b"# readme");
        write(&root.join("LICENSE"), b"MIT licence text");
        write(&root.join("Cargo.toml"), b"not shipped");
        root
    }

    #[test]
    fn platforms_and_paths() {
        let t = Path::new("/t");
        let linux = Spec::new(t, &["x86_64-unknown-linux-gnu".into()], false, "release", "0.1.0").unwrap();
        assert_eq!(linux.name(), "mdx-stems-0.1.0-linux-x86_64");
        assert_eq!(linux.bundled, Path::new("/t/bundled"));
        assert_eq!(linux.cli, Path::new("/t/release/mdx-stems"));
        assert_eq!(linux.archive_path(Path::new("/d")), Path::new("/d/mdx-stems-0.1.0-linux-x86_64.tar.gz"));

        let win = Spec::new(t, &["x86_64-pc-windows-gnu".into()], true, "ci-cross", "0.1.0").unwrap();
        assert_eq!(win.name(), "mdx-stems-0.1.0-windows-x86_64");
        assert_eq!(win.bundled, Path::new("/t/bundled/x86_64-pc-windows-gnu"));
        assert_eq!(win.cli, Path::new("/t/x86_64-pc-windows-gnu/ci-cross/mdx-stems.exe"));
        assert_eq!(win.archive_path(Path::new("/d")), Path::new("/d/mdx-stems-0.1.0-windows-x86_64.zip"));

        // A native Windows (MSVC) build bundles into target/bundled like every native build.
        let msvc = Spec::new(t, &["x86_64-pc-windows-msvc".into()], false, "release", "0.1.0").unwrap();
        assert_eq!(msvc.bundled, Path::new("/t/bundled"));
        assert_eq!(msvc.cli, Path::new("/t/release/mdx-stems.exe"));

        let mac = Spec::new(t, &["x86_64-apple-darwin".into(), "aarch64-apple-darwin".into()], false, "release", "0.2.0").unwrap();
        assert_eq!(mac.name(), "mdx-stems-0.2.0-macos-universal");
        assert_eq!(mac.bundled, Path::new("/t/bundled"));
        let arm = Spec::new(t, &["aarch64-apple-darwin".into()], true, "release", "0.2.0").unwrap();
        assert_eq!(arm.name(), "mdx-stems-0.2.0-macos-aarch64");
        assert_eq!(arm.cli, Path::new("/t/aarch64-apple-darwin/release/mdx-stems"));
        assert!(Spec::new(t, &["wasm32-unknown-unknown".into()], true, "release", "0.1.0").is_err());
    }

    /// The Linux archive from a fake `target/`, listed by `tar` itself: exactly the bundles, the
    /// executable CLI, the README, the licence and the third-party licences, in one folder.
    #[test]
    fn linux_archive_layout() {
        let dir = temp("linux");
        let root = fake_root(&dir);
        let target = dir.join("target");
        write(&target.join("bundled/MDX Stems.clap"), b"\x7fELF clap");
        write(&target.join("bundled/MDX Stems.vst3/Contents/x86_64-linux/MDX Stems.so"), b"\x7fELF vst3");
        let cli = target.join("release/mdx-stems");
        write(&cli, b"\x7fELF cli");
        #[cfg(unix)]
        std::fs::set_permissions(&cli, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let spec = Spec::new(&target, &["x86_64-unknown-linux-gnu".into()], false, "release", "0.1.0").unwrap();
        let archive = package(&spec, &root, &target.join("dist"), "third-party text").unwrap();
        assert_eq!(archive, target.join("dist/mdx-stems-0.1.0-linux-x86_64.tar.gz"));
        assert!(!target.join("dist/mdx-stems-0.1.0-linux-x86_64").exists(), "the staging folder is removed");

        let list = Command::new("tar").arg("-tvzf").arg(&archive).output().unwrap();
        assert!(list.status.success());
        let list = String::from_utf8(list.stdout).unwrap();
        let mut names: Vec<&str> = list.lines().map(|l| &l[l.find("mdx-stems-0.1.0-linux-x86_64/").expect(l)..]).collect();
        names.sort();
        let top = "mdx-stems-0.1.0-linux-x86_64/";
        let expected: Vec<String> = [
            "",
            "LICENSE",
            "MDX Stems.clap",
            "MDX Stems.vst3/",
            "MDX Stems.vst3/Contents/",
            "MDX Stems.vst3/Contents/x86_64-linux/",
            "MDX Stems.vst3/Contents/x86_64-linux/MDX Stems.so",
            "README.md",
            "THIRD-PARTY-LICENSES.txt",
            "mdx-stems",
        ]
        .iter()
        .map(|n| format!("{top}{n}"))
        .collect();
        assert_eq!(names, expected);
        let cli_line = list.lines().find(|l| l.ends_with("/mdx-stems")).unwrap();
        assert!(cli_line.starts_with("-rwx"), "the CLI is executable: {cli_line}");
        let read = |entry: &str| {
            let out = Command::new("tar").arg("-xzOf").arg(&archive).arg(format!("{top}{entry}")).output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(read("THIRD-PARTY-LICENSES.txt"), "third-party text");
        assert_eq!(read("LICENSE"), "MIT licence text");
        assert_eq!(read("MDX Stems.clap"), "\x7fELF clap");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The Windows archive of a cross build: a zip of the bundles beside the host's, read back.
    #[test]
    fn windows_archive_layout() {
        let dir = temp("windows");
        let root = fake_root(&dir);
        let target = dir.join("target");
        let bundled = target.join("bundled/x86_64-pc-windows-gnu");
        write(&bundled.join("MDX Stems.clap"), b"MZ dll");
        write(&bundled.join("MDX Stems.vst3/Contents/x86_64-win/MDX Stems.vst3"), b"MZ dll");
        write(&target.join("x86_64-pc-windows-gnu/ci-cross/mdx-stems.exe"), b"MZ exe");
        // The host's Linux bundles in target/bundled are not the Windows archive's.
        write(&target.join("bundled/MDX Stems.clap"), b"\x7fELF");
        let spec = Spec::new(&target, &["x86_64-pc-windows-gnu".into()], true, "ci-cross", "0.1.0").unwrap();
        let archive = package(&spec, &root, &target.join("dist"), "third-party text").unwrap();
        assert_eq!(archive, target.join("dist/mdx-stems-0.1.0-windows-x86_64.zip"));

        let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive).unwrap()).unwrap();
        let mut names: Vec<String> = zip.file_names().map(str::to_string).collect();
        names.sort();
        let top = "mdx-stems-0.1.0-windows-x86_64/";
        let expected: Vec<String> = [
            "",
            "LICENSE",
            "MDX Stems.clap",
            "MDX Stems.vst3/",
            "MDX Stems.vst3/Contents/",
            "MDX Stems.vst3/Contents/x86_64-win/",
            "MDX Stems.vst3/Contents/x86_64-win/MDX Stems.vst3",
            "README.md",
            "THIRD-PARTY-LICENSES.txt",
            "mdx-stems.exe",
        ]
        .iter()
        .map(|n| format!("{top}{n}"))
        .collect();
        assert_eq!(names, expected);
        let mut read = |entry: &str| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut zip.by_name(&format!("{top}{entry}")).unwrap(), &mut s).unwrap();
            s
        };
        assert_eq!(read("MDX Stems.clap"), "MZ dll");
        assert_eq!(read("mdx-stems.exe"), "MZ exe");
        assert_eq!(read("THIRD-PARTY-LICENSES.txt"), "third-party text");
        drop(zip);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Missing bundles, and bundles or a CLI of another platform, make no archive.
    #[test]
    fn refuses_missing_or_foreign_parts() {
        let dir = temp("refuse");
        let root = fake_root(&dir);
        let target = dir.join("target");
        let spec = Spec::new(&target, &["x86_64-unknown-linux-gnu".into()], false, "release", "0.1.0").unwrap();
        write(&target.join("release/mdx-stems"), b"\x7fELF cli");
        write(&target.join("bundled/MDX Stems.clap"), b"\x7fELF clap");
        let err = package(&spec, &root, &target.join("dist"), "").unwrap_err().to_string();
        assert!(err.contains("no 'MDX Stems.vst3'"), "{err}");
        write(&target.join("bundled/MDX Stems.vst3/Contents/x86_64-linux/MDX Stems.so"), b"\x7fELF");
        // A Windows CLAP left in target/bundled.
        write(&target.join("bundled/MDX Stems.clap"), b"MZ dll");
        let err = package(&spec, &root, &target.join("dist"), "").unwrap_err().to_string();
        assert!(err.contains("MDX Stems.clap' is not a linux-x86_64 binary"), "{err}");
        write(&target.join("bundled/MDX Stems.clap"), b"\x7fELF clap");
        write(&target.join("release/mdx-stems"), b"\xcf\xfa\xed\xfe mach-o");
        let err = package(&spec, &root, &target.join("dist"), "").unwrap_err().to_string();
        assert!(err.contains("mdx-stems' is not a linux-x86_64 binary"), "{err}");
        assert!(!target.join("dist").exists(), "nothing written");
        // macOS needs the Audio Unit too.
        let mac = Spec::new(&target, &["aarch64-apple-darwin".into()], true, "release", "0.1.0").unwrap();
        let err = package(&mac, &root, &target.join("dist"), "").unwrap_err().to_string();
        assert!(err.contains("no 'MDX Stems.component'"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
