//! The RoFormer separation model: STFT on the host, band features to the device, the network
//! ([`RoformerNet`]), masks back, the complex mask multiply (averaged over overlapping bands),
//! iSTFT ([`RoformerModel`]); and what the engine builds it from ([`Roformer`]).

use super::bands::Bands;
use super::checkpoint::{self, check_tensors};
use super::config::RoformerConfig;
use super::graph::RoformerNet;
use crate::dsp::stft::Stft;
use crate::nets::checkpoint::{Checkpoint, Weights, to_device};
use crate::nets::{Event, ModelBuilder, ModelError, ModelInfo, Pass, Schedule, SeparationModel, Stage, Target};
use candle_core::{DType, Device, Result, Tensor};
use std::path::{Path, PathBuf};

/// The model's view of a chunk's spectrogram: MSST's packing of stereo bins and (re, im)
/// into each band's features, and the mask multiply back. Owns the STFT plans.
pub struct Spectral {
    pub stft: Stft,
    pub bands: Bands,
    /// Band feature offsets into a frame's feature row.
    offsets: Vec<usize>,
    /// Features per frame: the sum of the band dims.
    pub features: usize,
    zero_dc: bool,
}

impl Spectral {
    pub fn new(cfg: &RoformerConfig) -> Self {
        let bands = Bands::new(cfg);
        let dims = bands.dims();
        let offsets = dims.iter().scan(0, |o, d| {
            let s = *o;
            *o += d;
            Some(s)
        });
        let offsets: Vec<usize> = offsets.collect();
        let m = &cfg.model;
        Spectral {
            stft: Stft::new(m.stft_n_fft, m.stft_hop_length, cfg.freqs(), cfg.chunk_size),
            features: dims.iter().sum(),
            bands,
            offsets,
            zero_dc: m.zero_dc,
        }
    }

    /// One chunk's STFT ([2 channels][re | im][freqs][frames], from [`Stft::forward`]) ->
    /// band features [frames][features]: for each band, each of its bins, each channel, (re, im).
    pub fn pack(&self, spec: &[f32], out: &mut [f32]) {
        let (f_all, t_all) = (self.stft.dim_f(), self.stft.frames());
        let plane = f_all * t_all;
        for t in 0..t_all {
            let row = &mut out[t * self.features..(t + 1) * self.features];
            for (bins, &off) in self.bands.bins.iter().zip(&self.offsets) {
                for (j, &f) in bins.iter().enumerate() {
                    for ch in 0..2 {
                        let base = ch * 2 * plane + f * t_all + t;
                        row[off + (j * 2 + ch) * 2] = spec[base];
                        row[off + (j * 2 + ch) * 2 + 1] = spec[base + plane];
                    }
                }
            }
        }
    }

    /// One chunk's spectrogram and one stem's masks ([frames][features]) -> the masked
    /// spectrogram in `out` ([2 channels][re | im][freqs][frames]): each bin's complex mask
    /// is the mean over the bands that hold it, the DC bin zeroed when `zero_dc`.
    pub fn apply(&self, spec: &[f32], mask: &[f32], out: &mut [f32], acc: &mut Vec<[f32; 2]>) {
        let (f_all, t_all) = (self.stft.dim_f(), self.stft.frames());
        let plane = f_all * t_all;
        acc.clear();
        acc.resize(2 * plane, [0.0; 2]); // [ch][f][t]
        for t in 0..t_all {
            let row = &mask[t * self.features..(t + 1) * self.features];
            for (bins, &off) in self.bands.bins.iter().zip(&self.offsets) {
                for (j, &f) in bins.iter().enumerate() {
                    for ch in 0..2 {
                        let a = &mut acc[ch * plane + f * t_all + t];
                        a[0] += row[off + (j * 2 + ch) * 2];
                        a[1] += row[off + (j * 2 + ch) * 2 + 1];
                    }
                }
            }
        }
        for ch in 0..2 {
            for f in 0..f_all {
                let n = self.bands.bands_per_freq[f].max(1) as f32;
                for t in 0..t_all {
                    let i = f * t_all + t;
                    let [mr, mi] = acc[ch * plane + i];
                    let (mr, mi) = (mr / n, mi / n);
                    let (sr, si) = (spec[ch * 2 * plane + i], spec[ch * 2 * plane + plane + i]);
                    let (yr, yi) = if self.zero_dc && f == 0 { (0.0, 0.0) } else { (sr * mr - si * mi, sr * mi + si * mr) };
                    out[ch * 2 * plane + i] = yr;
                    out[ch * 2 * plane + plane + i] = yi;
                }
            }
        }
    }
}

/// A RoFormer built on a device.
pub struct RoformerModel {
    info: ModelInfo,
    net: RoformerNet,
    spectral: Spectral,
    device: Device,
    dtype: DType,
    chunk: usize,
    stems: usize,
    /// Host scratch: spectrograms [n][2][re|im][F][T], features [n][T][features], masked spectrum.
    spec: Vec<f32>,
    feats: Vec<f32>,
    masked: Vec<f32>,
    acc: Vec<[f32; 2]>,
}

impl RoformerModel {
    /// `tensors` in any dtype on any device.
    pub fn new(cfg: &RoformerConfig, tensors: &std::collections::HashMap<String, Tensor>, device: &Device, dtype: DType) -> Result<Self> {
        let mut on_device = to_device(tensors, dtype, device)?;
        // The rotary frequencies stay f32 (angles reach hundreds of radians).
        for (k, t) in tensors.iter().filter(|(k, _)| k.ends_with("rotary_embed.freqs")) {
            on_device.insert(k.clone(), t.to_dtype(DType::F32)?.to_device(device)?);
        }
        let spectral = Spectral::new(cfg);
        let net = RoformerNet::new(cfg, &spectral.bands, &Weights::new(&on_device), cfg.frames(), dtype)?;
        Ok(RoformerModel {
            info: info(cfg),
            net,
            spectral,
            device: device.clone(),
            dtype,
            chunk: cfg.chunk_size,
            stems: cfg.model.num_stems,
            spec: vec![],
            feats: vec![],
            masked: vec![],
            acc: vec![],
        })
    }

    /// The network alone (intermediate checks).
    pub fn net(&self) -> &RoformerNet {
        &self.net
    }

    pub fn spectral(&self) -> &Spectral {
        &self.spectral
    }
}

pub(crate) fn info(cfg: &RoformerConfig) -> ModelInfo {
    ModelInfo {
        sample_rate: cfg.sample_rate,
        stems: cfg.stems(),
        complement: cfg.complement_stem(),
        schedule: Schedule::Chunks { chunk: cfg.chunk_size, default_overlap: cfg.num_overlap },
    }
}

impl SeparationModel for RoformerModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn process(&mut self, input: &[f32], m: usize, out: &mut [f32], pass: &mut Pass<'_>) -> Result<()> {
        let (chunk, stems) = (self.chunk, self.stems);
        let sp = &mut self.spectral;
        let per_ch = sp.stft.spec_len();
        let frames = sp.stft.frames();
        let feats = sp.features;
        self.spec.resize(m * 2 * per_ch, 0.0);
        self.feats.resize(m * frames * feats, 0.0);
        for (i, x) in input[..m * 2 * chunk].chunks_exact(chunk).enumerate() {
            sp.stft.forward(x, &mut self.spec[i * per_ch..(i + 1) * per_ch]);
        }
        for i in 0..m {
            sp.pack(&self.spec[i * 2 * per_ch..(i + 1) * 2 * per_ch], &mut self.feats[i * frames * feats..(i + 1) * frames * feats]);
        }
        pass.lap(&self.device, Stage::Stft);
        let x = Tensor::from_slice(&self.feats, (m, frames, feats), &Device::Cpu)?.to_device(&self.device)?.to_dtype(self.dtype)?;
        pass.lap(&self.device, Stage::Upload);
        let net = &self.net;
        let masks = pass.pool.install(|| net.forward(&x))?;
        pass.lap(&self.device, Stage::Network);
        let masks = masks.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        pass.lap(&self.device, Stage::Download);
        self.masked.resize(2 * per_ch, 0.0);
        let per_mask = frames * feats;
        for i in 0..m {
            for s in 0..stems {
                let mask = &masks[(i * stems + s) * per_mask..(i * stems + s + 1) * per_mask];
                sp.apply(&self.spec[i * 2 * per_ch..(i + 1) * 2 * per_ch], mask, &mut self.masked, &mut self.acc);
                for ch in 0..2 {
                    let o = ((i * stems + s) * 2 + ch) * chunk;
                    sp.stft.inverse(&self.masked[ch * per_ch..(ch + 1) * per_ch], &mut out[o..o + chunk]);
                }
            }
        }
        pass.lap(&self.device, Stage::Istft);
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "candle"
    }
}

/// What the engine builds a RoFormer from: its config and its checked checkpoint (held until
/// [`ModelBuilder::release`], then read again from `path`).
pub struct Roformer {
    cfg: RoformerConfig,
    path: PathBuf,
    ckpt: Option<Checkpoint>,
}

impl Roformer {
    /// Read the checkpoint at `path` and check it strictly against `cfg`.
    pub fn open(cfg: RoformerConfig, path: &Path) -> std::result::Result<Self, ModelError> {
        let ckpt = Checkpoint::read(path)?;
        Self::from_checkpoint(cfg, ckpt)
    }

    /// Check `ckpt` strictly against `cfg`.
    pub fn from_checkpoint(cfg: RoformerConfig, ckpt: Checkpoint) -> std::result::Result<Self, ModelError> {
        check_tensors(&ckpt, &cfg)?;
        Ok(Roformer { path: ckpt.path.clone(), cfg, ckpt: Some(ckpt) })
    }

    /// Deterministic weights for `cfg` ([`checkpoint::random`]).
    pub fn random(cfg: RoformerConfig, seed: u64) -> Self {
        let ckpt = checkpoint::random(&cfg, seed);
        Roformer { path: ckpt.path.clone(), cfg, ckpt: Some(ckpt) }
    }

    pub fn config(&self) -> &RoformerConfig {
        &self.cfg
    }
}

impl ModelBuilder for Roformer {
    fn info(&self) -> ModelInfo {
        info(&self.cfg)
    }

    fn build(&mut self, target: &Target<'_>, _events: &mut Vec<Event>) -> std::result::Result<Box<dyn SeparationModel>, ModelError> {
        let read;
        let ckpt = match &self.ckpt {
            Some(c) => c,
            None => {
                read = Checkpoint::read(&self.path)?;
                &read
            }
        };
        let model = RoformerModel::new(&self.cfg, &ckpt.tensors, target.device, target.dtype())
            .map_err(|source| ModelError::Candle { context: format!("building the network from {}", ckpt.path.display()), source })?;
        Ok(Box::new(model))
    }

    fn release(&mut self) {
        if self.path.exists() {
            self.ckpt = None;
        }
    }
}
