//! State shared between the plugin's threads: what the editor shows and the few numbers the
//! audio thread and the inference thread tell each other.
//!
//! One [`Shared`] per plugin instance, created in `Default` and kept for the instance's life.
//! The audio thread only touches the atomics (never the `Mutex`/`RwLock` fields) and the
//! editor's repaint flag (an atomic store); the worker, the loader and the main thread write the
//! status and notices; the editor reads everything and repaints only when
//! [`Shared::changed`] says something did.

use atomic_float::AtomicF32;
use nice_plug_egui::RepaintNotifier;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use super::params::{MAX_STEMS, StemNames};

/// Where the engine stands, for the editor and for the audio thread's dry fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EngineState {
    /// No model chosen or found.
    NoModel = 0,
    /// Weights are loading on the loader thread.
    Loading = 1,
    /// Separating.
    Ready = 2,
    /// The model could not be read or run; the status says why.
    Error = 3,
}

impl EngineState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => EngineState::Loading,
            2 => EngineState::Ready,
            3 => EngineState::Error,
            _ => EngineState::NoModel,
        }
    }
}

/// Why the plugin cannot separate. Shown by the editor and logged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("No model chosen and none found: put a model (.ckpt with its .yaml) in {} or enter its path", folder.display())]
    NoModel { folder: PathBuf },
    #[error("model file {} does not exist, and no model with the same name or UVR hash was found", .0.display())]
    MissingModel(PathBuf),
    /// The model's config cannot be found or read, or does not fit the plugin.
    #[error("{model}: {message}")]
    BadModel { model: String, message: String },
    #[error("{model}: the model has {stems} stems; the plugin has outputs for {max}")]
    TooManyStems { model: String, stems: usize, max: usize },
    #[error("{model}: {message}")]
    LoadFailed { model: String, message: String },
    #[error("the model failed: {0}")]
    ModelFailed(String),
    #[error("the loaded model has chunk {chunk} and {stems} stems, the plan expected {plan_chunk} and {plan_stems}")]
    EngineMismatch { chunk: usize, stems: usize, plan_chunk: usize, plan_stems: usize },
    #[error("cannot start the inference thread: {0}")]
    Thread(String),
    #[error("the render made no progress for {0} s")]
    Watchdog(u32),
}

/// The status line: what is running, or why nothing is.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Nothing activated yet.
    Idle,
    Loading { model: String },
    Ready { device: String },
    Problem(Problem),
}

/// What the current activation runs, for the editor (main thread writes, editor reads).
#[derive(Debug, Clone, Default)]
pub struct ActiveInfo {
    /// Model display name; empty when none.
    pub model: String,
    pub chunk: usize,
    pub hop: usize,
    pub overlap: usize,
    pub model_rate: u32,
    pub host_rate: u32,
    /// The model's own segment ([`crate::nets::Segments`]: STFT frames for TFC-TDF) and the
    /// segments the editor offers.
    pub default_segment: usize,
    pub segments: Vec<usize>,
    /// The segment running (0 for a streaming built-in) and what each offered
    /// segment's chunk costs (empty for a streaming built-in): what [`super::budget`] needs to
    /// say which settings run live.
    pub segment: usize,
    pub costs: Vec<super::budget::SegmentCost>,
}

/// The output peaks behind the editor's level meters, one per output: [`Meters::MAIN`], then
/// stem output `s` at `1 + s`. The audio thread max-merges the peak of every buffer it played
/// ([`Meters::publish`]: a compare-and-swap, no lock, no allocation); the editor takes them
/// on each frame ([`Meters::take`], which clears them) and computes hold and decay itself
/// ([`super::meter`]).
pub struct Meters {
    peaks: [AtomicF32; 1 + MAX_STEMS],
}

impl Meters {
    /// The main output's index; stem output `s` is `1 + s`.
    pub const MAIN: usize = 0;
    pub const COUNT: usize = 1 + MAX_STEMS;

    fn new() -> Self {
        Meters { peaks: std::array::from_fn(|_| AtomicF32::new(0.0)) }
    }

    /// Audio thread: output `index` reached `peak` (absolute sample value) since the editor
    /// last looked. Out-of-range indices are ignored.
    pub fn publish(&self, index: usize, peak: f32) {
        if let Some(p) = self.peaks.get(index) {
            p.fetch_max(peak, Ordering::Relaxed);
        }
    }

    /// Editor: the peak of output `index` since the last call, and clear it.
    pub fn take(&self, index: usize) -> f32 {
        self.peaks.get(index).map_or(0.0, |p| p.swap(0.0, Ordering::Relaxed))
    }
}

/// Most notices kept (the oldest go first).
const MAX_NOTICES: usize = 6;

pub struct Shared {
    /// [`EngineState`] as a byte. Written by the main thread, the loader and the worker.
    state: AtomicU8,
    /// The status behind `state` (never read by the audio thread).
    status: Mutex<Status>,
    /// What the engine and the plugin had to tell the user: GPU fallbacks, a reduced batch, a
    /// model found again after it moved, a render watchdog. Newest last.
    notices: Mutex<Vec<String>>,
    /// The model's output names, complement included (also read by the `preset` parameter's
    /// formatter).
    pub stem_names: StemNames,
    /// Reported latency in samples and in milliseconds (set in `activate`).
    pub latency_samples: AtomicU32,
    pub latency_ms: AtomicF32,
    /// Inference time per hop divided by the hop's duration (1.0 = just real time). Worker.
    pub load: AtomicF32,
    /// Seconds of inference per chunk, smoothed (0: none measured yet). Worker.
    pub chunk_secs: AtomicF32,
    /// Times playback fell back to the dry signal because results were late. Audio thread.
    pub dropouts: AtomicU32,
    /// Output peaks for the level meters. Audio thread writes, editor takes.
    pub meters: Meters,
    /// Peak resident memory of the host process and peak GPU memory of the engine, in MB
    /// (negative: unknown). Worker, about once a second.
    pub peak_rss_mb: AtomicF32,
    pub gpu_mb: AtomicF32,
    /// The output block the audio thread needs by the end of its current buffer, tagged with
    /// the stream epoch in the top 16 bits; the worker skips work that would come too late.
    pub play_position: AtomicU64,
    /// The host is rendering (declared offline, or proven by [`super::pace::Pace`]): nothing
    /// may be skipped. Audio thread.
    pub rendering: AtomicBool,
    /// Blocks the worker has answered (the render watchdog's measure of progress).
    pub progress: AtomicU64,
    /// What the current activation runs (editor display).
    pub info: Mutex<ActiveInfo>,
    /// Settings generation for which the editor has already asked the host for a restart (the
    /// audio thread then does not ask again).
    pub restart_asked: AtomicU32,
    /// The editor's repaint request flag (an atomic; set by [`Shared::changed`]).
    pub repaint: RepaintNotifier,
}

impl Shared {
    pub fn new(stem_names: StemNames) -> Self {
        Shared {
            state: AtomicU8::new(EngineState::NoModel as u8),
            status: Mutex::new(Status::Idle),
            notices: Mutex::new(Vec::new()),
            stem_names,
            latency_samples: AtomicU32::new(0),
            latency_ms: AtomicF32::new(0.0),
            load: AtomicF32::new(0.0),
            chunk_secs: AtomicF32::new(0.0),
            dropouts: AtomicU32::new(0),
            meters: Meters::new(),
            peak_rss_mb: AtomicF32::new(-1.0),
            gpu_mb: AtomicF32::new(-1.0),
            play_position: AtomicU64::new(0),
            rendering: AtomicBool::new(false),
            progress: AtomicU64::new(0),
            info: Mutex::new(ActiveInfo::default()),
            restart_asked: AtomicU32::new(u32::MAX),
            repaint: RepaintNotifier::new(),
        }
    }

    /// Something the editor shows changed: repaint it (audio-thread safe: one atomic store).
    pub fn changed(&self) {
        self.repaint.request_repaint();
    }

    pub fn state(&self) -> EngineState {
        EngineState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Not for the audio thread (locks the status).
    pub fn set_status(&self, status: Status) {
        let state = match &status {
            Status::Idle => EngineState::NoModel,
            Status::Loading { .. } => EngineState::Loading,
            Status::Ready { .. } => EngineState::Ready,
            Status::Problem(Problem::NoModel { .. }) => EngineState::NoModel,
            Status::Problem(_) => EngineState::Error,
        };
        if let Status::Problem(p) = &status {
            nice_plug::nice_log!("{p}");
        }
        if let Ok(mut s) = self.status.lock() {
            *s = status;
        }
        self.state.store(state as u8, Ordering::Release);
        self.changed();
    }

    pub fn set_problem(&self, p: Problem) {
        self.set_status(Status::Problem(p));
    }

    pub fn set_loading(&self, model: impl Into<String>) {
        self.set_status(Status::Loading { model: model.into() });
    }

    pub fn set_ready(&self, device: impl Into<String>) {
        self.set_status(Status::Ready { device: device.into() });
    }

    pub fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or(Status::Idle)
    }

    /// The status as one line for the user (`passthrough`: no stream runs, the input plays
    /// unchanged; else the dry signal plays, delayed by the latency).
    pub fn status_line(&self) -> String {
        let fallback = if self.latency_samples.load(Ordering::Relaxed) == 0 {
            "playing the input unchanged"
        } else {
            "playing the dry signal"
        };
        match self.status() {
            Status::Idle => String::new(),
            Status::Loading { model } => format!("Loading {model}... ({fallback} until it is ready)"),
            Status::Ready { device } => format!("Ready on {device}"),
            Status::Problem(p) => format!("{p} ({fallback})"),
        }
    }

    /// Add a notice for the user (and the log). Not for the audio thread.
    pub fn push_notice(&self, text: impl Into<String>) {
        let text = text.into();
        nice_plug::nice_log!("notice: {text}");
        if let Ok(mut n) = self.notices.lock() {
            if n.last() != Some(&text) {
                n.push(text);
            }
            let extra = n.len().saturating_sub(MAX_NOTICES);
            n.drain(..extra);
        }
        self.changed();
    }

    pub fn notices(&self) -> Vec<String> {
        self.notices.lock().map(|n| n.clone()).unwrap_or_default()
    }

    pub fn info(&self) -> ActiveInfo {
        self.info.lock().map(|i| i.clone()).unwrap_or_default()
    }

    /// A new activation: what it runs; the chunk time measured for the previous one is dropped.
    pub fn set_info(&self, info: ActiveInfo) {
        if let Ok(mut i) = self.info.lock() {
            *i = info;
        }
        self.chunk_secs.store(0.0, Ordering::Relaxed);
        self.changed();
    }

    pub fn set_stem_names(&self, names: Vec<String>) {
        if let Ok(mut n) = self.stem_names.write() {
            *n = names;
        }
    }

    pub fn stem_names(&self) -> Vec<String> {
        self.stem_names.read().map(|n| n.clone()).unwrap_or_default()
    }

    /// Pack (epoch, block index) for [`Shared::play_position`].
    pub fn pack_position(epoch: u32, block: u64) -> u64 {
        ((epoch as u64 & 0xffff) << 48) | (block & 0xffff_ffff_ffff)
    }

    pub fn unpack_position(v: u64) -> (u32, u64) {
        ((v >> 48) as u32, v & 0xffff_ffff_ffff)
    }
}

/// Keep only the low 16 bits of an epoch (as stored in [`Shared::play_position`]).
pub fn epoch_tag(epoch: u32) -> u32 {
    epoch & 0xffff
}

#[allow(dead_code)]
fn _assert_sync() {
    fn is_sync<T: Sync + Send>() {}
    is_sync::<Shared>();
    let _ = RwLock::new(0);
}
