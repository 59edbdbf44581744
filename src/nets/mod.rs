//! What a separation model is, to everything above it: [`SeparationModel`] (what it needs and
//! what it does), [`ModelBuilder`] (how the engine gets one on a device), and the typed
//! [`Event`]s a model reports. The engine, whole-signal separation, the CLI and the plugin see
//! only these. Architectures implement them: [`tfc_tdf`] (MDX23C) and [`roformer`] (BS- and Mel-Band RoFormer); streaming separators
//! (a fixed latency, consecutive blocks in and out) fit the same interface through
//! [`Schedule::Stream`].
//!
//! Before a model is built, a model file's network is a [`NetSpec`] ([`family`]: made from its
//! config by the one registry of families, [`FAMILIES`]), and its weights a [`Checkpoint`]
//! ([`checkpoint`]: read the same way for every family).

pub mod builtin;
pub mod checkpoint;
pub mod family;
pub mod roformer;
pub mod tfc_tdf;

pub use checkpoint::{Checkpoint, Shapes, WeightsError, read_shapes};
pub use family::{ConfigError, FAMILIES, Family, GenericMemory, Inferred, NetSpec, Segments, family_of, from_yaml_file, from_yaml_str, infer};

pub use crate::events::Event;
use crate::device::Precision;
use crate::options::EngineOptions;
use candle_core::{DType, Device};
use std::time::{Duration, Instant};

/// How a model's input is cut and its output put back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Independent chunks of `chunk` samples, overlap-added (UVR's or MSST's scheme), by default
    /// with `default_overlap` chunks over every sample. TFC-TDF works this way.
    Chunks { chunk: usize, default_overlap: usize },
    /// Consecutive blocks of `block` samples in, consecutive blocks out, the output `latency`
    /// samples late; the model keeps state between calls ([`SeparationModel::reset`] starts
    /// a new stream).
    Stream { block: usize, latency: usize },
}

/// What a model needs from its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The rate the model works at (callers resample to it and back).
    pub sample_rate: u32,
    /// Stem names in output order, as the model's config writes them.
    pub stems: Vec<String>,
    /// For a single-target model, the name of the mix minus the target, which the CLI writes
    /// and the plugin outputs after the target (UVR's pairs: `Vocals` -> `Instrumental`).
    pub complement: Option<String>,
    pub schedule: Schedule,
}

impl ModelInfo {
    /// Samples per call unit: the chunk, or the stream's block.
    pub fn unit_len(&self) -> usize {
        match self.schedule {
            Schedule::Chunks { chunk, .. } => chunk,
            Schedule::Stream { block, .. } => block,
        }
    }

    /// The default overlap of chunked models (1 for streaming ones).
    pub fn default_overlap(&self) -> usize {
        match self.schedule {
            Schedule::Chunks { default_overlap, .. } => default_overlap,
            Schedule::Stream { .. } => 1,
        }
    }
}

/// Wall time spent in each stage, with the device synchronised before every timestamp.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTimes {
    pub stft: Duration,
    pub upload: Duration,
    pub network: Duration,
    pub download: Duration,
    pub istft: Duration,
    pub overlap_add: Duration,
    pub chunks: usize,
}

/// A stage of [`StageTimes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Stft,
    Upload,
    Network,
    Download,
    Istft,
}

/// What the engine lends a model for one call: the CPU threads, the stage timings (when
/// profiling) and the events sink.
pub struct Pass<'a> {
    /// Work on the CPU runs inside this pool (it bounds the CPU threads).
    pub pool: &'a rayon::ThreadPool,
    /// `Some` while profiling: every [`Pass::lap`] synchronises the device.
    pub profile: Option<&'a mut StageTimes>,
    /// The device's name, for events.
    pub device_name: &'a str,
    pub events: &'a mut Vec<Event>,
    clock: Instant,
}

impl<'a> Pass<'a> {
    pub fn new(pool: &'a rayon::ThreadPool, profile: Option<&'a mut StageTimes>, device_name: &'a str, events: &'a mut Vec<Event>) -> Self {
        Pass { pool, profile, device_name, events, clock: Instant::now() }
    }

    pub fn profiling(&self) -> bool {
        self.profile.is_some()
    }

    /// While profiling: synchronise `device` and add the time since the last lap to `stage`.
    pub fn lap(&mut self, device: &Device, stage: Stage) {
        if let Some(p) = self.profile.as_deref_mut() {
            crate::device::synchronize(device);
            let now = Instant::now();
            let d = now - self.clock;
            match stage {
                Stage::Stft => p.stft += d,
                Stage::Upload => p.upload += d,
                Stage::Network => p.network += d,
                Stage::Download => p.download += d,
                Stage::Istft => p.istft += d,
            }
            self.clock = now;
        }
    }
}

/// A separation model built on a device: stereo audio in, stems out.
pub trait SeparationModel: Send {
    fn info(&self) -> &ModelInfo;
    /// The device it computes on.
    fn device(&self) -> &Device;
    /// `input` is `n` stereo units (chunks or blocks, [`ModelInfo::unit_len`] samples) laid out
    /// [n][2][unit]; `out` receives [n][stems][2][unit].
    fn process(&mut self, input: &[f32], n: usize, out: &mut [f32], pass: &mut Pass<'_>) -> candle_core::Result<()>;
    /// Start a new stream (streaming models; chunked models keep no state).
    fn reset(&mut self) {}
    /// Batch sizes whose pass has been recorded as a device graph (diagnostics; CUDA).
    fn recorded_batches(&self) -> Vec<usize> {
        vec![]
    }
    /// What computes it, in a few words ("CPU kernels", "channels-last CUDA", "candle").
    fn backend_name(&self) -> &'static str;
}

/// Where and how to build a model.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub device: &'a Device,
    pub precision: Precision,
    pub options: &'a EngineOptions,
}

impl Target<'_> {
    pub fn dtype(&self) -> DType {
        self.precision.dtype()
    }
}

/// Builds a model on a device: what the engine loads (and builds again on the CPU when the GPU
/// fails). Holds the model's weights or knows where to read them.
pub trait ModelBuilder: Send {
    fn info(&self) -> ModelInfo;
    fn build(&mut self, target: &Target<'_>, events: &mut Vec<Event>) -> Result<Box<dyn SeparationModel>, ModelError>;
    /// Let go of what only the first build needed (weights held in memory); later builds read
    /// them again.
    fn release(&mut self) {}
}

/// Errors while building a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model's files (config, weights) cannot be used: the architecture's own error
    /// (e.g. [`WeightsError`], [`ConfigError`]).
    #[error(transparent)]
    Files(Box<dyn std::error::Error + Send + Sync>),
    #[error("segment of {dim_t} frames is not usable: {reason}")]
    BadSegment { dim_t: usize, reason: String },
    #[error("{context}: {source}")]
    Candle { context: String, source: candle_core::Error },
}
