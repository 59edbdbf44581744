//! The one place that decides which device and dtype the engine runs on.
//!
//! `auto` picks Metal on macOS (metal builds), CUDA when built with `cuda` and a GPU answers,
//! else the CPU; the probe runs once per process and is cached. A GPU that fails to start
//! falls back to the CPU with a warning (never silently). Memory probes are in
//! [`crate::memory`].

use crate::events::{Event, Gpu};
use candle_core::{DType, Device};
use std::sync::OnceLock;

/// What the user asked for (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum DeviceRequest {
    #[default]
    Auto,
    Cpu,
    Cuda,
    Metal,
}

/// Compute precision (`--precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    F32,
    F16,
    Bf16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }
}

/// The device actually in use, plus a human-readable name.
#[derive(Debug, Clone)]
pub struct Selected {
    pub device: Device,
    pub name: String,
    /// What to tell the user when the request could not be honoured as asked.
    pub warning: Option<Event>,
}

impl Selected {
    pub fn is_gpu(&self) -> bool {
        !self.device.is_cpu()
    }
    /// f32 on the CPU, f16 on GPUs.
    pub fn default_precision(&self) -> Precision {
        if self.is_gpu() { Precision::F16 } else { Precision::F32 }
    }
}

/// Errors when an explicitly requested device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("CUDA requested but this build has no `cuda` feature (rebuild with `--features cuda`)")]
    CudaNotBuilt,
    #[error("Metal requested but this build has no `metal` feature (rebuild on macOS with `--features metal`)")]
    MetalNotBuilt,
    #[error("CUDA requested but no usable GPU was found: {0} (check the NVIDIA driver, or use --device cpu)")]
    CudaUnavailable(String),
    #[error("Metal requested but no Metal device was found: {0}")]
    MetalUnavailable(String),
}

fn cpu(warning: Option<Event>) -> Selected {
    Selected { device: Device::Cpu, name: "CPU".into(), warning }
}

/// Held while a GPU is being set up (device, weights, library handles) and while a chunk pass
/// runs or is recorded as a CUDA graph (`crate::backend::cuda::graph`): set-up calls synchronise the
/// whole context and first launches load kernels, neither of which is allowed while another
/// thread records, so GPU work of several separators in one process (two plugin instances,
/// tests running in parallel) takes turns. Metal takes the same turns: candle's Metal device
/// has one command queue whose command buffer every thread's ops are encoded into, so two
/// instances' passes would interleave in it and each would wait for the other's work at every
/// synchronisation; in turns each pass runs whole, at full speed, and only one pass's
/// activations are allocated at a time (two instances do not double the peak memory). Not
/// reentrant.
pub(crate) fn gpu_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether work on `device` takes turns through [`gpu_lock`]: every GPU (CUDA and Metal), not
/// the CPU (whose threads the engines' pools share out instead).
pub fn takes_turns(device: &Device) -> bool {
    !device.is_cpu()
}

#[allow(unused_variables)]
fn try_cuda(ordinal: usize) -> Result<Device, String> {
    #[cfg(feature = "cuda")]
    {
        // A non-blocking stream of our own, not candle's default per-thread stream (which
        // synchronises with the legacy default stream): the model's work stays on one stream
        // whichever thread loads or runs it, and never waits for other libraries' work.
        // Creating it synchronises the context, so not while another thread records a graph.
        let _setup = gpu_lock();
        return candle_core::CudaDevice::new_with_stream(ordinal).map(Device::Cuda).map_err(|e| e.to_string());
    }
    #[allow(unreachable_code)]
    Err("not built with cuda".into())
}

fn try_metal() -> Result<Device, String> {
    #[cfg(feature = "metal")]
    {
        return Device::new_metal(0).map_err(|e| e.to_string());
    }
    #[allow(unreachable_code)]
    Err("not built with metal".into())
}

/// Probe for `auto` once per process.
fn auto() -> Selected {
    static AUTO: OnceLock<Selected> = OnceLock::new();
    AUTO.get_or_init(|| {
        if cfg!(feature = "metal") {
            match try_metal() {
                Ok(d) => return Selected { device: d, name: "Metal".into(), warning: None },
                Err(reason) => return cpu(Some(Event::GpuUnavailable { gpu: Gpu::Metal, reason })),
            }
        }
        if cfg!(feature = "cuda") {
            match try_cuda(0) {
                Ok(d) => return Selected { device: d, name: "CUDA:0".into(), warning: None },
                Err(reason) => return cpu(Some(Event::GpuUnavailable { gpu: Gpu::Cuda, reason })),
            }
        }
        cpu(None)
    })
    .clone()
}

/// Resolve a request. Explicit GPU requests that cannot work in this build are errors;
/// a GPU that is built in but fails to start falls back to the CPU with a warning.
pub fn select(req: DeviceRequest) -> Result<Selected, DeviceError> {
    match req {
        DeviceRequest::Auto => Ok(auto()),
        DeviceRequest::Cpu => Ok(cpu(None)),
        DeviceRequest::Cuda => {
            if !cfg!(feature = "cuda") {
                return Err(DeviceError::CudaNotBuilt);
            }
            match try_cuda(0) {
                Ok(d) => Ok(Selected { device: d, name: "CUDA:0".into(), warning: None }),
                Err(e) => Err(DeviceError::CudaUnavailable(e)),
            }
        }
        DeviceRequest::Metal => {
            if !cfg!(feature = "metal") {
                return Err(DeviceError::MetalNotBuilt);
            }
            match try_metal() {
                Ok(d) => Ok(Selected { device: d, name: "Metal".into(), warning: None }),
                Err(e) => Err(DeviceError::MetalUnavailable(e)),
            }
        }
    }
}

/// Block until queued GPU work is done (for honest per-stage timings).
pub fn synchronize(device: &Device) {
    let _ = device.synchronize();
}
