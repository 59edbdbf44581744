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

/// `info` on a RoFormer in UVR's folder, found by UVR's hash: its family (the network's own
/// lines, as for MDX23C), config, stems, size and what its publisher reports. The checkpoint is
/// a tiny Mel-Band RoFormer fixture under the name and config name UVR gives Kimberley
/// Jensen's model (the config file in UVR's folder is the fixture's).
#[test]
fn info_explains_a_roformer() {
    let dir = temp_dir("info_roformer");
    let mdx = dir.join("uvr").join("models").join("MDX_Net_Models");
    let configs = mdx.join("model_data").join("mdx_c_configs");
    std::fs::create_dir_all(&configs).unwrap();
    let fixture = mdx_stems::testing::roformer_fixture_dir("mel_tiny_target");
    let bytes = std::fs::read(fixture.join("model.ckpt")).unwrap();
    std::fs::write(mdx.join("MelBandRoformer.ckpt"), &bytes).unwrap();
    std::fs::copy(fixture.join("config.yaml"), configs.join("config_vocals_mel_band_roformer_kim.yaml")).unwrap();
    use md5::Digest;
    let hash: String = md5::Md5::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let data = serde_json::json!({ hash: {"config_yaml": "config_vocals_mel_band_roformer_kim.yaml", "is_roformer": true} });
    std::fs::write(mdx.join("model_data").join("model_data.json"), data.to_string()).unwrap();
    let o = cli(&dir).env("MDX_STEMS_UVR_DIR", dir.join("uvr")).args(["info", "--model", "MB-Roformer-Kim"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "UVR name     MB-Roformer-Kim",
        "config       UVR config config_vocals_mel_band_roformer_kim.yaml",
        "stems        vocals\n",
        "network      Mel-Band RoFormer: 8 mel bands at 44100 Hz, dim 32, depth 1",
        "parameters   ",
        "for          Mel-Band RoFormer (Kimberley Jensen): vocals",
        "published    SDR vocals 10.98 dB (MSST pretrained_models.md, Multisong)",
        "overlap 2: ",
    ] {
        assert!(out.contains(needle), "`{needle}` not in:\n{out}");
    }
}

#[test]
fn info_live_times_the_model_and_says_which_overlap_and_segment_run_live() {
    let dir = temp_dir("info_live");
    let o = cli(&dir)
        .arg("info")
        .args(fixture_model_args("small_groupnorm_relu_4stem"))
        .args(["--live", "--device", "cpu", "--threads", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let live = out.lines().find(|l| l.starts_with("live ")).unwrap_or_else(|| panic!("no live line in:\n{out}"));
    assert!(live.contains("s per chunk") && live.contains("CPU threads: 1"), "{live}");
    // One row per segment: its load at overlaps 1, 2, 4, 8, in proportion to the overlap.
    let rows: Vec<Vec<f64>> = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("segment"))
        .skip(1)
        .take_while(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|l| l.split_whitespace().skip(1).map(|v| v.trim_end_matches(['%', '*']).parse::<f64>().unwrap()).collect())
        .collect();
    assert!(rows.len() >= 2, "segments:\n{out}");
    for r in &rows {
        assert_eq!(r.len(), 4, "{out}");
        assert!(r[0] > 0.0 && (r[3] / r[0] - 8.0).abs() < 8.0 * 0.02 + 8.0 / r[0], "{r:?}");
    }
    // Live marks: exactly the cells at most 80%.
    for l in out.lines().filter(|l| l.contains('%') && !l.contains("live")) {
        for cell in l.split_whitespace().skip(1) {
            let v: f64 = cell.trim_end_matches(['%', '*']).parse().unwrap();
            assert_eq!(cell.ends_with('*'), v <= 80.0, "{cell} in {l}");
        }
    }
    assert!(out.contains("Measured") && out.contains("per chunk: overlap"), "{out}");
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
    let out = String::from_utf8_lossy(&o.stdout);
    for name in ["MDX23C-8KFFT-InstVoc_HQ", "MelBandRoformer", "model_bs_roformer_ep_317_sdr_12.9755", "model_mel_band_roformer_ep_3005_sdr_11.4360"] {
        assert!(out.lines().any(|l| l == name), "{name} in\n{out}");
    }
    // Within 100 columns, RoFormers' lines too.
    for l in out.lines() {
        assert!(l.chars().count() <= 100, "{} columns: {l}\n{out}", l.chars().count());
    }
}

// ---- Libraries of files, output options, exact ends, memory, Ctrl-C (issue #14) ----

/// A stereo test signal of `n` frames, loud to its last sample.
fn music(n: usize, rate: u32) -> Vec<Vec<f32>> {
    let f = rate as f32;
    (0..2)
        .map(|ch| (0..n).map(|i| {
            let t = i as f32 / f;
            0.3 * (std::f32::consts::TAU * 220.0 * t).sin() + 0.2 * (std::f32::consts::TAU * (660.0 + 110.0 * ch as f32) * t).sin()
                + 0.1 * (((i * 7919) % 997) as f32 / 498.0 - 1.0)
        }).collect())
        .collect()
}

fn run_separate(dir: &Path, inputs: &[&Path], extra: &[&str]) -> Output {
    let mut c = cli(dir);
    c.arg("separate");
    for i in inputs {
        c.arg(i);
    }
    c.args(fixture_model_args("tiny_instnorm_gelu")).args(extra).output().unwrap()
}

#[test]
fn stems_of_a_file_equal_those_of_the_file_padded_with_silence_at_48_96_and_22_khz() {
    let dir = temp_dir("exact_ends");
    for rate in [48000u32, 96000, 22050] {
        let n = rate as usize / 2 + 123;
        let x = music(n, rate);
        let padded: Vec<Vec<f32>> = x.iter().map(|c| { let mut v = c.clone(); v.resize(n + rate as usize, 0.0); v }).collect();
        let a = dir.join(format!("a{rate}.wav"));
        let b = dir.join(format!("b{rate}.wav"));
        write_wav_f32(&a, rate, &x).unwrap();
        write_wav_f32(&b, rate, &padded).unwrap();
        let o = run_separate(&dir, &[&a, &b], &["--quiet", "--out-dir", dir.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        for stem in ["vocals", "instrumental"] {
            let sa = read_audio(&dir.join(format!("a{rate}_({stem}).wav"))).unwrap();
            let sb = read_audio(&dir.join(format!("b{rate}_({stem}).wav"))).unwrap();
            assert_eq!(sa.frames(), n);
            assert_eq!(sb.frames(), n + rate as usize);
            for ch in 0..2 {
                let d = max_abs_diff(&sa.channels[ch], &sb.channels[ch][..n]);
                assert_eq!(d, 0.0, "{rate} Hz {stem} ch {ch}: the stems differ from the padded file's by {d}");
                let tail = sa.channels[ch][n - 300..].iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(tail > 1e-3, "{rate} Hz {stem}: a silent end proves nothing");
            }
        }
    }
}

#[test]
fn folders_globs_skip_existing_and_a_bad_file_reported_at_the_end() {
    let dir = temp_dir("batch");
    let lib = dir.join("library");
    std::fs::create_dir_all(lib.join("album")).unwrap();
    write_wav_f32(&lib.join("one.wav"), 44100, &music(5000, 44100)).unwrap();
    write_wav_f32(&lib.join("album/two.wav"), 48000, &music(6000, 48000)).unwrap();
    std::fs::write(lib.join("album/broken.wav"), b"RIFF nonsense, not audio").unwrap();
    std::fs::write(lib.join("notes.txt"), b"not an audio file").unwrap();
    let extra = dir.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    write_wav_f32(&extra.join("three.wav"), 44100, &music(3000, 44100)).unwrap();
    let out = dir.join("out");
    let glob = format!("{}/*.wav", extra.display());
    let mut c = cli(&dir);
    c.arg("separate").arg(&lib).arg(&glob).args(fixture_model_args("tiny_instnorm_gelu")).arg("--out-dir").arg(&out);
    let o = c.output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "a failed file makes the run fail: {err}");
    for name in ["one", "two", "three"] {
        for stem in ["vocals", "instrumental"] {
            assert!(out.join(format!("{name}_({stem}).wav")).is_file(), "{name} {stem} missing: {err}");
        }
    }
    assert!(!out.join("broken_(vocals).wav").exists());
    let last: Vec<&str> = err.lines().rev().take(2).collect();
    assert!(last[0].starts_with("error: 1 of 4 files failed"), "{err}");
    assert!(last[1].starts_with("error: ") && last[1].contains("broken.wav"), "every failure listed at the end: {err}");
    assert!(!err.contains("notes.txt"), "only audio files are taken from folders");
    assert!(std::fs::read_dir(&out).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("partial")), "no partial files left");

    // Again with --skip-existing: nothing is rewritten.
    let stamp = std::fs::metadata(out.join("one_(vocals).wav")).unwrap().modified().unwrap();
    let mut c = cli(&dir);
    c.arg("separate").arg(lib.join("one.wav")).arg(&glob).args(fixture_model_args("tiny_instnorm_gelu")).arg("--skip-existing").arg("--out-dir").arg(&out);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("0 files separated, 2 skipped"), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(out.join("one_(vocals).wav")).unwrap().modified().unwrap(), stamp);
}

#[test]
fn flac_and_integer_wav_outputs_selected_stems_and_a_name_template() {
    let dir = temp_dir("outputs");
    let input = dir.join("song.wav");
    write_wav_f32(&input, 44100, &music(7000, 44100)).unwrap();
    let o = run_separate(&dir, &[&input], &["--quiet", "--out-dir", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = read_audio(&dir.join("song_(vocals).wav")).unwrap();
    for (format, depth, step) in [("flac", "16", 1.0 / 32768.0), ("flac", "24", 1.0 / 8388608.0), ("wav", "16", 1.0 / 32768.0), ("wav", "24", 1.0 / 8388608.0)] {
        let out = dir.join(format!("{format}{depth}"));
        let o = run_separate(
            &dir,
            &[&input],
            &["--quiet", "--format", format, "--bit-depth", depth, "--stems", "VOCALS", "--name-template", "{model}/{stem}-{input}", "--out-dir", out.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let path = out.join(format!("model/vocals-song.{format}"));
        let got = read_audio(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got.sample_rate, got.frames()), (44100, 7000));
        for ch in 0..2 {
            // Integers clip at full scale (the random-weight model's stems exceed it).
            let clipped: Vec<f32> = reference.channels[ch].iter().map(|v| v.clamp(-1.0, 1.0 - step)).collect();
            assert!(reference.channels[ch].iter().any(|v| v.abs() < 0.9), "some samples are below full scale");
            let d = max_abs_diff(&got.channels[ch], &clipped);
            assert!(d <= step * 0.51, "{format} {depth}: {d} from the float stems");
        }
        assert!(!out.join(format!("model/instrumental-song.{format}")).exists(), "only the stems asked for");
        // Never silently: a warning names the file and counts the samples beyond full scale.
        let scale = 1.0 / step;
        let beyond = reference.channels.iter().flatten().filter(|v| (*v * scale).round() > scale - 1.0 || (*v * scale).round() < -scale).count();
        assert!(beyond > 0, "the reference exceeds full scale");
        let warning = format!("warning: {}: {beyond} samples clipped at full scale", path.display());
        assert!(stderr(&o).lines().any(|l| l.starts_with(&warning)), "`{warning}` not in: {}", stderr(&o));
    }
    let o = run_separate(&dir, &[&input], &["--quiet", "--format", "flac", "--bit-depth", "32f"]);
    assert_fails_with(&o, &["FLAC stores integers"]);
    let o = run_separate(&dir, &[&input], &["--quiet", "--stems", "drums"]);
    assert_fails_with(&o, &["no stem `drums`", "vocals, instrumental"]);
    let o = run_separate(&dir, &[&input], &["--quiet", "--name-template", "{input}"]);
    assert_fails_with(&o, &["{stem}"]);
    let o = run_separate(&dir, &[&input], &["--quiet", "--overlap", "100000"]);
    assert_fails_with(&o, &["overlap", "100000"]);
}

/// Peak RSS the CLI reports for a file of `secs` seconds (written in pieces: the test itself
/// never holds it).
fn peak_rss_mb(dir: &Path, secs: usize) -> f64 {
    let input = dir.join(format!("long{secs}.wav"));
    let spec = hound::WavSpec { channels: 2, sample_rate: 48000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(&input, spec).unwrap();
    let piece = music(48000, 48000);
    for _ in 0..secs {
        for i in 0..48000 {
            w.write_sample((piece[0][i] * 20000.0) as i16).unwrap();
            w.write_sample((piece[1][i] * 20000.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
    let out = dir.join(format!("out{secs}"));
    let o = run_separate(dir, &[&input], &["--format", "flac", "--bit-depth", "16", "--out-dir", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let line = err.lines().find(|l| l.starts_with("peak RSS")).unwrap_or_else(|| panic!("no peak RSS line: {err}"));
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&input);
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn peak_memory_does_not_grow_with_the_length_of_the_file() {
    let dir = temp_dir("memory");
    let short = peak_rss_mb(&dir, 5);
    let long = peak_rss_mb(&dir, 60);
    eprintln!("peak RSS: 5 s {short:.1} MB, 60 s {long:.1} MB");
    // 55 s more of 48 kHz stereo float would be 21 MB for the input alone, 84 MB with stems.
    assert!(long - short < 8.0, "peak RSS grew from {short} MB to {long} MB");
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_and_removes_the_partial_stems() {
    let dir = temp_dir("ctrlc");
    let input = dir.join("long.wav");
    let spec = hound::WavSpec { channels: 2, sample_rate: 48000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(&input, spec).unwrap();
    let piece = music(48000, 48000);
    for _ in 0..120 {
        for i in 0..48000 {
            w.write_sample((piece[0][i] * 20000.0) as i16).unwrap();
            w.write_sample((piece[1][i] * 20000.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
    let out = dir.join("out");
    let child = cli(&dir)
        .arg("separate")
        .arg(&input)
        .args(fixture_model_args("tiny_instnorm_gelu"))
        .args(["--quiet", "--out-dir"])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the stems are being written.
    let t0 = std::time::Instant::now();
    let partial = || std::fs::read_dir(&out).map(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().contains(".partial-"))).unwrap_or(false);
    while !partial() {
        assert!(t0.elapsed().as_secs() < 60, "no partial stem appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    let left: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.is_empty(), "an interrupted run leaves nothing behind, found {left:?}");
}

// ---- A user trial on real music (issue #21) ----

/// A short stereo WAV of `music`.
fn song(path: &Path, rate: u32) {
    write_wav_f32(path, rate, &music(rate as usize / 2, rate)).unwrap();
}

#[test]
fn a_batch_goes_on_past_an_unreadable_first_file_with_every_separator_and_logs_every_file_written() {
    let dir = temp_dir("batch_unreadable");
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    // Sorted first: unreadable. Then an empty file, then two songs at different rates.
    std::fs::write(lib.join("a.wav"), b"these are my notes, not audio").unwrap();
    std::fs::write(lib.join("b.wav"), b"").unwrap();
    song(&lib.join("c.wav"), 44100);
    song(&lib.join("d.wav"), 48000);
    for (model, stems) in [("builtin:hpss", &["Drums", "Harmonic", "Residual"][..]), ("builtin:center", &["Center", "Sides"][..])] {
        let out = dir.join(model.replace(':', "_"));
        // stderr is a pipe: what a log of the run holds.
        let o = cli(&dir).arg("separate").arg(&lib).args(["--model", model, "--out-dir"]).arg(&out).output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{model}: failures make the exit code non-zero: {err}");
        for name in ["c", "d"] {
            for stem in stems {
                let p = out.join(format!("{name}_({stem}).wav"));
                assert!(p.is_file(), "{model}: {} missing: {err}", p.display());
                assert!(err.lines().any(|l| l == format!("wrote {}", p.display())), "{model}: the log names {}: {err}", p.display());
            }
        }
        let last: Vec<&str> = err.lines().rev().take(3).collect();
        assert_eq!(last[0], "error: 2 of 4 files failed", "{err}");
        assert!(last[2].starts_with("error: ") && last[2].contains("a.wav: a text file, not audio"), "{err}");
        assert!(last[1].starts_with("error: ") && last[1].contains("b.wav: the file is empty (0 bytes)"), "{err}");
        assert!(err.contains("2 files separated, 0 skipped"), "{err}");
        // Each file at its own rate, and no rate of one file printed as the batch's.
        assert_eq!(read_audio(&out.join(format!("d_({}).wav", stems[0]))).unwrap().sample_rate, 48000);
        assert!(!err.contains("samples late") && !err.contains("44100 Hz"), "{err}");
    }
}

#[test]
fn info_describes_a_builtin_and_names_the_config_once() {
    let dir = temp_dir("info_builtin");
    let o = cli(&dir).args(["info", "--model", "builtin:hpss"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("builtin:hpss") && out.contains("Drums, Harmonic, Residual") && out.contains("any"), "{out}");
    let o = cli(&dir).args(["info", "--model", "BUILTIN:CENTER"]).output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Center, Sides"), "{}", stderr(&o));
    let o = cli(&dir).args(["info", "--model", "builtin:nope"]).output().unwrap();
    assert_fails_with(&o, &["builtin:nope", "builtin:hpss, builtin:center"]);
    let o = cli(&dir).arg("info").args(fixture_model_args("tiny_instnorm_gelu")).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let cfg = fixture_dir("tiny_instnorm_gelu").join("config.yaml");
    assert!(out.lines().any(|l| l == format!("config       {} (--config)", cfg.display())), "{out}");
}

#[test]
fn model_files_and_audio_files_that_are_not_say_what_they_are_in_one_line() {
    let dir = temp_dir("sniff");
    let wav = dir.join("ok.wav");
    song(&wav, 44100);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("notes.txt", b"Remember: separate the album tonight.\n".to_vec(), "notes.txt is a text file"),
        ("empty.ckpt", vec![], "empty.ckpt is empty (0 bytes)"),
        ("random.ckpt", (0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect(), "random.ckpt is binary data of an unknown kind"),
        ("cut.safetensors", [&200_000u64.to_le_bytes()[..], b"{\"a\":"].concat(), "cut.safetensors is a truncated safetensors file"),
    ];
    for (name, bytes, needle) in cases {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let o = cli(&dir).arg("separate").arg(&wav).arg("--model").arg(&p).args(["--quiet"]).output().unwrap();
        assert_fails_with(&o, &[needle, "a model is a PyTorch checkpoint"]);
        assert!(!stderr(&o).contains("UVR hash") && !stderr(&o).contains("--config"), "{}", stderr(&o));
    }
    let bytes = std::fs::read(fixture_dir("tiny_instnorm_gelu").join("model.ckpt")).unwrap();
    let cut = dir.join("cut.ckpt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = cli(&dir).arg("info").arg("--model").arg(&cut).output().unwrap();
    assert_fails_with(&o, &["cut.ckpt is a truncated zip checkpoint"]);
    // Audio: empty and text inputs say so.
    for (name, bytes, needle) in [("silence.wav", &b""[..], "silence.wav: the file is empty (0 bytes)"), ("lyrics.mp3", b"la la la\n", "lyrics.mp3: a text file, not audio")] {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let o = cli(&dir).arg("separate").arg(&p).args(["--model", "builtin:hpss", "--quiet"]).output().unwrap();
        assert_fails_with(&o, &[needle]);
    }
}

#[test]
fn name_templates_stay_inside_out_dir_with_names_legal_everywhere() {
    let dir = temp_dir("templates");
    let input = dir.join("song.wav");
    song(&input, 44100);
    let out = dir.join("a").join("b").join("out");
    let run = |template: &str| {
        cli(&dir).arg("separate").arg(&input).args(["--model", "builtin:hpss", "--quiet", "--name-template", template, "--out-dir"]).arg(&out).output().unwrap()
    };
    assert_fails_with(&run("../../{stem}"), &["`..`", "inside --out-dir"]);
    assert_fails_with(&run("x/./{stem}"), &["`.`", "inside --out-dir"]);
    assert_fails_with(&run("/tmp/{stem}"), &["absolute path"]);
    assert_fails_with(&run("{song}_{stem}"), &["`{song}` is not a placeholder", "{input}, {stem}, {model}, {parent}"]);
    assert_fails_with(&run("{input}_{stem"), &["`{` without its `}`"]);
    assert!(!dir.join("a").join("Drums.wav").exists() && !dir.join("Drums.wav").exists(), "nothing written outside --out-dir");
    // A built-in's name, a reserved name, and characters illegal on Windows.
    let o = run("{model}/CON/{stem}: \"{input}\"?.");
    assert!(o.status.success(), "{}", stderr(&o));
    for stem in ["Drums", "Harmonic", "Residual"] {
        let p = out.join("builtin_hpss").join("CON_").join(format!("{stem}_ _song___.wav"));
        assert!(p.is_file(), "{} missing; wrote {:?}", p.display(), std::fs::read_dir(out.join("builtin_hpss")).map(|d| d.count()));
    }
}

#[test]
fn stale_partial_files_of_dead_or_old_runs_are_removed_by_the_next_run_in_that_folder() {
    let dir = temp_dir("stale_partials");
    let input = dir.join("song.wav");
    song(&input, 44100);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A process that has exited: its id names no live process.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let me = std::process::id();
    let dead_partial = out.join(format!(".song_(Drums).wav.partial-{dead}"));
    let live_partial = out.join(format!(".other_(Drums).wav.partial-{me}"));
    let old_partial = out.join(format!(".old_(Drums).wav.partial-{me}"));
    let unrelated = out.join(".notes.partial-draft");
    for p in [&dead_partial, &live_partial, &old_partial, &unrelated] {
        std::fs::write(p, b"half a stem").unwrap();
    }
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
    std::fs::File::options().write(true).open(&old_partial).unwrap().set_modified(day_ago).unwrap();
    let o = cli(&dir).arg("separate").arg(&input).args(["--model", "builtin:hpss", "--out-dir"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!dead_partial.exists(), "a dead process's partial file is removed");
    assert!(!old_partial.exists(), "a partial file older than hours is removed, whoever's id it bears");
    assert!(live_partial.exists(), "a live process's recent partial file is kept");
    assert!(unrelated.exists(), "only partial stems are touched");
    assert!(stderr(&o).contains("removed 2 files left by interrupted runs"), "{}", stderr(&o));
}

#[test]
fn without_model_the_best_installed_model_for_the_stems_asked_for_is_used_and_named() {
    let dir = temp_dir("default_model");
    let copy = |fixture: &str, stem: &str| {
        let src = fixture_dir(fixture);
        std::fs::copy(src.join("model.ckpt"), dir.join(format!("{stem}.ckpt"))).unwrap();
        std::fs::copy(src.join("config.yaml"), dir.join(format!("{stem}.yaml"))).unwrap();
    };
    let input = dir.join("song.wav");
    song(&input, 44100);
    // Only a drum-kit model: not for a full mix, so the built-in is used and the line says why.
    copy("tiny_instnorm_gelu", "aufr33-jarredou_DrumSep_model_mdx23c_ep_141_sdr_10.8059");
    let o = cli(&dir).arg("separate").arg(&input).arg("--out-dir").arg(dir.join("o1")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let first = stderr(&o).lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with("no installed model separates vocals") && first.contains("builtin:hpss"), "{first}");
    // A vocals model and a 4-stem one besides: the DrumSep model sorts first by name, but the
    // vocals model is the best for vocals (10.17 dB against 7.36).
    copy("tiny_instnorm_gelu", "MDX23C-8KFFT-InstVoc_HQ");
    copy("small_groupnorm_relu_4stem", "model_mdx23c_ep_168_sdr_7.0207");
    let o = cli(&dir).arg("separate").arg(&input).arg("--out-dir").arg(dir.join("o2")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let first = stderr(&o).lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with("model: MDX23C-InstVoc HQ (best installed for vocals") && first.contains("pass --model to choose"), "{first}");
    assert!(dir.join("o2/song_(vocals).wav").is_file() && dir.join("o2/song_(instrumental).wav").is_file());
    // Ranked by SDR, not by name: for vocals alone, without the UVR model, the MSST vocals model
    // (10.17 dB) beats the 4-stem one (7.36 dB) that sorts before it.
    std::fs::remove_file(dir.join("MDX23C-8KFFT-InstVoc_HQ.ckpt")).unwrap();
    copy("tiny_instnorm_gelu", "model_vocals_mdx23c_sdr_10.17");
    let o = cli(&dir).arg("separate").arg(&input).args(["--stems", "vocals", "--out-dir"]).arg(dir.join("o5")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let first = stderr(&o).lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with("model: model_vocals_mdx23c_sdr_10.17 (best installed for vocals, SDR 10.17 dB"), "{first}");
    // Drums asked for: the 4-stem model has them.
    let o = cli(&dir).arg("separate").arg(&input).args(["--stems", "drums", "--out-dir"]).arg(dir.join("o3")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let first = stderr(&o).lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with("model: model_mdx23c_ep_168_sdr_7.0207 (best installed for drums"), "{first}");
    assert!(dir.join("o3/song_(drums).wav").is_file());
    // Harmonic asked for: no model has it, the built-in does.
    let o = cli(&dir).arg("separate").arg(&input).args(["--stems", "harmonic", "--out-dir"]).arg(dir.join("o4")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).lines().next().unwrap_or_default().starts_with("model: builtin:hpss"), "{}", stderr(&o));
    assert!(dir.join("o4/song_(Harmonic).wav").is_file());
}

#[test]
fn model_names_match_by_prefix_then_by_part_and_an_ambiguous_name_lists_its_candidates() {
    let dir = temp_dir("names");
    let src = fixture_dir("tiny_instnorm_gelu");
    for stem in ["MDX23C-8KFFT-InstVoc_HQ", "Tiny Vocals"] {
        std::fs::copy(src.join("model.ckpt"), dir.join(format!("{stem}.ckpt"))).unwrap();
        std::fs::copy(src.join("config.yaml"), dir.join(format!("{stem}.yaml"))).unwrap();
    }
    let input = dir.join("song.wav");
    song(&input, 44100);
    // The library's example: `InstVoc` is inside "MDX23C-InstVoc HQ", at the start of nothing.
    let o = cli(&dir).arg("separate").arg(&input).args(["--model", "instvoc", "--out-dir"]).arg(dir.join("o1")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("MDX23C-8KFFT-InstVoc_HQ.ckpt"), "{}", stderr(&o));
    let o = cli(&dir).arg("separate").arg(&input).args(["--model", "voc", "--quiet"]).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("`voc` matches 2 models") && err.contains("MDX23C-InstVoc HQ") && err.contains("Tiny Vocals"), "{err}");
}

#[test]
fn builtins_warn_of_the_options_they_ignore_and_the_help_says_so() {
    let dir = temp_dir("ignored");
    let input = dir.join("song.wav");
    song(&input, 44100);
    let cfg = fixture_dir("tiny_instnorm_gelu").join("config.yaml");
    let o = cli(&dir)
        .arg("separate")
        .arg(&input)
        .args(["--model", "builtin:hpss", "--overlap", "4", "--segment", "64", "--precision", "f16", "--scheme", "msst", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--out-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let warnings: Vec<String> = stderr(&o).lines().filter(|l| l.starts_with("warning: ")).map(String::from).collect();
    assert_eq!(warnings.len(), 1, "one line: {warnings:?}");
    for opt in ["--overlap", "--segment", "--precision", "--scheme", "--config"] {
        assert!(warnings[0].contains(opt), "{opt} in {}", warnings[0]);
    }
    let o = cli(&dir).args(["separate", "--model", "builtin:hpss", "--out-dir"]).arg(&dir).arg(&input).output().unwrap();
    assert!(!stderr(&o).contains("warning"), "nothing given, nothing to warn of: {}", stderr(&o));
    let o = cli(&dir).args(["separate", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in ["--device <DEVICE>", "Where the model runs", "ignores those given", "never silently", "best installed model", "inside --out-dir"] {
        assert!(help.contains(needle), "`{needle}` not in the help:\n{help}");
    }
}

#[test]
fn messages_are_plain_text_not_debug_formatting() {
    let dir = temp_dir("plain");
    let input = dir.join("song.wav");
    song(&input, 44100);
    let o = run_separate(&dir, &[&input], &["--scheme", "msst", "--out-dir", dir.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("stems: vocals, instrumental") && err.contains("MSST overlap"), "{err}");
    assert!(!err.contains("[\"") && !err.contains("Msst") && !err.contains("Uvr"), "{err}");
    let second = dir.join("second.wav");
    song(&second, 44100);
    let o = run_separate(&dir, &[&input, &second], &["--skip-existing", "--out-dir", dir.to_str().unwrap()]);
    assert!(stderr(&o).contains("1 file separated, 1 skipped"), "{}", stderr(&o));
}
