//! The VST3 bundle in a real VST3 host: pedalboard (PyPI, JUCE-based), headless.
//!
//! Needs `target/bundled/MDX Stems.vst3` (`cargo xtask bundle mdx-stems --release`) and
//! `python3` with `pedalboard` (`pip install pedalboard`). Without pedalboard the test fails
//! with an install hint when `CI` is set, and otherwise prints a loud skip.
//!
//! tests/vst3_pedalboard.py does the checks; this test prepares a fixture model (found through
//! `MDX_STEMS_MODELS`, the plugin's automatic pick), a song and the CLI's stems.

mod plugin_common;

use plugin_common::*;
use std::path::PathBuf;
use std::process::Command;

fn pedalboard_available() -> bool {
    Command::new("python3")
        .args(["-c", "import pedalboard, numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn vst3_bundle() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(|p| p.parent()).and_then(|p| p.parent()).expect("target dir");
    let p = target.join("bundled").join("MDX Stems.vst3");
    assert!(
        p.is_dir(),
        "{} is missing: build the plugin bundles first with `cargo xtask bundle mdx-stems --release`",
        p.display()
    );
    p
}

#[test]
fn vst3_in_pedalboard_reports_its_latency_and_compensated_stems_equal_the_cli() {
    if !pedalboard_available() {
        if std::env::var_os("CI").is_some() {
            panic!("python3 cannot import pedalboard: install it with `pip install pedalboard`");
        }
        eprintln!("\n**********\nSKIPPED: the VST3 check needs python3 with pedalboard (`pip install pedalboard`)\n**********\n");
        return;
    }
    let vst3 = vst3_bundle();
    let m = TempModel::new(TINY, "vst3");
    let rate = 44100;
    let x = song(rate, 2.0, 31);
    let song_path = m.dir.join("song.wav");
    write_wav(&song_path, rate, &x);
    // The plugin's default overlap is the config's num_overlap (4 for this model).
    let stems = cli_stems(&m, &x, rate, 4, &["vocals", "instrumental"]);
    let stem_paths: Vec<PathBuf> = ["vocals", "instrumental"]
        .iter()
        .zip(&stems)
        .map(|(name, s)| {
            let p = m.dir.join(format!("cli_{name}.wav"));
            write_wav(&p, rate, s);
            p
        })
        .collect();
    let buffer = 512;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("vst3_pedalboard.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--vst3")
        .arg(&vst3)
        .arg("--song")
        .arg(&song_path)
        .arg("--stems")
        .args(&stem_paths)
        .args(["--expect-latency", &(1984 + 496 + buffer).to_string(), "--buffer-size", &buffer.to_string()])
        .env("MDX_STEMS_MODELS", &m.dir)
        .output()
        .expect("running python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{text}");
    assert!(out.status.success() && text.contains("VST3 OK"), "the pedalboard check failed:\n{text}");
}
