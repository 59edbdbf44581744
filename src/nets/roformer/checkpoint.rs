//! The tensors a RoFormer checkpoint must hold, named as MSST's modules name them, and the
//! strict check of a file against them. Files are read by the pickle-free reader of
//! [`crate::nets::tfc_tdf::Checkpoint`] (it knows no architecture).

use super::bands::Bands;
use super::config::{RoformerConfig, Variant};
use crate::nets::checkpoint::SplitMix64;
use crate::nets::{Checkpoint, WeightsError};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What one `Transformer` of MSST holds: softmax attention with rotary embeddings, or
/// the linear attention of `linear_transformer_depth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnKind {
    Softmax,
    Linear,
}

/// The transformers of one of the `depth` layers, with their module index (`layers.N.<i>`):
/// the optional linear transformer, then time, then frequency.
pub fn layer_transformers(cfg: &RoformerConfig) -> Vec<(usize, AttnKind, usize)> {
    let m = &cfg.model;
    let mut v = vec![];
    if m.linear_transformer_depth > 0 {
        v.push((v.len(), AttnKind::Linear, m.linear_transformer_depth));
    }
    v.push((v.len(), AttnKind::Softmax, m.time_transformer_depth));
    v.push((v.len(), AttnKind::Softmax, m.freq_transformer_depth));
    v
}

/// Linear layer widths of a mask estimator's MLP: BS-RoFormer has `mask_estimator_depth`
/// linears, Mel-Band RoFormer one more (MSST's two `MLP`s differ so).
pub fn mask_mlp_dims(cfg: &RoformerConfig, band_dim: usize) -> Vec<usize> {
    let m = &cfg.model;
    let hidden = m.dim * m.mlp_expansion_factor;
    let hidden_layers = match m.variant {
        Variant::BandSplit { .. } => m.mask_estimator_depth - 1,
        Variant::MelBand { .. } => m.mask_estimator_depth,
    };
    let mut dims = vec![m.dim];
    dims.extend(std::iter::repeat_n(hidden, hidden_layers));
    dims.push(2 * band_dim);
    dims
}

/// Whether each transformer ends in its own RMSNorm (Mel-Band) rather than the network in
/// one `final_norm` (BS).
pub fn transformers_norm_output(cfg: &RoformerConfig) -> bool {
    matches!(cfg.model.variant, Variant::MelBand { .. })
}

/// Every tensor name and shape the network needs.
pub fn expected_tensors(cfg: &RoformerConfig) -> BTreeMap<String, Vec<usize>> {
    let m = &cfg.model;
    let (dim, inner) = (m.dim, m.heads * m.dim_head);
    let mut out = BTreeMap::new();
    let mut put = |k: String, s: Vec<usize>| {
        out.insert(k, s);
    };
    for i in 0..m.depth {
        for (j, kind, depth) in layer_transformers(cfg) {
            let p = format!("layers.{i}.{j}");
            for l in 0..depth {
                let a = format!("{p}.layers.{l}.0");
                put(format!("{a}.norm.gamma"), vec![dim]);
                match kind {
                    AttnKind::Softmax => {
                        put(format!("{a}.rotary_embed.freqs"), vec![m.dim_head / 2]);
                        put(format!("{a}.to_qkv.weight"), vec![3 * inner, dim]);
                        put(format!("{a}.to_gates.weight"), vec![m.heads, dim]);
                        put(format!("{a}.to_gates.bias"), vec![m.heads]);
                        put(format!("{a}.to_out.0.weight"), vec![dim, inner]);
                    }
                    AttnKind::Linear => {
                        put(format!("{a}.temperature"), vec![m.heads, 1, 1]);
                        put(format!("{a}.to_qkv.0.weight"), vec![3 * inner, dim]);
                        put(format!("{a}.to_out.1.weight"), vec![dim, inner]);
                    }
                }
                let f = format!("{p}.layers.{l}.1.net");
                put(format!("{f}.0.gamma"), vec![dim]);
                put(format!("{f}.1.weight"), vec![4 * dim, dim]);
                put(format!("{f}.1.bias"), vec![4 * dim]);
                put(format!("{f}.4.weight"), vec![dim, 4 * dim]);
                put(format!("{f}.4.bias"), vec![dim]);
            }
            if transformers_norm_output(cfg) {
                put(format!("{p}.norm.gamma"), vec![dim]);
            }
        }
    }
    if !transformers_norm_output(cfg) {
        put("final_norm.gamma".into(), vec![dim]);
    }
    let bands = Bands::new(cfg);
    for (k, d) in bands.dims().into_iter().enumerate() {
        put(format!("band_split.to_features.{k}.0.gamma"), vec![d]);
        put(format!("band_split.to_features.{k}.1.weight"), vec![dim, d]);
        put(format!("band_split.to_features.{k}.1.bias"), vec![dim]);
        for s in 0..m.num_stems {
            for (i, w) in mask_mlp_dims(cfg, d).windows(2).enumerate() {
                let p = format!("mask_estimators.{s}.to_freqs.{k}.0.{}", 2 * i);
                put(format!("{p}.weight"), vec![w[1], w[0]]);
                put(format!("{p}.bias"), vec![w[1]]);
            }
        }
    }
    out
}

/// Compare a checkpoint with what `cfg` needs ([`crate::nets::checkpoint::compare`]); one error
/// lists every difference.
pub fn check_tensors(ckpt: &Checkpoint, cfg: &RoformerConfig) -> Result<(), WeightsError> {
    crate::nets::checkpoint::compare(ckpt, &expected_tensors(cfg), |found| mismatch_hint(found, cfg))
}

/// A one-line guess at the config value that is wrong.
fn mismatch_hint(found: &BTreeMap<String, Vec<usize>>, cfg: &RoformerConfig) -> Option<String> {
    let m = &cfg.model;
    let layers = found.keys().filter_map(|k| k.strip_prefix("layers.")?.split('.').next()?.parse::<usize>().ok()).max();
    if let Some(l) = layers {
        if l + 1 != m.depth {
            return Some(format!("model has depth {} but config says {}", l + 1, m.depth));
        }
    }
    if let Some(s) = found.get("final_norm.gamma") {
        if s[0] != m.dim {
            return Some(format!("model has dim {} but config says {}", s[0], m.dim));
        }
    }
    let bands = found.keys().filter(|k| k.starts_with("band_split.to_features.") && k.ends_with(".0.gamma")).count();
    let want = Bands::new(cfg).bins.len();
    if bands != want && bands > 0 {
        return Some(format!("model has {bands} bands but the config describes {want}"));
    }
    let stems = found.keys().filter(|k| k.starts_with("mask_estimators.") && k.ends_with(".to_freqs.0.0.0.bias")).count();
    if stems != m.num_stems && stems > 0 {
        return Some(format!("model has {stems} mask estimators but config says num_stems {}", m.num_stems));
    }
    None
}

/// A checkpoint of deterministic weights for `cfg` (full-size-shape tests and benchmarks),
/// the scheme of `tests/fixtures/README.md`: one [`SplitMix64`] stream seeded with `seed`
/// over the tensors in byte-wise order of their names, elements in row-major order, u in
/// [0, 1): matrices (2 or more dims) (2u - 1) / sqrt(fan_in), 1-D `gamma`/`weight`
/// 1 + 0.1 (2u - 1), other 1-D tensors (biases) 0.02 (2u - 1); the rotary frequencies draw
/// nothing and hold `RotaryEmbedding`'s 1 / 10000^(2i / dim_head) (computed in f32).
pub fn random(cfg: &RoformerConfig, seed: u64) -> Checkpoint {
    let mut rng = SplitMix64(seed);
    let tensors = expected_tensors(cfg)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with("rotary_embed.freqs") {
                let d = cfg.model.dim_head as f32;
                (0..n).map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / d)).collect()
            } else if shape.len() >= 2 {
                let fan_in: usize = shape[1..].iter().product();
                let bound = 1.0 / (fan_in as f32).sqrt();
                (0..n).map(|_| (rng.next_f32() * 2.0 - 1.0) * bound).collect()
            } else if name.ends_with("gamma") || name.ends_with("weight") {
                (0..n).map(|_| 1.0 + 0.1 * (rng.next_f32() * 2.0 - 1.0)).collect()
            } else {
                (0..n).map(|_| 0.02 * (rng.next_f32() * 2.0 - 1.0)).collect()
            };
            (name, Tensor::from_vec(values, shape.as_slice(), &Device::Cpu).expect("shape matches length"))
        })
        .collect();
    Checkpoint { path: PathBuf::from("<random weights>"), tensors }
}

/// Parameter count of the network `cfg` describes (the rotary frequencies included, once per
/// attention as the checkpoints store them).
pub fn parameter_count(cfg: &RoformerConfig) -> usize {
    expected_tensors(cfg).values().map(|s| s.iter().product::<usize>()).sum()
}
