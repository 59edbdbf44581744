//! BS-RoFormer and Mel-Band RoFormer against MSST's PyTorch code: the golden data in
//! `tests/fixtures/roformer/` (see its README), and the config and checkpoint checks.

use candle_core::{DType, Device, Tensor};
use mdx_stems::device::Precision;
use mdx_stems::dsp::overlap::Scheme;
use mdx_stems::engine::Separator;
use mdx_stems::nets::roformer::checkpoint::{check_tensors, expected_tensors, parameter_count};
use mdx_stems::nets::roformer::model::Spectral;
use mdx_stems::nets::roformer::{Bands, Roformer, RoformerConfig, RoformerModel};
use mdx_stems::nets::tfc_tdf::Checkpoint;
use mdx_stems::options::EngineOptions;
use mdx_stems::testing::{fixtures_root, max_abs_diff, roformer_fixture_dir};
use std::collections::HashMap;
use std::time::Instant;

mod common;

/// Every fixture folder under `roformer/` with a checkpoint (the small configs).
fn fixtures() -> Vec<String> {
    let root = fixtures_root().join("roformer");
    let mut v: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.ckpt").exists() && e.path().join("forward.safetensors").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no RoFormer fixtures in {}", root.display());
    v
}

fn config(name: &str) -> RoformerConfig {
    RoformerConfig::from_yaml_file(&roformer_fixture_dir(name).join("config.yaml")).unwrap()
}

fn load_st(name: &str, file: &str) -> HashMap<String, Tensor> {
    let p = roformer_fixture_dir(name).join(file);
    candle_core::safetensors::load(&p, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn to_f32(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn snr_db(est: &[f32], reference: &[f64]) -> f64 {
    let (mut s, mut n) = (0f64, 0f64);
    for (e, r) in est.iter().zip(reference) {
        s += r * r;
        n += (*e as f64 - r) * (*e as f64 - r);
    }
    10.0 * (s / n.max(1e-300)).log10()
}

fn separator(name: &str, precision: Precision) -> Separator {
    let dir = roformer_fixture_dir(name);
    let builder = Roformer::open(config(name), &dir.join("model.ckpt")).unwrap();
    // `$MDX_STEMS_TEST_DEVICE` (default the CPU): the device machine runs these on CUDA.
    let options = EngineOptions { device: common::test_device(), precision: Some(precision), ..Default::default() };
    Separator::new(Box::new(builder), &options).unwrap()
}

/// The fixture's `mix` [B, 2, C] through the engine's chunk pass -> [B, stems, 2, C].
fn forward(sep: &mut Separator, name: &str) -> Vec<f32> {
    let f = load_st(name, "forward.safetensors");
    let b = f["mix"].dim(0).unwrap();
    let mix = to_f32(&f["mix"]);
    let mut out = vec![0f32; b * sep.num_stems() * 2 * sep.chunk_len()];
    sep.process_chunks(&mix, b, &mut out).unwrap();
    out
}

const GOOD_BS: &str = "
audio: {chunk_size: 2560, sample_rate: 44100, dim_t: 801, min_mean_abs: 0.0}
model:
  dim: 32
  depth: 1
  stereo: true
  num_stems: 1
  time_transformer_depth: 1
  freq_transformer_depth: 1
  linear_transformer_depth: 0
  freqs_per_bands: !!python/tuple [2, 3, 4, 8, 16, 32, 63, 1]
  dim_head: 8
  heads: 4
  attn_dropout: 0.1
  ff_dropout: 0.1
  flash_attn: true
  dim_freqs_in: 129
  stft_n_fft: 256
  stft_hop_length: 64
  stft_win_length: 256
  stft_normalized: false
  mask_estimator_depth: 2
  multi_stft_resolution_loss_weight: 1.0
  multi_stft_resolutions_window_sizes: !!python/tuple [4096, 2048]
  multi_stft_hop_size: 147
  multi_stft_normalized: False
training: {instruments: [vocals, other], target_instrument: vocals, lr: 1.0e-05}
inference: {batch_size: 4, dim_t: 801, num_overlap: 3}
";

#[test]
fn config_reads_both_variants_and_names_what_it_refuses() {
    let t = Instant::now();
    let cfg = RoformerConfig::from_yaml_str(GOOD_BS).unwrap();
    assert!(matches!(&cfg.model.variant, mdx_stems::nets::roformer::Variant::BandSplit { freqs_per_bands } if freqs_per_bands.len() == 8));
    assert_eq!((cfg.chunk_size, cfg.num_overlap, cfg.batch_size), (2560, 3, 4));
    assert_eq!(cfg.stems(), vec!["vocals".to_string()]);
    assert_eq!(cfg.complement_stem().as_deref(), Some("other"));
    let mel = GOOD_BS.replace("  freqs_per_bands: !!python/tuple [2, 3, 4, 8, 16, 32, 63, 1]\n", "  num_bands: 12\n  sample_rate: 44100\n");
    let cfg = RoformerConfig::from_yaml_str(&mel).unwrap();
    assert!(matches!(cfg.model.variant, mdx_stems::nets::roformer::Variant::MelBand { num_bands: 12, sample_rate: 44100 }));
    let err = |text: &str| RoformerConfig::from_yaml_str(text).unwrap_err().to_string();
    let e = err(&GOOD_BS.replace("  heads: 4\n", "  heads: 4\n  bogus_key: 3\n"));
    assert!(e.contains("unknown BS-RoFormer model keys: bogus_key"), "{e}");
    let e = err(&GOOD_BS.replace("stft_normalized: false", "stft_normalized: true"));
    assert!(e.contains("stft_normalized: true"), "{e}");
    let e = err(&GOOD_BS.replace("stereo: true", "stereo: false"));
    assert!(e.contains("stereo: false"), "{e}");
    let e = err(&GOOD_BS.replace("63, 1]", "63, 2]"));
    assert!(e.contains("summing to 130"), "{e}");
    let e = err(&GOOD_BS.replace("num_stems: 1", "num_stems: 2"));
    assert!(e.contains("num_stems is 2"), "{e}");
    let e = err(&mel.replace("chunk_size: 2560", "chunk_size: 2500"));
    assert!(e.contains("match_input_audio_length is false"), "{e}");
    RoformerConfig::from_yaml_str(&mel.replace("chunk_size: 2560", "chunk_size: 2500").replace("  num_bands: 12\n", "  num_bands: 12\n  match_input_audio_length: true\n")).unwrap();
    let e = err(&GOOD_BS.replace("  heads: 4\n", "  heads: 4\n  use_pope: true\n"));
    assert!(e.contains("use_pope: true"), "{e}");
    eprintln!("config test: {:.2?}", t.elapsed());
}

#[test]
fn the_public_configs_parse() {
    // The shapes of MSST's viperx and KimberleyJensen configs (training sections trimmed).
    let bs = GOOD_BS
        .replace("dim: 32", "dim: 512")
        .replace("depth: 1\n", "depth: 12\n")
        .replace("[2, 3, 4, 8, 16, 32, 63, 1]", &format!("[{}]", viperx_bands().iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ")))
        .replace("stft_n_fft: 256", "stft_n_fft: 2048")
        .replace("stft_win_length: 256", "stft_win_length: 2048")
        .replace("stft_hop_length: 64", "stft_hop_length: 441")
        .replace("chunk_size: 2560", "chunk_size: 352800");
    let cfg = RoformerConfig::from_yaml_str(&bs).unwrap();
    assert_eq!(cfg.frames(), 801);
    assert_eq!(Bands::new(&cfg).bins.len(), 62);
}

fn viperx_bands() -> Vec<usize> {
    let mut v = vec![2; 24];
    v.extend([4; 12]);
    v.extend([12; 8]);
    v.extend([24; 8]);
    v.extend([48; 8]);
    v.extend([128, 129]);
    v
}

#[test]
fn checkpoint_check_is_strict_and_names_the_tensor() {
    for name in fixtures() {
        let cfg = config(&name);
        let mut ckpt = Checkpoint::read(&roformer_fixture_dir(&name).join("model.ckpt")).unwrap();
        assert_eq!(ckpt.shapes(), expected_tensors(&cfg), "{name}: the names and shapes of MSST's state_dict");
        check_tensors(&ckpt, &cfg).unwrap();
        let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(roformer_fixture_dir(&name).join("meta.json")).unwrap()).unwrap();
        assert_eq!(parameter_count(&cfg) as u64, meta["state_dict_floats"].as_u64().unwrap(), "{name}: parameter count");
        let key = "band_split.to_features.1.1.weight";
        let t = ckpt.tensors[key].clone();
        ckpt.tensors.insert(key.into(), t.narrow(1, 0, t.dim(1).unwrap() - 1).unwrap());
        let e = check_tensors(&ckpt, &cfg).unwrap_err().to_string();
        assert!(e.contains(&format!("mis-shaped:  {key}")), "{e}");
        ckpt.tensors.remove(key);
        ckpt.tensors.insert("extra.weight".into(), t);
        let e = check_tensors(&ckpt, &cfg).unwrap_err().to_string();
        assert!(e.contains(&format!("missing:     {key}")) && e.contains("unexpected:  extra.weight"), "{e}");
    }
}

#[test]
fn forward_matches_msst() {
    for name in fixtures() {
        let t = Instant::now();
        let out_ref = to_f32(&load_st(&name, "forward.safetensors")["out"]);
        let mut sep = separator(&name, Precision::F32);
        let out = forward(&mut sep, &name);
        let d = max_abs_diff(&out, &out_ref);
        eprintln!("{name}: forward max abs diff {d:.3e} ({:.2?})", t.elapsed());
        assert!(d <= 1e-4, "{name}: forward differs from MSST by {d}");
    }
}

/// The first batch item's band split and first-stem masks, and the Mel band buffers, against
/// the reference's intermediates.
#[test]
fn intermediates_and_mel_buffers_match_msst() {
    for name in fixtures() {
        let cfg = config(&name);
        let f = load_st(&name, "forward.safetensors");
        let bands = Bands::new(&cfg);
        if let Some(fpb) = f.get("freqs_per_band") {
            let member: Vec<u8> = fpb.flatten_all().unwrap().to_vec1().unwrap();
            let freqs = cfg.freqs();
            let ours: Vec<u8> = (0..bands.bins.len()).flat_map(|b| (0..freqs).map(move |k| (b, k))).map(|(b, k)| bands.bins[b].contains(&k) as u8).collect();
            assert_eq!(ours, member, "{name}: mel band membership");
            let per_freq: Vec<i64> = f["num_bands_per_freq"].to_vec1().unwrap();
            assert_eq!(bands.bands_per_freq.iter().map(|&n| n as i64).collect::<Vec<_>>(), per_freq, "{name}: bands per bin");
            let idx: Vec<i64> = f["freq_indices"].to_vec1().unwrap();
            let ours: Vec<i64> = bands.bins.iter().flatten().flat_map(|&k| [2 * k as i64, 2 * k as i64 + 1]).collect();
            assert_eq!(ours, idx, "{name}: freq_indices");
        }
        let ckpt = Checkpoint::read(&roformer_fixture_dir(&name).join("model.ckpt")).unwrap();
        let model = RoformerModel::new(&cfg, &ckpt.tensors, &Device::Cpu, DType::F32).unwrap();
        let mut sp = Spectral::new(&cfg);
        let mix = to_f32(&f["mix"]);
        let (chunk, per_ch) = (cfg.chunk_size, sp.stft.spec_len());
        let mut spec = vec![0f32; 2 * per_ch];
        for ch in 0..2 {
            sp.stft.forward(&mix[ch * chunk..(ch + 1) * chunk], &mut spec[ch * per_ch..(ch + 1) * per_ch]);
        }
        let frames = sp.stft.frames();
        let mut feats = vec![0f32; frames * sp.features];
        sp.pack(&spec, &mut feats);
        if let Some(r) = f.get("band_split_in") {
            let d = max_abs_diff(&feats, &to_f32(r));
            assert!(d <= 1e-4, "{name}: band_split_in differs by {d}");
        }
        let x = Tensor::from_slice(&feats, (1, frames, sp.features), &Device::Cpu).unwrap();
        let net = model.net();
        let split = net.band_split(&x).unwrap();
        let d = max_abs_diff(&to_f32(&split), &to_f32(&f["band_split"]));
        eprintln!("{name}: band_split max abs diff {d:.3e}");
        assert!(d <= 1e-4, "{name}: band_split differs by {d}");
        let masks = net.masks(&net.transform(&split).unwrap()).unwrap();
        let first = masks.get(0).unwrap().get(0).unwrap();
        let d = max_abs_diff(&to_f32(&first), &to_f32(&f["mask_estimators.0"]));
        eprintln!("{name}: mask_estimators.0 max abs diff {d:.3e}");
        assert!(d <= 1e-4, "{name}: first stem's masks differ by {d}");
    }
}

/// The public configs' full-size networks (viperx BS ep317, viperx Mel ep3005, KJ Mel) with
/// the SplitMix64 weights of the fixtures' README, on a 0.25 s chunk.
#[test]
fn full_size_shapes_match_msst() {
    for name in ["bs_ep317_shape", "mel_ep3005_shape", "mel_kj_shape"] {
        let t = Instant::now();
        let dir = roformer_fixture_dir(name);
        let mut cfg = RoformerConfig::from_yaml_file(&dir.join("config.yaml")).unwrap();
        let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let f = load_st(name, "forward.safetensors");
        cfg.chunk_size = f["mix"].dim(2).unwrap();
        let ckpt = mdx_stems::nets::roformer::checkpoint::random(&cfg, meta["seed"].as_u64().unwrap());
        let sd: std::collections::BTreeMap<String, Vec<usize>> = serde_json::from_value(meta["state_dict"].clone()).unwrap();
        assert_eq!(ckpt.shapes(), sd, "{name}: MSST's state_dict names and shapes");
        let made = t.elapsed();
        let options = EngineOptions { device: common::test_device(), precision: Some(Precision::F32), ..Default::default() };
        let mut sep = Separator::new(Box::new(Roformer::from_checkpoint(cfg, ckpt).unwrap()), &options).unwrap();
        let out = forward(&mut sep, name);
        let d = max_abs_diff(&out, &to_f32(&f["out"]));
        eprintln!("{name}: max abs diff {d:.3e} (weights {made:.2?}, total {:.2?})", t.elapsed());
        assert!(d <= 1e-4, "{name}: differs from MSST by {d}");
    }
}

/// Whole songs through the engine's MSST overlap scheme against MSST's `demix` (batch 1).
#[test]
fn demix_matches_msst() {
    for name in fixtures() {
        let t = Instant::now();
        let d = load_st(&name, "demix.safetensors");
        let mut sep = separator(&name, Precision::F32);
        for (mix, prefix) in [("mix", ""), ("mix_short", "mix_short_"), ("mix_tiny", "mix_tiny_")] {
            let m: Vec<Vec<f32>> = d[mix].to_vec2().unwrap();
            for overlap in [2, 4] {
                let key = format!("{prefix}msst_overlap{overlap}");
                let out = sep.separate(&m, Scheme::Msst, overlap, 1, &mut |_, _| {}).unwrap();
                let flat: Vec<f32> = out.iter().flatten().flatten().copied().collect();
                let diff = max_abs_diff(&flat, &to_f32(&d[&key]));
                assert!(diff <= 2e-4, "{name} {key}: differs by {diff}");
            }
        }
        eprintln!("{name}: demix ok ({:.2?})", t.elapsed());
    }
}

#[test]
fn half_precision_snr_against_f64() {
    for name in fixtures() {
        let reference = to_f64(&load_st(&name, "forward.safetensors")["out_f64"]);
        for (p, floor) in [(Precision::F32, 90.0), (Precision::F16, 50.0), (Precision::Bf16, 30.0)] {
            let mut sep = separator(&name, p);
            let snr = snr_db(&forward(&mut sep, &name), &reference);
            eprintln!("{name}: {} SNR vs out_f64 = {snr:.1} dB", p.name());
            assert!(snr >= floor, "{name}: {} SNR {snr:.1} dB below {floor} dB", p.name());
        }
    }
}

/// Sliced attention (the memory bound) computes what one slice does, to the last bit but
/// for the matmul's summation order.
#[test]
fn attention_slices_change_nothing() {
    use mdx_stems::nets::roformer::graph::attend;
    let dev = Device::Cpu;
    let q = Tensor::randn(0f32, 1.0, (7, 2, 33, 8), &dev).unwrap();
    let k = Tensor::randn(0f32, 1.0, (7, 2, 33, 8), &dev).unwrap();
    let v = Tensor::randn(0f32, 1.0, (7, 2, 33, 8), &dev).unwrap();
    let whole = attend(&q, &k, &v, 0.35, usize::MAX).unwrap();
    let one_seq = 2 * 33 * 33 * 4;
    for bound in [1, one_seq, 2 * one_seq + 5, 3 * one_seq] {
        let sliced = attend(&q, &k, &v, 0.35, bound).unwrap();
        let d = max_abs_diff(&to_f32(&whole), &to_f32(&sliced));
        assert!(d <= 1e-6, "bound {bound}: sliced attention differs by {d}");
    }
    // A reference computed here: row 5, head 1, query 4.
    let (qv, kv, vv) = (to_f32(&q), to_f32(&k), to_f32(&v));
    let at = |t: &[f32], i: usize, j: usize| t[((5 * 2 + 1) * 33 + i) * 8 + j];
    let scores: Vec<f64> = (0..33).map(|j| (0..8).map(|c| at(&qv, 4, c) as f64 * at(&kv, j, c) as f64).sum::<f64>() * 0.35).collect();
    let mx = scores.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
    let z: f64 = e.iter().sum();
    let w = to_f32(&whole);
    for c in 0..8 {
        let r: f64 = (0..33).map(|j| e[j] / z * at(&vv, j, c) as f64).sum();
        let got = w[((5 * 2 + 1) * 33 + 4) * 8 + c] as f64;
        assert!((got - r).abs() < 1e-5, "attention output {c}: {got} vs {r}");
    }
}
