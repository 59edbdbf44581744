//! Helpers shared by the plugin host tests (CLAP and VST3): fixture models, a test song, WAV
//! files and the CLI's stems.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TINY: &str = "tiny_instnorm_gelu"; // vocals, instrumental; chunk 1984
pub const FOUR: &str = "small_groupnorm_relu_4stem"; // vocals, bass, drums, other; chunk 8064
pub const TARGET: &str = "small_batchnorm_elu_target"; // target vocals (+ instrumental = mix - vocals); chunk 3968

/// A fixture model copied as `<dir>/<name>.ckpt` with `<dir>/<name>.yaml`; removed on drop.
pub struct TempModel {
    pub dir: PathBuf,
    pub ckpt: PathBuf,
    pub yaml: PathBuf,
}

impl TempModel {
    pub fn new(fixture: &str, tag: &str) -> TempModel {
        let src = mdx_stems::testing::fixture_dir(fixture);
        let dir = std::env::temp_dir().join(format!("mdx-stems-plugin-test-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ckpt = dir.join(format!("{fixture}.ckpt"));
        let yaml = dir.join(format!("{fixture}.yaml"));
        std::fs::copy(src.join("model.ckpt"), &ckpt).unwrap();
        std::fs::copy(src.join("config.yaml"), &yaml).unwrap();
        TempModel { dir, ckpt, yaml }
    }
}

impl Drop for TempModel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A few seconds of music-like stereo: chords with envelopes, noise hits, a bass line, then
/// 0.25 s of silence.
#[allow(clippy::needless_range_loop)]
pub fn song(rate: u32, secs: f32, seed: u64) -> [Vec<f32>; 2] {
    let n = (rate as f32 * secs) as usize;
    let tail = (rate as usize / 4).min(n / 4);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = [vec![0f32; n], vec![0f32; n]];
    let fs = rate as f32;
    let beat = (fs * 0.25) as usize;
    for i in 0..n - tail {
        let t = i as f32 / fs;
        let bar = (i / (4 * beat)) % 4;
        let root = [110.0, 146.8, 123.5, 164.8][bar];
        let env = (-((i % beat) as f32) / (0.15 * fs)).exp();
        let chord: f32 = [1.0f32, 1.26, 1.5].iter().map(|m| (std::f32::consts::TAU * root * 2.0 * m * t).sin()).sum();
        let bass = (std::f32::consts::TAU * root * 0.5 * t).sin();
        let hit = if i % (2 * beat) < beat / 8 { rng.random_range(-1.0f32..1.0) * env } else { 0.0 };
        let fade = ((n - tail - i) as f32 / (0.05 * fs)).min(1.0);
        out[0][i] = fade * (0.15 * chord * env + 0.25 * bass + 0.3 * hit);
        out[1][i] = fade * (0.12 * chord * (0.5 + 0.5 * env) + 0.25 * bass - 0.2 * hit);
    }
    out
}

pub fn write_wav(path: &Path, rate: u32, x: &[Vec<f32>; 2]) {
    let spec = hound::WavSpec { channels: 2, sample_rate: rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for (l, r) in x[0].iter().zip(&x[1]) {
        w.write_sample(*l).unwrap();
        w.write_sample(*r).unwrap();
    }
    w.finalize().unwrap();
}

pub fn read_wav(path: &Path) -> [Vec<f32>; 2] {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let s: Vec<f32> = r.samples::<f32>().map(|v| v.unwrap()).collect();
    [s.iter().step_by(2).copied().collect(), s.iter().skip(1).step_by(2).copied().collect()]
}

/// `mdx-stems separate --scheme uvr --overlap <k>` on `x`: the stems, in the model's order.
pub fn cli_stems(m: &TempModel, x: &[Vec<f32>; 2], rate: u32, overlap: usize, stems: &[&str]) -> Vec<[Vec<f32>; 2]> {
    let input = m.dir.join(format!("song_{rate}.wav"));
    write_wav(&input, rate, x);
    let out_dir = m.dir.join(format!("cli_{rate}"));
    let status = Command::new(env!("CARGO_BIN_EXE_mdx-stems"))
        .arg("separate")
        .arg(&input)
        .args(["--model".as_ref(), m.ckpt.as_os_str(), "--config".as_ref(), m.yaml.as_os_str()])
        .args(["--scheme", "uvr", "--overlap", &overlap.to_string(), "--device", "cpu", "--quiet", "--out-dir"])
        .arg(&out_dir)
        .status()
        .expect("running mdx-stems");
    assert!(status.success(), "mdx-stems separate failed");
    stems.iter().map(|s| read_wav(&out_dir.join(format!("song_{rate}_({s}).wav")))).collect()
}

#[allow(unused_imports)]
pub use mdx_stems::testing::max_abs_diff as max_diff;

/// Runs of at least `min` samples of exact silence in `out` where `reference` (aligned with it)
/// is not silent (peak above 0.01 in the run): (start, length) of each.
pub fn silent_runs(out: &[f32], reference: &[f32], min: usize) -> Vec<(usize, usize)> {
    let mut runs = vec![];
    let mut start = None;
    for i in 0..=out.len().min(reference.len()) {
        let zero = i < out.len() && i < reference.len() && out[i] == 0.0;
        match (zero, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s >= min && peak(&reference[s..i]) > 0.01 {
                    runs.push((s, i - s));
                }
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// Largest sample-to-sample step.
pub fn max_step(a: &[f32]) -> f32 {
    a.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max)
}

pub fn peak(a: &[f32]) -> f32 {
    a.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Run the ignored test `child_process` of the test binary `exe` (the running one, or a copy of
/// it under another name) with `kind` in the variable `child_env` and `env` set; it must end with
/// the line "CHILD <kind> OK". Returns its stdout and stderr.
pub fn run_child_test(exe: &Path, child_env: &str, kind: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(exe);
    cmd.args(["child_process", "--exact", "--ignored", "--nocapture", "--test-threads=1"]).env(child_env, kind);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawning the child test");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "child `{kind}` failed ({}):\n{text}", out.status);
    assert!(text.contains(&format!("CHILD {kind} OK")), "child `{kind}` did not finish:\n{text}");
    text
}
