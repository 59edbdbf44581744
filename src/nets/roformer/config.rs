//! The RoFormer config: MSST's YAML (`audio`, `model`, `training`, `inference`) for both
//! variants, read strictly. The `model` section holds exactly MSST's constructor arguments:
//! every key is known (an unknown one is an error naming it), keys that only matter for
//! training are accepted and ignored, and values this implementation does not compute
//! (a mono model, a normalised STFT, PoPE, ...) are refused by name. The variant comes from the
//! keys: `freqs_per_bands` is BS-RoFormer, `num_bands` is Mel-Band RoFormer.
//!
//! The YAML is walked as a tree (not through serde structs) so that PyYAML's
//! `!!python/tuple` sequences read as lists and every key can be checked.

use crate::nets::tfc_tdf::config::complement_name;
use serde_norway::Value;
use std::path::Path;

pub use crate::nets::family::ConfigError;

/// Which of MSST's two RoFormers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variant {
    /// `BSRoformer`: fixed contiguous bands of `freqs_per_bands` STFT bins.
    BandSplit { freqs_per_bands: Vec<usize> },
    /// `MelBandRoformer`: `num_bands` overlapping bands from a mel filter bank at `sample_rate`.
    MelBand { num_bands: usize, sample_rate: u32 },
}

/// The `model:` section, as the network uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    pub variant: Variant,
    pub dim: usize,
    pub depth: usize,
    pub num_stems: usize,
    pub time_transformer_depth: usize,
    pub freq_transformer_depth: usize,
    pub linear_transformer_depth: usize,
    pub dim_head: usize,
    pub heads: usize,
    pub stft_n_fft: usize,
    pub stft_hop_length: usize,
    pub mask_estimator_depth: usize,
    pub mlp_expansion_factor: usize,
    pub skip_connection: bool,
    /// Zero the DC bin of the masked spectrogram before the iSTFT (MSST's default).
    pub zero_dc: bool,
    /// Mel-Band: the iSTFT returns the chunk's length (else hop * (chunk / hop) samples).
    pub match_input_audio_length: bool,
}

/// A validated RoFormer config.
#[derive(Debug, Clone, PartialEq)]
pub struct RoformerConfig {
    pub model: NetConfig,
    /// The rate the model works at (`audio.sample_rate`).
    pub sample_rate: u32,
    /// Samples per chunk (`inference.chunk_size` where set, as MSST's `demix`, else
    /// `audio.chunk_size`).
    pub chunk_size: usize,
    /// `training.instruments`.
    pub instruments: Vec<String>,
    /// `training.target_instrument`.
    pub target_instrument: Option<String>,
    /// `inference.num_overlap` (default 2 as MSST).
    pub num_overlap: usize,
    /// `inference.batch_size` (default 1).
    pub batch_size: usize,
}

/// Model keys that do not change inference: accepted, ignored.
const IGNORED: &[&str] = &[
    "attn_dropout",
    "ff_dropout",
    "flash_attn",
    "use_torch_checkpoint",
    "multi_stft_resolution_loss_weight",
    "multi_stft_resolutions_window_sizes",
    "multi_stft_hop_size",
    "multi_stft_normalized",
    "multi_stft_window_fn",
    "dim_freqs_in",
];

/// Model keys read (each variant adds its band key).
const USED: &[&str] = &[
    "dim",
    "depth",
    "stereo",
    "num_stems",
    "time_transformer_depth",
    "freq_transformer_depth",
    "linear_transformer_depth",
    "dim_head",
    "heads",
    "stft_n_fft",
    "stft_hop_length",
    "stft_win_length",
    "stft_normalized",
    "stft_window_fn",
    "zero_dc",
    "mask_estimator_depth",
    "mlp_expansion_factor",
    "skip_connection",
    "use_pope",
    "match_input_audio_length",
];

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        v => v,
    }
}

/// A mapping section's entries by key.
struct Section<'a> {
    name: &'static str,
    map: Option<&'a serde_norway::Mapping>,
}

impl<'a> Section<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key)).map(untag).filter(|v| !v.is_null())
    }
    fn usize(&self, key: &str) -> Result<Option<usize>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| format!("{}.{key} must be a whole number", self.name)),
        }
    }
    fn need(&self, key: &str) -> Result<usize, String> {
        self.usize(key)?.ok_or_else(|| format!("missing required key `{}.{key}`", self.name))
    }
    fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| format!("{}.{key} must be true or false", self.name)),
        }
    }
    fn string(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| v.as_str().map(str::to_string))
    }
}

impl RoformerConfig {
    /// Read and validate a YAML config file.
    pub fn from_yaml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parse and validate YAML text.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, Path::new("<string>"))
    }

    /// Whether YAML text describes a RoFormer (its `model` section has `freqs_per_bands` or
    /// `num_bands`), without validating it.
    pub fn is_roformer_yaml(text: &str) -> bool {
        let Ok(v) = serde_norway::from_str::<Value>(text) else { return false };
        let m = v.get("model").and_then(|m| m.as_mapping());
        m.is_some_and(|m| m.contains_key("freqs_per_bands") || m.contains_key("num_bands"))
    }

    fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let root: Value =
            serde_norway::from_str(text).map_err(|e| ConfigError::Yaml { path: path.to_path_buf(), msg: e.to_string() })?;
        Self::from_value(&root).map_err(|msg| ConfigError::InvalidIn { path: path.to_path_buf(), msg })
    }

    fn from_value(root: &Value) -> Result<Self, String> {
        let section = |name: &'static str| -> Result<Section<'_>, String> {
            match root.get(name).map(untag) {
                None | Some(Value::Null) => Ok(Section { name, map: None }),
                Some(Value::Mapping(m)) => Ok(Section { name, map: Some(m) }),
                Some(_) => Err(format!("`{name}` must be a mapping")),
            }
        };
        let (audio, model, training, inference) = (section("audio")?, section("model")?, section("training")?, section("inference")?);
        let Some(mmap) = model.map else { return Err("missing the `model` section".into()) };

        let band_split = model.get("freqs_per_bands");
        let mel = model.usize("num_bands")?;
        let variant = match (band_split, mel) {
            (Some(_), Some(_)) => return Err("model has both `freqs_per_bands` (BS-RoFormer) and `num_bands` (Mel-Band RoFormer)".into()),
            (None, None) => return Err("model has neither `freqs_per_bands` (BS-RoFormer) nor `num_bands` (Mel-Band RoFormer)".into()),
            (Some(v), None) => {
                let list = v.as_sequence().ok_or("model.freqs_per_bands must be a list")?;
                let freqs = list
                    .iter()
                    .map(|x| untag(x).as_u64().filter(|&n| n > 0).map(|n| n as usize))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("model.freqs_per_bands must list positive whole numbers")?;
                Variant::BandSplit { freqs_per_bands: freqs }
            }
            (None, Some(n)) => {
                let sr = model.usize("sample_rate")?.unwrap_or(44100);
                Variant::MelBand { num_bands: n, sample_rate: sr as u32 }
            }
        };
        let is_mel = matches!(variant, Variant::MelBand { .. });

        // Every model key must be known.
        let band_keys: &[&str] = if is_mel { &["num_bands", "sample_rate"] } else { &["freqs_per_bands"] };
        let unknown: Vec<String> = mmap
            .keys()
            .map(|k| k.as_str().map(str::to_string).unwrap_or_else(|| "<non-text key>".into()))
            .filter(|k| !USED.contains(&k.as_str()) && !IGNORED.contains(&k.as_str()) && !band_keys.contains(&k.as_str()))
            .collect();
        if !unknown.is_empty() {
            let kind = if is_mel { "Mel-Band RoFormer" } else { "BS-RoFormer" };
            return Err(format!("unknown {kind} model keys: {}", unknown.join(", ")));
        }

        // Values this implementation does not compute.
        let mut refused = vec![];
        if model.bool("stereo")? != Some(true) {
            refused.push("stereo: false (mono models are not supported)".to_string());
        }
        if model.bool("stft_normalized")? == Some(true) {
            refused.push("stft_normalized: true".into());
        }
        if model.get("stft_window_fn").is_some() {
            refused.push("stft_window_fn (only the Hann window)".into());
        }
        if model.bool("use_pope")? == Some(true) {
            refused.push("use_pope: true".into());
        }
        if model.get("match_input_audio_length").is_some() && !is_mel {
            refused.push("match_input_audio_length (a Mel-Band RoFormer key)".into());
        }
        if model.get("zero_dc").is_some() && model.bool("zero_dc").is_err() {
            refused.push("zero_dc must be true or false".into());
        }
        let n_fft = model.usize("stft_n_fft")?.unwrap_or(2048);
        let hop = model.usize("stft_hop_length")?.unwrap_or(512);
        let win = model.usize("stft_win_length")?.unwrap_or(2048);
        if win != n_fft {
            refused.push(format!("stft_win_length {win} differs from stft_n_fft {n_fft}"));
        }
        if !refused.is_empty() {
            return Err(format!("model values not supported: {}", refused.join("; ")));
        }

        let net = NetConfig {
            variant,
            dim: model.need("dim")?,
            depth: model.need("depth")?,
            num_stems: model.usize("num_stems")?.unwrap_or(1),
            time_transformer_depth: model.usize("time_transformer_depth")?.unwrap_or(2),
            freq_transformer_depth: model.usize("freq_transformer_depth")?.unwrap_or(2),
            linear_transformer_depth: model.usize("linear_transformer_depth")?.unwrap_or(0),
            dim_head: model.usize("dim_head")?.unwrap_or(64),
            heads: model.usize("heads")?.unwrap_or(8),
            stft_n_fft: n_fft,
            stft_hop_length: hop,
            mask_estimator_depth: model.usize("mask_estimator_depth")?.unwrap_or(if is_mel { 1 } else { 2 }),
            mlp_expansion_factor: model.usize("mlp_expansion_factor")?.unwrap_or(4),
            skip_connection: model.bool("skip_connection")?.unwrap_or(false),
            zero_dc: model.bool("zero_dc")?.unwrap_or(true),
            match_input_audio_length: model.bool("match_input_audio_length")?.unwrap_or(false),
        };
        let instruments: Vec<String> = match training.get("instruments") {
            Some(v) => v
                .as_sequence()
                .and_then(|s| s.iter().map(|x| untag(x).as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
                .ok_or("training.instruments must be a list of names")?,
            None => return Err("missing required key `training.instruments`".into()),
        };
        let cfg = RoformerConfig {
            model: net,
            sample_rate: audio.usize("sample_rate")?.unwrap_or(44100) as u32,
            chunk_size: match inference.usize("chunk_size")? {
                Some(c) => c,
                None => audio.need("chunk_size")?,
            },
            instruments,
            target_instrument: training.string("target_instrument").filter(|s| !s.is_empty()),
            num_overlap: inference.usize("num_overlap")?.unwrap_or(2).max(1),
            batch_size: inference.usize("batch_size")?.unwrap_or(1).max(1),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let m = &self.model;
        let n_fft = m.stft_n_fft;
        for (k, v) in [("dim", m.dim), ("depth", m.depth), ("dim_head", m.dim_head), ("heads", m.heads), ("num_stems", m.num_stems), ("stft_hop_length", m.stft_hop_length), ("mask_estimator_depth", m.mask_estimator_depth), ("mlp_expansion_factor", m.mlp_expansion_factor)] {
            if v == 0 {
                return Err(format!("model.{k} must be positive"));
            }
        }
        if n_fft < 4 || n_fft % 2 != 0 {
            return Err(format!("model.stft_n_fft must be even, found {n_fft}"));
        }
        if m.dim_head % 2 != 0 {
            return Err(format!("model.dim_head must be even (rotary embeddings), found {}", m.dim_head));
        }
        if m.time_transformer_depth == 0 || m.freq_transformer_depth == 0 {
            return Err("model.time_transformer_depth and freq_transformer_depth must be positive".into());
        }
        match &m.variant {
            Variant::BandSplit { freqs_per_bands } => {
                let total: usize = freqs_per_bands.iter().sum();
                if freqs_per_bands.len() < 2 || total != n_fft / 2 + 1 {
                    return Err(format!(
                        "model.freqs_per_bands must list at least 2 bands summing to stft_n_fft / 2 + 1 = {}, found {} bands summing to {total}",
                        n_fft / 2 + 1,
                        freqs_per_bands.len()
                    ));
                }
            }
            Variant::MelBand { num_bands, sample_rate } => {
                if *num_bands < 2 || *sample_rate == 0 {
                    return Err("model.num_bands must be at least 2 and model.sample_rate positive".into());
                }
            }
        }
        if self.chunk_size <= n_fft / 2 || m.stft_hop_length > n_fft / 2 {
            return Err(format!(
                "audio.chunk_size {} must be longer than half the FFT ({n_fft}) and stft_hop_length {} at most half of it",
                self.chunk_size, m.stft_hop_length
            ));
        }
        // MSST's Mel-Band RoFormer returns hop * (chunk / hop) samples unless it matches the
        // input length: the overlap-add needs whole chunks.
        if matches!(m.variant, Variant::MelBand { .. }) && !m.match_input_audio_length && self.chunk_size % m.stft_hop_length != 0 {
            return Err(format!(
                "audio.chunk_size {} is not a multiple of stft_hop_length {} and match_input_audio_length is false: the model would return shorter chunks",
                self.chunk_size, m.stft_hop_length
            ));
        }
        if self.instruments.is_empty() {
            return Err("training.instruments is empty".into());
        }
        let stems = self.stems();
        if stems.len() != m.num_stems {
            return Err(format!(
                "model.num_stems is {} but the config names {} output stems ({})",
                m.num_stems,
                stems.len(),
                stems.join(", ")
            ));
        }
        if let Some(t) = &self.target_instrument {
            if !self.instruments.contains(t) {
                return Err(format!("training.target_instrument `{t}` is not in training.instruments"));
            }
        }
        Ok(())
    }

    /// Output stems in order: the target alone, or every instrument.
    pub fn stems(&self) -> Vec<String> {
        match &self.target_instrument {
            Some(t) => vec![t.clone()],
            None => self.instruments.clone(),
        }
    }

    /// For a single-target model: the other instrument as the config names it (MSST's pair),
    /// else UVR's name for the mix minus the target.
    pub fn complement_stem(&self) -> Option<String> {
        let t = self.target_instrument.as_ref()?;
        let others: Vec<&String> = self.instruments.iter().filter(|i| *i != t).collect();
        Some(match others.as_slice() {
            [one] => (*one).clone(),
            _ => complement_name(t),
        })
    }

    /// Bins of the one-sided spectrum: stft_n_fft / 2 + 1.
    pub fn freqs(&self) -> usize {
        self.model.stft_n_fft / 2 + 1
    }

    /// STFT frames per chunk: chunk_size / hop + 1.
    pub fn frames(&self) -> usize {
        self.chunk_size / self.model.stft_hop_length + 1
    }
}
