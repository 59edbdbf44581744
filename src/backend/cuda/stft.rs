//! STFT and iSTFT on the GPU (cuFFT + the kernels in `kernels.cu`), computing exactly what
//! [`crate::dsp::stft::Stft`] computes on the CPU (torch.stft / torch.istft: periodic Hann,
//! center=True with reflect padding, one-sided, no normalisation), in f32.
//!
//! With it the engine uploads audio (2 MB per chunk) instead of a spectrogram (16 MB) and
//! downloads audio (4 MB per stem pair) instead of stem spectrograms, and the CPU does no FFTs.
//! cuFFT plans are cached per batch size; dropping the [`GpuStft`] frees them.

use super::kernels::{MODULE, PTX, sfx, view, wrap};
use candle_core::cuda::cudarc::cufft::{result as fr, sys as fs};
use candle_core::cuda::cudarc::driver::{CudaSlice, DevicePtrMut, LaunchConfig, PushKernelArg};
use candle_core::cuda::WrapErr;
use candle_core::{CudaDevice, DType, Result, Tensor, bail};
use std::collections::HashMap;
use std::sync::Mutex;

fn err(what: &str, e: fr::CufftError) -> candle_core::Error {
    candle_core::Error::Msg(format!("cuFFT {what}: {e:?}"))
}

struct Plans {
    /// (inverse, batch rows) -> plan
    map: HashMap<(bool, usize), fs::cufftHandle>,
}

impl Drop for Plans {
    fn drop(&mut self) {
        for (_, p) in self.map.drain() {
            unsafe {
                let _ = fr::destroy(p);
            }
        }
    }
}

/// GPU STFT/iSTFT for one (n_fft, hop, dim_f, chunk length).
pub struct GpuStft {
    dev: CudaDevice,
    n_fft: usize,
    hop: usize,
    dim_f: usize,
    len: usize,
    frames: usize,
    window: CudaSlice<f32>,
    inv_env: CudaSlice<f32>,
    plans: Mutex<Plans>,
}

fn launch_cfg(items: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (items.div_ceil(256).clamp(1, 1 << 20) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

impl GpuStft {
    pub fn new(dev: &CudaDevice, n_fft: usize, hop: usize, dim_f: usize, len: usize) -> Result<Self> {
        assert!(n_fft % 2 == 0 && len % hop == 0 && dim_f <= n_fft / 2 + 1 && len > n_fft / 2);
        let frames = len / hop + 1;
        let window = crate::dsp::stft::hann_window(n_fft);
        let inv_env = crate::dsp::stft::inverse_envelope(&window, hop, len);
        Ok(GpuStft {
            dev: dev.clone(),
            n_fft,
            hop,
            dim_f,
            len,
            frames,
            window: dev.clone_htod(&window)?,
            inv_env: dev.clone_htod(&inv_env)?,
            plans: Mutex::new(Plans { map: HashMap::new() }),
        })
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    fn plan(&self, inverse: bool, rows: usize) -> Result<fs::cufftHandle> {
        let mut plans = self.plans.lock().unwrap();
        if let Some(p) = plans.map.get(&(inverse, rows)) {
            return Ok(*p);
        }
        let ty = if inverse { fs::cufftType::CUFFT_C2R } else { fs::cufftType::CUFFT_R2C };
        self.dev.cuda_stream().context().bind_to_thread().w()?;
        let p = fr::plan_1d(self.n_fft as i32, ty, rows as i32).map_err(|e| err("plan", e))?;
        unsafe { fr::set_stream(p, self.dev.cuda_stream().cu_stream() as fs::cudaStream_t) }.map_err(|e| err("set stream", e))?;
        plans.map.insert((inverse, rows), p);
        Ok(p)
    }

    /// `audio` [N, 2, len] f32 on the device -> spectrogram [N, 4, dim_f, T] in `dtype`
    /// (ch0.re, ch0.im, ch1.re, ch1.im), as the network takes it.
    pub fn forward(&self, audio: &Tensor, dtype: DType) -> Result<Tensor> {
        let audio = audio.contiguous()?;
        let (n, ch, len) = audio.dims3()?;
        if ch != 2 || len != self.len || audio.dtype() != DType::F32 {
            bail!("GpuStft::forward: expected [N, 2, {}] f32, got {:?} {:?}", self.len, audio.dims(), audio.dtype());
        }
        let (t, nf, nb) = (self.frames, self.n_fft, self.n_fft / 2 + 1);
        let rows = n * 2 * t;
        let dev = &self.dev;
        let mut frames = unsafe { dev.alloc::<f32>(rows * nf)? };
        let mut bins = unsafe { dev.alloc::<f32>(rows * nb * 2)? };
        let (ag, al) = audio.storage_and_layout();
        let av = view::<f32>(&ag, al, n * 2 * len)?;
        let (leni, nfi, hopi, ti) = (len as i32, nf as i32, self.hop as i32, t as i32);
        let total = rows * nf;
        {
            let f = dev.get_or_load_custom_func("stft_frames", MODULE, PTX)?;
            let mut lb = f.builder();
            lb.arg(&av).arg(&self.window).arg(&mut frames).arg(&leni).arg(&nfi).arg(&hopi).arg(&ti).arg(&total);
            unsafe { lb.launch(launch_cfg(total)) }.w()?;
        }
        drop(av);
        drop(ag);
        let plan = self.plan(false, rows)?;
        {
            let stream = dev.cuda_stream();
            let (ip, _gi) = frames.device_ptr_mut(&stream);
            let (op, _go) = bins.device_ptr_mut(&stream);
            unsafe { fr::exec_r2c(plan, ip as *mut fs::cufftReal, op as *mut fs::cufftComplex) }.map_err(|e| err("R2C", e))?;
        }
        drop(frames);
        let total = n * 4 * self.dim_f * t;
        let (nbi, dfi) = (nb as i32, self.dim_f as i32);
        let name = format!("stft_pack_{}", sfx(dtype)?);
        let f = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
        let out = match dtype {
            DType::F32 => {
                let mut o = unsafe { dev.alloc::<f32>(total)? };
                let mut lb = f.builder();
                lb.arg(&bins).arg(&mut o).arg(&nbi).arg(&dfi).arg(&ti).arg(&total);
                unsafe { lb.launch(launch_cfg(total)) }.w()?;
                wrap(o, dev, (n, 4, self.dim_f, t))
            }
            DType::F16 => {
                let mut o = unsafe { dev.alloc::<half::f16>(total)? };
                let mut lb = f.builder();
                lb.arg(&bins).arg(&mut o).arg(&nbi).arg(&dfi).arg(&ti).arg(&total);
                unsafe { lb.launch(launch_cfg(total)) }.w()?;
                wrap(o, dev, (n, 4, self.dim_f, t))
            }
            DType::BF16 => {
                let mut o = unsafe { dev.alloc::<half::bf16>(total)? };
                let mut lb = f.builder();
                lb.arg(&bins).arg(&mut o).arg(&nbi).arg(&dfi).arg(&ti).arg(&total);
                unsafe { lb.launch(launch_cfg(total)) }.w()?;
                wrap(o, dev, (n, 4, self.dim_f, t))
            }
            d => bail!("GpuStft: unsupported dtype {d:?}"),
        };
        Ok(out)
    }

    /// Stems' spectrograms [N, S, 4, dim_f, T] (any float dtype) -> audio [N, S, 2, len] f32.
    pub fn inverse(&self, spec: &Tensor) -> Result<Tensor> {
        let spec = spec.contiguous()?;
        let (n, s, c4, dim_f, t) = spec.dims5()?;
        if c4 != 4 || dim_f != self.dim_f || t != self.frames {
            bail!("GpuStft::inverse: unexpected spectrogram {:?}", spec.dims());
        }
        let (nf, nb) = (self.n_fft, self.n_fft / 2 + 1);
        let j = n * s * 2;
        let rows = j * t;
        let dev = &self.dev;
        let mut bins = unsafe { dev.alloc::<f32>(rows * nb * 2)? };
        let (nbi, dfi, ti) = (nb as i32, dim_f as i32, t as i32);
        let total = rows * nb;
        {
            let name = format!("istft_unpack_{}", sfx(spec.dtype())?);
            let f = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
            let (sg, sl) = spec.storage_and_layout();
            let len = spec.elem_count();
            let mut lb = f.builder();
            match spec.dtype() {
                DType::F32 => {
                    let v = view::<f32>(&sg, sl, len)?;
                    lb.arg(&v).arg(&mut bins).arg(&nbi).arg(&dfi).arg(&ti).arg(&total);
                    unsafe { lb.launch(launch_cfg(total)) }.w()?;
                }
                DType::F16 => {
                    let v = view::<half::f16>(&sg, sl, len)?;
                    lb.arg(&v).arg(&mut bins).arg(&nbi).arg(&dfi).arg(&ti).arg(&total);
                    unsafe { lb.launch(launch_cfg(total)) }.w()?;
                }
                DType::BF16 => {
                    let v = view::<half::bf16>(&sg, sl, len)?;
                    lb.arg(&v).arg(&mut bins).arg(&nbi).arg(&dfi).arg(&ti).arg(&total);
                    unsafe { lb.launch(launch_cfg(total)) }.w()?;
                }
                d => bail!("GpuStft: unsupported dtype {d:?}"),
            }
        }
        let mut frames = unsafe { dev.alloc::<f32>(rows * nf)? };
        let plan = self.plan(true, rows)?;
        {
            let stream = dev.cuda_stream();
            let (ip, _gi) = bins.device_ptr_mut(&stream);
            let (op, _go) = frames.device_ptr_mut(&stream);
            unsafe { fr::exec_c2r(plan, ip as *mut fs::cufftComplex, op as *mut fs::cufftReal) }.map_err(|e| err("C2R", e))?;
        }
        drop(bins);
        let mut y = unsafe { dev.alloc::<f32>(j * self.len)? };
        let (leni, nfi, hopi) = (self.len as i32, nf as i32, self.hop as i32);
        let scale = 1.0f32 / nf as f32;
        let total = j * self.len;
        {
            let f = dev.get_or_load_custom_func("istft_ola", MODULE, PTX)?;
            let mut lb = f.builder();
            lb.arg(&frames).arg(&self.window).arg(&self.inv_env).arg(&mut y);
            lb.arg(&leni).arg(&nfi).arg(&hopi).arg(&ti).arg(&scale).arg(&total);
            unsafe { lb.launch(launch_cfg(total)) }.w()?;
        }
        Ok(wrap(y, dev, (n, s, 2, self.len)))
    }
}
