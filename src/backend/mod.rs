//! Backends: the small set of operations the networks are written over ([`Backend`]), and the
//! one place ([`select`]) that says which backend serves which device and precision.
//!
//! | backend | serves | layout of the network body |
//! | --- | --- | --- |
//! | [`cpu`] | f32 on the CPU: our Winograd / implicit-GEMM convolutions, fused norms, `gemm` matmuls, in place where the graph gives up a tensor | NCHW |
//! | [`cuda`] (feature `cuda`) | CUDA GPUs: cuDNN convolutions, our fused kernels, cuFFT STFT, CUDA graphs | NHWC (channels-last) |
//! | [`generic`] | everything else (Metal, f16/bf16 on the CPU, f64 references): candle's own ops | NCHW (NHWC on request) |
//!
//! A network (e.g. [`crate::nets::tfc_tdf`]) is written once as a graph over these ops and
//! monomorphised per backend. Each backend first turns the checkpoint's tensors into its own
//! prepared form (the `prepare_*` methods: KRSC filters for cuDNN, transposed matrices, folded
//! BatchNorm, host parameters for the CPU kernels), then runs the ops on activations it lays out
//! as it likes between [`Backend::layout_in`] and [`Backend::layout_out`].
//!
//! Ownership: ops that take an activation by value (`Tensor`, or [`Cow::Owned`]) may write their
//! result into its memory, or free it as soon as they are done with it; the caller guarantees
//! nothing else refers to it (no clone, view or reshape of it in use). That is how the CPU
//! backend normalises in place and how cuDNN and cuBLAS add residuals inside the convolution or
//! GEMM (beta = 1), without extra activations, and what keeps peak memory down.
//!
//! Adding a backend: implement [`Backend`] in a module here and give it its devices in [`select`].
//! Adding a layer type: an op (and, if it has weights, a `prepare_*` method and an associated
//! type) here, implemented by each backend.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod generic;

use crate::options::EngineOptions;
use candle_core::{DType, Device, Result, Tensor};
use std::borrow::Cow;

/// The activation after a normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    /// Exact (erf) GELU, as PyTorch's `nn.GELU()`.
    Gelu,
    Relu,
    /// ELU with this alpha.
    Elu(f64),
}

/// A normalisation's parameters as the checkpoint holds them (compute dtype, on the device).
#[derive(Debug, Clone)]
pub enum NormWeights {
    Identity,
    /// InstanceNorm2d (affine): statistics per (image, channel) over H x W.
    Instance { weight: Tensor, bias: Tensor },
    /// GroupNorm (affine): statistics per (image, group of channels).
    Group { groups: usize, weight: Tensor, bias: Tensor },
    /// BatchNorm2d in eval mode: running statistics (backends fold it to a scale and shift).
    Batch { weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor },
}

/// One `norm` + `act` pair over `channels` channels (the first two entries of the reference's
/// `Sequential(norm, act, conv)`).
#[derive(Debug, Clone)]
pub struct NormSpec {
    pub weights: NormWeights,
    pub act: Act,
    pub channels: usize,
}

/// Epsilon of every normalisation (PyTorch's default).
pub const NORM_EPS: f64 = 1e-5;

/// The shape of one 2-D convolution: input [n, cin, h, w] (in the backend's layout), filter
/// [cout, cin, kh, kw], zero padding `pad` and stride `stride` on both spatial axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvShape {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub pad: usize,
    pub stride: usize,
}

impl ConvShape {
    /// 3x3, padding 1, stride 1 (the TFC layers).
    pub fn conv3x3(n: usize, cin: usize, cout: usize, h: usize, w: usize) -> Self {
        ConvShape { n, cin, cout, h, w, kh: 3, kw: 3, pad: 1, stride: 1 }
    }

    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        ((self.h + 2 * self.pad - self.kh) / self.stride + 1, (self.w + 2 * self.pad - self.kw) / self.stride + 1)
    }

    pub fn input_len(&self) -> usize {
        self.n * self.cin * self.h * self.w
    }

    pub fn filter_len(&self) -> usize {
        self.cout * self.cin * self.kh * self.kw
    }

    pub fn output_len(&self) -> usize {
        let (ho, wo) = self.out_hw();
        self.n * self.cout * ho * wo
    }
}

/// The geometry of a chunk's STFT: `n_fft`, hop, bins kept (`dim_f`) and chunk length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StftShape {
    pub n_fft: usize,
    pub hop: usize,
    pub dim_f: usize,
    pub len: usize,
}

/// For backends without an STFT of their own (the model then runs the host STFT of
/// [`crate::dsp::stft`]): a type with no values.
pub enum NoStft {}

/// The operations a network is written over (see the module docs). Activations are candle
/// tensors in the backend's layout and dtype, on its device.
pub trait Backend: Send + Sync + Sized + 'static {
    /// A 3x3 convolution (padding 1) prepared from a `[out, in, 3, 3]` weight.
    type Conv3x3: Send + Sync;
    /// A 1x1 convolution (no bias) prepared from `[out, in, 1, 1]`.
    type Conv1x1: Send + Sync;
    /// `nn.Linear(in, out, bias=False)` along the frequency axis, prepared from `[out, in]`.
    type Linear: Send + Sync;
    /// A convolution with kernel = stride = scale, prepared from `[out, in, st, sf]`.
    type Downscale: Send + Sync;
    /// A transposed convolution with kernel = stride = scale, prepared from `[in, out, st, sf]`.
    type Upscale: Send + Sync;
    /// A normalisation followed by an activation.
    type Norm: Send + Sync;
    /// The backend's own STFT/iSTFT for one [`StftShape`] ([`NoStft`] where it has none).
    type Stft: Send + Sync;

    /// What runs, in a few words (the bench names it).
    fn name(&self) -> &'static str;
    fn device(&self) -> &Device;
    fn dtype(&self) -> DType;

    // ---- prepared weights (at load; tensors in the compute dtype on the device)
    fn prepare_conv3x3(&self, w: Tensor) -> Result<Self::Conv3x3>;
    fn prepare_conv1x1(&self, w: Tensor) -> Result<Self::Conv1x1>;
    fn prepare_linear(&self, w: Tensor) -> Result<Self::Linear>;
    fn prepare_downscale(&self, w: Tensor) -> Result<Self::Downscale>;
    fn prepare_upscale(&self, w: Tensor) -> Result<Self::Upscale>;
    fn prepare_norm(&self, n: NormSpec) -> Result<Self::Norm>;

    // ---- layout
    /// Spectrogram [B, C, F, T] -> the body's layout of [B, C * k, T, F / k]: the subband fold
    /// (band index fastest in the channel index), with time before frequency.
    fn layout_in(&self, spec: &Tensor, subbands: usize) -> Result<Tensor>;
    /// The body's layout of [B, S * C * k, T, F / k] -> [B, S, C, F, T] (`shape`), unfolding
    /// the subbands.
    fn layout_out(&self, x: Tensor, shape: (usize, usize, usize, usize, usize)) -> Result<Tensor>;

    // ---- ops
    /// `act(norm(x))`; in `x`'s memory where the backend can and `x` is [`Cow::Owned`].
    fn norm_act(&self, n: &Self::Norm, x: Cow<'_, Tensor>) -> Result<Tensor>;
    /// `conv(x)`, plus `acc` when given (in `acc`'s memory where the backend can).
    fn conv3x3(&self, w: &Self::Conv3x3, x: &Tensor, acc: Option<Tensor>) -> Result<Tensor>;
    fn conv1x1(&self, w: &Self::Conv1x1, x: &Tensor) -> Result<Tensor>;
    /// The 1x1 convolution of the channel concatenation `[a, b]`.
    fn conv1x1_concat(&self, w: &Self::Conv1x1, a: Tensor, b: Tensor) -> Result<Tensor>;
    /// The linear along the frequency axis, plus `acc` when given (in `acc`'s memory where the
    /// backend can).
    fn linear(&self, w: &Self::Linear, x: &Tensor, acc: Option<Tensor>) -> Result<Tensor>;
    /// Space-to-depth + the matmul: [B, c, T, F] -> [B, c', T / st, F / sf].
    fn downscale(&self, w: &Self::Downscale, x: Tensor) -> Result<Tensor>;
    /// The matmul + depth-to-space, concatenated on channels with `skip` (upscaled first):
    /// [B, c, T, F] -> [B, c' + c_skip, T * st, F * sf].
    fn upscale_concat(&self, w: &Self::Upscale, x: Tensor, skip: Tensor) -> Result<Tensor>;
    /// `x * y` element-wise (in `x`'s memory where the backend can).
    fn mul(&self, x: Tensor, y: &Tensor) -> Result<Tensor>;

    // ---- how a pass runs
    /// Keep the first convolution's output alive through the body (one kernel less per chunk)
    /// rather than compute it again at the end (one activation of memory less). Only for
    /// backends whose [`Backend::norm_act`] never writes in place.
    fn keep_first(&self) -> bool {
        false
    }
    /// Largest activation (elements) one pass may hold; larger batches run in several passes.
    fn max_elements(&self) -> usize {
        usize::MAX
    }
    /// Run one forward pass (settings that hold for a whole pass, e.g. TF32 matmuls).
    fn scoped<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        f()
    }

    // ---- STFT and the audio crossing to and from the device
    /// The backend's own STFT for `shape`: `None` where it has none (the host STFT runs),
    /// `Some(Err)` where it has one that could not be set up.
    fn prepare_stft(&self, _shape: StftShape) -> Option<Result<Self::Stft>> {
        None
    }
    /// Audio [N, 2, len] f32 -> spectrogram [N, 4, dim_f, T] in the compute dtype
    /// (ch0.re, ch0.im, ch1.re, ch1.im).
    fn stft(&self, s: &Self::Stft, audio: &Tensor) -> Result<Tensor>;
    /// Stems' spectrograms [N, S, 4, dim_f, T] -> audio [N, S, 2, len] f32.
    fn istft(&self, s: &Self::Stft, spec: &Tensor) -> Result<Tensor>;
    /// Host samples -> an f32 tensor of `shape` on the device.
    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_slice(data, shape, &Device::Cpu)?.to_device(self.device())
    }
    /// An f32 tensor on the device -> host samples.
    fn download(&self, t: &Tensor, out: &mut [f32]) -> Result<()> {
        let v = t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        if v.len() != out.len() {
            candle_core::bail!("download: {} values into {}", v.len(), out.len());
        }
        out.copy_from_slice(&v);
        Ok(())
    }
    /// Run `pass` (device audio [m, 2, chunk] f32 -> device audio [m, stems, 2, chunk] f32) on
    /// `input` into `out` as a recorded device graph: recorded on the first call for a batch
    /// size, replayed on later ones (CUDA graphs). See [`Replay`] for what else can happen.
    fn replay(&self, _m: usize, _chunk: usize, _input: &[f32], _out: &mut [f32], _pass: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<Replay> {
        Ok(Replay::NotRecorded)
    }
    /// Batch sizes recorded by [`Backend::replay`] so far.
    fn replayed_batches(&self) -> Vec<usize> {
        vec![]
    }
}

/// What [`Backend::replay`] did.
pub enum Replay {
    /// `out` holds the result.
    Done,
    /// Nothing: the backend records nothing (or no longer does); run the pass op by op.
    NotRecorded,
    /// Recording failed; recording is off from now on. Run the pass op by op (and say so).
    RecordingFailed(candle_core::Error),
}

/// Something to build for whichever backend [`select`] picks (Rust has no generic closures).
pub trait WithBackend {
    type Output;
    fn with<B: Backend>(self, backend: B) -> Result<Self::Output>;
}

/// The one place that maps a device and compute dtype to its backend: the CPU kernels for f32
/// on the CPU, the CUDA backend on CUDA devices, candle's own ops (NCHW) everywhere else, and
/// everywhere when [`EngineOptions::generic_ops`] asks for them.
pub fn select<W: WithBackend>(device: &Device, dtype: DType, options: &EngineOptions, w: W) -> Result<W::Output> {
    match device {
        _ if options.generic_ops => w.with(generic::Generic::new(device.clone(), dtype, generic::Layout::ChannelsFirst)),
        Device::Cpu if dtype == DType::F32 => w.with(cpu::Cpu::with_profiler(options.op_profiler.clone())),
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => w.with(cuda::Cuda::new(device, dtype, options)?),
        _ => {
            let _ = options;
            w.with(generic::Generic::new(device.clone(), dtype, generic::Layout::ChannelsFirst))
        }
    }
}

/// Whether a device error means the device ran out of memory.
///
/// CUDA: `CUDA_ERROR_OUT_OF_MEMORY` / cuBLAS and cuDNN `ALLOC_FAILED`. Metal (candle's texts):
/// a buffer Metal would not allocate (`newBufferWithLength` returns nil: "Failed to create metal
/// resource: Buffer"), or a command buffer the GPU aborted for lack of memory ("Insufficient
/// Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)").
pub fn is_out_of_memory(e: &candle_core::Error) -> bool {
    let s = e.to_string().to_lowercase();
    s.contains("out of memory")
        || s.contains("out_of_memory")
        || s.contains("alloc_failed")
        || s.contains("outofmemory")
        || s.contains("insufficient memory")
        || s.contains("failed to create metal resource: buffer")
}

#[cfg(test)]
mod tests {
    use super::is_out_of_memory;

    fn msg(s: &str) -> candle_core::Error {
        candle_core::Error::Msg(s.into())
    }

    /// The texts CUDA and Metal (through candle) give when memory runs out halve the batch;
    /// other GPU errors do not.
    #[test]
    fn cuda_and_metal_out_of_memory_texts_are_recognised() {
        for oom in [
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
            "cublas error: CUBLAS_STATUS_ALLOC_FAILED",
            "Metal error Failed to create metal resource: Buffer",
            "Metal error Command buffer had following error: Execution of the command buffer was aborted due to an error during execution. Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)",
        ] {
            assert!(is_out_of_memory(&msg(oom)), "not recognised: {oom}");
        }
        for other in [
            "Metal error Failed to create metal resource: CommandQueue",
            "Metal error Command buffer had following error: Caused GPU Address Fault Error (0000000b:kIOGPUCommandBufferCallbackErrorPageFault)",
            "DriverError(CUDA_ERROR_ILLEGAL_ADDRESS, \"an illegal memory access was encountered\")",
        ] {
            assert!(!is_out_of_memory(&msg(other)), "taken for out of memory: {other}");
        }
    }
}
