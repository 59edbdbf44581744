//! Full-size parity against the PyTorch baseline (same weights, same input).
//!
//! ```text
//! python benches/torch/bench_torch.py --full --repeats 1 --warmup 0 --threads 2 \
//!     --save-weights /tmp/full.safetensors --input-npy /tmp/in.npy --output-npy /tmp/torch_out.npy
//! cargo run --release --example full_parity -- /tmp/full.safetensors /tmp/in.npy /tmp/torch_out.npy
//! ```
use candle_core::Tensor;
use mdx_stems::engine::Separator;
use mdx_stems::nets::tfc_tdf::{Checkpoint, ModelConfig, TfcTdf};
use mdx_stems::options::EngineOptions;
use std::path::PathBuf;

const FULL_CONFIG: &str = include_str!("../assets/uvr-mdxc/model_2_stem_full_band_8k.yaml");

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let cfg = ModelConfig::from_yaml_str(FULL_CONFIG)?;
    let ckpt = Checkpoint::read(&PathBuf::from(&a[1]))?;
    let opts = EngineOptions { threads: 2, ..EngineOptions::default() };
    let mut sep = Separator::new(Box::new(TfcTdf::from_checkpoint(cfg, ckpt, None)?), &opts)?;
    let input = Tensor::read_npy(&a[2])?.flatten_all()?.to_vec1::<f32>()?;
    let want = Tensor::read_npy(&a[3])?.flatten_all()?.to_vec1::<f32>()?;
    let n = input.len() / (2 * sep.chunk_len());
    let mut out = vec![0f32; n * sep.num_stems() * 2 * sep.chunk_len()];
    sep.process_chunks(&input, n, &mut out)?;
    let (mut d, mut m, mut e2, mut s2) = (0f32, 0f32, 0f64, 0f64);
    for (x, y) in out.iter().zip(&want) {
        d = d.max((x - y).abs());
        m = m.max(y.abs());
        e2 += ((x - y) as f64).powi(2);
        s2 += (*y as f64).powi(2);
    }
    println!("max abs diff {d:.3e} (max |torch| {m:.3}), SNR {:.1} dB", 10.0 * (s2 / e2).log10());
    Ok(())
}
