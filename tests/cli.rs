//! The `mdx-stems` command line, run as users run it: files in, one WAV per stem out, and a
//! one-line reason with a non-zero exit code for every bad input.

mod common;
use common::*;

use mdx_stems::audio::{read_audio, write_wav_f32};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("cli-tests", name)
}

/// The CLI with an empty models environment (no user folders leak into the tests).
fn cli(models_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mdx-stems"));
    c.env("MDX_STEMS_MODELS", models_dir)
        .env("MDX_STEMS_UVR_DIR", models_dir.join("no-uvr"))
        .env("AUDIO_SEPARATOR_MODEL_DIR", models_dir.join("no-audio-separator"));
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 1 and exactly one line, `error: ...`, containing every needle.
/// (Run with `--quiet`, so that progress lines do not count.)
fn assert_fails_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected failure, got {:?}; stderr: {err}", o.status);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() == 1 && lines[0].starts_with("error: "), "one-line reason expected, got:\n{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

fn fixture_model_args(name: &str) -> Vec<String> {
    let d = fixture_dir(name);
    vec![
        "--model".into(),
        d.join("model.ckpt").display().to_string(),
        "--config".into(),
        d.join("config.yaml").display().to_string(),
    ]
}

#[test]
fn separate_writes_one_float_wav_per_stem_equal_to_the_reference() {
    let name = "small_groupnorm_relu_4stem";
    let dir = temp_dir("separate");
    let demix = load_st(name, "demix.safetensors");
    let mix = planar(&demix["mix"]);
    let input = dir.join("song.wav");
    write_wav_f32(&input, 44100, &mix).unwrap();
    let out_dir = dir.join("stems");
    let o = cli(&dir)
        .arg("separate")
        .arg(&input)
        .args(fixture_model_args(name))
        .args(["--overlap", "4", "--quiet", "--out-dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "--quiet prints nothing: {}", stderr(&o));
    let expected = demix["uvr_overlap4"].to_dtype(candle_core::DType::F32).unwrap().to_vec3::<f32>().unwrap();
    for (i, stem) in ["vocals", "bass", "drums", "other"].iter().enumerate() {
        let path = out_dir.join(format!("song_({stem}).wav"));
        let got = read_audio(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(got.sample_rate, 44100);
        assert_eq!(got.channels.len(), 2);
        assert_eq!(got.frames(), mix[0].len(), "same length as the input");
        let flat: Vec<f32> = got.channels.concat();
        let want: Vec<f32> = expected[i].concat();
        let d = max_abs_diff(&flat, &want);
        assert!(d <= 2e-4, "{stem}: differs from the reference's UVR overlap 4 by {d}");
    }
}

#[test]
fn mono_48k_input_gives_stereo_48k_stems_of_the_same_length() {
    let dir = temp_dir("mono48k");
    let n = 48000 / 3 + 17;
    let mono: Vec<f32> = (0..n).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
    let input = dir.join("voice.wav");
    write_wav_f32(&input, 48000, &[mono]).unwrap();
    let o = cli(&dir)
        .arg("separate")
        .arg(&input)
        .args(fixture_model_args("small_batchnorm_elu_target"))
        .args(["--scheme", "msst", "--overlap", "2", "--out-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // One stem: the target instrument.
    let got = read_audio(&dir.join("voice_(vocals).wav")).unwrap();
    assert_eq!((got.sample_rate, got.channels.len(), got.frames()), (48000, 2, n));
    for ch in &got.channels {
        assert!(ch.iter().all(|v| v.is_finite()) && ch.iter().any(|v| *v != 0.0));
    }
    assert!(!dir.join("voice_(other).wav").exists());
}

#[test]
fn flac_mp3_and_ogg_inputs_are_separated() {
    let dir = temp_dir("formats");
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut cmd = cli(&dir);
    cmd.arg("separate");
    for ext in ["flac", "mp3", "ogg"] {
        // Same file stem for all three would collide: copy under distinct names.
        let p = dir.join(format!("sine_{ext}.{ext}"));
        std::fs::copy(data.join(format!("sine_440.{ext}")), &p).unwrap();
        cmd.arg(p);
    }
    let o = cmd.args(fixture_model_args("tiny_instnorm_gelu")).args(["--quiet", "--out-dir"]).arg(&dir).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for ext in ["flac", "mp3", "ogg"] {
        let src = read_audio(&dir.join(format!("sine_{ext}.{ext}"))).unwrap();
        for stem in ["vocals", "instrumental"] {
            let got = read_audio(&dir.join(format!("sine_{ext}_({stem}).wav"))).unwrap();
            assert_eq!((got.sample_rate, got.frames()), (src.sample_rate, src.frames()), "{ext}/{stem}");
        }
    }
}

#[test]
fn bad_inputs_fail_with_a_one_line_reason() {
    let dir = temp_dir("bad");
    let good_model = fixture_model_args("tiny_instnorm_gelu");
    let wav = dir.join("ok.wav");
    write_wav_f32(&wav, 44100, &[vec![0.1; 4000], vec![0.1; 4000]]).unwrap();

    let o = cli(&dir).args(["separate", "missing.wav"]).args(&good_model).output().unwrap();
    assert_fails_with(&o, &["missing.wav", "does not exist"]);

    let junk = dir.join("junk.wav");
    std::fs::write(&junk, b"definitely not audio, just text").unwrap();
    let o = cli(&dir).arg("separate").arg(&junk).args(&good_model).args(["--quiet", "--out-dir"]).arg(&dir).output().unwrap();
    assert_fails_with(&o, &["junk.wav"]);

    let truncated = dir.join("truncated.ckpt");
    let bytes = std::fs::read(fixture_dir("tiny_instnorm_gelu").join("model.ckpt")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let cfg = fixture_dir("tiny_instnorm_gelu").join("config.yaml");
    let o = cli(&dir).arg("separate").arg(&wav).arg("--model").arg(&truncated).arg("--config").arg(&cfg).output().unwrap();
    assert_fails_with(&o, &["truncated.ckpt"]);

    // Weights and config of different models: the strict check names the differences.
    let other_cfg = fixture_dir("small_groupnorm_relu_4stem").join("config.yaml");
    let o = cli(&dir)
        .arg("info")
        .arg("--model")
        .arg(fixture_dir("tiny_instnorm_gelu").join("model.ckpt"))
        .arg("--config")
        .arg(&other_cfg)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.starts_with("error: ") && err.contains("does not match its config") && err.contains("missing"), "{err}");

    let o = cli(&dir).arg("separate").arg(&wav).args(["--model", "no-such-model"]).output().unwrap();
    assert_fails_with(&o, &["no-such-model"]);

    if !cfg!(feature = "cuda") {
        let o = cli(&dir).arg("separate").arg(&wav).args(&good_model).args(["--quiet", "--device", "cuda"]).output().unwrap();
        assert_fails_with(&o, &["CUDA requested", "`cuda` feature"]);
    }
    if !cfg!(feature = "metal") {
        let o = cli(&dir).arg("separate").arg(&wav).args(&good_model).args(["--quiet", "--device", "metal"]).output().unwrap();
        assert_fails_with(&o, &["Metal requested", "`metal` feature"]);
    }
}

#[test]
fn info_describes_the_model_and_its_plugin_latency() {
    let dir = temp_dir("info");
    let o = cli(&dir).arg("info").args(fixture_model_args("small_groupnorm_relu_4stem")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let params = meta("small_groupnorm_relu_4stem")["parameters"].as_u64().unwrap();
    for needle in [
        "vocals, bass, drums, other".to_string(),
        format!("parameters   {params}"),
        "FLOPs/chunk".into(),
        "overlap 2:".into(),
        "overlap 8:".into(),
        "peak RSS".into(),
    ] {
        assert!(out.contains(&needle), "`{needle}` not in:\n{out}");
    }
}

#[test]
fn models_lists_the_models_folder_and_names_select_a_model() {
    let dir = temp_dir("models");
    let src = fixture_dir("tiny_instnorm_gelu");
    std::fs::copy(src.join("model.ckpt"), dir.join("Tiny Vocals.ckpt")).unwrap();
    std::fs::copy(src.join("config.yaml"), dir.join("Tiny Vocals.yaml")).unwrap();
    std::fs::write(dir.join("broken.ckpt"), b"junk").unwrap();
    let o = cli(&dir).arg("models").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Tiny Vocals") && out.contains("vocals, instrumental") && out.contains("ready"), "{out}");
    assert!(out.contains("broken") && out.contains("not ready"), "{out}");
    assert!(out.contains("2 model files, 1 ready"), "{out}");

    let wav = dir.join("in.wav");
    write_wav_f32(&wav, 44100, &[vec![0.2; 3000], vec![-0.2; 3000]]).unwrap();
    let o = cli(&dir).arg("separate").arg(&wav).args(["--model", "tiny", "--quiet", "--out-dir"]).arg(&dir).output().unwrap();
    assert!(o.status.success(), "a unique prefix of a listed name selects the model: {}", stderr(&o));
    assert!(dir.join("in_(vocals).wav").is_file());
}

#[test]
fn separate_with_no_model_at_hand_uses_the_builtin_hpss_and_says_so() {
    let dir = temp_dir("no-model");
    let wav = dir.join("song.wav");
    let rate = 48000;
    let x: Vec<Vec<f32>> = (0..2).map(|c| (0..rate as usize).map(|i| 0.3 * ((i * (c + 3)) as f32 * 0.01).sin() + if i % 6000 == 0 { 0.5 } else { 0.0 }).collect()).collect();
    write_wav_f32(&wav, rate, &x).unwrap();
    let o = cli(&dir).arg("separate").arg(&wav).arg("--out-dir").arg(&dir).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let line: Vec<&str> = err.lines().filter(|l| l.contains("builtin:hpss")).collect();
    assert!(line.len() >= 1 && line[0].contains("no MDX23C model found") && line[0].contains("--download"), "{err}");
    let mut sum = vec![vec![0f32; x[0].len()]; 2];
    for stem in ["Drums", "Harmonic", "Residual"] {
        let s = read_audio(&dir.join(format!("song_({stem}).wav"))).unwrap();
        assert_eq!(s.sample_rate, rate, "a built-in runs at the file's rate");
        for ch in 0..2 {
            for (a, b) in sum[ch].iter_mut().zip(&s.channels[ch]) {
                *a += b;
            }
        }
    }
    for ch in 0..2 {
        let d = sum[ch].iter().zip(&x[ch]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d < 1e-5, "the written stems add up to the input: {d}");
    }
    let o = cli(&dir).arg("models").output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("builtin:hpss")), "{out}");
    let o = cli(&dir).args(["models", "--available"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("MDX23C-8KFFT-InstVoc_HQ"));
}
