//! A model file's network as everything above `nets/` sees it, whatever its architecture:
//! [`NetSpec`] (made from a config: what the model is, its chunk lengths and costs, the tensors
//! it reads, and how to open it) and [`Inferred`] (what a checkpoint's tensors say without a
//! config). [`FAMILIES`] is the one registry of network families: [`from_yaml_str`] picks the
//! family from a config's keys, [`infer`] from a checkpoint's tensors.
//!
//! A family is a folder in `nets/` that implements these two traits and exports a [`Family`];
//! registering it is one line in [`FAMILIES`]. The catalog, the CLI, the plugin and the engine
//! never name a family.

use super::checkpoint::{Checkpoint, Shapes, WeightsError};
use super::{ModelBuilder, ModelError, ModelInfo};
use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors while reading or validating a model's config (every family's).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("config {path} is not valid YAML: {msg}")]
    Yaml { path: PathBuf, msg: String },
    #[error("{0}")]
    Invalid(String),
    #[error("config {path}: {msg}")]
    InvalidIn { path: PathBuf, msg: String },
}

impl ConfigError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        ConfigError::Invalid(msg.into())
    }
    /// Attach the file name to a validation error.
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            ConfigError::Invalid(msg) => ConfigError::InvalidIn { path: path.to_path_buf(), msg },
            other => other,
        }
    }
}

impl From<ConfigError> for ModelError {
    fn from(e: ConfigError) -> Self {
        ModelError::Files(Box::new(e))
    }
}

impl From<WeightsError> for ModelError {
    fn from(e: WeightsError) -> Self {
        ModelError::Files(Box::new(e))
    }
}

/// Read the config file at `path` and `parse` its text; errors name the file.
pub(crate) fn yaml_file<T>(path: &Path, parse: impl FnOnce(&str) -> Result<T, ConfigError>) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
    parse(&text).map_err(|e| match e {
        ConfigError::Yaml { msg, .. } => ConfigError::Yaml { path: path.to_path_buf(), msg },
        other => other.in_file(path),
    })
}

/// The chunk lengths a user may choose for a chunked model, as "segments" in the family's own
/// unit (TFC-TDF: STFT frames per chunk); [`NetSpec::segment_chunk`] turns one into samples.
/// The plugin's "Segment" setting stores a segment (0: the config's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    /// What a segment counts, for display ("STFT frames").
    pub unit: &'static str,
    /// The config's own segment.
    pub default: usize,
    /// The segments offered, ascending: at most about a dozen.
    pub choices: Vec<usize>,
}

/// What the generic backend (candle's own ops: Metal's) is expected to hold on the device for
/// one batch, in bytes: see [`NetSpec::generic_memory`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenericMemory {
    /// The weights in the compute dtype.
    pub weights: u64,
    /// Live activations at the peak.
    pub activations: u64,
    /// The largest convolution's temporaries (bounded by its row bands).
    pub conv_temporaries: u64,
}

impl GenericMemory {
    pub fn total(&self) -> u64 {
        self.weights + self.activations + self.conv_temporaries
    }
}

/// A model file's network, described by its config: what the catalog resolves a file to, and
/// all that the CLI, the plugin and the downloader know of it. Families implement it on their
/// config type.
pub trait NetSpec: Send + Sync + fmt::Debug {
    /// The family's name for display ("MDX23C (TFC-TDF v3)").
    fn family(&self) -> &'static str;
    /// What the model needs and gives, at the config's own chunk.
    fn info(&self) -> ModelInfo;
    /// The overlap the config names, if any (the CLI and the plugin have their own defaults).
    fn configured_overlap(&self) -> Option<usize>;
    /// The segments (chunk lengths) a user may choose.
    fn segments(&self) -> Segments;
    /// The chunk length in samples of `segment`.
    fn segment_chunk(&self, segment: usize) -> usize;
    /// The segment a user's setting selects; `None`: the config's own (the setting is 0, or
    /// one the network cannot take).
    fn pick_segment(&self, setting: usize) -> Option<usize>;
    /// Multiply-adds of one forward pass over a chunk of `chunk` samples (FLOPs = 2x this).
    fn macs_per_chunk(&self, chunk: usize) -> u64;
    /// Parameter count of the network the config describes.
    fn parameter_count(&self) -> usize;
    /// Memory the generic backend needs for `batch` chunks of `chunk` samples in a dtype of
    /// `dtype_bytes` bytes (`None`: the family has no estimate).
    fn generic_memory(&self, chunk: usize, batch: usize, dtype_bytes: usize) -> Option<GenericMemory>;
    /// What `mdx-stems info` prints about the network: (label, text) lines.
    fn describe(&self) -> Vec<(&'static str, String)>;
    /// Every tensor the network reads, with its shape, in checkpoint naming.
    fn expected_tensors(&self) -> Shapes;
    /// The strict check: `ckpt` holds exactly [`NetSpec::expected_tensors`]; one error lists
    /// every difference.
    fn check_tensors(&self, ckpt: &Checkpoint) -> Result<(), WeightsError>;
    /// Read the weights at `path`, check them, and return what the engine builds the model from,
    /// with chunks of `segment` (`None`: the config's own chunk).
    fn open(&self, path: &Path, segment: Option<usize>) -> Result<Box<dyn ModelBuilder>, ModelError>;
    /// What the engine builds the network from, with seeded random weights of
    /// [`NetSpec::expected_tensors`]' shapes at the config's own chunk (benchmarks and tests):
    /// the same `seed` gives the same weights.
    fn random(&self, seed: u64) -> Result<Box<dyn ModelBuilder>, ModelError>;
    /// The family's own type, for its [`Inferred::differences`].
    fn as_any(&self) -> &dyn Any;

    /// What the CLI and the plugin deliver: the stems, then the complement if any.
    fn output_stems(&self) -> Vec<String> {
        let info = self.info();
        info.stems.into_iter().chain(info.complement).collect()
    }
}

/// What a checkpoint's tensors say about its network when there is no config.
pub trait Inferred: fmt::Debug {
    /// One line: every value the weights determine.
    fn summary(&self) -> String;
    /// The config values the weights do not hold, as config keys with a short note.
    fn missing(&self) -> Vec<String>;
    /// The same, in a word each, for a one-line reason in a table ("n_fft", "act", ...).
    fn missing_short(&self) -> Vec<&'static str>;
    /// How many stems the network outputs.
    fn num_stems(&self) -> usize;
    /// Differences between the weights and `net`'s config, one line each (empty when they agree).
    fn differences(&self, net: &dyn NetSpec) -> Vec<String>;
}

/// A network family: how to recognise and read its configs and checkpoints.
pub struct Family {
    /// The family's name for display.
    pub name: &'static str,
    /// Whether a config whose `model:` section has these keys is this family's.
    pub claims: fn(&[String]) -> bool,
    /// Parse and validate a config's text.
    pub from_yaml: fn(&str) -> Result<Arc<dyn NetSpec>, ConfigError>,
    /// What a checkpoint's tensors say, or why they are not this family's network.
    pub infer: fn(&Shapes) -> Result<Box<dyn Inferred>, String>,
}

/// Every network family, in the order they are tried. The first is the default: a config no
/// family claims is read as its, so that its errors say what is missing.
pub static FAMILIES: &[&Family] = &[
    &super::tfc_tdf::FAMILY,
    &super::roformer::FAMILY,
];

/// The keys of a config's `model:` section (empty when it has none or is not YAML).
fn model_keys(text: &str) -> Vec<String> {
    let Ok(v) = serde_norway::from_str::<serde_norway::Value>(text) else { return vec![] };
    match v.get("model") {
        Some(serde_norway::Value::Mapping(m)) => m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect(),
        _ => vec![],
    }
}

/// The family a config's text is for: the first in [`FAMILIES`] that claims its `model:` keys,
/// else the default.
pub fn family_of(text: &str) -> &'static Family {
    let keys = model_keys(text);
    FAMILIES.iter().copied().find(|f| (f.claims)(&keys)).unwrap_or(FAMILIES[0])
}

/// Parse and validate a config's text with its family ([`family_of`]).
pub fn from_yaml_str(text: &str) -> Result<Arc<dyn NetSpec>, ConfigError> {
    (family_of(text).from_yaml)(text)
}

/// Read, parse and validate a config file with its family ([`family_of`]).
pub fn from_yaml_file(path: &Path) -> Result<Arc<dyn NetSpec>, ConfigError> {
    yaml_file(path, from_yaml_str)
}

/// What a checkpoint's tensors say: the first family whose network they form; when none, the
/// default family's reason.
pub fn infer(shapes: &Shapes) -> Result<Box<dyn Inferred>, String> {
    let mut first_error = None;
    for f in FAMILIES {
        match (f.infer)(shapes) {
            Ok(found) => return Ok(found),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTVOC: &str = include_str!("../../assets/uvr-mdxc/model_2_stem_full_band_8k.yaml");

    /// Each config goes to its family: InstVoc HQ's to TFC-TDF, MSST's viperx BS-RoFormer and
    /// Mel-Band RoFormer configs to RoFormer (and not to TFC-TDF), and a config that no family
    /// claims to the default, whose error names what it misses.
    #[test]
    fn the_registry_picks_the_family_from_the_config_keys() {
        let net = from_yaml_str(INSTVOC).unwrap();
        assert_eq!(net.family(), "MDX23C (TFC-TDF v3)");
        assert_eq!(net.info().stems, ["Vocals", "Instrumental"]);
        assert_eq!(net.info().complement, None);
        let tfc = |text: &str| (super::super::tfc_tdf::FAMILY.claims)(&model_keys(text));
        assert!(tfc(INSTVOC));
        let bs = include_str!("../../tests/fixtures/roformer/bs_ep317_shape/config.yaml");
        let mel = include_str!("../../tests/fixtures/roformer/mel_ep3005_shape/config.yaml");
        for (text, family) in [(bs, "BS-RoFormer"), (mel, "Mel-Band RoFormer")] {
            assert!(!tfc(text));
            let net = from_yaml_str(text).unwrap();
            assert_eq!(net.family(), family);
            assert_eq!(net.info().stems, ["vocals"]);
            assert_eq!(net.info().complement.as_deref(), Some("other"));
        }
        let neither = "model:\n  dim: 384\n  depth: 6\ntraining:\n  instruments: [vocals, other]\n";
        let e = from_yaml_str(neither).unwrap_err().to_string();
        assert!(e.contains("audio.n_fft"), "{e}");
    }

    /// Every family's [`NetSpec::random`] gives a network the engine runs at the config's chunk
    /// and stems, with weights the seed fixes: the same seed twice separates a chunk the same,
    /// another seed differently.
    #[test]
    fn random_weights_build_every_family_and_follow_the_seed() {
        let configs = [
            include_str!("../../tests/fixtures/mdx23c/tiny_instnorm_gelu/config.yaml"),
            include_str!("../../tests/fixtures/roformer/bs_tiny_target/config.yaml"),
            include_str!("../../tests/fixtures/roformer/mel_tiny_4stem/config.yaml"),
        ];
        for text in configs {
            let net = from_yaml_str(text).unwrap();
            let separate = |seed| {
                let mut sep = crate::engine::Separator::new(net.random(seed).unwrap(), &Default::default()).unwrap();
                assert_eq!(sep.info(), &net.info(), "{}", net.family());
                let chunk = net.info().unit_len();
                let input: Vec<f32> = (0..2 * chunk).map(|i| (i as f32 * 0.37).sin() * 0.5).collect();
                let mut out = vec![0f32; sep.num_stems() * 2 * chunk];
                sep.process_chunks(&input, 1, &mut out).unwrap();
                assert!(out.iter().all(|v| v.is_finite()), "{}", net.family());
                out
            };
            let (a, b, c) = (separate(3), separate(3), separate(4));
            assert_eq!(a, b, "{}: the same seed gave other weights", net.family());
            assert_ne!(a, c, "{}: another seed gave the same weights", net.family());
        }
    }

    /// Nothing outside `nets/` and `backend/` names a family's module (`tfc_tdf`,
    /// `roformer::`): everything above sees networks through [`NetSpec`] only (tests, benches
    /// and fuzz/ may build one). Model file names (`model_bs_roformer_...`) are data, not code.
    #[test]
    fn no_code_above_nets_names_a_family() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = vec![];
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
                if rel == "nets" || rel == "backend" {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else if rel.ends_with(".rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        if line.contains("tfc_tdf") || line.contains("roformer::") {
                            offenders.push(format!("src/{rel}:{}: {}", i + 1, line.trim()));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "code above nets/ names a network family:\n{}", offenders.join("\n"));
    }
}
