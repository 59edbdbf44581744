//! TFC-TDF v3's tensors: what a config's network reads ([`expected_tensors`]), the strict check
//! of a checkpoint against it ([`check_tensors`]) with a guess at the wrong config value, and
//! random weights of that shape. Reading checkpoints is [`crate::nets::checkpoint`]'s (every
//! family's); its names are re-exported here.

use super::config::{ModelConfig, NormKind};
pub use crate::nets::checkpoint::{Checkpoint, Shapes, SplitMix64, Weights, WeightsError, to_device};
use std::collections::BTreeMap;

/// Every tensor the network built from `cfg` reads, with its shape, in checkpoint naming.
pub fn expected_tensors(cfg: &ModelConfig) -> BTreeMap<String, Vec<usize>> {
    let m = &cfg.model;
    let mut out = BTreeMap::new();
    let norm = |out: &mut BTreeMap<String, Vec<usize>>, p: &str, c: usize| match m.norm {
        NormKind::Identity => {}
        NormKind::Batch => {
            for k in ["weight", "bias", "running_mean", "running_var"] {
                out.insert(format!("{p}.{k}"), vec![c]);
            }
        }
        NormKind::Instance | NormKind::Group(_) => {
            out.insert(format!("{p}.weight"), vec![c]);
            out.insert(format!("{p}.bias"), vec![c]);
        }
    };
    let tfc_tdf = |out: &mut BTreeMap<String, Vec<usize>>, p: &str, in_c: usize, c: usize, f: usize| {
        let mut in_c = in_c;
        let fb = f / m.bottleneck_factor;
        for j in 0..m.num_blocks_per_scale {
            let b = format!("{p}.blocks.{j}");
            norm(out, &format!("{b}.tfc1.0"), in_c);
            out.insert(format!("{b}.tfc1.2.weight"), vec![c, in_c, 3, 3]);
            norm(out, &format!("{b}.tdf.0"), c);
            out.insert(format!("{b}.tdf.2.weight"), vec![fb, f]);
            norm(out, &format!("{b}.tdf.3"), c);
            out.insert(format!("{b}.tdf.5.weight"), vec![f, fb]);
            norm(out, &format!("{b}.tfc2.0"), c);
            out.insert(format!("{b}.tfc2.2.weight"), vec![c, c, 3, 3]);
            out.insert(format!("{b}.shortcut.weight"), vec![c, in_c, 1, 1]);
            in_c = c;
        }
    };
    let dim_c = cfg.dim_c();
    let (g, [st, sf]) = (m.growth, m.scale);
    let mut c = m.num_channels;
    let mut f = cfg.audio.dim_f / m.num_subbands;
    out.insert("first_conv.weight".into(), vec![c, dim_c, 1, 1]);
    for i in 0..m.num_scales {
        tfc_tdf(&mut out, &format!("encoder_blocks.{i}.tfc_tdf"), c, c, f);
        norm(&mut out, &format!("encoder_blocks.{i}.downscale.conv.0"), c);
        out.insert(format!("encoder_blocks.{i}.downscale.conv.2.weight"), vec![c + g, c, st, sf]);
        f /= sf;
        c += g;
    }
    tfc_tdf(&mut out, "bottleneck_block", c, c, f);
    for i in 0..m.num_scales {
        norm(&mut out, &format!("decoder_blocks.{i}.upscale.conv.0"), c);
        out.insert(format!("decoder_blocks.{i}.upscale.conv.2.weight"), vec![c, c - g, st, sf]);
        f *= sf;
        c -= g;
        tfc_tdf(&mut out, &format!("decoder_blocks.{i}.tfc_tdf"), 2 * c, c, f);
    }
    out.insert("final_conv.0.weight".into(), vec![c, c + dim_c, 1, 1]);
    out.insert("final_conv.2.weight".into(), vec![cfg.num_stems() * dim_c, c, 1, 1]);
    out
}

/// Compare a checkpoint with what `cfg` needs; one error lists every difference.
pub fn check_tensors(ckpt: &Checkpoint, cfg: &ModelConfig) -> Result<(), WeightsError> {
    crate::nets::checkpoint::compare(ckpt, &expected_tensors(cfg), |found| mismatch_hint(found, cfg))
}

/// A one-line guess at the config value that is wrong, from the shapes that fix it.
fn mismatch_hint(found: &BTreeMap<String, Vec<usize>>, cfg: &ModelConfig) -> Option<String> {
    let m = &cfg.model;
    if let Some(s) = found.get("first_conv.weight") {
        if s.len() == 4 {
            if s[1] != cfg.dim_c() && s[1] % 4 == 0 {
                return Some(format!(
                    "model expects {} subbands but config says {}",
                    s[1] / 4,
                    m.num_subbands
                ));
            }
            if s[0] != m.num_channels {
                return Some(format!(
                    "model has num_channels {} but config says {}",
                    s[0], m.num_channels
                ));
            }
        }
    }
    if let Some(s) = found.get("final_conv.2.weight") {
        if !s.is_empty() && s[0] != cfg.num_stems() * cfg.dim_c() && s[0] % cfg.dim_c() == 0 {
            return Some(format!(
                "model produces {} stems but the config lists {} ({})",
                s[0] / cfg.dim_c(),
                cfg.num_stems(),
                cfg.stems().join(", ")
            ));
        }
    }
    let scales = found.keys().filter(|k| k.ends_with("downscale.conv.2.weight")).count();
    if scales != m.num_scales && scales > 0 {
        return Some(format!("model has {scales} scales but config says num_scales {}", m.num_scales));
    }
    if let Some(s) = found.get("encoder_blocks.0.downscale.conv.2.weight") {
        if s.len() == 4 && s[0] >= s[1] && s[0] - s[1] != m.growth {
            return Some(format!("model has growth {} but config says {}", s[0] - s[1], m.growth));
        }
    }
    if let Some(s) = found.get("encoder_blocks.0.tfc_tdf.blocks.0.tdf.2.weight") {
        let f = cfg.audio.dim_f / m.num_subbands;
        if s.len() == 2 && s[1] != f {
            return Some(format!(
                "model's first frequency axis has {} bins per subband but config's dim_f/num_subbands is {}",
                s[1], f
            ));
        }
    }
    None
}

impl Checkpoint {
    /// A checkpoint of seeded random weights for `cfg` (benchmarks and tests): convolution and
    /// linear weights uniform in ±1/sqrt(fan_in) as PyTorch initialises them, norm weights 1 and
    /// biases 0, BatchNorm running mean 0 and variance 1.
    pub fn random(cfg: &ModelConfig, seed: u64) -> Self {
        Checkpoint::random_with(expected_tensors(cfg), seed)
    }
}
