//! The engine: a separation model on the chosen device, fed chunks.
//!
//! [`Separator`] owns a [`SeparationModel`] (built by a [`ModelBuilder`] on the device
//! [`crate::device::select`] picks), the CPU threads the model may use, and what happens when
//! the GPU fails: an out-of-memory error halves the batch (and keeps it halved), any other GPU
//! error computes those chunks on a CPU twin of the model, built when first needed. What the
//! caller should know comes out as typed [`Event`]s ([`Separator::drain_events`]). Whole-signal
//! separation (chunking and overlap-add, [`Separator::separate`]) is in [`whole`].
//!
//! The engine sees only the model interface ([`crate::nets`]); [`Separator::load`] resolves a
//! model file with [`crate::catalog`] first, then builds.

mod stream;
#[cfg(test)]
pub(crate) mod testing;
mod whole;

pub use stream::{Chunking, StreamPipeline, StreamSettings};

use crate::backend::cpu::kernels::pool;
use crate::backend::is_out_of_memory;
use crate::catalog::CatalogError;
use crate::device::{self, DeviceError, Precision, Selected};
use crate::nets::{ModelBuilder, ModelError, ModelInfo, Pass, SeparationModel, Target};
use crate::options::EngineOptions;
use candle_core::Device;
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::backend::cpu::kernels::pool::resolve_threads;
pub use crate::events::Event;
pub use crate::nets::StageTimes;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{context}: {source}")]
    Candle { context: String, source: candle_core::Error },
    #[error("cannot start {threads} CPU worker threads: {reason}")]
    Threads { threads: usize, reason: String },
}

/// The rate built-ins are built at when the caller names none.
pub const DEFAULT_RATE: u32 = 44100;

/// A model file to load: resolved by [`crate::catalog`], then built with `options`.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub model: PathBuf,
    /// Explicit config; else `<model stem>.yaml` beside the model, else UVR's hash table.
    pub config: Option<PathBuf>,
    /// Segment size in STFT frames (chunk = hop * (segment - 1)); `None`: the config's chunk_size.
    pub segment: Option<usize>,
    /// The rate to build a model that runs at any rate (the built-ins) at; `None`: 44100.
    /// Networks have their own rate.
    pub sample_rate: Option<u32>,
    pub options: EngineOptions,
}

impl LoadOptions {
    /// `model` with its config found as usual, default options (CPU).
    pub fn new(model: impl Into<PathBuf>) -> Self {
        LoadOptions { model: model.into(), config: None, segment: None, sample_rate: None, options: EngineOptions::default() }
    }
}

/// A loaded model ready to separate.
pub struct Separator {
    model: Box<dyn SeparationModel>,
    /// Builds the CPU twin when a GPU call fails.
    builder: Box<dyn ModelBuilder>,
    selected: Selected,
    precision: Precision,
    options: EngineOptions,
    /// The CPU twin, built on the first GPU error.
    cpu_fallback: Option<Box<dyn SeparationModel>>,
    /// The model's CPU work runs inside this pool: the CPU kernels and candle's CPU matmuls use
    /// at most its threads. Built at load with [`EngineOptions::threads`].
    pool: Arc<pool::CpuPool>,
    /// Largest batch the GPU ran without running out of memory, once it has (see `process_chunks`).
    gpu_batch_limit: Option<usize>,
    /// When `Some`, per-stage timings are collected (costs a device sync per stage).
    pub profile: Option<StageTimes>,
    /// Not yet drained by the caller.
    events: Vec<Event>,
}

impl Separator {
    /// Resolve the model (a built-in name, or a file -> config), read and check its weights,
    /// and build it.
    pub fn load(load: &LoadOptions) -> Result<Self, EngineError> {
        let resolved = crate::catalog::resolve_any(&load.model, load.config.as_deref())?;
        let builder = resolved.open(load.segment, load.sample_rate.unwrap_or(DEFAULT_RATE))?;
        Self::new(builder, &load.options)
    }

    /// Build the model on the device `options` asks for (a GPU that cannot build it falls back
    /// to the CPU in f32, with an event).
    pub fn new(mut builder: Box<dyn ModelBuilder>, options: &EngineOptions) -> Result<Self, EngineError> {
        let mut selected = device::select(options.device)?;
        // GPU set-up must not overlap another thread's GPU work (see the lock).
        let setup = device::takes_turns(&selected.device).then(device::gpu_lock);
        let asked = options.precision.unwrap_or_else(|| selected.default_precision());
        let mut events: Vec<Event> = selected.warning.take().into_iter().collect();
        let on_gpu = selected.is_gpu();
        let (model, on_cpu) = build_or_fall_back(builder.as_mut(), &selected.device, on_gpu, asked, options, &mut events, &selected.name)?;
        let precision = if on_cpu {
            selected = Selected { device: Device::Cpu, name: "CPU".into(), warning: None };
            CPU_FALLBACK_PRECISION
        } else {
            asked
        };
        builder.release();
        if !model.device().same_device(&selected.device) {
            // The model computes elsewhere (a built-in runs on the CPU whatever was asked).
            selected = Selected { device: model.device().clone(), name: "CPU".into(), warning: None };
        }
        let pool = build_pool(options.threads)?;
        let mut sep = Separator {
            model,
            builder,
            selected,
            precision,
            options: options.clone(),
            cpu_fallback: None,
            pool,
            gpu_batch_limit: None,
            profile: options.profile.then(StageTimes::default),
            events,
        };
        drop(setup);
        if options.warmup {
            let unit = sep.unit_len();
            let input = vec![0f32; 2 * unit];
            let mut out = vec![0f32; sep.num_stems() * 2 * unit];
            let profile = sep.profile.take();
            sep.process_chunks(&input, 1, &mut out)?;
            sep.profile = profile;
            sep.model.reset();
        }
        Ok(sep)
    }

    /// What the model needs: rate, stems, schedule.
    pub fn info(&self) -> &ModelInfo {
        self.model.info()
    }
    pub fn stems(&self) -> Vec<String> {
        self.info().stems.clone()
    }
    pub fn num_stems(&self) -> usize {
        self.info().stems.len()
    }
    /// Samples per chunk (or per block of a streaming model) at the model's rate.
    pub fn chunk_len(&self) -> usize {
        self.unit_len()
    }
    fn unit_len(&self) -> usize {
        self.info().unit_len()
    }
    pub fn sample_rate(&self) -> u32 {
        self.info().sample_rate
    }
    /// The model's default overlap for whole-signal separation.
    pub fn default_overlap(&self) -> usize {
        self.info().default_overlap()
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
    /// What computes the model ("CPU kernels", "channels-last CUDA", "candle").
    pub fn backend_name(&self) -> &'static str {
        self.model.backend_name()
    }

    /// Start a new stream (streaming models keep state between calls; chunked ones do not).
    pub fn reset(&mut self) {
        self.model.reset();
        if let Some(m) = self.cpu_fallback.as_mut() {
            m.reset();
        }
    }

    /// Events since the last drain (fallbacks, retries), oldest first.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Events not drained yet.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Batch sizes whose GPU chunk pass has been recorded as a CUDA graph (empty elsewhere).
    pub fn cuda_graph_batches(&self) -> Vec<usize> {
        self.model.recorded_batches()
    }

    /// The options the engine was built with (their test seams are shared with the caller's).
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// CPU threads the model uses (the resolved count, never 0).
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Use `n` CPU threads for the model from the next chunk on (0 = every core).
    pub fn set_threads(&mut self, n: usize) -> Result<(), EngineError> {
        if pool::resolve_threads(n) != self.threads() {
            self.pool = build_pool(n)?;
        }
        self.options.threads = n;
        Ok(())
    }

    /// Separate `n` stereo chunks: `input` is [n][2][chunk], `out` receives [n][stems][2][chunk].
    ///
    /// Chunks run in batches of up to `n` (fewer once the GPU has run out of memory): an
    /// out-of-memory error halves the batch, again and again down to 1, and the smaller batch is
    /// kept for later calls; any other GPU error (or out-of-memory at batch 1) computes those
    /// chunks on the CPU and says so ([`Event::ChunksOnCpu`]).
    pub fn process_chunks(&mut self, input: &[f32], n: usize, out: &mut [f32]) -> Result<(), EngineError> {
        let c = self.unit_len();
        let s = self.num_stems();
        assert_eq!(input.len(), n * 2 * c, "input must be [n][2][chunk]");
        assert_eq!(out.len(), n * s * 2 * c, "output must be [n][stems][2][chunk]");
        let mut profile = self.profile.take();
        let on_gpu = self.selected.is_gpu();
        let mut first = 0;
        let mut result = Ok(());
        let mut events = std::mem::take(&mut self.events);
        {
            let mut pass = Pass::new(&self.pool, profile.as_mut(), &self.selected.name, &mut events);
            while first < n {
                let m = (n - first).min(self.gpu_batch_limit.unwrap_or(usize::MAX)).max(1);
                let inp = &input[first * 2 * c..(first + m) * 2 * c];
                let o = &mut out[first * s * 2 * c..(first + m) * s * 2 * c];
                let r = if on_gpu && self.options.faults.take() {
                    Err(candle_core::Error::Msg("injected GPU fault (test)".into()))
                } else {
                    // One GPU chunk pass at a time in the process (see `device::gpu_lock`).
                    let _turn = device::takes_turns(&self.selected.device).then(device::gpu_lock);
                    self.model.process(inp, m, o, &mut pass)
                };
                match r {
                    Ok(()) => first += m,
                    Err(e) if on_gpu && m > 1 && is_out_of_memory(&e) => {
                        let half = m / 2;
                        pass.events.push(Event::OutOfMemory { device: self.selected.name.clone(), batch: m, halved: half });
                        self.gpu_batch_limit = Some(half);
                    }
                    Err(e) if on_gpu => {
                        pass.events.push(Event::ChunksOnCpu { device: self.selected.name.clone(), reason: e.to_string() });
                        if let Err(e) = cpu_fallback(&mut self.cpu_fallback, self.builder.as_mut(), &self.options, pass.events)
                            .and_then(|cpu| cpu.process(inp, m, o, &mut pass).map_err(|source| EngineError::Candle { context: "CPU fallback".into(), source }))
                        {
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
        }
        self.events = events;
        if let Some(p) = profile.as_mut() {
            p.chunks += n;
        }
        self.profile = profile;
        result
    }
}

/// What the CPU computes in when the GPU cannot: f32, on our CPU kernels (in f16 or bf16 the
/// CPU would run candle's generic ops, many times slower).
const CPU_FALLBACK_PRECISION: Precision = Precision::F32;

/// Build on `device` in `precision`; when that fails on a GPU (`on_gpu`), say so and build on the
/// CPU in [`CPU_FALLBACK_PRECISION`] instead. Also returns whether the model is that CPU build.
fn build_or_fall_back(
    builder: &mut dyn ModelBuilder,
    device: &Device,
    on_gpu: bool,
    precision: Precision,
    options: &EngineOptions,
    events: &mut Vec<Event>,
    device_name: &str,
) -> Result<(Box<dyn SeparationModel>, bool), EngineError> {
    match builder.build(&Target { device, precision, options }, events) {
        Ok(m) => Ok((m, false)),
        Err(e) if on_gpu => {
            events.push(Event::GpuModelFailed { device: device_name.to_string(), reason: e.to_string() });
            let cpu = builder.build(&Target { device: &Device::Cpu, precision: CPU_FALLBACK_PRECISION, options }, events)?;
            Ok((cpu, true))
        }
        Err(e) => Err(e.into()),
    }
}

/// The CPU twin of the model (f32), built on first use.
fn cpu_fallback<'a>(
    slot: &'a mut Option<Box<dyn SeparationModel>>,
    builder: &mut dyn ModelBuilder,
    options: &EngineOptions,
    events: &mut Vec<Event>,
) -> Result<&'a mut Box<dyn SeparationModel>, EngineError> {
    if slot.is_none() {
        *slot = Some(builder.build(&Target { device: &Device::Cpu, precision: CPU_FALLBACK_PRECISION, options }, events)?);
    }
    Ok(slot.as_mut().expect("built above"))
}

/// The network's pool: shared with every engine of the process that uses as many threads.
fn build_pool(threads: usize) -> Result<Arc<pool::CpuPool>, EngineError> {
    pool::shared(threads).map_err(|e| EngineError::Threads { threads, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A builder whose first build fails (as a GPU's can), recording what each build was asked.
    struct FailsFirst {
        inner: Box<dyn ModelBuilder>,
        asked: Vec<(bool, Precision)>,
    }

    impl ModelBuilder for FailsFirst {
        fn info(&self) -> ModelInfo {
            self.inner.info()
        }
        fn build(&mut self, t: &Target<'_>, events: &mut Vec<Event>) -> Result<Box<dyn SeparationModel>, ModelError> {
            self.asked.push((t.device.is_cpu(), t.precision));
            if self.asked.len() == 1 {
                return Err(ModelError::Candle { context: "test".into(), source: candle_core::Error::Msg("injected build failure".into()) });
            }
            self.inner.build(t, events)
        }
    }

    fn fixture_builder() -> FailsFirst {
        let dir = crate::testing::fixture_dir("tiny_instnorm_gelu");
        let net = crate::nets::from_yaml_file(&dir.join("config.yaml")).unwrap();
        FailsFirst { inner: net.open(&dir.join("model.ckpt"), None).unwrap(), asked: vec![] }
    }

    /// A GPU that cannot build the model (asked for f16) falls back to our f32 CPU kernels, not
    /// to candle's f16 ops on the CPU, and says so.
    #[test]
    fn a_gpu_that_cannot_build_the_model_falls_back_to_the_f32_cpu_kernels() {
        let mut b = fixture_builder();
        let mut events = vec![];
        let opts = EngineOptions::default();
        let (model, on_cpu) = build_or_fall_back(&mut b, &Device::Cpu, true, Precision::F16, &opts, &mut events, "Metal").unwrap();
        assert!(on_cpu);
        assert_eq!(b.asked, vec![(true, Precision::F16), (true, Precision::F32)]);
        assert_eq!(model.backend_name(), "CPU kernels");
        assert!(matches!(&events[..], [Event::GpuModelFailed { device, .. }] if device == "Metal"), "{events:?}");
    }

    /// On the CPU a failed build is an error, not a retry.
    #[test]
    fn a_cpu_build_failure_is_an_error() {
        let mut b = fixture_builder();
        let mut events = vec![];
        let r = build_or_fall_back(&mut b, &Device::Cpu, false, Precision::F32, &EngineOptions::default(), &mut events, "CPU");
        assert!(r.is_err());
        assert_eq!(b.asked.len(), 1);
        assert!(events.is_empty());
    }
}
