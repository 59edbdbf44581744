//! What the engine tells its caller besides results: typed events (fallbacks, retries), drained
//! by the caller ([`crate::engine::Separator::drain_events`]). The CLI prints each as
//! `warning: <event>`; the plugin can show them. `Display` is the one-line message.

use std::fmt;

/// A GPU kind, for the messages that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpu {
    Cuda,
    Metal,
}

/// Something the user should know about how the work was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `--device auto` found no usable GPU of a kind this build supports; running on the CPU.
    GpuUnavailable { gpu: Gpu, reason: String },
    /// The GPU could not build the model; it runs on the CPU.
    GpuModelFailed { device: String, reason: String },
    /// Out of memory with a batch of `batch` chunks: the batch is halved to `halved` (and kept).
    OutOfMemory { device: String, batch: usize, halved: usize },
    /// A GPU error: those chunks were computed on the CPU.
    ChunksOnCpu { device: String, reason: String },
    /// Recording the chunk pass as a CUDA graph failed: from now on it is launched op by op.
    GraphRecordingFailed { device: String, reason: String },
    /// The GPU has no STFT for this model: the STFT and iSTFT run on the CPU.
    GpuStftUnavailable { reason: String },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::GpuUnavailable { gpu: Gpu::Cuda, reason } => write!(f, "no usable CUDA GPU ({reason}); running on the CPU"),
            Event::GpuUnavailable { gpu: Gpu::Metal, reason } => write!(f, "Metal GPU failed to start ({reason}); running on the CPU"),
            Event::GpuModelFailed { device, reason } => write!(f, "{device} failed to load the model ({reason}); running on the CPU"),
            Event::OutOfMemory { device, batch, halved } => {
                write!(f, "{device}: out of memory with batch {batch}; halving the batch to {halved}")
            }
            Event::ChunksOnCpu { device, reason } => write!(f, "{device} error ({reason}); this chunk was computed on the CPU"),
            Event::GraphRecordingFailed { device, reason } => {
                write!(f, "{device}: recording the chunk pass as a CUDA graph failed ({reason}); launching op by op")
            }
            Event::GpuStftUnavailable { reason } => write!(f, "GPU STFT unavailable ({reason}); the STFT runs on the CPU"),
        }
    }
}
