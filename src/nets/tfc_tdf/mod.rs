//! TFC-TDF v3 (MDX23C): its config ([`config`]), checkpoint reading and the strict shape check
//! ([`checkpoint`]), the network written once over the backends ([`graph`]), and the separation
//! model around it ([`model`]: STFT, network, iSTFT; [`TfcTdf`] builds it), what a checkpoint's
//! shapes say without a config ([`infer`]), and the family's face to the layers above
//! ([`FAMILY`], [`crate::nets::NetSpec`] for [`ModelConfig`]). Nothing here knows about the
//! plugin framework or audio files.

pub mod checkpoint;
pub mod config;
pub mod graph;
pub mod infer;
pub mod model;

pub use crate::nets::family::GenericMemory;
pub use checkpoint::{Checkpoint, SplitMix64, Weights, WeightsError};
pub use config::{ActKind, ConfigError, ModelConfig, NormKind};
pub use model::{Net, Network, TfcTdf, network};

use crate::nets::family::{Family, Inferred, NetSpec, Segments};
use crate::nets::{ModelBuilder, ModelError, ModelInfo, Schedule};
use std::sync::Arc;

/// The family's display name.
pub const NAME: &str = "MDX23C (TFC-TDF v3)";

/// TFC-TDF v3 in the registry ([`crate::nets::FAMILIES`]).
pub static FAMILY: Family = Family {
    name: NAME,
    claims: |keys| keys.iter().any(|k| ["num_subbands", "growth", "bottleneck_factor", "num_blocks_per_scale"].contains(&k.as_str())),
    from_yaml: |text| Ok(Arc::new(ModelConfig::from_yaml_str(text)?)),
    infer: |shapes| Ok(Box::new(infer::infer_from_shapes(shapes)?)),
};

/// Smallest segment (STFT frames) offered and accepted, unless the config's own is smaller.
pub const MIN_SEGMENT: usize = 32;

impl ModelConfig {
    /// The config's own segment: STFT frames of its chunk.
    pub fn default_dim_t(&self) -> usize {
        self.audio.chunk_size / self.audio.hop_length + 1
    }
}

impl NetSpec for ModelConfig {
    fn family(&self) -> &'static str {
        NAME
    }

    fn info(&self) -> ModelInfo {
        ModelInfo {
            sample_rate: self.audio.sample_rate,
            stems: self.stems(),
            complement: self.complement_stem(),
            schedule: Schedule::Chunks { chunk: self.audio.chunk_size, default_overlap: self.default_overlap() },
        }
    }

    fn configured_overlap(&self) -> Option<usize> {
        self.inference.num_overlap.filter(|&k| k >= 1)
    }

    /// Segments in STFT frames from [`MIN_SEGMENT`] up to the config's own that the network
    /// accepts; at most about a dozen (multiples of 32 when there are more).
    fn segments(&self) -> Segments {
        let default = self.default_dim_t();
        let ok = |d: usize| self.check_chunk(self.chunk_for_dim_t(d)).is_ok();
        let mut choices: Vec<usize> = (MIN_SEGMENT.min(default)..=default).filter(|&d| ok(d)).collect();
        if choices.len() > 12 {
            choices.retain(|d| d % 32 == 0 || *d == default);
        }
        Segments { unit: "STFT frames", default, choices }
    }

    fn segment_chunk(&self, segment: usize) -> usize {
        self.chunk_for_dim_t(segment)
    }

    /// From the config's own segment down to [`MIN_SEGMENT`] frames, where the network takes the
    /// chunk; other values mean the default.
    fn pick_segment(&self, setting: usize) -> Option<usize> {
        let default = self.default_dim_t();
        let usable = setting >= MIN_SEGMENT.min(default) && setting < default;
        (usable && self.check_chunk(self.chunk_for_dim_t(setting)).is_ok()).then_some(setting)
    }

    fn macs_per_chunk(&self, chunk: usize) -> u64 {
        ModelConfig::macs_per_chunk(self, chunk)
    }

    fn parameter_count(&self) -> usize {
        ModelConfig::parameter_count(self)
    }

    fn generic_memory(&self, chunk: usize, batch: usize, dtype_bytes: usize) -> Option<GenericMemory> {
        Some(ModelConfig::generic_memory(self, chunk, batch, dtype_bytes))
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let (a, m) = (&self.audio, &self.model);
        let chunk = a.chunk_size;
        vec![
            (
                "chunk",
                format!(
                    "{chunk} samples = {:.2} s (n_fft {}, hop {}, dim_f {}, dim_t {})",
                    chunk as f64 / a.sample_rate as f64,
                    a.n_fft,
                    a.hop_length,
                    a.dim_f,
                    chunk / a.hop_length + 1
                ),
            ),
            (
                "network",
                format!(
                    "{NAME}: {} subbands, {} scales x {} blocks, {} channels (+{} per scale), bottleneck {}, {}, {}",
                    m.num_subbands,
                    m.num_scales,
                    m.num_blocks_per_scale,
                    m.num_channels,
                    m.growth,
                    m.bottleneck_factor,
                    m.norm.name(),
                    m.act.name()
                ),
            ),
        ]
    }

    fn expected_tensors(&self) -> crate::nets::Shapes {
        checkpoint::expected_tensors(self)
    }

    fn check_tensors(&self, ckpt: &Checkpoint) -> Result<(), WeightsError> {
        checkpoint::check_tensors(ckpt, self)
    }

    fn open(&self, path: &std::path::Path, segment: Option<usize>) -> Result<Box<dyn ModelBuilder>, ModelError> {
        Ok(Box::new(TfcTdf::open(self.clone(), path, segment)?))
    }

    fn random(&self, seed: u64) -> Result<Box<dyn ModelBuilder>, ModelError> {
        Ok(Box::new(TfcTdf::from_checkpoint(self.clone(), Checkpoint::random(self, seed), None)?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Inferred for infer::InferredShape {
    fn summary(&self) -> String {
        infer::InferredShape::summary(self)
    }

    fn missing(&self) -> Vec<String> {
        infer::InferredShape::missing(self)
    }

    fn missing_short(&self) -> Vec<&'static str> {
        let mut needs = vec!["n_fft", "hop_length", "dim_t", "act"];
        if self.norm == infer::InferredNorm::InstanceOrGroup {
            needs.push("norm");
        }
        needs
    }

    fn num_stems(&self) -> usize {
        self.num_stems
    }

    fn differences(&self, net: &dyn NetSpec) -> Vec<String> {
        match net.as_any().downcast_ref::<ModelConfig>() {
            Some(cfg) => infer::InferredShape::differences(self, cfg),
            None => vec![format!("the weights are an {NAME} network, the config is for {}", net.family())],
        }
    }
}

impl ModelConfig {
    /// Multiply-adds of one forward pass over a chunk of `chunk` samples (FLOPs = 2x this).
    /// Counts convolutions, transposed convolutions and linears (norms and acts are negligible).
    pub fn macs_per_chunk(&self, chunk: usize) -> u64 {
        let m = &self.model;
        let t0 = (chunk / self.audio.hop_length + 1) as u64;
        let dim_c = self.dim_c() as u64;
        let (g, bn) = (m.growth as u64, m.bottleneck_factor as u64);
        let (st, sf) = (m.scale[0] as u64, m.scale[1] as u64);
        let mut c = m.num_channels as u64;
        let mut f = (self.audio.dim_f / m.num_subbands) as u64;
        let mut t = t0;
        let tfc_tdf = |in_c: u64, c: u64, t: u64, f: u64| -> u64 {
            let mut macs = 0;
            let mut in_c = in_c;
            for _ in 0..m.num_blocks_per_scale {
                let hw = t * f;
                macs += hw * in_c * c * 9 // tfc1
                    + c * t * f * (f / bn) * 2 // tdf linears
                    + hw * c * c * 9 // tfc2
                    + hw * in_c * c; // shortcut
                in_c = c;
            }
            macs
        };
        let mut macs = t0 * f * dim_c * c; // first_conv
        for _ in 0..m.num_scales {
            macs += tfc_tdf(c, c, t, f);
            t /= st;
            f /= sf;
            macs += t * f * c * (c + g) * st * sf; // downscale
            c += g;
        }
        macs += tfc_tdf(c, c, t, f);
        for _ in 0..m.num_scales {
            macs += t * f * c * (c - g) * st * sf; // upscale
            t *= st;
            f *= sf;
            c -= g;
            macs += tfc_tdf(2 * c, c, t, f);
        }
        macs += t0 * f * ((c + dim_c) * c + c * self.num_stems() as u64 * dim_c); // final_conv
        macs
    }

    /// Parameter count of the network this config describes (BatchNorm running stats included).
    pub fn parameter_count(&self) -> usize {
        checkpoint::expected_tensors(self).values().map(|s| s.iter().product::<usize>()).sum()
    }
}

/// Live activations at the generic backend's peak, in units of one full-resolution activation
/// of `num_channels` channels in the compute dtype: the first decoder block at full resolution,
/// inside its first norm (`backend::generic::norm_act_nchw`, statistics in f32): the block's
/// input (the concatenation with the skip, 2 units), its shortcut (1), and two f32 tensors of
/// the input's 2 x `num_channels` channels while the norm runs (the input in f32 and the
/// centred input, then the centred input and its square, ...: 2 x 4 units in half precision,
/// 2 x 2 in f32). The CPU measurement in `tests/generic_conv.rs` checks it.
fn peak_units(dtype_bytes: u64) -> u64 {
    if dtype_bytes < 4 { 2 + 1 + 2 * 4 } else { 2 + 1 + 2 * 2 }
}

impl ModelConfig {
    /// Memory the generic backend needs for `batch` chunks of `chunk` samples in a dtype of
    /// `dtype_bytes` bytes: weights, the activations live at the peak, and the 3x3 convolution
    /// temporaries (which peak at another moment: the sum is an upper bound). Metal runs this
    /// backend (f16 by default); `mdx-stems info` prints it.
    pub fn generic_memory(&self, chunk: usize, batch: usize, dtype_bytes: usize) -> GenericMemory {
        let m = &self.model;
        let t = chunk / self.audio.hop_length + 1;
        let f = self.audio.dim_f / m.num_subbands;
        let unit = (batch * m.num_channels * t * f * dtype_bytes) as u64;
        // The widest band temporaries: scale i has (c0 + i g) channels (twice that into the
        // decoder's first 3x3 convolution) on t / st^i x f / sf^i.
        let mut conv = 0u64;
        let (mut ti, mut fi) = (t, f);
        for i in 0..=m.num_scales {
            let c = m.num_channels + i * m.growth;
            for cin in [c, 2 * c] {
                let rows = crate::backend::generic::conv_band_rows(batch, cin, ti, fi);
                let (operand, padded) = (9 * batch * cin * rows * (fi + 2), batch * cin * (rows + 2) * (fi + 2));
                let product = 2 * batch * c * rows * (fi + 2);
                conv = conv.max(((operand + padded + product) * dtype_bytes) as u64);
            }
            ti /= m.scale[0];
            fi /= m.scale[1];
        }
        GenericMemory {
            weights: (self.parameter_count() * dtype_bytes) as u64,
            activations: peak_units(dtype_bytes as u64) * unit,
            conv_temporaries: conv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// InstVoc HQ's config (hop 1024, chunk 261120 = 255 hops, 5 scales of 2 in time) through
    /// the neutral interface: its own segment is 256 frames, the segments offered are the
    /// multiples of 2^5 = 32 frames from 32 to 256, a setting picks one of them below the
    /// default (anything else means the default), and a segment of d frames is 1024 (d - 1)
    /// samples.
    #[test]
    fn segments_of_the_full_size_config() {
        let net = crate::nets::from_yaml_str(include_str!("../../../assets/uvr-mdxc/model_2_stem_full_band_8k.yaml")).unwrap();
        let s = net.segments();
        assert_eq!(s.default, 256);
        assert_eq!(s.choices, [32, 64, 96, 128, 160, 192, 224, 256]);
        assert_eq!(net.segment_chunk(64), 64512);
        assert_eq!(net.info().unit_len(), 261120);
        assert_eq!(net.configured_overlap(), Some(8));
        for (setting, picked) in [(64, Some(64)), (32, Some(32)), (224, Some(224)), (256, None), (0, None), (48, None), (16, None), (288, None)] {
            assert_eq!(net.pick_segment(setting), picked, "setting {setting}");
        }
    }

    /// The full-size InstVoc HQ network in f16 (what `mdx-stems info` prints for Metal): the
    /// peak holds 11 full-resolution activations of 128 channels x 256 frames x 1024 bins, and
    /// the convolution temporaries stay within one band's im2col (plus the smaller padded
    /// input and product), far under conv2d's whole-image im2col.
    #[test]
    fn generic_memory_of_the_full_size_model() {
        let cfg = ModelConfig::from_yaml_str(include_str!("../../../assets/uvr-mdxc/model_2_stem_full_band_8k.yaml")).unwrap();
        let chunk = cfg.audio.chunk_size;
        let g = cfg.generic_memory(chunk, 1, 2);
        let unit = 128 * 256 * 1024 * 2u64;
        assert_eq!(g.activations, 11 * unit);
        assert_eq!(g.weights, 2 * cfg.parameter_count() as u64);
        let band = (crate::backend::generic::CONV_BAND_ELEMENTS * 2) as u64;
        assert!(g.conv_temporaries > band / 2 && g.conv_temporaries <= band * 3 / 2, "{}", g.conv_temporaries);
        let im2col = 9 * 2 * unit; // conv2d's on Metal for the first decoder conv (256 channels in)
        assert!(g.conv_temporaries * 10 < im2col);
        let b4 = cfg.generic_memory(chunk, 4, 2);
        assert_eq!(b4.activations, 4 * g.activations);
        eprintln!(
            "full-size f16 on Metal: batch 1 {:.0} MB (weights {:.0}, activations {:.0}, conv {:.0}); batch 4 {:.0} MB; conv2d's im2col alone {:.0} MB",
            g.total() as f64 / 1e6,
            g.weights as f64 / 1e6,
            g.activations as f64 / 1e6,
            g.conv_temporaries as f64 / 1e6,
            b4.total() as f64 / 1e6,
            im2col as f64 / 1e6
        );
    }
}
