//! Shared helpers for the integration tests: fixture paths, comparisons, scratch folders.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use mdx_stems::testing::{fixture_dir, max_abs_diff, temp_dir};

use candle_core::{Device, Tensor};
use std::collections::HashMap;

pub const FIXTURES: [&str; 3] = ["tiny_instnorm_gelu", "small_groupnorm_relu_4stem", "small_batchnorm_elu_target"];

/// The device the engine tests run on: `$MDX_STEMS_TEST_DEVICE` (`cpu`, `cuda`, `metal`,
/// `auto`), default `cpu`.
pub fn test_device() -> mdx_stems::device::DeviceRequest {
    use mdx_stems::device::DeviceRequest;
    match std::env::var("MDX_STEMS_TEST_DEVICE").as_deref() {
        Ok("cuda") => DeviceRequest::Cuda,
        Ok("metal") => DeviceRequest::Metal,
        Ok("auto") => DeviceRequest::Auto,
        Ok("cpu") | Err(_) => DeviceRequest::Cpu,
        Ok(other) => panic!("MDX_STEMS_TEST_DEVICE={other}: expected cpu, cuda, metal or auto"),
    }
}

/// Options that load fixture `name` from `file` (`model.ckpt` or `model.safetensors`) with its
/// `config.yaml`, on `device`, in `precision`, without warm-up.
pub fn fixture_load_options(
    name: &str,
    file: &str,
    device: mdx_stems::device::DeviceRequest,
    precision: mdx_stems::device::Precision,
) -> mdx_stems::engine::LoadOptions {
    let dir = fixture_dir(name);
    let options = mdx_stems::options::EngineOptions { device, precision: Some(precision), ..Default::default() };
    mdx_stems::engine::LoadOptions { model: dir.join(file), config: Some(dir.join("config.yaml")), segment: None, sample_rate: None, options }
}

/// The engine's undrained events, one message a line (as the CLI prints them).
pub fn warnings(sep: &mdx_stems::engine::Separator) -> String {
    sep.events().iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
}

/// The fixture's `mix` [2, 2, C] through the engine -> [2, stems, 2, C] flattened.
pub fn fixture_forward(sep: &mut mdx_stems::engine::Separator, name: &str) -> Vec<f32> {
    let mix = to_f32(&load_st(name, "forward.safetensors")["mix"]);
    let mut out = vec![0f32; 2 * sep.num_stems() * 2 * sep.chunk_len()];
    sep.process_chunks(&mix, 2, &mut out).unwrap();
    out
}

pub fn load_st(name: &str, file: &str) -> HashMap<String, Tensor> {
    let p = fixture_dir(name).join(file);
    candle_core::safetensors::load(&p, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn to_f32(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

pub fn to_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// Signal-to-noise ratio of `est` against `reference`, in dB.
pub fn snr_db(est: &[f32], reference: &[f64]) -> f64 {
    let (mut s, mut n) = (0f64, 0f64);
    for (e, r) in est.iter().zip(reference) {
        s += r * r;
        n += (*e as f64 - r) * (*e as f64 - r);
    }
    10.0 * (s / n.max(1e-300)).log10()
}

/// Planar [2][n] from a [2, n] tensor.
pub fn planar(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_dtype(candle_core::DType::F32).unwrap().to_vec2().unwrap()
}

pub fn meta(name: &str) -> serde_json::Value {
    let p = fixture_dir(name).join("meta.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A checkpoint header with every tensor `yaml`'s network reads (names and shapes, from the
/// config's own [`mdx_stems::nets::NetSpec::expected_tensors`]) and no weights: discovery
/// reads names and shapes only, so this stands in for a full-size RoFormer (hundreds of MB) in
/// listing tests. safetensors, told from a torch zip by content; `seed` makes each file's bytes
/// (and UVR hash) its own.
pub fn shapes_only_checkpoint(yaml: &str, seed: u8) -> Vec<u8> {
    let net = mdx_stems::nets::from_yaml_str(yaml).unwrap();
    let mut header = serde_json::Map::new();
    for (name, shape) in net.expected_tensors() {
        header.insert(name, serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}));
    }
    let h = serde_json::to_vec(&header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend((0..24u8).map(|i| i.wrapping_mul(seed).wrapping_add(seed)));
    out
}
