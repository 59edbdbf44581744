//! Exactness against the PyTorch reference's golden data in `tests/fixtures/mdx23c/`.

mod common;
use common::*;

use candle_core::{DType, Device};
use mdx_stems::device::Precision;
use mdx_stems::dsp::overlap::Scheme;
use mdx_stems::dsp::stft::Stft;
use mdx_stems::engine::{LoadOptions, Separator};
use mdx_stems::nets::tfc_tdf::{Checkpoint, ModelConfig};

fn opts(name: &str, file: &str, precision: Precision) -> LoadOptions {
    fixture_load_options(name, file, test_device(), precision)
}

#[test]
fn stft_matches_reference_spec() {
    for name in FIXTURES {
        let cfg = ModelConfig::from_yaml_file(&fixture_dir(name).join("config.yaml")).unwrap();
        let f = load_st(name, "forward.safetensors");
        let mix = to_f32(&f["mix"]);
        let spec = to_f32(&f["spec"]);
        let a = &cfg.audio;
        let mut stft = Stft::new(a.n_fft, a.hop_length, a.dim_f, a.chunk_size);
        let per = stft.spec_len();
        let mut ours = vec![0f32; 4 * per];
        for (i, x) in mix.chunks_exact(a.chunk_size).enumerate() {
            stft.forward(x, &mut ours[i * per..(i + 1) * per]);
        }
        let scale = spec.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&ours, &spec);
        eprintln!("{name}: stft max abs diff {d:.3e} (max |spec| {scale:.1})");
        assert!(d <= 1e-4 * scale.max(1.0), "{name}: stft differs by {d}");
    }
}

#[test]
fn forward_matches_reference_from_ckpt_and_safetensors() {
    for name in FIXTURES {
        let out_ref = to_f32(&load_st(name, "forward.safetensors")["out"]);
        for file in ["model.ckpt", "model.safetensors"] {
            let mut sep = Separator::load(&opts(name, file, Precision::F32)).unwrap();
            let out = fixture_forward(&mut sep, name);
            let d = max_abs_diff(&out, &out_ref);
            eprintln!("{name}/{file}: forward max abs diff {d:.3e}");
            assert!(d <= 1e-4, "{name}/{file}: forward differs from reference by {d}");
        }
    }
}

#[test]
fn ckpt_and_safetensors_hold_the_same_tensors() {
    for name in FIXTURES {
        let a = Checkpoint::read(&fixture_dir(name).join("model.ckpt")).unwrap();
        let b = Checkpoint::read(&fixture_dir(name).join("model.safetensors")).unwrap();
        assert_eq!(a.shapes(), b.shapes(), "{name}");
        for (k, t) in &a.tensors {
            assert_eq!(to_f32(t), to_f32(&b.tensors[k]), "{name}: {k}");
        }
        let m = meta(name);
        assert_eq!(a.parameter_count() as u64, m["parameters"].as_u64().unwrap(), "{name}: parameter count");
        let cfg = ModelConfig::from_yaml_file(&fixture_dir(name).join("config.yaml")).unwrap();
        assert_eq!(cfg.parameter_count(), a.parameter_count(), "{name}: config-derived parameter count");
        let stems: Vec<String> = m["stems"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        assert_eq!(cfg.stems(), stems);
    }
}

fn check_demix(name: &str, file: &str, mix_key: &str, cases: &[(&str, Scheme, usize)]) {
    let d = load_st(name, file);
    let mix = planar(&d[mix_key]);
    let mut sep = Separator::load(&opts(name, "model.ckpt", Precision::F32)).unwrap();
    for &(key, scheme, overlap) in cases {
        let expected = to_f32(&d[key]);
        for batch in [1, 3] {
            let out = sep.separate(&mix, scheme, overlap, batch, &mut |_, _| {}).unwrap();
            let flat: Vec<f32> = out.iter().flatten().flatten().copied().collect();
            let diff = max_abs_diff(&flat, &expected);
            eprintln!("{name} {key} batch {batch}: max abs diff {diff:.3e}");
            assert!(diff <= 2e-4, "{name} {key} (batch {batch}): differs by {diff}");
        }
    }
}

#[test]
fn whole_signal_separation_matches_uvr_and_msst() {
    for name in FIXTURES {
        check_demix(
            name,
            "demix.safetensors",
            "mix",
            &[("uvr_overlap2", Scheme::Uvr, 2), ("uvr_overlap4", Scheme::Uvr, 4), ("msst_overlap4", Scheme::Msst, 4)],
        );
    }
}

#[test]
fn short_songs_match_both_references() {
    for name in FIXTURES {
        for mix in ["mix_short", "mix_tiny"] {
            let uvr = format!("{mix}_uvr_overlap4");
            let msst = format!("{mix}_msst_overlap4");
            check_demix(name, "demix_short.safetensors", mix, &[(&uvr, Scheme::Uvr, 4), (&msst, Scheme::Msst, 4)]);
        }
    }
}

/// Half precision is judged by SNR against the float64 reference. Floors measured on the
/// three fixtures: f16 55-59 dB, bf16 35-40 dB (11- and 8-bit mantissas, rounded at every
/// layer boundary); the floors leave about 5 dB of margin.
#[test]
fn half_precision_snr_against_f64_reference() {
    for name in FIXTURES {
        let reference = to_f64(&load_st(name, "forward.safetensors")["out_f64"]);
        let mut f32_sep = Separator::load(&opts(name, "model.ckpt", Precision::F32)).unwrap();
        let snr32 = snr_db(&fixture_forward(&mut f32_sep, name), &reference);
        for (p, floor) in [(Precision::F16, 50.0), (Precision::Bf16, 30.0)] {
            let mut sep = Separator::load(&opts(name, "model.ckpt", p)).unwrap();
            let snr = snr_db(&fixture_forward(&mut sep, name), &reference);
            eprintln!("{name}: {} SNR vs out_f64 = {snr:.1} dB (f32: {snr32:.1} dB)", p.name());
            assert!(snr >= floor, "{name}: {} SNR {snr:.1} dB below floor {floor} dB", p.name());
        }
        assert!(snr32 > 90.0, "{name}: f32 SNR {snr32:.1} dB");
    }
    let _ = (DType::F32, Device::Cpu);
}

/// `EngineOptions::threads` / `Separator::set_threads` bound the CPU worker threads; the work split
/// changes with the count but no sum is reordered, so the output is bit-identical.
#[test]
fn thread_count_changes_nothing_but_the_threads() {
    for name in FIXTURES {
        let mut o = opts(name, "model.ckpt", Precision::F32);
        o.options.threads = 1;
        let mut sep = Separator::load(&o).unwrap();
        assert_eq!(sep.threads(), 1);
        let one = fixture_forward(&mut sep, name);
        sep.set_threads(3).unwrap();
        assert_eq!(sep.threads(), 3);
        let three = fixture_forward(&mut sep, name);
        assert!(one == three, "{name}: 1 and 3 threads differ by {}", max_abs_diff(&one, &three));
    }
}

/// The generic backend's graph, the one Metal runs (candle's own ops; 3x3 convolutions in row
/// bands), on the CPU: in f32 within 1e-4 of the reference like the CPU kernels, and in f16 at
/// least 50 dB above the float64 reference (as `half_precision_snr_against_f64_reference`).
#[test]
fn metal_graph_matches_reference_in_f32_and_f16_on_cpu() {
    for name in FIXTURES {
        let out_ref = to_f32(&load_st(name, "forward.safetensors")["out"]);
        let reference = to_f64(&load_st(name, "forward.safetensors")["out_f64"]);
        for (p, floor) in [(Precision::F32, 90.0), (Precision::F16, 50.0)] {
            let mut o = opts(name, "model.ckpt", p);
            o.options.generic_ops = true;
            let mut sep = Separator::load(&o).unwrap();
            assert_eq!(sep.backend_name(), "candle", "{name}: not the generic backend");
            let out = fixture_forward(&mut sep, name);
            let snr = snr_db(&out, &reference);
            let d = max_abs_diff(&out, &out_ref);
            eprintln!("{name}: generic graph {}: max abs diff {d:.3e}, SNR vs out_f64 {snr:.1} dB", p.name());
            if p == Precision::F32 {
                assert!(d <= 1e-4, "{name}: generic f32 differs from the reference by {d}");
            }
            assert!(snr >= floor, "{name}: generic {} SNR {snr:.1} dB below {floor} dB", p.name());
        }
    }
}
