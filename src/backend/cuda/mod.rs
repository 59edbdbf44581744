//! The CUDA backend (feature `cuda`): the network body channels-last, [B, T, F, C].
//!
//! Channels-last is what tensor-core convolutions want, and it turns every 1x1 convolution,
//! Downscale and Upscale into one plain row-major matmul over the channel axis:
//! - 3x3 convolutions: cuDNN in NHWC with KRSC filters ([`cudnn`], feature `cudnn`; the block's
//!   residual added by the convolution itself, beta = 1), else candle's conv2d on a transposed
//!   view;
//! - norm + activation: one fused kernel family ([`kernels::norm_act`]), statistics in f32;
//! - 1x1 convs, TDF linears, Downscale (space-to-depth), Upscale (depth-to-space): cuBLAS
//!   matmuls with f32 accumulation (the TDF residual accumulated by the GEMM, depth-to-space
//!   fused with the decoder's concatenation);
//! - STFT/iSTFT with cuFFT ([`stft`]), so audio, not spectrograms, crosses the bus;
//! - the whole chunk pass recorded once per batch size and replayed as a CUDA graph ([`graph`]).
//!
//! Every accelerated op falls back to [`super::generic`]'s channels-last op when its piece is
//! switched off ([`crate::options::CudaOptions`]); with `channels_last` off the whole body is
//! the generic NCHW formulation on the GPU. With an [`OpProfiler`] started, each op reports its
//! device-synchronised time.

#[cfg(feature = "cudnn")]
pub mod cudnn;
#[cfg(feature = "cudnn")]
mod cudnn_graph;
pub mod graph;
pub mod kernels;
pub mod stft;

use super::generic::{self, Generic, Layout};
use super::{Act, Backend, NormSpec, Replay, StftShape, is_out_of_memory};
use crate::options::{CudaOptions, EngineOptions, OpProfiler};
use candle_core::{CudaDevice, DType, Device, Result, Tensor, bail};
use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Instant;

/// The CUDA backend for one model: cuDNN state, the recorded graphs, the options.
pub struct Cuda {
    dev: CudaDevice,
    /// candle's ops on the same device, for every op whose piece is off.
    generic: Generic,
    opts: CudaOptions,
    /// Our kernels (channels-last only).
    kernels: bool,
    /// cuDNN convolutions (channels-last only); dropping them frees cuDNN's state.
    #[cfg(feature = "cudnn")]
    convs: Option<cudnn::Convs>,
    /// The chunk pass as CUDA graphs; `None` once recording has failed (or when switched off).
    graphs: Mutex<Option<graph::ChunkGraphs>>,
    profiler: Option<OpProfiler>,
}

impl Cuda {
    pub fn new(device: &Device, dtype: DType, options: &EngineOptions) -> Result<Self> {
        let Device::Cuda(dev) = device else { bail!("the CUDA backend needs a CUDA device") };
        let opts = options.cuda;
        let layout = if opts.channels_last { Layout::ChannelsLast } else { Layout::ChannelsFirst };
        kernels::single_stream_mode(dev);
        #[cfg(feature = "cudnn")]
        let convs = if opts.channels_last && opts.cudnn { Some(cudnn::Convs::new(dev, opts.cudnn_search)?) } else { None };
        Ok(Cuda {
            dev: dev.clone(),
            generic: Generic::new(device.clone(), dtype, layout),
            opts,
            kernels: opts.channels_last && opts.kernels,
            #[cfg(feature = "cudnn")]
            convs,
            graphs: Mutex::new(opts.graphs.then(|| graph::ChunkGraphs::new(dev))),
            profiler: options.op_profiler.clone(),
        })
    }

    fn cudnn_on(&self) -> bool {
        #[cfg(feature = "cudnn")]
        return self.convs.is_some();
        #[cfg(not(feature = "cudnn"))]
        false
    }

    /// cuDNN algorithms chosen so far, one line per convolution shape.
    pub fn conv_plans(&self) -> Vec<String> {
        #[cfg(feature = "cudnn")]
        if let Some(c) = &self.convs {
            return c.plans().into_iter().map(|p| format!("{}: {} (workspace {} B)", p.shape, p.algo, p.workspace)).collect();
        }
        vec![]
    }

    /// Run `f`; while the profiler runs, synchronise around it and add its time to `what` + the
    /// input's shape.
    fn timed<T>(&self, what: &'static str, dims: &[usize], f: impl FnOnce() -> Result<T>) -> Result<T> {
        let Some(p) = self.profiler.as_ref().filter(|p| p.is_on()) else { return f() };
        let what = format!("{what:14} {dims:?}");
        let dev = self.generic.device();
        dev.synchronize()?;
        let t = Instant::now();
        let r = f()?;
        dev.synchronize()?;
        p.record(what, t.elapsed());
        Ok(r)
    }

    /// The 3x3 convolution without a residual.
    fn conv3x3_only(&self, w: &Conv3x3, x: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "cudnn")]
        if let (Some(convs), Some(k)) = (&self.convs, &w.krsc) {
            return convs.conv(x, k, 1, 1, self.opts.tf32);
        }
        match &w.generic {
            Some(g) => self.generic.conv3x3(g, x, None),
            None => bail!("conv3x3: built for cuDNN, which is not available"),
        }
    }
}

/// KRSC [out, 3, 3, in] for cuDNN, else the generic layer (never both: one copy of the weights).
pub struct Conv3x3 {
    krsc: Option<Tensor>,
    generic: Option<generic::Conv3x3>,
}

/// The generic layer, plus KRSC [out, st, sf, in] for a cuDNN convolution (square scales only).
pub struct Downscale {
    krsc: Option<Tensor>,
    generic: generic::Downscale,
}

/// Our kernel's parameters (with kernels on) and the generic layer.
pub struct Norm {
    params: Option<kernels::NormParams>,
    generic: generic::Norm,
    act: Act,
}

impl Backend for Cuda {
    type Conv3x3 = Conv3x3;
    type Conv1x1 = generic::Conv1x1;
    type Linear = generic::Linear;
    type Downscale = Downscale;
    type Upscale = generic::Upscale;
    type Norm = Norm;
    type Stft = stft::GpuStft;

    fn name(&self) -> &'static str {
        if self.kernels || self.cudnn_on() { "channels-last CUDA" } else { "candle on CUDA" }
    }
    fn device(&self) -> &Device {
        self.generic.device()
    }
    fn dtype(&self) -> DType {
        self.generic.dtype()
    }

    fn prepare_conv3x3(&self, w: Tensor) -> Result<Conv3x3> {
        if self.cudnn_on() {
            return Ok(Conv3x3 { krsc: Some(w.permute((0, 2, 3, 1))?.contiguous()?), generic: None });
        }
        Ok(Conv3x3 { krsc: None, generic: Some(self.generic.prepare_conv3x3(w)?) })
    }
    fn prepare_conv1x1(&self, w: Tensor) -> Result<generic::Conv1x1> {
        self.generic.prepare_conv1x1(w)
    }
    fn prepare_linear(&self, w: Tensor) -> Result<generic::Linear> {
        self.generic.prepare_linear(w)
    }
    fn prepare_downscale(&self, w: Tensor) -> Result<Downscale> {
        let (_, _, st, sf) = w.dims4()?;
        let krsc = if self.cudnn_on() && st == sf { Some(w.permute((0, 2, 3, 1))?.contiguous()?) } else { None };
        Ok(Downscale { krsc, generic: self.generic.prepare_downscale(w)? })
    }
    fn prepare_upscale(&self, w: Tensor) -> Result<generic::Upscale> {
        self.generic.prepare_upscale(w)
    }
    fn prepare_norm(&self, n: NormSpec) -> Result<Norm> {
        let (act, c) = (n.act, n.channels);
        let generic = self.generic.prepare_norm(n)?;
        let params = if self.kernels { Some(kernels::NormParams::new(&generic, c, self.device())?) } else { None };
        Ok(Norm { params, generic, act })
    }

    fn layout_in(&self, spec: &Tensor, subbands: usize) -> Result<Tensor> {
        self.timed("layout in", spec.dims(), || self.generic.layout_in(spec, subbands))
    }
    fn layout_out(&self, x: Tensor, shape: (usize, usize, usize, usize, usize)) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        self.timed("layout out", &dims, || self.generic.layout_out(x, shape))
    }

    fn norm_act(&self, n: &Norm, x: Cow<'_, Tensor>) -> Result<Tensor> {
        self.timed("norm+act", x.dims(), || match &n.params {
            Some(p) => kernels::norm_act(&x, p, n.act, self.opts.scalar_norm),
            None => self.generic.norm_act(&n.generic, Cow::Borrowed(&x)),
        })
    }

    fn conv3x3(&self, w: &Conv3x3, x: &Tensor, acc: Option<Tensor>) -> Result<Tensor> {
        let Some(acc) = acc else { return self.timed("conv3x3", x.dims(), || self.conv3x3_only(w, x)) };
        // The sum formed by the convolution itself (beta = 1), in `acc`'s memory: one pass over
        // the activation less.
        #[cfg(feature = "cudnn")]
        if self.opts.fused_residual {
            if let (Some(convs), Some(k)) = (&self.convs, &w.krsc) {
                return self.timed("conv3x3+res", x.dims(), || convs.conv_acc(x, k, 1, 1, self.opts.tf32, Some(&acc)));
            }
        }
        let y = self.timed("conv3x3", x.dims(), || self.conv3x3_only(w, x))?;
        self.timed("add", y.dims(), || &y + &acc)
    }

    fn conv1x1(&self, w: &generic::Conv1x1, x: &Tensor) -> Result<Tensor> {
        self.timed("conv1x1", x.dims(), || self.generic.conv1x1(w, x))
    }

    /// With our kernels, two GEMMs into one output (W[:, :a] . a + W[:, a:] . b) instead of
    /// building the concatenation.
    fn conv1x1_concat(&self, w: &generic::Conv1x1, a: Tensor, b: Tensor) -> Result<Tensor> {
        if self.kernels {
            return self.timed("final conv0", b.dims(), || {
                let (n, t, f, c) = b.dims4()?;
                let ca = a.dim(3)?;
                let cout = w.w.dim(0)?;
                let y = kernels::matmul_wt(&b.reshape((n * t * f, c))?, &w.w, ca, None, self.opts.tf32)?;
                let y = kernels::matmul_wt(&a.reshape((n * t * f, ca))?, &w.w, 0, Some(&y), self.opts.tf32)?;
                y.reshape((n, t, f, cout))
            });
        }
        let cat = self.timed("concat", b.dims(), || Tensor::cat(&[&a, &b], self.generic.layout().channels()))?;
        drop((a, b));
        self.conv1x1(w, &cat)
    }

    /// With our kernels, per (b, t): W [fout, fin] . X [fin, C], the residual accumulated in
    /// `acc`'s memory by the GEMM itself.
    fn linear(&self, w: &generic::Linear, x: &Tensor, acc: Option<Tensor>) -> Result<Tensor> {
        if self.kernels {
            let label = if acc.is_some() { "tdf linear+res" } else { "tdf linear" };
            return self.timed(label, x.dims(), || {
                let (b, t, f, c) = x.dims4()?;
                let fout = w.w.dim(0)?;
                let acc3 = acc.map(|a| a.reshape((b * t, fout, c))).transpose()?;
                kernels::linear_f(&w.w, &x.reshape((b * t, f, c))?, acc3.as_ref(), self.opts.tf32)?.reshape((b, t, fout, c))
            });
        }
        let y = self.timed("tdf linear", x.dims(), || self.generic.linear(w, x, None))?;
        match acc {
            Some(a) => self.timed("add", y.dims(), || &y + &a),
            None => Ok(y),
        }
    }

    fn downscale(&self, w: &Downscale, x: Tensor) -> Result<Tensor> {
        #[cfg(feature = "cudnn")]
        if let (Some(convs), Some(k)) = (&self.convs, &w.krsc) {
            return self.timed("downscale", x.dims(), || convs.conv(&x, k, 0, w.generic.scale[0], self.opts.tf32));
        }
        let dims = x.dims().to_vec();
        self.timed("downscale", &dims, || self.generic.downscale(&w.generic, x))
    }

    /// With our kernels, depth-to-space and the concatenation are one pass over memory.
    fn upscale_concat(&self, w: &generic::Upscale, x: Tensor, skip: Tensor) -> Result<Tensor> {
        if self.generic.layout() == Layout::ChannelsFirst {
            return self.generic.upscale_concat(w, x, skip);
        }
        let (y, btf) = self.timed("upscale gemm", x.dims(), || self.generic.upscale_gemm_last(w, &x))?;
        drop(x);
        if self.kernels {
            let [st, sf] = w.scale;
            if let Some(out) = self.timed("d2s+concat", y.dims(), || kernels::upscale_concat(&y, &skip, btf, (st, sf)))? {
                return Ok(out);
            }
        }
        let up = self.timed("depth-to-space", y.dims(), || generic::depth_to_space_last(&y, btf, w.cout, w.scale))?;
        self.timed("concat", up.dims(), || Tensor::cat(&[&up, &skip], 3))
    }

    fn mul(&self, x: Tensor, y: &Tensor) -> Result<Tensor> {
        self.timed("mul", x.dims(), || {
            if self.kernels {
                if let Some(p) = kernels::mul(&x, y)? {
                    return Ok(p);
                }
            }
            x.mul(y)
        })
    }

    fn keep_first(&self) -> bool {
        true
    }
    /// cuDNN's and our kernels' 32-bit indexing.
    fn max_elements(&self) -> usize {
        i32::MAX as usize
    }
    fn scoped<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let _tf32 = Tf32Guard::new(self.opts.tf32 && self.dtype() == DType::F32);
        f()
    }

    fn prepare_stft(&self, s: StftShape) -> Option<Result<stft::GpuStft>> {
        self.opts.gpu_stft.then(|| stft::GpuStft::new(&self.dev, s.n_fft, s.hop, s.dim_f, s.len))
    }
    fn stft(&self, s: &stft::GpuStft, audio: &Tensor) -> Result<Tensor> {
        s.forward(audio, self.dtype())
    }
    fn istft(&self, s: &stft::GpuStft, spec: &Tensor) -> Result<Tensor> {
        s.inverse(spec)
    }
    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        kernels::upload_f32(data, shape, &self.dev)
    }
    fn download(&self, t: &Tensor, out: &mut [f32]) -> Result<()> {
        kernels::copy_to_host(t, out)
    }

    fn replay(&self, m: usize, chunk: usize, input: &[f32], out: &mut [f32], pass: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<Replay> {
        let mut graphs = self.graphs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(g) = graphs.as_mut() else { return Ok(Replay::NotRecorded) };
        match g.run(m, chunk, input, out, pass) {
            Ok(()) => Ok(Replay::Done),
            // A recorded pass that fails is a GPU error like any other.
            Err(e) if g.batches().contains(&m) => Err(e),
            Err(e) if is_out_of_memory(&e) => Err(e),
            Err(e) => {
                *graphs = None;
                Ok(Replay::RecordingFailed(e))
            }
        }
    }
    fn replayed_batches(&self) -> Vec<usize> {
        self.graphs.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|g| g.batches()).unwrap_or_default()
    }
}

/// Turns candle's TF32 matmuls on for the duration of one forward pass (candle keeps the switch
/// process-wide).
struct Tf32Guard(Option<bool>);

impl Tf32Guard {
    fn new(on: bool) -> Self {
        if !on {
            return Tf32Guard(None);
        }
        let before = candle_core::cuda::gemm_reduced_precision_f32();
        candle_core::cuda::set_gemm_reduced_precision_f32(true);
        Tf32Guard(Some(before))
    }
}

impl Drop for Tf32Guard {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            candle_core::cuda::set_gemm_reduced_precision_f32(b);
        }
    }
}
