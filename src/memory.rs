//! Memory probes: the process's resident memory (RSS) and the GPU memory a model holds, for
//! the CLI's and the bench's reports and the plugin's editor.

use candle_core::Device;

/// Peak resident set size of this process in bytes (Linux: VmHWM).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// Current resident set size in bytes (Linux: VmRSS).
pub fn current_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

/// Restart [`peak_rss_bytes`] from the current RSS (Linux: `/proc/self/clear_refs`; nothing
/// elsewhere). For measurements of one step's peak memory.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time this process has used, all threads together (Unix; None elsewhere).
pub fn process_cpu_time() -> Option<std::time::Duration> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid out-pointer for the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    #[cfg(not(unix))]
    None
}

/// A `kB` line of `/proc/self/status`, in bytes (None elsewhere than Linux).
fn proc_status_bytes(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
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
        let graph = crate::backend::cuda::graph::graph_mem_peak(d).unwrap_or(0);
        return crate::backend::cuda::kernels::pool_memory(d).map(|(_, high)| high + graph);
    }
    None
}

/// Restart [`gpu_peak_memory`] from the memory in use now.
#[allow(unused_variables)]
pub fn reset_gpu_peak_memory(device: &Device) {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        crate::backend::cuda::kernels::reset_pool_peak(d);
        crate::backend::cuda::graph::reset_graph_mem_peak(d);
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
