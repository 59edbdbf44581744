//! BS-RoFormer and Mel-Band RoFormer (MSST's `BSRoformer`, `MelBandRoformer`): the config
//! ([`config`]), the band layouts ([`bands`]: contiguous or from a mel filter bank), the
//! expected checkpoint tensors and the strict check ([`checkpoint`]), the network over candle
//! tensors ([`graph`]), and the separation model around it ([`model`]: host STFT, band
//! packing, network, mask multiply, iSTFT; [`Roformer`] builds it). Checkpoints are read by
//! [`crate::nets::checkpoint`]'s pickle-free reader. [`FAMILY`] registers both variants
//! ([`crate::nets::FAMILIES`]); [`RoformerConfig`] is their [`NetSpec`].

pub mod bands;
pub mod checkpoint;
pub mod config;
pub mod graph;
pub mod model;

pub use bands::Bands;
pub use config::{ConfigError, RoformerConfig, Variant};
pub use model::{Roformer, RoformerModel};

use crate::nets::{Checkpoint, Family, GenericMemory, ModelBuilder, ModelError, ModelInfo, NetSpec, Segments, WeightsError};
use std::sync::Arc;

/// The family's display name.
pub const NAME: &str = "RoFormer (BS-/Mel-Band)";

/// Shortest chunk offered for the plugin's segment setting, in STFT frames (about 1 s at
/// 44.1 kHz with hop 441).
pub const MIN_SEGMENT: usize = 101;

/// Both RoFormer variants in the registry ([`crate::nets::FAMILIES`]). Their checkpoints say
/// nothing about the STFT or the bands, so a RoFormer needs its config: the tensors only tell
/// that it is one, and how many stems it has ([`RoformerShapes`]).
pub static FAMILY: Family = Family {
    name: NAME,
    claims: |keys| keys.iter().any(|k| k == "freqs_per_bands" || k == "num_bands"),
    from_yaml: |text| Ok(Arc::new(RoformerConfig::from_yaml_str(text)?)),
    infer: |shapes| Ok(Box::new(RoformerShapes::of(shapes)?)),
};

/// What a checkpoint's tensors say of a RoFormer: that it is one (both variants name their
/// modules `band_split`, `layers` and `mask_estimators`: MSST's `bs_roformer.py`,
/// `mel_band_roformer.py`) and its stem count (one mask estimator a stem); with a config, every
/// difference from that config's tensors.
#[derive(Debug, Clone)]
pub struct RoformerShapes {
    shapes: crate::nets::Shapes,
    num_stems: usize,
}

impl RoformerShapes {
    /// The tensors as a RoFormer's, or why they are not one.
    pub fn of(shapes: &crate::nets::Shapes) -> Result<Self, String> {
        let has = |p: &str| shapes.keys().any(|k| k.starts_with(p));
        if !(has("band_split.") && has("layers.") && has("mask_estimators.")) {
            return Err("not a RoFormer (no band_split, layers and mask_estimators tensors)".into());
        }
        let estimators: std::collections::BTreeSet<&str> =
            shapes.keys().filter_map(|k| k.strip_prefix("mask_estimators.")?.split('.').next()).collect();
        Ok(RoformerShapes { shapes: shapes.clone(), num_stems: estimators.len() })
    }
}

impl crate::nets::Inferred for RoformerShapes {
    fn summary(&self) -> String {
        format!("a {NAME} network with {} stem(s), {} tensors", self.num_stems, self.shapes.len())
    }

    fn missing(&self) -> Vec<String> {
        vec!["the whole config (model: the variant, its bands, dim, depth, heads, STFT; audio.chunk_size; training.instruments): a RoFormer's tensors do not give them".into()]
    }

    fn missing_short(&self) -> Vec<&'static str> {
        vec!["its RoFormer config"]
    }

    fn num_stems(&self) -> usize {
        self.num_stems
    }

    /// The tensors the config's network reads against these: counts of the missing,
    /// unexpected and mis-shaped ones, each with its first name.
    fn differences(&self, net: &dyn NetSpec) -> Vec<String> {
        let Some(cfg) = net.as_any().downcast_ref::<RoformerConfig>() else {
            return vec![format!("the weights are a {NAME} network, the config is for {}", net.family())];
        };
        let expected = checkpoint::expected_tensors(cfg);
        let found = &self.shapes;
        let first = |v: &[String]| v.first().cloned().unwrap_or_default();
        let dims = |s: &[usize]| format!("[{}]", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
        let missing: Vec<String> = expected.keys().filter(|k| !found.contains_key(*k)).cloned().collect();
        let unexpected: Vec<String> = found.keys().filter(|k| !expected.contains_key(*k)).cloned().collect();
        let misshaped: Vec<String> = expected
            .iter()
            .filter_map(|(k, s)| found.get(k).filter(|f| *f != s).map(|f| format!("{k}: config {}, checkpoint {}", dims(s), dims(f))))
            .collect();
        let mut d = vec![];
        if !missing.is_empty() {
            d.push(format!("{} {} tensors missing ({}, ...)", missing.len(), cfg.variant_name(), first(&missing)));
        }
        if !unexpected.is_empty() {
            d.push(format!("{} unexpected tensors ({}, ...)", unexpected.len(), first(&unexpected)));
        }
        if !misshaped.is_empty() {
            d.push(format!("{} mis-shaped ({}, ...)", misshaped.len(), first(&misshaped)));
        }
        d
    }
}

impl RoformerConfig {
    fn variant_name(&self) -> &'static str {
        match self.model.variant {
            Variant::BandSplit { .. } => "BS-RoFormer",
            Variant::MelBand { .. } => "Mel-Band RoFormer",
        }
    }

    fn bands(&self) -> usize {
        match &self.model.variant {
            Variant::BandSplit { freqs_per_bands } => freqs_per_bands.len(),
            Variant::MelBand { num_bands, .. } => *num_bands,
        }
    }

    /// The config with a chunk of `segment` STFT frames.
    fn with_segment(&self, segment: usize) -> RoformerConfig {
        let mut cfg = self.clone();
        cfg.chunk_size = self.segment_chunk(segment);
        cfg
    }
}

impl NetSpec for RoformerConfig {
    fn family(&self) -> &'static str {
        self.variant_name()
    }

    fn info(&self) -> ModelInfo {
        model::info(self)
    }

    fn configured_overlap(&self) -> Option<usize> {
        Some(self.num_overlap).filter(|&k| k >= 1)
    }

    /// Chunks of [`MIN_SEGMENT`] STFT frames up to the config's own, in eighths of it.
    fn segments(&self) -> Segments {
        let default = self.frames();
        let step = (default / 8).max(1);
        let mut choices: Vec<usize> = (1..8).map(|i| i * step + 1).filter(|&d| d >= MIN_SEGMENT && d < default).collect();
        choices.push(default);
        Segments { unit: "STFT frames", default, choices }
    }

    fn segment_chunk(&self, segment: usize) -> usize {
        (segment.max(1) - 1) * self.model.stft_hop_length
    }

    fn pick_segment(&self, setting: usize) -> Option<usize> {
        (setting >= MIN_SEGMENT.min(self.frames()) && setting < self.frames()).then_some(setting)
    }

    /// Linears and attention products of one chunk (norms, rotary, softmax and the STFT are
    /// small beside them). The band-split and mask-estimator linears act on their own band of
    /// every frame; the transformers' linears on every (frame, band) token.
    fn macs_per_chunk(&self, chunk: usize) -> u64 {
        let m = &self.model;
        let t = (chunk / m.stft_hop_length + 1) as u64;
        let nb = self.bands() as u64;
        let inner = (m.heads * m.dim_head) as u64;
        let (mut per_band, mut per_token) = (0u64, 0u64);
        for (name, s) in checkpoint::expected_tensors(self) {
            if s.len() == 2 && name.ends_with(".weight") {
                let macs = (s[0] * s[1]) as u64;
                if name.starts_with("layers.") { per_token += macs } else { per_band += macs }
            }
        }
        // Attention: q k^T and the weighted sum of v, over frames (per band) and over bands
        // (per frame).
        let attention = |seq: u64, seqs: u64| 2 * seqs * seq * seq * inner;
        let time = m.depth as u64 * m.time_transformer_depth as u64 * attention(t, nb);
        let freq = m.depth as u64 * m.freq_transformer_depth as u64 * attention(nb, t);
        per_band * t + per_token * t * nb + time + freq
    }

    fn parameter_count(&self) -> usize {
        checkpoint::parameter_count(self)
    }

    fn generic_memory(&self, _chunk: usize, _batch: usize, _dtype_bytes: usize) -> Option<GenericMemory> {
        None
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let m = &self.model;
        let bands = match &m.variant {
            Variant::BandSplit { freqs_per_bands } => format!("{} bands", freqs_per_bands.len()),
            Variant::MelBand { num_bands, sample_rate } => format!("{num_bands} mel bands at {sample_rate} Hz"),
        };
        vec![
            (
                "chunk",
                format!(
                    "{} samples = {:.2} s (n_fft {}, hop {}, {} frames)",
                    self.chunk_size,
                    self.chunk_size as f64 / self.sample_rate as f64,
                    m.stft_n_fft,
                    m.stft_hop_length,
                    self.frames()
                ),
            ),
            (
                "network",
                format!(
                    "{}: {bands}, dim {}, depth {} (time {} + freq {}{}), {} heads x {}, mask MLP depth {}{}",
                    self.variant_name(),
                    m.dim,
                    m.depth,
                    m.time_transformer_depth,
                    m.freq_transformer_depth,
                    if m.linear_transformer_depth > 0 { format!(" + linear {}", m.linear_transformer_depth) } else { String::new() },
                    m.heads,
                    m.dim_head,
                    m.mask_estimator_depth,
                    if m.skip_connection { ", skip connections" } else { "" }
                ),
            ),
        ]
    }

    fn expected_tensors(&self) -> crate::nets::Shapes {
        checkpoint::expected_tensors(self).into_iter().collect()
    }

    fn check_tensors(&self, ckpt: &Checkpoint) -> Result<(), WeightsError> {
        checkpoint::check_tensors(ckpt, self)
    }

    fn open(&self, path: &std::path::Path, segment: Option<usize>) -> Result<Box<dyn ModelBuilder>, ModelError> {
        let cfg = match segment {
            Some(s) => self.with_segment(s),
            None => self.clone(),
        };
        Ok(Box::new(Roformer::open(cfg, path)?))
    }

    fn random(&self, seed: u64) -> Result<Box<dyn ModelBuilder>, ModelError> {
        Ok(Box::new(Roformer::random(self.clone(), seed)))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
