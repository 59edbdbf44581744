//! The Windows build of `mdx-stems` (cross-built with mingw-w64), run under Wine against this
//! Linux build: the same stems within 1e-5 on a fixture model, the same one-line errors and
//! exit codes for a missing input file and a bad model.
//!
//! Needs the Windows executable and Wine: `.ci/run` builds the first and runs this with
//! `MDX_STEMS_WINDOWS_EXE=<path to mdx-stems.exe> cargo test --test wine -- --ignored`
//! (`MDX_STEMS_WINE`: the Wine loader, default `/usr/lib/wine/wine64`, Debian's `wine64`).

mod common;
use common::*;

use mdx_stems::audio::{read_audio, write_wav_f32};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The model's files copied beside the song, so that both builds get the same relative paths
/// (and so print the same messages).
fn setup(dir: &Path, fixture: &str) {
    for f in ["model.ckpt", "config.yaml"] {
        std::fs::copy(fixture_dir(fixture).join(f), dir.join(f)).unwrap();
    }
}

fn linux(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mdx-stems"));
    c.current_dir(dir);
    c
}

/// The Windows executable in `dir`, with `bcryptprimitives.dll` beside it: Wine 8 (Debian 12)
/// lacks that DLL, whose `ProcessPrng` Rust's std imports, so `tests/wine/shim.sh` builds a
/// stand-in with mingw-w64 (`MDX_STEMS_MINGW_GCC`, default `x86_64-w64-mingw32-gcc-posix`, the
/// linker of `.cargo/config.toml`; `.ci/validators.sh` uses the same script). The DLL beside an
/// executable comes before the system's, so the stand-in is what runs even where Wine has its own.
fn install_windows_exe(dir: &Path) -> PathBuf {
    let exe = PathBuf::from(std::env::var_os("MDX_STEMS_WINDOWS_EXE").expect("MDX_STEMS_WINDOWS_EXE: the Windows mdx-stems.exe to run"));
    let dst = dir.join("mdx-stems.exe");
    if std::fs::hard_link(&exe, &dst).is_err() {
        std::fs::copy(&exe, &dst).unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/wine/shim.sh");
    let o = Command::new("bash").arg(&script).arg(dir).output().unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(o.status.success(), "building the ProcessPrng shim: {}", String::from_utf8_lossy(&o.stderr));
    dst
}

fn windows(dir: &Path) -> Command {
    let wine = std::env::var_os("MDX_STEMS_WINE").unwrap_or_else(|| "/usr/lib/wine/wine64".into());
    let mut c = Command::new(wine);
    // No Mono/Gecko install prompts, no debug chatter: stderr is the program's own.
    c.arg(dir.join("mdx-stems.exe")).current_dir(dir).env("WINEDEBUG", "-all").env("WINEDLLOVERRIDES", "mscoree,mshtml=");
    c
}

/// Both builds' models environment: empty, so no user folder leaks in.
fn models_env(c: &mut Command, dir: &Path) {
    c.env("MDX_STEMS_MODELS", dir.join("no-models")).env("MDX_STEMS_UVR_DIR", dir.join("no-uvr")).env("AUDIO_SEPARATOR_MODEL_DIR", dir.join("no-as"));
}

fn run(mut c: Command, dir: &Path, args: &[&str]) -> Output {
    models_env(&mut c, dir);
    c.args(args).output().unwrap_or_else(|e| panic!("running {c:?}: {e}"))
}

fn stderr(o: &Output) -> String {
    // Windows console output may end its lines with CR LF.
    String::from_utf8_lossy(&o.stderr).replace("\r\n", "\n")
}

#[test]
#[ignore = "needs the Windows build and Wine (.ci/run runs it)"]
fn windows_build_under_wine_separates_and_fails_like_the_linux_build() {
    let name = "tiny_instnorm_gelu";
    let root = temp_dir("wine", "run");
    let (lin, win) = (root.join("linux"), root.join("windows"));
    let mix = planar(&load_st(name, "demix.safetensors")["mix"]);
    for d in [&lin, &win] {
        std::fs::create_dir_all(d).unwrap();
        setup(d, name);
        write_wav_f32(&d.join("song.wav"), 44100, &mix).unwrap();
    }
    install_windows_exe(&win);
    let args = ["separate", "song.wav", "--model", "model.ckpt", "--config", "config.yaml", "--overlap", "2", "--quiet", "--out-dir", "stems"];
    let ol = run(linux(&lin), &lin, &args);
    assert!(ol.status.success(), "linux: {}", stderr(&ol));
    let ow = run(windows(&win), &win, &args);
    assert!(ow.status.success(), "windows under wine: {:?} {}", ow.status, stderr(&ow));

    let cfg = mdx_stems::nets::tfc_tdf::ModelConfig::from_yaml_file(&fixture_dir(name).join("config.yaml")).unwrap();
    let stems = cfg.output_stems();
    assert!(!stems.is_empty());
    for stem in &stems {
        let f = format!("stems/song_({stem}).wav");
        let a = read_audio(&lin.join(&f)).unwrap_or_else(|e| panic!("linux {f}: {e}"));
        let b = read_audio(&win.join(&f)).unwrap_or_else(|e| panic!("windows {f}: {e}"));
        assert_eq!((a.sample_rate, a.channels.len(), a.frames()), (b.sample_rate, b.channels.len(), b.frames()), "{f}");
        assert_eq!(a.frames(), mix[0].len());
        let (fa, fb) = (a.channels.concat(), b.channels.concat());
        assert!(fa.iter().any(|v| *v != 0.0), "{f}: silent");
        let d = max_abs_diff(&fa, &fb);
        eprintln!("{f}: Windows (Wine) vs Linux max abs diff {d:.2e}");
        assert!(d <= 1e-5, "{f}: the Windows build differs from the Linux build by {d}");
    }

    // Errors: same exit code, same one line.
    let truncated = std::fs::read(lin.join("model.ckpt")).unwrap();
    for d in [&lin, &win] {
        std::fs::write(d.join("bad.ckpt"), &truncated[..truncated.len() / 3]).unwrap();
    }
    let cases: [(&str, &[&str]); 2] = [
        ("a missing input file", &["separate", "missing.wav", "--model", "model.ckpt", "--config", "config.yaml", "--quiet"]),
        ("a bad model", &["separate", "song.wav", "--model", "bad.ckpt", "--config", "config.yaml", "--quiet"]),
    ];
    for (what, args) in cases {
        let (ol, ow) = (run(linux(&lin), &lin, args), run(windows(&win), &win, args));
        let (el, ew) = (stderr(&ol), stderr(&ow));
        eprintln!("{what}: linux {:?} `{}`, windows {:?} `{}`", ol.status.code(), el.trim_end(), ow.status.code(), ew.trim_end());
        assert_eq!(ol.status.code(), Some(1), "{what}: linux exit code; {el}");
        assert_eq!(ow.status.code(), Some(1), "{what}: windows exit code; {ew}");
        assert!(el.starts_with("error: ") && el.lines().count() == 1, "{what}: linux: {el}");
        assert_eq!(ew, el, "{what}: the Windows build's message differs");
    }
}
