//! The one place that decides which device and dtype the engine runs on.
//!
//! `auto` picks Metal on macOS (metal builds), CUDA when built with `cuda` and a GPU answers,
//! else the CPU; the probe runs once per process and is cached. A GPU that fails to start
//! falls back to the CPU with a warning (never silently).

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
    /// Warning to show the user when the request could not be honoured as asked.
    pub warning: Option<String>,
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

fn cpu(warning: Option<String>) -> Selected {
    Selected { device: Device::Cpu, name: "CPU".into(), warning }
}

/// Held while a GPU is being set up (device, weights, library handles) and while a chunk pass
/// runs or is recorded as a CUDA graph (`crate::cuda::graph`): set-up calls synchronise the
/// whole context and first launches load kernels, neither of which is allowed while another
/// thread records, so GPU work of several separators in one process (two plugin instances,
/// tests running in parallel) takes turns. Not reentrant.
pub(crate) fn gpu_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
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
                Err(e) => return cpu(Some(format!("Metal GPU failed to start ({e}); running on the CPU"))),
            }
        }
        if cfg!(feature = "cuda") {
            match try_cuda(0) {
                Ok(d) => return Selected { device: d, name: "CUDA:0".into(), warning: None },
                Err(e) => return cpu(Some(format!("no usable CUDA GPU ({e}); running on the CPU"))),
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

/// Peak resident set size of this process in bytes (Linux: VmHWM; macOS: ru_maxrss).
pub fn peak_rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let s = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        return Some(kb * 1024);
    }
    #[allow(unreachable_code)]
    None
}

/// Current resident set size in bytes (Linux).
pub fn current_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Peak bytes of GPU memory held by tensors and workspaces since the last
/// [`reset_gpu_peak_memory`] (CUDA: the high-water mark of the allocation pool), where the
/// backend can tell. Comparable to PyTorch's `torch.cuda.max_memory_allocated`.
#[allow(unused_variables)]
pub fn gpu_peak_memory(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        // Stream-ordered allocations outside and inside CUDA graphs come from separate pools.
        let graph = crate::cuda::graph::graph_mem_peak(d).unwrap_or(0);
        return crate::cuda::pool_memory(d).map(|(_, high)| high + graph);
    }
    None
}

/// Restart [`gpu_peak_memory`] from the memory in use now.
#[allow(unused_variables)]
pub fn reset_gpu_peak_memory(device: &Device) {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        crate::cuda::reset_pool_peak(d);
        crate::cuda::graph::reset_graph_mem_peak(d);
    }
}

/// GPU memory in use on the device in bytes, where the backend can tell.
#[allow(unused_variables)]
pub fn gpu_memory_used(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    {
        if let Device::Cuda(_) = device {
            // cudarc's driver API: total - free on the current context.
            if let Ok((free, total)) = candle_core::cuda::cudarc::driver::result::mem_get_info() {
                return Some((total - free) as u64);
            }
        }
    }
    None
}
