//! The TFC-TDF v3 separation model: STFT, the network, iSTFT, on one backend ([`TfcTdfModel`]),
//! and what the engine builds it from ([`TfcTdf`]: a config and a checked checkpoint).
//!
//! A chunk pass takes one of two paths. Where the backend has an STFT of its own (CUDA), only
//! audio crosses to the device and back (one upload, one download per batch), and the whole
//! pass may be recorded and replayed ([`Backend::replay`]). Elsewhere the STFT and iSTFT run on
//! the host ([`crate::dsp::stft`], realfft) and the spectrograms cross instead.

use super::checkpoint::{self, Checkpoint, Weights};
use super::config::ModelConfig;
use super::graph::TfcTdfNet;
use crate::backend::{self, Backend, Replay, StftShape, WithBackend};
use crate::dsp::stft::Stft;
use crate::nets::{Event, ModelBuilder, ModelError, ModelInfo, Pass, Schedule, SeparationModel, Stage, Target};
use crate::options::EngineOptions;
use candle_core::{DType, Device, Result, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A TFC-TDF v3 network built for one backend: spectrogram in, stems' spectrograms out.
pub trait Network: Send + Sync {
    /// `spec`: [B, 4, dim_f, T] in the compute dtype on the device -> [B, stems, 4, dim_f, T].
    fn forward_spec(&self, spec: &Tensor) -> Result<Tensor>;
    fn backend_name(&self) -> &'static str;
}

/// The network and the backend it runs on.
pub struct Net<B: Backend> {
    pub backend: B,
    pub graph: TfcTdfNet<B>,
}

impl<B: Backend> Net<B> {
    /// Build from a checkpoint's tensors already in the backend's dtype on its device.
    pub fn new(backend: B, cfg: &ModelConfig, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let graph = TfcTdfNet::new(&backend, cfg, &Weights::new(tensors))?;
        Ok(Net { backend, graph })
    }

    /// Cast a checkpoint's tensors to the backend's dtype on its device, then build.
    pub fn from_checkpoint(backend: B, cfg: &ModelConfig, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let on_device = checkpoint::to_device(tensors, backend.dtype(), backend.device())?;
        Self::new(backend, cfg, &on_device)
    }
}

impl<B: Backend> Network for Net<B> {
    fn forward_spec(&self, spec: &Tensor) -> Result<Tensor> {
        self.graph.forward(&self.backend, spec)
    }
    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }
}

/// The network for `device` and `dtype` on the backend [`backend::select`] picks, from a
/// checkpoint's tensors (any dtype, any device).
pub fn network(cfg: &ModelConfig, tensors: &HashMap<String, Tensor>, device: &Device, dtype: DType, options: &EngineOptions) -> Result<Box<dyn Network>> {
    struct Build<'a> {
        cfg: &'a ModelConfig,
        tensors: &'a HashMap<String, Tensor>,
    }
    impl WithBackend for Build<'_> {
        type Output = Box<dyn Network>;
        fn with<B: Backend>(self, backend: B) -> Result<Box<dyn Network>> {
            Ok(Box::new(Net::from_checkpoint(backend, self.cfg, self.tensors)?))
        }
    }
    backend::select(device, dtype, options, Build { cfg, tensors })
}

/// How a chunk's audio becomes the network's input and back.
enum Front<S> {
    /// On the host (realfft): spectrograms cross to the device and back. `spec` is the host
    /// spectrogram scratch, [batch][4][dim_f][T], grown on demand.
    Host { stft: Box<Stft>, spec: Vec<f32> },
    /// The backend's own STFT: only audio crosses.
    Device(S),
}

/// STFT, network and iSTFT of one model on backend `B`.
pub struct TfcTdfModel<B: Backend> {
    info: ModelInfo,
    net: Net<B>,
    chunk: usize,
    front: Front<B::Stft>,
}

impl<B: Backend> TfcTdfModel<B> {
    pub fn new(net: Net<B>, cfg: &ModelConfig, chunk: usize, events: &mut Vec<Event>) -> Self {
        let a = &cfg.audio;
        let shape = StftShape { n_fft: a.n_fft, hop: a.hop_length, dim_f: a.dim_f, len: chunk };
        let host = || Front::Host { stft: Box::new(Stft::new(a.n_fft, a.hop_length, a.dim_f, chunk)), spec: vec![] };
        let front = match net.backend.prepare_stft(shape) {
            Some(Ok(s)) => Front::Device(s),
            Some(Err(e)) => {
                events.push(Event::GpuStftUnavailable { reason: e.to_string() });
                host()
            }
            None => host(),
        };
        let info = ModelInfo {
            sample_rate: a.sample_rate,
            stems: cfg.stems(),
            complement: cfg.complement_stem(),
            schedule: Schedule::Chunks { chunk, default_overlap: cfg.default_overlap() },
        };
        TfcTdfModel { info, net, chunk, front }
    }
}

impl<B: Backend> SeparationModel for TfcTdfModel<B> {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn device(&self) -> &Device {
        self.net.backend.device()
    }

    fn process(&mut self, input: &[f32], m: usize, out: &mut [f32], pass: &mut Pass<'_>) -> Result<()> {
        let (net, chunk) = (&self.net, self.chunk);
        let b = &net.backend;
        let dev = b.device();
        match &mut self.front {
            Front::Device(st) => {
                let st = &*st;
                // Per-stage timings need a sync between stages: only launch by launch.
                if !pass.profiling() {
                    let whole = |audio: &Tensor| -> Result<Tensor> { b.istft(st, &net.forward_spec(&b.stft(st, audio)?)?) };
                    match b.replay(m, chunk, input, out, &whole)? {
                        Replay::Done => return Ok(()),
                        Replay::NotRecorded => {}
                        Replay::RecordingFailed(e) => {
                            pass.events.push(Event::GraphRecordingFailed { device: pass.device_name.to_string(), reason: e.to_string() })
                        }
                    }
                }
                // Upload audio, STFT, network, iSTFT, download audio.
                let audio = b.upload(input, &[m, 2, chunk])?;
                pass.lap(dev, Stage::Upload);
                let spec = b.stft(st, &audio)?;
                pass.lap(dev, Stage::Stft);
                let y = net.forward_spec(&spec)?;
                pass.lap(dev, Stage::Network);
                let a = b.istft(st, &y)?;
                pass.lap(dev, Stage::Istft);
                b.download(&a, out)?;
                pass.lap(dev, Stage::Download);
            }
            Front::Host { stft, spec } => {
                // STFT -> one upload -> network (inside the pool, which bounds the CPU threads)
                // -> one download -> iSTFT.
                let per_ch = stft.spec_len();
                let (dim_f, frames) = (stft.dim_f(), stft.frames());
                spec.resize(m * 2 * per_ch, 0.0);
                for (i, x) in input.chunks_exact(chunk).enumerate() {
                    stft.forward(x, &mut spec[i * per_ch..(i + 1) * per_ch]);
                }
                pass.lap(dev, Stage::Stft);
                let x = Tensor::from_slice(&spec[..m * 2 * per_ch], (m, 4, dim_f, frames), &Device::Cpu)?.to_device(dev)?.to_dtype(b.dtype())?;
                pass.lap(dev, Stage::Upload);
                let y = pass.pool.install(|| net.forward_spec(&x))?;
                pass.lap(dev, Stage::Network);
                let spec_out = y.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
                pass.lap(dev, Stage::Download);
                for (i, y) in out.chunks_exact_mut(chunk).enumerate() {
                    stft.inverse(&spec_out[i * per_ch..(i + 1) * per_ch], y);
                }
                pass.lap(dev, Stage::Istft);
            }
        }
        Ok(())
    }

    fn recorded_batches(&self) -> Vec<usize> {
        self.net.backend.replayed_batches()
    }

    fn backend_name(&self) -> &'static str {
        self.net.backend.name()
    }
}

/// What the engine builds a TFC-TDF v3 model from: its config, the chunk length, and its
/// checked checkpoint (held until [`ModelBuilder::release`], then read again from `path` when
/// another build needs it).
pub struct TfcTdf {
    cfg: ModelConfig,
    chunk: usize,
    path: PathBuf,
    ckpt: Option<Checkpoint>,
}

impl TfcTdf {
    /// Read the checkpoint at `path` and check it against `cfg` (see [`TfcTdf::from_checkpoint`]).
    pub fn open(cfg: ModelConfig, path: &Path, segment: Option<usize>) -> std::result::Result<Self, ModelError> {
        let ckpt = Checkpoint::read(path)?;
        Self::from_checkpoint(cfg, ckpt, segment)
    }

    /// Check `ckpt` strictly against `cfg`; `segment`: STFT frames per chunk (chunk =
    /// hop * (segment - 1)), `None`: the config's chunk_size.
    pub fn from_checkpoint(cfg: ModelConfig, ckpt: Checkpoint, segment: Option<usize>) -> std::result::Result<Self, ModelError> {
        checkpoint::check_tensors(&ckpt, &cfg)?;
        let chunk = match segment {
            Some(dim_t) => {
                let c = cfg.chunk_for_dim_t(dim_t);
                cfg.check_chunk(c).map_err(|reason| ModelError::BadSegment { dim_t, reason })?;
                c
            }
            None => cfg.audio.chunk_size,
        };
        if chunk <= cfg.audio.n_fft / 2 {
            return Err(ModelError::BadSegment {
                dim_t: chunk / cfg.audio.hop_length + 1,
                reason: format!("a chunk of {chunk} samples is shorter than half the FFT ({})", cfg.audio.n_fft),
            });
        }
        Ok(TfcTdf { cfg, chunk, path: ckpt.path.clone(), ckpt: Some(ckpt) })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
}

impl ModelBuilder for TfcTdf {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            sample_rate: self.cfg.audio.sample_rate,
            stems: self.cfg.stems(),
            complement: self.cfg.complement_stem(),
            schedule: Schedule::Chunks { chunk: self.chunk, default_overlap: self.cfg.default_overlap() },
        }
    }

    fn build(&mut self, target: &Target<'_>, events: &mut Vec<Event>) -> std::result::Result<Box<dyn SeparationModel>, ModelError> {
        let read;
        let ckpt = match &self.ckpt {
            Some(c) => c,
            None => {
                read = Checkpoint::read(&self.path)?;
                &read
            }
        };
        let ctx = |context: String| move |source| ModelError::Candle { context, source };
        let tensors = checkpoint::to_device(&ckpt.tensors, target.dtype(), target.device).map_err(ctx("copying weights to the device".into()))?;
        struct Build<'a> {
            cfg: &'a ModelConfig,
            chunk: usize,
            tensors: &'a HashMap<String, Tensor>,
            events: &'a mut Vec<Event>,
        }
        impl WithBackend for Build<'_> {
            type Output = Box<dyn SeparationModel>;
            fn with<B: Backend>(self, backend: B) -> Result<Box<dyn SeparationModel>> {
                let net = Net::new(backend, self.cfg, self.tensors)?;
                Ok(Box::new(TfcTdfModel::new(net, self.cfg, self.chunk, self.events)))
            }
        }
        let build = Build { cfg: &self.cfg, chunk: self.chunk, tensors: &tensors, events };
        backend::select(target.device, target.dtype(), target.options, build)
            .map_err(ctx(format!("building the network from {}", ckpt.path.display())))
    }

    fn release(&mut self) {
        self.ckpt = None;
    }
}
