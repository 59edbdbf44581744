//! The separation engine: a loaded model plus its STFT, turning stereo chunks into stems.
//!
//! [`Separator`] owns the network (on the chosen device), the CPU-side STFT/iSTFT and the
//! scratch buffers reused across chunks. The CLI drives it through [`Separator::separate`]
//! (whole files); the plugin's inference thread calls [`Separator::process_chunks`] directly.
//!
//! Data path per batch: STFT on the CPU -> one upload -> network -> one download -> iSTFT.

use crate::device::{self, DeviceError, DeviceRequest, Precision, Selected};
use crate::dsp::overlap::{self, OverlapParams, Scheme};
use crate::dsp::stft::Stft;
use crate::model::config::ConfigError;
use crate::model::network::{TfcTdfNet, Weights};
use crate::model::weights::{self, Checkpoint, WeightsError};
use crate::model::ModelConfig;
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// No explicit config, no `<stem>.yaml` beside the model, and an unknown UVR hash; `detail`
    /// says what the weights determine and which values are missing.
    #[error("no config for {model}: {detail}")]
    NoConfig { model: PathBuf, expected: PathBuf, detail: String },
    #[error("model file {0} does not exist")]
    MissingModel(PathBuf),
    #[error("segment of {dim_t} frames is not usable: {reason}")]
    BadSegment { dim_t: usize, reason: String },
    #[error("{context}: {source}")]
    Candle { context: String, source: candle_core::Error },
    #[error("cannot start {threads} CPU worker threads: {reason}")]
    Threads { threads: usize, reason: String },
}

trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, EngineError>;
}

impl<T> Context<T> for candle_core::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, EngineError> {
        self.map_err(|source| EngineError::Candle { context: context(), source })
    }
}

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub model: PathBuf,
    /// Explicit config; else `<model stem>.yaml` beside the model.
    pub config: Option<PathBuf>,
    pub device: DeviceRequest,
    /// `None`: f32 on the CPU, f16 on GPUs.
    pub precision: Option<Precision>,
    /// Segment size in STFT frames (chunk = hop * (dim_t - 1)); `None`: the config's chunk_size.
    pub dim_t: Option<usize>,
    /// Run one chunk of silence after loading so the first real chunk is not slow.
    pub warmup: bool,
    /// CPU threads for the network (0 = every core this process may use). A plugin leaves some
    /// cores to the host; see [`Separator::set_threads`] to change it later.
    pub threads: usize,
}

impl LoadOptions {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        LoadOptions {
            model: model.into(),
            config: None,
            device: DeviceRequest::Cpu,
            precision: None,
            dim_t: None,
            warmup: false,
            threads: 0,
        }
    }
}

/// Find the config for a model: the explicit path, else `<stem>.yaml` next to it, else the
/// config UVR uses for the file's hash (built-in table, then UVR's/python-audio-separator's data
/// in the model's folder). Without one, the error lists what the checkpoint's shapes determine
/// and exactly which values are missing.
pub fn resolve_config(model: &Path, config: Option<&Path>) -> Result<ModelConfig, EngineError> {
    resolve_config_with(model, config, crate::models::UvrTable::builtin()).map(|(cfg, _)| cfg)
}

/// [`resolve_config`] with a given UVR table, also saying where the config came from.
pub fn resolve_config_with(
    model: &Path,
    config: Option<&Path>,
    table: &crate::models::UvrTable,
) -> Result<(ModelConfig, crate::models::ConfigOrigin), EngineError> {
    crate::models::find_config(model, config, table)
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

/// A loaded model ready to separate.
pub struct Separator {
    cfg: ModelConfig,
    model_path: PathBuf,
    net: TfcTdfNet,
    selected: Selected,
    precision: Precision,
    stft: Stft,
    chunk: usize,
    /// Host spectrogram scratch, [batch][4][dim_f][T], grown on demand.
    spec: Vec<f32>,
    /// Lazily built CPU twin used when a GPU call fails.
    cpu_fallback: Option<TfcTdfNet>,
    /// The network runs inside this pool: the CPU kernels and candle's CPU matmuls use at most
    /// its threads. Built at load with [`LoadOptions::threads`].
    pool: Arc<rayon::ThreadPool>,
    /// Largest batch the GPU ran without running out of memory, once it has (see `process_chunks`).
    gpu_batch_limit: Option<usize>,
    /// STFT/iSTFT on the GPU (CUDA; `MDX_STEMS_CPU_STFT=1` keeps them on the CPU).
    #[cfg(feature = "cuda")]
    gpu_stft: Option<crate::cuda::stft::GpuStft>,
    /// The GPU chunk pass recorded as CUDA graphs (None: launched op by op; see
    /// [`crate::cuda::graph`]). Dropped, for good, if recording ever fails.
    #[cfg(feature = "cuda")]
    graphs: Option<crate::cuda::graph::ChunkGraphs>,
    /// When `Some`, per-stage timings are collected (costs a device sync per stage).
    pub profile: Option<StageTimes>,
    /// Messages for the user (fallbacks, retries); drained by the caller.
    pub warnings: Vec<String>,
}

fn build_net(cfg: &ModelConfig, ckpt: &Checkpoint, dtype: DType, device: &Device) -> Result<TfcTdfNet, EngineError> {
    let on_dev = weights::to_device(&ckpt.tensors, dtype, device).ctx(|| "copying weights to the device".into())?;
    TfcTdfNet::new(cfg, &Weights::new(&on_dev), dtype, device).ctx(|| format!("building the network from {}", ckpt.path.display()))
}

impl Separator {
    /// Load config + weights, check them strictly, build the network on the chosen device.
    pub fn load(opts: &LoadOptions) -> Result<Self, EngineError> {
        if !opts.model.is_file() {
            return Err(EngineError::MissingModel(opts.model.clone()));
        }
        let cfg = resolve_config(&opts.model, opts.config.as_deref())?;
        let ckpt = Checkpoint::read(&opts.model)?;
        Self::from_parts(cfg, ckpt, opts)
    }

    /// Build from an already-read config and checkpoint.
    pub fn from_parts(cfg: ModelConfig, ckpt: Checkpoint, opts: &LoadOptions) -> Result<Self, EngineError> {
        weights::check_tensors(&ckpt, &cfg)?;
        let chunk = match opts.dim_t {
            Some(dim_t) => {
                let c = cfg.chunk_for_dim_t(dim_t);
                cfg.check_chunk(c).map_err(|reason| EngineError::BadSegment { dim_t, reason })?;
                c
            }
            None => cfg.audio.chunk_size,
        };
        if chunk <= cfg.audio.n_fft / 2 {
            return Err(EngineError::BadSegment {
                dim_t: chunk / cfg.audio.hop_length + 1,
                reason: format!("a chunk of {chunk} samples is shorter than half the FFT ({})", cfg.audio.n_fft),
            });
        }
        let mut selected = device::select(opts.device)?;
        // GPU set-up must not overlap another thread's CUDA graph recording (see the lock).
        let setup = selected.is_gpu().then(device::gpu_lock);
        let precision = opts.precision.unwrap_or_else(|| selected.default_precision());
        let mut warnings: Vec<String> = selected.warning.take().into_iter().collect();
        let net = match build_net(&cfg, &ckpt, precision.dtype(), &selected.device) {
            Ok(n) => n,
            Err(e) if selected.is_gpu() => {
                warnings.push(format!("{} failed to load the model ({e}); running on the CPU", selected.name));
                selected = Selected { device: Device::Cpu, name: "CPU".into(), warning: None };
                build_net(&cfg, &ckpt, precision.dtype(), &Device::Cpu)?
            }
            Err(e) => return Err(e),
        };
        drop(ckpt);
        let stft = Stft::new(cfg.audio.n_fft, cfg.audio.hop_length, cfg.audio.dim_f, chunk);
        let pool = build_pool(opts.threads)?;
        #[cfg(feature = "cuda")]
        let gpu_stft = match (&selected.device, std::env::var("MDX_STEMS_CPU_STFT").as_deref()) {
            (Device::Cuda(d), Err(_) | Ok("0")) => {
                match crate::cuda::stft::GpuStft::new(d, cfg.audio.n_fft, cfg.audio.hop_length, cfg.audio.dim_f, chunk) {
                    Ok(g) => Some(g),
                    Err(e) => {
                        warnings.push(format!("GPU STFT unavailable ({e}); the STFT runs on the CPU"));
                        None
                    }
                }
            }
            _ => None,
        };
        #[cfg(feature = "cuda")]
        let graphs = match (&selected.device, &gpu_stft) {
            (Device::Cuda(d), Some(_)) => crate::cuda::graph::ChunkGraphs::new(d),
            _ => None,
        };
        let mut sep = Separator {
            cfg,
            model_path: opts.model.clone(),
            net,
            selected,
            precision,
            stft,
            chunk,
            spec: vec![],
            cpu_fallback: None,
            pool,
            gpu_batch_limit: None,
            #[cfg(feature = "cuda")]
            gpu_stft,
            #[cfg(feature = "cuda")]
            graphs,
            profile: None,
            warnings,
        };
        drop(setup);
        if opts.warmup {
            let input = vec![0f32; 2 * chunk];
            let mut out = vec![0f32; sep.stems().len() * 2 * chunk];
            sep.process_chunks(&input, 1, &mut out)?;
        }
        Ok(sep)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    pub fn stems(&self) -> Vec<String> {
        self.cfg.stems()
    }
    pub fn num_stems(&self) -> usize {
        self.cfg.num_stems()
    }
    /// Samples per chunk at the model's rate.
    pub fn chunk_len(&self) -> usize {
        self.chunk
    }
    pub fn sample_rate(&self) -> u32 {
        self.cfg.audio.sample_rate
    }
    pub fn device_name(&self) -> &str {
        &self.selected.name
    }
    pub fn device(&self) -> &Device {
        &self.selected.device
    }
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Batch sizes whose GPU chunk pass has been recorded as a CUDA graph (empty elsewhere).
    pub fn cuda_graph_batches(&self) -> Vec<usize> {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.graphs {
            return g.batches();
        }
        vec![]
    }

    /// CPU threads the network uses (the resolved count, never 0).
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Use `n` CPU threads for the network from the next chunk on (0 = every core).
    pub fn set_threads(&mut self, n: usize) -> Result<(), EngineError> {
        if crate::kernels::pool::resolve_threads(n) != self.threads() {
            self.pool = build_pool(n)?;
        }
        Ok(())
    }

    /// Separate `n` stereo chunks: `input` is [n][2][chunk], `out` receives [n][stems][2][chunk].
    ///
    /// Chunks run in batches of up to `n` (fewer once the GPU has run out of memory): an
    /// out-of-memory error halves the batch, again and again down to 1, and the smaller batch is
    /// kept for later calls; any other GPU error (or out-of-memory at batch 1) computes those
    /// chunks on the CPU and says so in [`Separator::warnings`].
    pub fn process_chunks(&mut self, input: &[f32], n: usize, out: &mut [f32]) -> Result<(), EngineError> {
        let c = self.chunk;
        let s = self.num_stems();
        assert_eq!(input.len(), n * 2 * c, "input must be [n][2][chunk]");
        assert_eq!(out.len(), n * s * 2 * c, "output must be [n][stems][2][chunk]");
        let mut profile = self.profile.take();
        let mut t = Instant::now();
        let mut first = 0;
        let mut result = Ok(());
        while first < n {
            let m = (n - first).min(self.gpu_batch_limit.unwrap_or(usize::MAX)).max(1);
            let inp = &input[first * 2 * c..(first + m) * 2 * c];
            let o = &mut out[first * s * 2 * c..(first + m) * s * 2 * c];
            match self.chunks_on_device(inp, m, o, &mut t, &mut profile) {
                Ok(()) => first += m,
                Err(e) if self.selected.is_gpu() && m > 1 && is_oom(&e) => {
                    let half = m / 2;
                    self.warnings.push(format!("{}: out of memory with batch {m}; halving the batch to {half}", self.selected.name));
                    self.gpu_batch_limit = Some(half);
                }
                Err(e) if self.selected.is_gpu() => {
                    self.warnings.push(format!("{} error ({e}); this chunk was computed on the CPU", self.selected.name));
                    if let Err(e) = self.chunks_on_cpu_fallback(inp, m, o, &mut t, &mut profile) {
                        result = Err(e);
                        break;
                    }
                    first += m;
                }
                Err(e) => {
                    result = Err(EngineError::Candle { context: "running the network".into(), source: e });
                    break;
                }
            }
        }
        if let Some(p) = profile.as_mut() {
            p.chunks += n;
        }
        self.profile = profile;
        result
    }

    /// `m` chunks on the selected device: STFT and iSTFT on the GPU when it is a CUDA GPU,
    /// else on the CPU around the network.
    fn chunks_on_device(&mut self, inp: &[f32], m: usize, o: &mut [f32], t: &mut Instant, profile: &mut Option<StageTimes>) -> candle_core::Result<()> {
        // One GPU chunk pass at a time in the process (see `device::gpu_lock`).
        let _turn = self.selected.device.is_cuda().then(device::gpu_lock);
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.gpu_stft {
            if crate::model::nhwc::take_injected_fault() {
                candle_core::bail!("injected GPU fault (test)");
            }
            // Per-stage timings need a sync between stages: only launch by launch.
            if let (Some(graphs), None) = (self.graphs.as_mut(), profile.as_ref()) {
                let (net, chunk) = (&self.net, self.chunk);
                let pass = |audio: &Tensor| -> candle_core::Result<Tensor> { g.inverse(&net.forward_spec(&g.forward(audio, net.dtype())?)?) };
                match graphs.run(m, chunk, inp, o, &pass) {
                    Ok(()) => return Ok(()),
                    Err(e) if graphs.batches().contains(&m) => return Err(e),
                    Err(e) if is_oom(&e) => return Err(e),
                    Err(e) => {
                        self.warnings.push(format!("{}: recording the chunk pass as a CUDA graph failed ({e}); launching op by op", self.selected.name));
                        self.graphs = None;
                    }
                }
            }
            return gpu_chunks(&self.net, g, self.chunk, inp, m, o, t, profile);
        }
        let net = &self.net;
        cpu_stft_chunks(net, &self.pool, &mut self.stft, &mut self.spec, self.chunk, inp, m, o, t, profile)
    }

    fn chunks_on_cpu_fallback(&mut self, inp: &[f32], m: usize, o: &mut [f32], t: &mut Instant, profile: &mut Option<StageTimes>) -> Result<(), EngineError> {
        if self.cpu_fallback.is_none() {
            let ckpt = Checkpoint::read(&self.model_path)?;
            self.cpu_fallback = Some(build_net(&self.cfg, &ckpt, DType::F32, &Device::Cpu)?);
        }
        let net = self.cpu_fallback.as_ref().expect("built above");
        cpu_stft_chunks(net, &self.pool, &mut self.stft, &mut self.spec, self.chunk, inp, m, o, t, profile).ctx(|| "CPU fallback".into())
    }

    /// Separate a whole stereo signal ([2][n] at the model's rate) into [stems][2][n].
    pub fn separate(
        &mut self,
        mix: &[Vec<f32>],
        scheme: Scheme,
        overlap: usize,
        batch: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<Vec<f32>>>, EngineError> {
        let p = OverlapParams { chunk: self.chunk, overlap: overlap.max(1), stems: self.num_stems(), batch: batch.max(1) };
        let start = Instant::now();
        let mut run = |inp: &[f32], n: usize, out: &mut [f32]| self.process_chunks(inp, n, out);
        let result = overlap::separate(scheme, &p, mix, &mut run, progress)?;
        if let Some(prof) = self.profile.as_mut() {
            let inside = prof.stft + prof.upload + prof.network + prof.download + prof.istft;
            prof.overlap_add = start.elapsed().saturating_sub(inside);
        }
        Ok(result)
    }
}

fn build_pool(threads: usize) -> Result<Arc<rayon::ThreadPool>, EngineError> {
    crate::kernels::pool::build(threads).map_err(|e| EngineError::Threads { threads, reason: e.to_string() })
}

/// With profiling on, synchronise `device` and add the time since `t` to one stage.
fn lap(device: &Device, t: &mut Instant, slot: impl FnOnce(&mut StageTimes) -> &mut Duration, profile: &mut Option<StageTimes>) {
    if let Some(p) = profile.as_mut() {
        device::synchronize(device);
        let now = Instant::now();
        *slot(p) += now - *t;
        *t = now;
    }
}

/// `m` chunks through `net` with the STFT/iSTFT on the CPU: STFT -> one upload -> network (inside
/// `pool`, which bounds the CPU threads) -> one download -> iSTFT.
#[allow(clippy::too_many_arguments)]
fn cpu_stft_chunks(
    net: &TfcTdfNet,
    pool: &rayon::ThreadPool,
    stft: &mut Stft,
    spec: &mut Vec<f32>,
    chunk: usize,
    inp: &[f32],
    m: usize,
    o: &mut [f32],
    t: &mut Instant,
    profile: &mut Option<StageTimes>,
) -> candle_core::Result<()> {
    let dev = net.device().clone();
    let per_ch = stft.spec_len();
    let (dim_f, frames) = (stft.dim_f(), stft.frames());
    spec.resize(m * 2 * per_ch, 0.0);
    for (i, x) in inp.chunks_exact(chunk).enumerate() {
        stft.forward(x, &mut spec[i * per_ch..(i + 1) * per_ch]);
    }
    lap(&dev, t, |p| &mut p.stft, profile);
    let x = Tensor::from_slice(&spec[..m * 2 * per_ch], (m, 4, dim_f, frames), &Device::Cpu)?.to_device(&dev)?.to_dtype(net.dtype())?;
    lap(&dev, t, |p| &mut p.upload, profile);
    let y = pool.install(|| net.forward_spec(&x))?;
    lap(&dev, t, |p| &mut p.network, profile);
    let spec_out = y.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    lap(&dev, t, |p| &mut p.download, profile);
    for (i, y) in o.chunks_exact_mut(chunk).enumerate() {
        stft.inverse(&spec_out[i * per_ch..(i + 1) * per_ch], y);
    }
    lap(&dev, t, |p| &mut p.istft, profile);
    Ok(())
}

/// `m` chunks with STFT, network and iSTFT all on the CUDA GPU: upload audio, download audio.
#[cfg(feature = "cuda")]
#[allow(clippy::too_many_arguments)]
fn gpu_chunks(
    net: &TfcTdfNet,
    g: &crate::cuda::stft::GpuStft,
    chunk: usize,
    inp: &[f32],
    m: usize,
    o: &mut [f32],
    t: &mut Instant,
    profile: &mut Option<StageTimes>,
) -> candle_core::Result<()> {
    let dev = net.device().clone();
    let audio = match &dev {
        Device::Cuda(d) => crate::cuda::upload_f32(inp, &[m, 2, chunk], d)?,
        _ => Tensor::from_slice(inp, (m, 2, chunk), &Device::Cpu)?.to_device(&dev)?,
    };
    lap(&dev, t, |p| &mut p.upload, profile);
    let spec = g.forward(&audio, net.dtype())?;
    lap(&dev, t, |p| &mut p.stft, profile);
    let y = net.forward_spec(&spec)?;
    lap(&dev, t, |p| &mut p.network, profile);
    let a = g.inverse(&y)?;
    lap(&dev, t, |p| &mut p.istft, profile);
    crate::cuda::copy_to_host(&a, o)?;
    lap(&dev, t, |p| &mut p.download, profile);
    Ok(())
}

fn is_oom(e: &candle_core::Error) -> bool {
    let s = e.to_string().to_lowercase();
    s.contains("out of memory") || s.contains("out_of_memory") || s.contains("alloc_failed")
}
