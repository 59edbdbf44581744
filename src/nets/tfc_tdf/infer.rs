//! What a TFC-TDF v3 checkpoint's tensor shapes say about its config (the shapes are read by
//! [`crate::nets::read_shapes`]).
//!
//! The weights fix the network's structure (subbands, channels, growth, scales, blocks,
//! bottleneck, stem count, dim_f, the down/up-scaling factors and, partly, the norm kind).
//! They do not hold the STFT (n_fft, hop_length), the segment length (dim_t), the activation
//! or the stem names: those must come from a config, and the messages here say so exactly.

use super::checkpoint::{self, Checkpoint};
use super::config::{ActKind, AudioConfig, InferenceConfig, ModelConfig, NetConfig, NormKind};
pub use crate::nets::checkpoint::Shapes;
use std::fmt;

/// The norm kind, as far as the weights tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InferredNorm {
    /// `running_mean`/`running_var` present: `BatchNorm`.
    Batch,
    /// Affine `weight`/`bias` only: `InstanceNorm` or `GroupNorm<g>` (same tensors; the weights
    /// cannot tell which, nor the group count).
    InstanceOrGroup,
    /// No norm parameters: identity.
    Identity,
}

impl InferredNorm {
    /// Whether `norm` is consistent with what the weights say.
    pub fn admits(&self, norm: NormKind) -> bool {
        matches!(
            (self, norm),
            (InferredNorm::Batch, NormKind::Batch)
                | (InferredNorm::InstanceOrGroup, NormKind::Instance | NormKind::Group(_))
                | (InferredNorm::Identity, NormKind::Identity)
        )
    }
}

impl fmt::Display for InferredNorm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InferredNorm::Batch => "BatchNorm",
            InferredNorm::InstanceOrGroup => "InstanceNorm or GroupNorm<groups> (the weights cannot tell which)",
            InferredNorm::Identity => "none (identity)",
        })
    }
}

/// Every config value a TFC-TDF v3 checkpoint's shapes determine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferredShape {
    /// `first_conv.weight` is [num_channels, num_subbands * 2 audio channels * 2 (re, im), 1, 1].
    pub num_subbands: usize,
    pub num_channels: usize,
    /// Channels added per scale (`encoder_blocks.i.downscale.conv.2.weight` is [c + growth, c, ..]);
    /// `None` when the model has no scales (then growth does not matter).
    pub growth: Option<usize>,
    pub num_scales: usize,
    pub num_blocks_per_scale: usize,
    /// `tdf.2.weight` is [f / bottleneck_factor, f].
    pub bottleneck_factor: usize,
    /// `final_conv.2.weight` is [num_stems * dim_c, c, 1, 1].
    pub num_stems: usize,
    /// Frequency bins the network sees: f * num_subbands, f from the first TDF linear.
    pub dim_f: usize,
    /// `[time, frequency]` scaling, the downscale conv's kernel (= stride); `None` without scales.
    pub scale: Option<[usize; 2]>,
    pub norm: InferredNorm,
}

impl InferredShape {
    /// Input channels after the subband fold.
    pub fn dim_c(&self) -> usize {
        self.num_subbands * 4
    }

    /// The smallest n_fft that gives dim_f bins (n_fft/2 + 1 >= dim_f).
    pub fn min_n_fft(&self) -> usize {
        (2 * self.dim_f).saturating_sub(2).max(2)
    }

    /// The config values the weights do not determine, as config keys with a short note.
    pub fn missing(&self) -> Vec<String> {
        let mut m = vec![
            format!("audio.n_fft (at least {})", self.min_n_fft()),
            "audio.hop_length".to_string(),
            "audio.dim_t (or audio.chunk_size)".to_string(),
            "model.act (gelu, relu or elu<alpha>)".to_string(),
        ];
        if self.norm == InferredNorm::InstanceOrGroup {
            m.push("model.norm (InstanceNorm or GroupNorm<groups>)".to_string());
        }
        m.push(if self.num_stems == 1 {
            "training.instruments and training.target_instrument (the stem's name)".to_string()
        } else {
            format!("training.instruments (the names of the {} stems, in output order)", self.num_stems)
        });
        m
    }

    /// Differences between this and a config, one line each (empty when they agree).
    pub fn differences(&self, cfg: &ModelConfig) -> Vec<String> {
        let m = &cfg.model;
        let mut d = vec![];
        let mut cmp = |key: &str, found: usize, cfgv: usize| {
            if found != cfgv {
                d.push(format!("{key}: checkpoint {found}, config {cfgv}"));
            }
        };
        cmp("model.num_subbands", self.num_subbands, m.num_subbands);
        cmp("model.num_channels", self.num_channels, m.num_channels);
        cmp("model.num_scales", self.num_scales, m.num_scales);
        cmp("model.num_blocks_per_scale", self.num_blocks_per_scale, m.num_blocks_per_scale);
        cmp("model.bottleneck_factor", self.bottleneck_factor, m.bottleneck_factor);
        cmp("number of stems", self.num_stems, cfg.num_stems());
        cmp("audio.dim_f", self.dim_f, cfg.audio.dim_f);
        if let Some(g) = self.growth {
            cmp("model.growth", g, m.growth);
        }
        if let Some(s) = self.scale {
            if s != m.scale {
                d.push(format!("model.scale: checkpoint {s:?}, config {:?}", m.scale));
            }
        }
        if !self.norm.admits(m.norm) {
            d.push(format!("model.norm: checkpoint {}, config {}", self.norm, m.norm.name()));
        }
        d
    }

    /// One line: every value the weights determine.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "num_subbands {}, num_channels {}, growth {}, num_scales {}, num_blocks_per_scale {}, bottleneck_factor {}, ",
            self.num_subbands,
            self.num_channels,
            self.growth.map_or("-".into(), |g| g.to_string()),
            self.num_scales,
            self.num_blocks_per_scale,
            self.bottleneck_factor
        );
        if let Some([t, f]) = self.scale {
            s.push_str(&format!("scale [{t}, {f}], "));
        }
        s.push_str(&format!("dim_f {}, {} stem{}, norm {}", self.dim_f, self.num_stems, plural(self.num_stems), self.norm));
        s
    }

    /// A config with these shapes and placeholder values for everything else (only for
    /// computing the tensors such a network has).
    fn placeholder_config(&self) -> ModelConfig {
        ModelConfig {
            audio: AudioConfig {
                chunk_size: 0,
                dim_f: self.dim_f,
                dim_t: 0,
                hop_length: 1,
                n_fft: self.min_n_fft(),
                num_channels: 2,
                sample_rate: 44100,
            },
            model: NetConfig {
                act: ActKind::Gelu,
                bottleneck_factor: self.bottleneck_factor,
                growth: self.growth.unwrap_or(0),
                norm: match self.norm {
                    InferredNorm::Batch => NormKind::Batch,
                    InferredNorm::InstanceOrGroup => NormKind::Instance,
                    InferredNorm::Identity => NormKind::Identity,
                },
                num_blocks_per_scale: self.num_blocks_per_scale,
                num_channels: self.num_channels,
                num_scales: self.num_scales,
                num_subbands: self.num_subbands,
                scale: self.scale.unwrap_or([2, 2]),
            },
            instruments: (1..=self.num_stems).map(|i| format!("stem{i}")).collect(),
            target_instrument: None,
            inference: InferenceConfig { batch_size: 1, dim_t: None, num_overlap: None },
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Infer the shape-determined config values of a loaded checkpoint.
pub fn infer_from_checkpoint(ckpt: &Checkpoint) -> Result<InferredShape, String> {
    infer_from_shapes(&ckpt.shapes())
}

/// Infer the shape-determined config values from tensor names and shapes (prefixes such as
/// `model.` already removed). Fails when the tensors are not a TFC-TDF v3 network's.
pub fn infer_from_shapes(shapes: &Shapes) -> Result<InferredShape, String> {
    let get = |k: &str| shapes.get(k).map(Vec::as_slice);
    let Some(first) = get("first_conv.weight") else {
        let some: Vec<&str> = shapes.keys().take(3).map(String::as_str).collect();
        return Err(format!(
            "not an MDX23C (TFC-TDF v3) model: no first_conv.weight tensor (it holds {}{})",
            some.join(", "),
            if shapes.len() > 3 { ", ..." } else { "" }
        ));
    };
    let bad = |what: String| Err(format!("not a standard MDX23C (TFC-TDF v3) model: {what}"));
    let [num_channels, in_c, 1, 1] = *first else {
        return bad(format!("first_conv.weight has shape {first:?}, expected [c, subbands*4, 1, 1]"));
    };
    if in_c == 0 || in_c % 4 != 0 || num_channels == 0 {
        return bad(format!("first_conv.weight has {in_c} input channels, expected a multiple of 4 (stereo re/im per subband)"));
    }
    let num_subbands = in_c / 4;

    let num_scales = (0..).take_while(|i| shapes.contains_key(&format!("encoder_blocks.{i}.downscale.conv.2.weight"))).count();
    let (growth, scale) = match get("encoder_blocks.0.downscale.conv.2.weight") {
        None => (None, None),
        Some(&[out_c, c, st, sf]) if out_c > c && c == num_channels => (Some(out_c - c), Some([st, sf])),
        Some(s) => return bad(format!("encoder_blocks.0.downscale.conv.2.weight has shape {s:?}")),
    };

    let first_block = if num_scales > 0 { "encoder_blocks.0.tfc_tdf" } else { "bottleneck_block" };
    let num_blocks_per_scale =
        (0..).take_while(|j| shapes.contains_key(&format!("{first_block}.blocks.{j}.tfc1.2.weight"))).count();
    if num_blocks_per_scale == 0 {
        return bad(format!("no {first_block}.blocks.0.tfc1.2.weight tensor"));
    }

    let tdf = format!("{first_block}.blocks.0.tdf.2.weight");
    let Some(&[fb, f]) = get(&tdf) else {
        return bad(format!("{tdf} is missing or not 2-D"));
    };
    if fb == 0 || f < fb {
        return bad(format!("{tdf} has shape [{fb}, {f}], expected [f / bottleneck, f]"));
    }
    // f / bn == fb (integer division) at every scale: take the candidate that fits them all,
    // preferring one that divides f exactly.
    let freq_scale = scale.map_or(1, |s| s[1]).max(1);
    let fits = |bn: usize| {
        (0..num_scales).all(|i| {
            let fi = f / freq_scale.pow(i as u32);
            match get(&format!("encoder_blocks.{i}.tfc_tdf.blocks.0.tdf.2.weight")) {
                Some(&[a, b]) => b == fi && fi / bn == a,
                _ => false,
            }
        })
    };
    let candidates: Vec<usize> = (1..=f).filter(|&bn| f / bn == fb && fits(bn)).collect();
    let bottleneck_factor = match candidates.iter().find(|&&bn| f % bn == 0).or(candidates.first()) {
        Some(&bn) => bn,
        None => return bad(format!("the TDF linears' shapes do not follow one bottleneck factor ({tdf} is [{fb}, {f}])")),
    };

    let Some(&[out, c_last, 1, 1]) = get("final_conv.2.weight") else {
        return bad("final_conv.2.weight is missing or not [stems*dim_c, c, 1, 1]".into());
    };
    if out == 0 || out % in_c != 0 || c_last != num_channels {
        return bad(format!("final_conv.2.weight has shape [{out}, {c_last}, 1, 1] for {in_c} input channels"));
    }
    let num_stems = out / in_c;

    let norm_prefix = format!("{first_block}.blocks.0.tfc1.0");
    let norm = if shapes.contains_key(&format!("{norm_prefix}.running_mean")) {
        InferredNorm::Batch
    } else if shapes.contains_key(&format!("{norm_prefix}.weight")) {
        InferredNorm::InstanceOrGroup
    } else {
        InferredNorm::Identity
    };

    let shape = InferredShape {
        num_subbands,
        num_channels,
        growth,
        num_scales,
        num_blocks_per_scale,
        bottleneck_factor,
        num_stems,
        dim_f: f * num_subbands,
        scale,
        norm,
    };
    // Every tensor must be what a network of these values has, or the inference is not sound.
    let expected = checkpoint::expected_tensors(&shape.placeholder_config());
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(k, s)| shapes.get(*k) != Some(*s))
        .map(|(k, s)| match shapes.get(k) {
            Some(found) => format!("{k} should be {s:?}, is {found:?}"),
            None => format!("{k} {s:?} is missing"),
        })
        .chain(shapes.keys().filter(|k| !expected.contains_key(*k)).map(|k| format!("unexpected {k}")))
        .take(3)
        .collect();
    if !wrong.is_empty() {
        return bad(format!("its tensors do not form one consistent network: {}", wrong.join("; ")));
    }
    Ok(shape)
}
