//! [`EngineOptions`]: every choice about how the engine runs, in one value that its caller
//! builds once (the CLI, the bench, the plugin's loader, a test) and passes down. Nothing below
//! the caller reads the environment: [`EngineOptions::from_env`] is the one place that does, and
//! only the program edges call it (docs/architecture.md, Environment variables).

use crate::device::{DeviceRequest, Precision};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to run a model.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub device: DeviceRequest,
    /// `None`: f32 on the CPU, f16 on GPUs.
    pub precision: Option<Precision>,
    /// CPU threads for the network (0 = every core this process may use). A plugin leaves some
    /// cores to the host; [`crate::engine::Separator::set_threads`] changes it later.
    pub threads: usize,
    /// Run one chunk of silence after loading so the first real chunk is not slow.
    pub warmup: bool,
    /// Collect per-stage timings from the start (each stage then synchronises the device).
    pub profile: bool,
    /// The CUDA backend's pieces (for comparisons; the defaults are the fast path).
    pub cuda: CudaOptions,
    /// Run candle's own ops (`backend::generic`, the backend Metal runs) on every device, also
    /// where a faster backend serves (f32 on the CPU, CUDA): checks of the Metal graph without
    /// a Mac, and comparisons.
    pub generic_ops: bool,
    /// Test seam: makes GPU passes fail as a GPU error would.
    pub faults: FaultInjector,
    /// Diagnosis: per-op timings of the CPU and CUDA backends (device-synchronised), while started.
    pub op_profiler: Option<OpProfiler>,
}

/// Which parts of the CUDA path run; every one of them has a slower fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaOptions {
    /// Channels-last network with the accelerated ops below; off: candle's own ops in NCHW.
    pub channels_last: bool,
    /// cuDNN convolutions (builds with the `cudnn` feature).
    pub cudnn: bool,
    /// Our fused norm + activation, GEMM-with-accumulate and layout kernels.
    pub kernels: bool,
    /// The block's residual added inside its last convolution (cuDNN beta = 1).
    pub fused_residual: bool,
    /// STFT/iSTFT with cuFFT on the GPU; off: on the CPU (realfft), spectrograms cross the bus.
    pub gpu_stft: bool,
    /// The chunk pass recorded once per batch size and replayed as a CUDA graph.
    pub graphs: bool,
    /// f32 convolutions and GEMMs may use TF32 tensor cores.
    pub tf32: bool,
    /// The norm kernels' one-value-per-thread variant (instead of 16-byte vectors).
    pub scalar_norm: bool,
    /// How cuDNN algorithms are chosen.
    pub cudnn_search: CudnnSearch,
}

/// cuDNN algorithm choice per convolution shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudnnSearch {
    /// Rank the legacy algorithms by cuDNN's heuristic instead of timing them.
    pub heuristic: bool,
    /// Accept any legacy algorithm (else only the GEMM-type ones, whose rounding is a direct
    /// convolution's).
    pub any_algo: bool,
    /// Also time the graph API's engines and take one when it is faster (f16/bf16/TF32).
    pub graph_api: bool,
    /// Print what was tried and chosen to stderr.
    pub log: bool,
}

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions {
            channels_last: true,
            cudnn: true,
            kernels: true,
            fused_residual: true,
            gpu_stft: true,
            graphs: true,
            tf32: false,
            scalar_norm: false,
            cudnn_search: CudnnSearch { heuristic: false, any_algo: false, graph_api: true, log: false },
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            device: DeviceRequest::Cpu,
            precision: None,
            threads: 0,
            warmup: false,
            profile: false,
            cuda: CudaOptions::default(),
            generic_ops: false,
            faults: FaultInjector::default(),
            op_profiler: None,
        }
    }
}

impl EngineOptions {
    /// The defaults with the switches set in the environment (docs/architecture.md, "Environment
    /// variables": each counts when set to anything but empty or `0`). Only program edges
    /// (`main`, the bench, the plugin) call this.
    pub fn from_env() -> Self {
        let on = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0");
        let mut o = EngineOptions { generic_ops: on("MDX_STEMS_GENERIC"), ..EngineOptions::default() };
        let c = &mut o.cuda;
        c.tf32 = on("MDX_STEMS_TF32");
        c.channels_last = !on("MDX_STEMS_NCHW");
        c.cudnn = !on("MDX_STEMS_NO_CUDNN");
        c.kernels = !on("MDX_STEMS_NO_KERNELS");
        c.fused_residual = !on("MDX_STEMS_NO_FUSED_RES");
        c.gpu_stft = !on("MDX_STEMS_CPU_STFT");
        c.graphs = !on("MDX_STEMS_NO_CUDA_GRAPH");
        c.scalar_norm = on("MDX_STEMS_SCALAR_NORM");
        c.cudnn_search = CudnnSearch {
            heuristic: on("MDX_CUDNN_HEURISTIC"),
            any_algo: on("MDX_CUDNN_ANY_ALGO"),
            graph_api: !on("MDX_CUDNN_NO_GRAPH"),
            log: on("MDX_CUDNN_LOG"),
        };
        o
    }
}

/// Test seam: the next GPU chunk pass fails as a GPU error would (the engine then retries on
/// the CPU). Clones share the switch, so a test keeps one and the engine another.
#[derive(Debug, Clone, Default)]
pub struct FaultInjector(Arc<AtomicBool>);

impl FaultInjector {
    /// Make the next GPU chunk pass fail.
    pub fn fail_next_gpu_pass(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a failure was asked for, clearing the request.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// Per-op timings (op kind and input shape -> total wall time, CPU time of the process, calls),
/// collected between [`OpProfiler::start`] and [`OpProfiler::take`]; each timed op synchronises
/// the device. Clones share the collection.
#[derive(Debug, Clone, Default)]
pub struct OpProfiler(Arc<Mutex<Option<OpTimes>>>);

/// One op's totals in an [`OpProfiler`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpTime {
    pub wall: Duration,
    /// CPU time of the whole process (all threads) while the op ran; zero where not measured.
    pub cpu: Duration,
    pub calls: usize,
}

/// Op kind and input shape -> totals.
type OpTimes = BTreeMap<String, OpTime>;

impl OpProfiler {
    pub fn start(&self) {
        *self.lock() = Some(BTreeMap::new());
    }

    /// Stop collecting; (op kind and input shape, total time, calls), sorted by name.
    pub fn take(&self) -> Vec<(String, Duration, usize)> {
        self.take_all().into_iter().map(|(k, t)| (k, t.wall, t.calls)).collect()
    }

    /// Stop collecting; every op's totals, sorted by name.
    pub fn take_all(&self) -> Vec<(String, OpTime)> {
        self.lock().take().map(|m| m.into_iter().collect()).unwrap_or_default()
    }

    pub fn is_on(&self) -> bool {
        self.lock().is_some()
    }

    /// Add one call of `what` taking `d` (ignored while stopped).
    pub fn record(&self, what: String, d: Duration) {
        self.record_with_cpu(what, d, Duration::ZERO);
    }

    /// Add one call of `what` taking `wall`, during which the process used `cpu` of CPU time.
    pub fn record_with_cpu(&self, what: String, wall: Duration, cpu: Duration) {
        if let Some(m) = self.lock().as_mut() {
            let e = m.entry(what).or_default();
            e.wall += wall;
            e.cpu += cpu;
            e.calls += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<OpTimes>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
