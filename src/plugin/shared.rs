//! State shared between the plugin's threads: what the editor shows and the few numbers the
//! audio thread and the inference thread tell each other.
//!
//! One [`Shared`] per plugin instance, created in `Default` and kept for the instance's life.
//! The audio thread only touches the atomics (never the `Mutex`/`RwLock` fields); the worker
//! and the main thread write the text fields; the editor reads everything.

use atomic_float::AtomicF32;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use super::params::StemNames;

/// Where the engine stands, for the editor and for the audio thread's dry fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EngineState {
    /// No model chosen or found.
    NoModel = 0,
    /// Weights are loading on the inference thread.
    Loading = 1,
    /// Separating.
    Ready = 2,
    /// The model could not be read or run; the status text says why.
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
    /// The model's own segment size (STFT frames) and the sizes the editor offers.
    pub default_dim_t: usize,
    pub segments: Vec<usize>,
}

pub struct Shared {
    /// [`EngineState`] as a byte. Written by the main thread and the worker.
    state: AtomicU8,
    /// One line for the user: what is loaded on which device, or why nothing is.
    pub status: Mutex<String>,
    /// The model's stem names (also read by the `preset` parameter's formatter).
    pub stem_names: StemNames,
    /// Reported latency in samples and in milliseconds (set in `activate`).
    pub latency_samples: AtomicU32,
    pub latency_ms: AtomicF32,
    /// Inference time per hop divided by the hop's duration (1.0 = just real time). Worker.
    pub load: AtomicF32,
    /// Times playback fell back to the dry signal because results were late. Audio thread.
    pub dropouts: AtomicU32,
    /// Peak resident memory of the host process and peak GPU memory of the engine, in MB
    /// (negative: unknown). Worker, about once a second.
    pub peak_rss_mb: AtomicF32,
    pub gpu_mb: AtomicF32,
    /// The output block the audio thread needs by the end of its current buffer, tagged with
    /// the stream epoch in the top 16 bits; the worker skips work that would come too late.
    pub play_position: AtomicU64,
    /// What the current activation runs (editor display).
    pub info: Mutex<ActiveInfo>,
    /// Settings generation for which the editor has already asked the host for a restart (the
    /// audio thread then does not ask again).
    pub restart_asked: AtomicU32,
    /// Whether the inference thread is running (set by it; read by the offline wait).
    pub worker_alive: AtomicBool,
}

impl Shared {
    pub fn new(stem_names: StemNames) -> Self {
        Shared {
            state: AtomicU8::new(EngineState::NoModel as u8),
            status: Mutex::new(String::new()),
            stem_names,
            latency_samples: AtomicU32::new(0),
            latency_ms: AtomicF32::new(0.0),
            load: AtomicF32::new(0.0),
            dropouts: AtomicU32::new(0),
            peak_rss_mb: AtomicF32::new(-1.0),
            gpu_mb: AtomicF32::new(-1.0),
            play_position: AtomicU64::new(0),
            info: Mutex::new(ActiveInfo::default()),
            restart_asked: AtomicU32::new(u32::MAX),
            worker_alive: AtomicBool::new(false),
        }
    }

    pub fn state(&self) -> EngineState {
        EngineState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Not for the audio thread (locks the status text).
    pub fn set(&self, state: EngineState, status: impl Into<String>) {
        self.state.store(state as u8, Ordering::Release);
        if let Ok(mut s) = self.status.lock() {
            *s = status.into();
        }
    }

    pub fn status(&self) -> String {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn info(&self) -> ActiveInfo {
        self.info.lock().map(|i| i.clone()).unwrap_or_default()
    }

    pub fn set_info(&self, info: ActiveInfo) {
        if let Ok(mut i) = self.info.lock() {
            *i = info;
        }
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
