//! Model configuration: the YAML files that UVR, MSST and python-audio-separator ship.
//!
//! Parsing is two-step: serde reads the raw YAML (unknown keys ignored, numbers that are
//! missing stay `None`), then [`ModelConfig::from_raw`] validates every value and derives the
//! typed config the network is built from. Every problem becomes a [`ConfigError`] with a
//! message a user can act on.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Normalisation layer kind (`model.norm`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormKind {
    /// `InstanceNorm`: affine, statistics over F x T per channel and item.
    Instance,
    /// `BatchNorm`: eval mode, running statistics.
    Batch,
    /// `GroupNorm<g>`: `g` groups, affine.
    Group(usize),
    /// Anything else: no normalisation, no parameters.
    Identity,
}

impl NormKind {
    /// The reference's rule: exact names for batch/instance norm, `GroupNorm<g>`, else identity.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        Ok(match s {
            "BatchNorm" => NormKind::Batch,
            "InstanceNorm" => NormKind::Instance,
            s if s.contains("GroupNorm") => {
                let g = s.replace("GroupNorm", "");
                let g: usize = g.trim().parse().map_err(|_| {
                    ConfigError::invalid(format!("model.norm `{s}`: expected GroupNorm<groups>, e.g. GroupNorm4"))
                })?;
                if g == 0 {
                    return Err(ConfigError::invalid("model.norm: GroupNorm needs at least 1 group"));
                }
                NormKind::Group(g)
            }
            _ => NormKind::Identity,
        })
    }

    pub fn name(&self) -> String {
        match self {
            NormKind::Instance => "InstanceNorm".into(),
            NormKind::Batch => "BatchNorm".into(),
            NormKind::Group(g) => format!("GroupNorm{g}"),
            NormKind::Identity => "Identity".into(),
        }
    }
}

/// Activation kind (`model.act`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActKind {
    /// Exact (erf) GELU, as PyTorch's `nn.GELU()`.
    Gelu,
    Relu,
    /// ELU with the given alpha (`elu1.0`).
    Elu(f64),
}

impl ActKind {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "gelu" => Ok(ActKind::Gelu),
            "relu" => Ok(ActKind::Relu),
            s if s.starts_with("elu") => {
                let a = &s[3..];
                let alpha = if a.is_empty() { Ok(1.0) } else { a.parse::<f64>() };
                alpha.map(ActKind::Elu).map_err(|_| {
                    ConfigError::invalid(format!("model.act `{s}`: expected elu<alpha>, e.g. elu1.0"))
                })
            }
            other => Err(ConfigError::invalid(format!(
                "model.act `{other}` is not supported (gelu, relu, elu<alpha>)"
            ))),
        }
    }

    pub fn name(&self) -> String {
        match self {
            ActKind::Gelu => "gelu".into(),
            ActKind::Relu => "relu".into(),
            ActKind::Elu(a) => format!("elu{a}"),
        }
    }
}

pub use crate::nets::family::ConfigError;

#[derive(Debug, Deserialize, Default)]
struct RawAudio {
    chunk_size: Option<usize>,
    dim_f: Option<usize>,
    dim_t: Option<usize>,
    hop_length: Option<usize>,
    n_fft: Option<usize>,
    num_channels: Option<usize>,
    sample_rate: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
struct RawModel {
    act: Option<String>,
    bottleneck_factor: Option<usize>,
    growth: Option<usize>,
    norm: Option<String>,
    num_blocks_per_scale: Option<usize>,
    num_channels: Option<usize>,
    num_scales: Option<usize>,
    num_subbands: Option<usize>,
    scale: Option<Vec<usize>>,
}

#[derive(Debug, Deserialize, Default)]
struct RawTraining {
    instruments: Option<Vec<String>>,
    target_instrument: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawInference {
    batch_size: Option<usize>,
    dim_t: Option<usize>,
    num_overlap: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    audio: RawAudio,
    #[serde(default)]
    model: RawModel,
    #[serde(default)]
    training: RawTraining,
    #[serde(default)]
    inference: RawInference,
}

/// `audio:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioConfig {
    /// Samples per model chunk (C).
    pub chunk_size: usize,
    /// Frequency bins the network sees (the rest up to n_fft/2+1 are zero on output).
    pub dim_f: usize,
    pub dim_t: usize,
    pub hop_length: usize,
    pub n_fft: usize,
    /// Audio channels (always 2: the network's input channels are (ch0.re, ch0.im, ch1.re, ch1.im)).
    pub num_channels: usize,
    pub sample_rate: u32,
}

/// `model:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    pub act: ActKind,
    pub bottleneck_factor: usize,
    pub growth: usize,
    pub norm: NormKind,
    pub num_blocks_per_scale: usize,
    pub num_channels: usize,
    pub num_scales: usize,
    pub num_subbands: usize,
    /// `[time, frequency]` down/up-scaling factors.
    pub scale: [usize; 2],
}

/// `inference:` section (all optional in the YAML).
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceConfig {
    pub batch_size: usize,
    pub dim_t: Option<usize>,
    pub num_overlap: Option<usize>,
}

/// A validated MDX23C config.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub audio: AudioConfig,
    pub model: NetConfig,
    /// `training.instruments`, names as written.
    pub instruments: Vec<String>,
    /// `training.target_instrument`.
    pub target_instrument: Option<String>,
    pub inference: InferenceConfig,
}

/// The name of "the mix minus `target`", UVR's pairs (vocals <-> instrumental, drums -> no
/// drums, ...), keeping the target's capitalisation style (UVR writes `Vocals`, MSST `vocals`).
pub fn complement_name(target: &str) -> String {
    let lower = target.to_lowercase();
    let base = match lower.as_str() {
        "vocals" | "vocal" => "instrumental".to_string(),
        "instrumental" | "inst" => "vocals".to_string(),
        other => format!("no {other}"),
    };
    if target.chars().next().is_some_and(char::is_uppercase) {
        let mut c = base.chars();
        c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
    } else {
        base
    }
}

fn need<T>(v: Option<T>, key: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| ConfigError::invalid(format!("missing required key `{key}`")))
}

impl ModelConfig {
    /// Read and validate a YAML config file.
    pub fn from_yaml_file(path: &Path) -> Result<Self, ConfigError> {
        crate::nets::family::yaml_file(path, Self::from_yaml_str)
    }

    /// Parse and validate YAML text.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_norway::from_str(text)
            .map_err(|e| ConfigError::Yaml { path: PathBuf::from("<string>"), msg: e.to_string() })?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let a = raw.audio;
        let m = raw.model;
        let n_fft = need(a.n_fft, "audio.n_fft")?;
        let hop_length = need(a.hop_length, "audio.hop_length")?;
        let dim_f = need(a.dim_f, "audio.dim_f")?;
        let dim_t = need(a.dim_t.or(raw.inference.dim_t), "audio.dim_t")?;
        let chunk_size = a.chunk_size.unwrap_or(hop_length.saturating_mul(dim_t.saturating_sub(1)));
        let scale = match m.scale.as_deref() {
            None => [2, 2],
            Some([t, f]) => [*t, *f],
            Some(other) => {
                return Err(ConfigError::invalid(format!(
                    "model.scale must have two entries [time, frequency], found {other:?}"
                )));
            }
        };
        let instruments = need(raw.training.instruments, "training.instruments")?;
        let cfg = ModelConfig {
            audio: AudioConfig {
                chunk_size,
                dim_f,
                dim_t,
                hop_length,
                n_fft,
                num_channels: a.num_channels.unwrap_or(2),
                sample_rate: a.sample_rate.unwrap_or(44100),
            },
            model: NetConfig {
                act: ActKind::parse(&need(m.act, "model.act")?)?,
                bottleneck_factor: need(m.bottleneck_factor, "model.bottleneck_factor")?,
                growth: need(m.growth, "model.growth")?,
                norm: NormKind::parse(&m.norm.unwrap_or_default())?,
                num_blocks_per_scale: need(m.num_blocks_per_scale, "model.num_blocks_per_scale")?,
                num_channels: need(m.num_channels, "model.num_channels")?,
                num_scales: need(m.num_scales, "model.num_scales")?,
                num_subbands: need(m.num_subbands, "model.num_subbands")?,
                scale,
            },
            instruments,
            target_instrument: raw.training.target_instrument.filter(|s| !s.is_empty()),
            inference: InferenceConfig {
                batch_size: raw.inference.batch_size.unwrap_or(1).max(1),
                dim_t: raw.inference.dim_t,
                num_overlap: raw.inference.num_overlap,
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check every value the network and the STFT depend on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.audio;
        let m = &self.model;
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        // Plausibility first (crate::limits): nothing below may overflow or size absurd work.
        let lim = |what: &str, v: usize, max: usize| crate::limits::check_at_most(what, v, max).map_err(ConfigError::Invalid);
        lim("audio.n_fft", a.n_fft, crate::limits::MAX_N_FFT)?;
        lim("audio.hop_length", a.hop_length, a.n_fft.max(1))?;
        lim("audio.chunk_size", a.chunk_size, crate::limits::MAX_CHUNK)?;
        lim("model.num_channels", m.num_channels, crate::limits::MAX_NET_CHANNELS)?;
        lim("model.growth", m.growth, crate::limits::MAX_NET_CHANNELS)?;
        lim("model.num_subbands", m.num_subbands, crate::limits::MAX_SUBBANDS)?;
        lim("model.num_blocks_per_scale", m.num_blocks_per_scale, crate::limits::MAX_BLOCKS_PER_SCALE)?;
        lim("model.bottleneck_factor", m.bottleneck_factor, crate::limits::MAX_BOTTLENECK)?;
        lim("model.scale[0]", m.scale[0], crate::limits::MAX_SCALE_FACTOR)?;
        lim("model.scale[1]", m.scale[1], crate::limits::MAX_SCALE_FACTOR)?;
        lim("model.num_scales", m.num_scales, crate::limits::MAX_SCALES)?;
        lim("training.instruments (count)", self.instruments.len(), crate::limits::MAX_STEMS)?;
        if let Some(k) = self.inference.num_overlap {
            lim("inference.num_overlap", k, crate::limits::MAX_OVERLAP)?;
        }
        lim("inference.batch_size", self.inference.batch_size, crate::limits::MAX_BATCH)?;
        crate::limits::check_model_sample_rate(a.sample_rate).map_err(ConfigError::Invalid)?;
        // The widest layer: channels + growth per scale.
        lim("model.num_channels + growth * num_scales", m.num_channels + m.growth * m.num_scales, crate::limits::MAX_NET_CHANNELS)?;
        if a.n_fft < 2 || a.n_fft % 2 != 0 {
            return bad(format!("audio.n_fft must be an even number >= 2, found {}", a.n_fft));
        }
        if a.hop_length == 0 {
            return bad("audio.hop_length must be > 0".into());
        }
        if a.dim_f == 0 || a.dim_f > a.n_fft / 2 + 1 {
            return bad(format!(
                "audio.dim_f {} must be between 1 and n_fft/2+1 = {} (n_fft {} is too small: it needs n_fft >= 2*dim_f-2)",
                a.dim_f,
                a.n_fft / 2 + 1,
                a.n_fft
            ));
        }
        if a.num_channels != 2 {
            return bad(format!("audio.num_channels must be 2 (stereo models only), found {}", a.num_channels));
        }
        if a.sample_rate == 0 {
            return bad("audio.sample_rate must be > 0".into());
        }
        for (k, v) in [
            ("model.num_channels", m.num_channels),
            ("model.num_subbands", m.num_subbands),
            ("model.num_blocks_per_scale", m.num_blocks_per_scale),
            ("model.bottleneck_factor", m.bottleneck_factor),
            ("model.scale[0]", m.scale[0]),
            ("model.scale[1]", m.scale[1]),
        ] {
            if v == 0 {
                return bad(format!("{k} must be > 0"));
            }
        }
        if m.num_scales > 12 {
            return bad(format!("model.num_scales {} is unreasonably large", m.num_scales));
        }
        let fdiv = m.num_subbands * m.scale[1].pow(m.num_scales as u32);
        if a.dim_f % fdiv != 0 {
            return bad(format!(
                "audio.dim_f {} must be divisible by num_subbands * scale[1]^num_scales = {} * {}^{} = {}",
                a.dim_f, m.num_subbands, m.scale[1], m.num_scales, fdiv
            ));
        }
        // Every TDF linear maps f -> f / bottleneck at each scale: f must stay >= bottleneck.
        let f_min = a.dim_f / fdiv;
        if f_min / m.bottleneck_factor == 0 {
            return bad(format!(
                "model.bottleneck_factor {} is larger than the {} frequency bins left at the deepest scale",
                m.bottleneck_factor, f_min
            ));
        }
        if let NormKind::Group(g) = m.norm {
            for c in self.channel_counts() {
                if c % g != 0 {
                    return bad(format!("{}: channel count {c} is not divisible by {g} groups", m.norm.name()));
                }
            }
        }
        if self.instruments.is_empty() {
            return bad("training.instruments is empty".into());
        }
        if let Some(t) = &self.target_instrument {
            if !self.instruments.contains(t) {
                return bad(format!(
                    "training.target_instrument `{t}` is not one of training.instruments ({})",
                    self.instruments.join(", ")
                ));
            }
        }
        self.check_chunk(a.chunk_size).map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// Whether a chunk of `chunk` samples gives a frame count the network can take.
    pub fn check_chunk(&self, chunk: usize) -> Result<(), String> {
        let a = &self.audio;
        if chunk > crate::limits::MAX_CHUNK {
            return Err(format!("chunk size {chunk} is larger than {} samples", crate::limits::MAX_CHUNK));
        }
        if chunk == 0 || a.hop_length == 0 || chunk % a.hop_length != 0 {
            return Err(format!(
                "chunk size {chunk} must be a positive multiple of hop_length {}",
                a.hop_length
            ));
        }
        let t = chunk / a.hop_length + 1;
        let tdiv = self.model.scale[0].pow(self.model.num_scales as u32);
        if t % tdiv != 0 {
            return Err(format!(
                "chunk size {chunk} gives {t} STFT frames, which must be divisible by scale[0]^num_scales = {tdiv} \
                 (chunk_size = hop_length * (dim_t - 1) with dim_t a multiple of {tdiv})"
            ));
        }
        Ok(())
    }

    /// Names of the stems the model produces, in output order.
    pub fn stems(&self) -> Vec<String> {
        match &self.target_instrument {
            Some(t) => vec![t.clone()],
            None => self.instruments.clone(),
        }
    }

    pub fn num_stems(&self) -> usize {
        if self.target_instrument.is_some() { 1 } else { self.instruments.len() }
    }

    /// For a single-target model, the name of its complement (the mix minus the target), which
    /// the CLI writes and the plugin outputs after the target, as UVR does.
    pub fn complement_stem(&self) -> Option<String> {
        self.target_instrument.as_deref().map(complement_name)
    }

    /// What the CLI and the plugin deliver: [`ModelConfig::stems`], then the complement if any.
    pub fn output_stems(&self) -> Vec<String> {
        let mut v = self.stems();
        v.extend(self.complement_stem());
        v
    }

    /// Network input channels after the subband fold: subbands * 2 audio channels * (re, im).
    pub fn dim_c(&self) -> usize {
        self.model.num_subbands * self.audio.num_channels * 2
    }

    /// Channel count at each encoder scale, then the bottleneck.
    pub fn channel_counts(&self) -> Vec<usize> {
        (0..=self.model.num_scales).map(|i| self.model.num_channels + i * self.model.growth).collect()
    }

    /// Chunk length for a segment of `dim_t` frames: hop * (dim_t - 1) (UVR's rule).
    pub fn chunk_for_dim_t(&self, dim_t: usize) -> usize {
        self.audio.hop_length * dim_t.saturating_sub(1)
    }

    /// Default overlap for whole-file separation: `inference.num_overlap` or 8.
    pub fn default_overlap(&self) -> usize {
        self.inference.num_overlap.filter(|&k| k >= 1).unwrap_or(8)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn complement_names_follow_uvr_and_keep_the_case() {
        use super::complement_name;
        assert_eq!(complement_name("Vocals"), "Instrumental");
        assert_eq!(complement_name("vocals"), "instrumental");
        assert_eq!(complement_name("Instrumental"), "Vocals");
        assert_eq!(complement_name("drums"), "no drums");
        assert_eq!(complement_name("Bass"), "No bass");
    }

    use super::*;

    const TINY: &str = "audio:\n  chunk_size: 1984\n  dim_f: 128\n  dim_t: 32\n  hop_length: 64\n  n_fft: 256\n  num_channels: 2\n  sample_rate: 44100\nmodel:\n  act: gelu\n  bottleneck_factor: 2\n  growth: 4\n  norm: InstanceNorm\n  num_blocks_per_scale: 1\n  num_channels: 8\n  num_scales: 2\n  num_subbands: 2\n  scale: [2, 2]\n  extra_key: 5\ntraining:\n  instruments: [Vocals, Instrumental]\n  target_instrument: null\n  lr: 1.0e-5\ninference:\n  num_overlap: 4\n";

    #[test]
    fn parses_and_ignores_unknown_keys() {
        let c = ModelConfig::from_yaml_str(TINY).unwrap();
        assert_eq!(c.stems(), vec!["Vocals", "Instrumental"]);
        assert_eq!(c.dim_c(), 8);
        assert_eq!(c.model.norm, NormKind::Instance);
        assert_eq!(c.default_overlap(), 4);
        assert_eq!(c.channel_counts(), vec![8, 12, 16]);
    }

    #[test]
    fn norm_and_act_names() {
        assert_eq!(NormKind::parse("GroupNorm4").unwrap(), NormKind::Group(4));
        assert_eq!(NormKind::parse("LayerNorm").unwrap(), NormKind::Identity);
        assert!(NormKind::parse("GroupNormX").is_err());
        assert_eq!(ActKind::parse("elu1.0").unwrap(), ActKind::Elu(1.0));
        assert_eq!(ActKind::parse("elu0.5").unwrap(), ActKind::Elu(0.5));
        assert!(ActKind::parse("swish").is_err());
    }

    #[test]
    fn rejects_bad_values_with_clear_messages() {
        let e = ModelConfig::from_yaml_str(&TINY.replace("dim_f: 128", "dim_f: 100")).unwrap_err().to_string();
        assert!(e.contains("divisible by num_subbands"), "{e}");
        let e = ModelConfig::from_yaml_str(&TINY.replace("n_fft: 256", "n_fft: 128")).unwrap_err().to_string();
        assert!(e.contains("n_fft"), "{e}");
        let e = ModelConfig::from_yaml_str(&TINY.replace("chunk_size: 1984", "chunk_size: 2000")).unwrap_err().to_string();
        assert!(e.contains("multiple of hop_length"), "{e}");
        let e = ModelConfig::from_yaml_str(&TINY.replace("  act: gelu\n", "")).unwrap_err().to_string();
        assert!(e.contains("model.act"), "{e}");
        let e = ModelConfig::from_yaml_str("audio: [1, 2").unwrap_err().to_string();
        assert!(e.contains("not valid YAML"), "{e}");
        let e = ModelConfig::from_yaml_str(&TINY.replace("target_instrument: null", "target_instrument: Drums"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("target_instrument"), "{e}");
    }

    #[test]
    fn reads_every_uvr_config() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/uvr-mdxc");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                let c = ModelConfig::from_yaml_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert!(c.num_stems() >= 1);
                n += 1;
            }
        }
        assert!(n >= 10, "only {n} configs found in {}", dir.display());
    }
}
