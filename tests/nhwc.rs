//! The channels-last formulation (the CUDA backend's layout) against the NCHW reference
//! network on the CPU, where it runs on candle's own ops (`backend::generic`). This checks the
//! layouts (subband fold, space-to-depth, depth-to-space, TDF along F, concatenations) without a
//! GPU; `tests/cuda.rs` checks the GPU kernels themselves.

mod common;
use common::*;

use candle_core::{DType, Device};
use mdx_stems::backend::cpu::Cpu;
use mdx_stems::backend::generic::{Generic, Layout};
use mdx_stems::nets::tfc_tdf::{Checkpoint, ModelConfig, Net, Network};

#[test]
fn nhwc_formulation_matches_nchw_reference_on_cpu() {
    for name in FIXTURES {
        let cfg = ModelConfig::from_yaml_file(&fixture_dir(name).join("config.yaml")).unwrap();
        let ckpt = Checkpoint::read(&fixture_dir(name).join("model.ckpt")).unwrap();
        let reference = Net::from_checkpoint(Cpu::new(), &cfg, &ckpt.tensors).unwrap();
        let nhwc = Net::from_checkpoint(Generic::new(Device::Cpu, DType::F32, Layout::ChannelsLast), &cfg, &ckpt.tensors).unwrap();
        let spec = load_st(name, "forward.safetensors")["spec"].to_dtype(DType::F32).unwrap();
        let a = to_f32(&reference.forward_spec(&spec).unwrap());
        let b = to_f32(&nhwc.forward_spec(&spec).unwrap());
        let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&a, &b);
        eprintln!("{name}: NHWC vs NCHW max abs diff {d:.3e} (max |out| {scale:.1})");
        assert!(d <= 1e-5 * scale, "{name}: NHWC formulation differs by {d}");
    }
}

/// The f32 CPU path (our Winograd convolutions and fused norms) against the reference network
/// run in float64 with candle's own ops: the spectrogram-domain output within 3e-6 of its range
/// (measured: 1.1e-7, 1.6e-7 and 1.05e-6 on the three fixtures; f32 rounding through the
/// BatchNorm/ELU fixture's layers accounts for the last).
#[test]
fn cpu_kernels_network_matches_float64_reference() {
    for name in FIXTURES {
        let cfg = ModelConfig::from_yaml_file(&fixture_dir(name).join("config.yaml")).unwrap();
        let ckpt = Checkpoint::read(&fixture_dir(name).join("model.ckpt")).unwrap();
        let spec = load_st(name, "forward.safetensors")["spec"].to_dtype(DType::F32).unwrap();
        let r64 = Net::from_checkpoint(Generic::new(Device::Cpu, DType::F64, Layout::ChannelsFirst), &cfg, &ckpt.tensors).unwrap();
        let want = to_f32(&r64.forward_spec(&spec.to_dtype(DType::F64).unwrap()).unwrap());
        let r32 = Net::from_checkpoint(Cpu::new(), &cfg, &ckpt.tensors).unwrap();
        let got = to_f32(&r32.forward_spec(&spec).unwrap());
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&got, &want);
        eprintln!("{name}: f32 CPU kernels vs float64 reference: max abs diff {d:.3e} ({:.2e} of the range {scale:.1})", d / scale);
        assert!(d <= 3e-6 * scale, "{name}: f32 CPU network differs from float64 by {d}");
    }
}
