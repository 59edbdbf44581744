//! Fuzzing of every file the program reads (see `mdx_stems::fuzz`), on stable in `cargo test`:
//! - mutation fuzzing: real seed files, a fixed number of deterministic mutants each (more with
//!   `MDX_FUZZ_ITERS`, other mutants with `MDX_FUZZ_SEED`). A panic or a mutant slower than
//!   `fuzz::SLOW` fails the test, names the mutant and saves it under `target/fuzz-failures/`
//!   to become a regression test;
//! - the minimized corpora of the libFuzzer targets (`fuzz/corpus/`) and the inputs they found
//!   (`tests/data/fuzz-regressions/`), replayed through the targets' entry point.
//!
//! Below them, the regression tests for what fuzzing and review found.

mod common;
use common::*;

use mdx_stems::fuzz::{self, Rng, Target};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn iters() -> usize {
    std::env::var("MDX_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(40)
}

fn base_seed() -> u64 {
    std::env::var("MDX_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Run `iters()` mutants of each seed through `target`.
fn campaign(target: Target, seeds: &[(String, Vec<u8>)], ext: &str, text: bool) {
    let dir = temp_dir("fuzz", &format!("{target:?}"));
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for (si, (seed_name, seed)) in seeds.iter().enumerate() {
        let scratch = dir.join(format!("mutant{si}.{ext}"));
        for it in 0..iters() {
            let mut rng = Rng::new(base_seed() ^ ((si as u64) << 32) ^ it as u64);
            let mutant = fuzz::mutate(seed, &mut rng, text);
            let mutant = fuzz::prepare(target, &mutant);
            let t0 = Instant::now();
            let r = std::panic::catch_unwind(|| fuzz::run(target, &mutant, &scratch));
            let took = t0.elapsed();
            let bad = match &r {
                Err(_) => Some("panicked".to_string()),
                Ok(_) if took > fuzz::SLOW => Some(format!("took {took:?}")),
                Ok(_) => None,
            };
            if let Some(why) = bad {
                let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
                let _ = std::fs::create_dir_all(&keep);
                let file = keep.join(format!("{target:?}-{seed_name}-{it}.{ext}"));
                let _ = std::fs::write(&file, &mutant);
                panic!("{target:?} {why} on mutant {it} of {seed_name} (MDX_FUZZ_SEED {}), saved as {}", base_seed(), file.display());
            }
            let first = r.unwrap().split([':', '(']).next().unwrap_or("").trim().to_string();
            *outcomes.entry(first).or_default() += 1;
        }
    }
    eprintln!("{target:?}: {} mutants, outcomes {outcomes:?}", iters() * seeds.len());
    let _ = std::fs::remove_dir_all(dir);
}

fn fixture_files(file: &str) -> Vec<(String, Vec<u8>)> {
    FIXTURES.iter().map(|f| (f.to_string(), std::fs::read(fixture_dir(f).join(file)).unwrap())).collect()
}

#[test]
fn fuzz_pytorch_checkpoints() {
    campaign(Target::Ckpt, &fixture_files("model.ckpt"), "ckpt", false);
}

#[test]
fn fuzz_safetensors() {
    campaign(Target::Safetensors, &fixture_files("model.safetensors"), "safetensors", false);
}

#[test]
fn fuzz_yaml_configs() {
    campaign(Target::Config, &fixture_files("config.yaml"), "yaml", true);
}

#[test]
fn fuzz_audio_files() {
    let dir = temp_dir("fuzz", "wav-seed");
    let wav = dir.join("seed.wav");
    let x: Vec<f32> = (0..2205).map(|i| (i as f32 * 0.06).sin() * 0.5).collect();
    mdx_stems::audio::write_wav_f32(&wav, 44100, &[x.clone(), x]).unwrap();
    for (name, path) in [("wav", wav), ("flac", data("sine_440.flac")), ("mp3", data("sine_440.mp3")), ("ogg", data("sine_440.ogg"))] {
        let seed = std::fs::read(&path).unwrap();
        campaign(Target::Audio, &[(name.to_string(), seed)], name, false);
    }
}

#[test]
fn fuzz_plugin_states() {
    let state = br#"{"params":{"gain_1":"0.5","preset":"0"},"fields":{"model_path":"\"/models/MDX23C-8KFFT-InstVoc_HQ.ckpt\"","overlap":"4","precision":"\"Auto\"","segment":"256","cpu_threads":"2","safety":"1","watchdog_s":"60","state_version":"2","model_name":"\"MDX23C\"","model_hash":"\"0123abcd\""}}"#;
    campaign(Target::State, &[("state".into(), state.to_vec())], "json", true);
}

// ---- The libFuzzer corpora, replayed on stable through the fuzz targets' entry point. ----

/// Every file of `fuzz/corpus/<target>/` (the minimized corpus of the libFuzzer target, see
/// `fuzz/`) and of `tests/data/fuzz-regressions/<target>/` (what the fuzz runs found) through
/// `fuzz::run_bytes`, as the libFuzzer target feeds it: no panic, none slower than `fuzz::SLOW`.
fn replay(target: Target) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [root.join("fuzz/corpus").join(target.name()), root.join("tests/data/fuzz-regressions").join(target.name())] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            files.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no corpus for {}", target.name());
    let t0 = Instant::now();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for file in &files {
        let input = std::fs::read(file).unwrap();
        let t = Instant::now();
        let r = std::panic::catch_unwind(|| fuzz::run_bytes(target, &input));
        let took = t.elapsed();
        let out = r.unwrap_or_else(|_| panic!("{target:?} panicked on {}", file.display()));
        assert!(took <= fuzz::SLOW, "{target:?} took {took:?} on {}", file.display());
        let first = out.split([':', '(']).next().unwrap_or("").trim().to_string();
        *outcomes.entry(first).or_default() += 1;
    }
    eprintln!("{target:?}: {} corpus files in {:?}, outcomes {outcomes:?}", files.len(), t0.elapsed());
}

#[test]
fn corpus_checkpoint() {
    replay(Target::Ckpt);
}

#[test]
fn corpus_safetensors() {
    replay(Target::Safetensors);
}

#[test]
fn corpus_config() {
    replay(Target::Config);
}

#[test]
fn corpus_audio() {
    replay(Target::Audio);
}

#[test]
fn corpus_plugin_state() {
    replay(Target::State);
}

// ---- Regression tests: inputs that once made the program work on nothing, or crash. ----

/// A 16-bit stereo WAV whose header says `rate` Hz and `channels` channels.
fn wav_with_header(rate: u32, channels: u16) -> Vec<u8> {
    let data = vec![0u8; 400];
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate.wrapping_mul(2 * channels as u32)).to_le_bytes());
    v.extend_from_slice(&(2 * channels).to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(&data);
    v
}

#[test]
fn a_wav_header_with_an_absurd_sample_rate_is_refused_before_any_work() {
    let dir = temp_dir("fuzz", "rate");
    // 1 Hz would make the resampler produce 44100 samples per input sample: minutes of work.
    for rate in [1u32, 10, 4_000_000] {
        let p = dir.join(format!("r{rate}.wav"));
        std::fs::write(&p, wav_with_header(rate, 2)).unwrap();
        let e = mdx_stems::audio::AudioReader::open(&p).expect_err("refused").to_string();
        assert!(e.contains("sample rate") && e.contains(&rate.to_string()) && !e.contains('\n'), "{e}");
    }
    let p = dir.join("ok.wav");
    std::fs::write(&p, wav_with_header(48000, 2)).unwrap();
    mdx_stems::audio::AudioReader::open(&p).unwrap();
}

#[test]
fn config_values_that_overflow_or_size_absurd_work_get_one_line_errors() {
    let base = std::fs::read_to_string(fixture_dir("tiny_instnorm_gelu").join("config.yaml")).unwrap();
    for (from, to, needle) in [
        ("  - 2\n  - 2", "  - 1000\n  - 1000", "scale"),
        ("num_scales: 2", "num_scales: 13", "num_scales"),
        ("n_fft: 256", "n_fft: 4294967296", "n_fft"),
        ("chunk_size: 1984", "chunk_size: 99999999999", "chunk_size"),
        ("num_channels: 8", "num_channels: 100000000", "num_channels"),
        ("sample_rate: 44100", "sample_rate: 1", "sample_rate"),
        ("num_overlap: 4", "num_overlap: 100000", "num_overlap"),
    ] {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        let e = mdx_stems::nets::tfc_tdf::config::ModelConfig::from_yaml_str(&text).expect_err(to).to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{to}: {e}");
    }
}

#[test]
fn a_plugin_state_asking_for_billions_of_threads_gets_a_bounded_pool() {
    assert_eq!(mdx_stems::plugin::plugin_threads(u32::MAX), mdx_stems::limits::MAX_THREADS);
    assert_eq!(mdx_stems::plugin::plugin_threads(3), 3);
}

/// What the libFuzzer checkpoint target found (candle's pickle reader allocates what a file
/// declares before reading it), as small hand-made checkpoints in
/// `tests/data/fuzz-regressions/checkpoint/`: each refused at once with a one-line error.
#[test]
fn checkpoints_declaring_huge_strings_tensors_or_memo_copies_are_refused_before_allocating() {
    let dir = data("fuzz-regressions/checkpoint");
    for (file, needle) in [
        // A pickle string of 2^31 - 1 bytes in a 248-byte file (found: a 2 GiB allocation).
        ("pickle_string_of_2gb.ckpt", "a string of 2147483647 bytes"),
        // 40 doublings of a tuple through the memo: 2^40 values from 290 bytes.
        ("pickle_memo_bomb.ckpt", "builds more than"),
        // A tensor of 2^30 floats whose storage entry holds 16 bytes.
        ("tensor_shape_beyond_its_data.ckpt", "needs 4294967296 bytes"),
    ] {
        let t0 = Instant::now();
        let e = mdx_stems::nets::tfc_tdf::checkpoint::Checkpoint::read(&dir.join(file)).err().expect(file).to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{file}: {e}");
        assert!(t0.elapsed().as_secs_f64() < 1.0, "{file} took {:?}", t0.elapsed());
        // The shape reader (model inference for `models`) walks the pickle the same way.
        if file.starts_with("pickle") {
            let e = mdx_stems::nets::read_shapes(&dir.join(file)).expect_err(file);
            assert!(e.contains(needle) && !e.contains('\n'), "{file}: {e}");
        }
    }
}
