//! Our CUDA kernels and cuBLAS calls for the channels-last network (the ops of
//! [`super::Cuda`] that candle has no fast form of), plus the device-memory plumbing.
//!
//! - [`norm_act`]: InstanceNorm / GroupNorm / BatchNorm / identity + activation as our own
//!   kernels (`kernels.cu`, PTX built by `src/backend/cuda/build.rs`): statistics in f32, two
//!   passes over the activation (one read for the statistics, one read + write for the
//!   normalised output).
//! - [`linear_f`], [`matmul_wt`]: GEMMs that accumulate into an existing tensor (beta = 1).
//! - [`upscale_concat`], [`mul`]: layout and element-wise kernels that move 16 bytes per thread.
//!
//! Everything here takes and returns candle tensors on a CUDA device and launches on that
//! device's stream, so it interleaves with candle's own ops without extra synchronisation.

use crate::backend::generic::{self, NormTensors};
use crate::backend::{Act, NORM_EPS};
use candle_core::cuda::cudarc::cublas::sys as cublas_sys;
use candle_core::cuda::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda::{CudaDType, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, CudaStorage, DType, Device, Layout, Result, Shape, Storage, Tensor, bail};

/// PTX of `kernels.cu`, compiled by src/backend/cuda/build.rs.
pub const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/mdx_kernels.ptx"));
pub(crate) const MODULE: &str = "mdx_stems_nhwc";

/// The CUDA device of a tensor, if it is on one.
pub fn cuda_device(device: &Device) -> Option<&CudaDevice> {
    match device {
        Device::Cuda(d) => Some(d),
        _ => None,
    }
}

/// A view of a contiguous-or-offset CUDA tensor's data (`len` elements from the layout's start).
pub(crate) fn view<'a, T: CudaDType>(storage: &'a Storage, layout: &Layout, len: usize) -> Result<CudaView<'a, T>> {
    match storage {
        Storage::Cuda(cs) => {
            let o = layout.start_offset();
            Ok(cs.as_cuda_slice::<T>()?.slice(o..o + len))
        }
        _ => bail!("expected a CUDA tensor"),
    }
}

/// Wrap a freshly written device buffer as a contiguous tensor.
pub(crate) fn wrap<T: CudaDType>(slice: CudaSlice<T>, dev: &CudaDevice, shape: impl Into<Shape>) -> Tensor {
    let storage = CudaStorage::wrap_cuda_slice(slice, dev.clone());
    Tensor::from_storage(Storage::Cuda(storage), shape, BackpropOp::none(), false)
}

/// The device's default memory pool (where candle's stream-ordered allocations come from):
/// (bytes in use now, high-water mark of bytes in use since the last [`reset_pool_peak`]).
pub fn pool_memory(dev: &CudaDevice) -> Option<(u64, u64)> {
    use candle_core::cuda::cudarc::driver::sys;
    let ctx = dev.cuda_stream().context().clone();
    ctx.bind_to_thread().ok()?;
    unsafe {
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) != sys::CUresult::CUDA_SUCCESS {
            return None;
        }
        let get = |attr| {
            let mut v: u64 = 0;
            (sys::cuMemPoolGetAttribute(pool, attr, &mut v as *mut u64 as *mut std::ffi::c_void) == sys::CUresult::CUDA_SUCCESS).then_some(v)
        };
        Some((get(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?, get(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH)?))
    }
}

/// Restart the high-water mark of [`pool_memory`] at the current use.
pub fn reset_pool_peak(dev: &CudaDevice) {
    use candle_core::cuda::cudarc::driver::sys;
    let ctx = dev.cuda_stream().context().clone();
    if ctx.bind_to_thread().is_err() {
        return;
    }
    unsafe {
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == sys::CUresult::CUDA_SUCCESS {
            let mut zero: u64 = 0;
            let _ = sys::cuMemPoolSetAttribute(pool, sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH, &mut zero as *mut u64 as *mut std::ffi::c_void);
        }
    }
}

/// Stop cudarc from creating two CUDA events per allocation. They only serve to order work
/// between several streams; the engine runs everything on one stream.
pub fn single_stream_mode(dev: &CudaDevice) {
    // SAFETY: all our work, and candle's, goes to the device's one stream (see above).
    unsafe { dev.disable_event_tracking() };
}

/// Copy a contiguous f32 CUDA tensor into `dst` (blocking).
pub fn copy_to_host(t: &Tensor, dst: &mut [f32]) -> Result<()> {
    let t = t.contiguous()?;
    if t.dtype() != DType::F32 || t.elem_count() != dst.len() {
        bail!("copy_to_host: {:?} {:?} into {} floats", t.dims(), t.dtype(), dst.len());
    }
    let Some(dev) = cuda_device(t.device()) else { bail!("copy_to_host: not a CUDA tensor") };
    let (g, l) = t.storage_and_layout();
    let v = view::<f32>(&g, l, dst.len())?;
    dev.cuda_stream().memcpy_dtoh(&v, dst).w()
}

fn act_code(act: Act) -> (i32, f32) {
    match act {
        Act::Gelu => (1, 0.0),
        Act::Relu => (2, 0.0),
        Act::Elu(a) => (3, a as f32),
    }
}

/// Per-channel parameters of one normalisation, as the kernels want them (f32, on the device).
pub enum NormParams {
    /// InstanceNorm (`groups` = channels) or GroupNorm: statistics per (image, group).
    Stats { groups: usize, gamma: Tensor, beta: Tensor, eps: f32 },
    /// BatchNorm (eval) folded to y = x * scale + shift, or identity (scale 1, shift 0).
    Affine { scale: Tensor, shift: Tensor },
}

impl NormParams {
    /// The parameters of a norm as the generic backend prepared it (f32; BatchNorm folded), as
    /// f32 vectors on `device`; `c` channels.
    pub fn new(n: &generic::Norm, c: usize, device: &Device) -> Result<Self> {
        let f32v = |t: &Tensor| t.to_dtype(DType::F32)?.to_device(device)?.flatten_all()?.contiguous();
        Ok(match &n.tensors {
            NormTensors::Stats { groups, weight, bias } => {
                NormParams::Stats { groups: groups.unwrap_or(c), gamma: f32v(weight)?, beta: f32v(bias)?, eps: NORM_EPS as f32 }
            }
            NormTensors::Affine { scale, shift } => NormParams::Affine { scale: f32v(scale)?, shift: f32v(shift)? },
            NormTensors::Identity => NormParams::Affine {
                scale: Tensor::ones(c, DType::F32, device)?,
                shift: Tensor::zeros(c, DType::F32, device)?,
            },
        })
    }
}

const STATS_THREADS: usize = 256;
const FIN_THREADS: u32 = 256;
/// Elements each thread of `norm_stats` reduces (sets the number of row blocks).
const STATS_PER_THREAD: usize = 64;
/// Rows (of V channels) each thread of `norm_stats_v` reduces.
const SUM_ROWS_PER_THREAD: usize = 32;
/// Rows each thread of `scale_act2` normalises (at most).
const APPLY_ROWS_PER_THREAD: usize = 16;
/// Blocks wanted per launch (two per multiprocessor of an H100).
const MIN_BLOCKS: usize = 264;

pub(crate) fn sfx(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        d => bail!("CUDA norm kernels: unsupported dtype {d:?}"),
    })
}

/// `act(norm(x))` for a channels-last activation `x` [B, H, W, C] on a CUDA device. `scalar`:
/// the one-value-per-thread kernels even where the 16-byte ones could run (comparisons).
pub fn norm_act(x: &Tensor, norm: &NormParams, act: Act, scalar: bool) -> Result<Tensor> {
    let x = x.contiguous()?;
    match x.dtype() {
        DType::F32 => norm_act_t::<f32>(&x, norm, act, scalar),
        DType::F16 => norm_act_t::<half::f16>(&x, norm, act, scalar),
        DType::BF16 => norm_act_t::<half::bf16>(&x, norm, act, scalar),
        d => bail!("CUDA norm_act: unsupported dtype {d:?}"),
    }
}

fn norm_act_t<T: CudaDType + DeviceRepr>(x: &Tensor, norm: &NormParams, act: Act, scalar: bool) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    let r = h * w;
    let n = b * r * c;
    let Some(dev) = cuda_device(x.device()) else { bail!("norm_act: not a CUDA tensor") };
    let dev = dev.clone();
    let s = sfx(x.dtype())?;
    let (xs_guard, xl) = x.storage_and_layout();
    let xs = view::<T>(&xs_guard, xl, n)?;
    let mut out = unsafe { dev.alloc::<T>(n)? };

    // Vector kernels (16-byte loads, V channels per thread) where the layout allows them.
    let v = if x.dtype() == DType::F32 { 4 } else { 8 };
    let aligned = (xl.start_offset() * x.dtype().size_in_bytes()) % 16 == 0;
    let vec = c % v == 0 && c / v <= STATS_THREADS && aligned && !scalar;
    let lanes = if vec { STATS_THREADS / (c / v) } else { 0 };
    let (ri, ci) = (r as i32, c as i32);

    // Per-(image, channel) scale and shift: computed (statistics) or given (affine).
    let computed: Option<(CudaSlice<f32>, CudaSlice<f32>)> = match norm {
        NormParams::Stats { groups, gamma, beta, eps } => {
            let g = *groups;
            if g == 0 || c % g != 0 {
                bail!("norm_act: {c} channels not divisible into {g} groups");
            }
            let mut scale = unsafe { dev.alloc::<f32>(b * c)? };
            let mut shift = unsafe { dev.alloc::<f32>(b * c)? };
            let (gg, gl) = gamma.storage_and_layout();
            let (bg, bl) = beta.storage_and_layout();
            let gv = view::<f32>(&gg, gl, c)?;
            let bv = view::<f32>(&bg, bl, c)?;
            let (cpgi, epsf) = ((c / g) as i32, *eps);
            // Partial statistics of row blocks [b][p][2][c], then per-(image, channel) scale and
            // shift from them.
            let (part, p, rpp) = if vec {
                // Up to SUM_ROWS_PER_THREAD rows per thread, fewer when that would leave the GPU
                // with under ~2 blocks per multiprocessor (small activations are latency-bound).
                let rows = (b * r).div_ceil(lanes * MIN_BLOCKS).clamp(1, SUM_ROWS_PER_THREAD);
                let rpp = (lanes * rows).min(r).max(1);
                let p = r.div_ceil(rpp);
                let mut part = unsafe { dev.alloc::<f32>(2 * b * p * c)? };
                let rppi = rpp as i32;
                let f = dev.get_or_load_custom_func(&format!("norm_stats_v_{s}"), MODULE, PTX)?;
                let mut lb = f.builder();
                lb.arg(&xs).arg(&mut part).arg(&ri).arg(&ci).arg(&rppi);
                let cfg = LaunchConfig { grid_dim: (p as u32, 1, b as u32), block_dim: (STATS_THREADS as u32, 1, 1), shared_mem_bytes: 0 };
                unsafe { lb.launch(cfg) }.w()?;
                (part, p, rpp)
            } else {
                let ct = c.min(STATS_THREADS);
                let lanes_s = STATS_THREADS / ct;
                let rpp = (lanes_s * STATS_PER_THREAD).min(r).max(1);
                let p = r.div_ceil(rpp);
                let mut part = unsafe { dev.alloc::<f32>(2 * b * p * c)? };
                let (rppi, cti) = (rpp as i32, ct as i32);
                let f = dev.get_or_load_custom_func(&format!("norm_stats_{s}"), MODULE, PTX)?;
                let mut lb = f.builder();
                lb.arg(&xs).arg(&mut part).arg(&ri).arg(&ci).arg(&rppi).arg(&cti);
                let cfg = LaunchConfig { grid_dim: (p as u32, c.div_ceil(ct) as u32, b as u32), block_dim: (STATS_THREADS as u32, 1, 1), shared_mem_bytes: 0 };
                unsafe { lb.launch(cfg) }.w()?;
                (part, p, rpp)
            };
            let (pi, rppi) = (p as i32, rpp as i32);
            let f = dev.get_or_load_custom_func("norm_finalize", MODULE, PTX)?;
            let mut lb = f.builder();
            lb.arg(&part).arg(&gv).arg(&bv).arg(&mut scale).arg(&mut shift);
            lb.arg(&ri).arg(&ci).arg(&pi).arg(&rppi).arg(&cpgi).arg(&epsf);
            let cfg = LaunchConfig { grid_dim: (g as u32, b as u32, 1), block_dim: (FIN_THREADS, 1, 1), shared_mem_bytes: 0 };
            unsafe { lb.launch(cfg) }.w()?;
            Some((scale, shift))
        }
        NormParams::Affine { .. } => None,
    };

    let (act_i, alpha) = act_code(act);
    let sb: i32 = if computed.is_some() { c as i32 } else { 0 };
    let affine = match norm {
        NormParams::Affine { scale, shift } => Some((scale.storage_and_layout(), shift.storage_and_layout())),
        NormParams::Stats { .. } => None,
    };
    let affine_views = match &affine {
        Some(((sg, sl), (hg, hl))) => Some((view::<f32>(sg, sl, c)?, view::<f32>(hg, hl, c)?)),
        None => None,
    };
    macro_rules! push_scale_shift {
        ($lb:expr) => {
            match (&computed, &affine_views) {
                (Some((sc, sh)), _) => {
                    $lb.arg(sc).arg(sh);
                }
                (None, Some((sc, sh))) => {
                    $lb.arg(sc).arg(sh);
                }
                (None, None) => unreachable!("a norm has statistics or an affine map"),
            }
        };
    }
    if vec {
        let rows = (b * r).div_ceil(lanes * 2 * MIN_BLOCKS).clamp(1, APPLY_ROWS_PER_THREAD);
        let rpb = lanes * rows;
        let rpbi = rpb as i32;
        let f = dev.get_or_load_custom_func(&format!("scale_act2_{s}"), MODULE, PTX)?;
        let mut lb = f.builder();
        lb.arg(&xs).arg(&mut out);
        push_scale_shift!(lb);
        lb.arg(&ri).arg(&ci).arg(&sb).arg(&act_i).arg(&alpha).arg(&rpbi);
        let cfg = LaunchConfig { grid_dim: (r.div_ceil(rpb) as u32, 1, b as u32), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        unsafe { lb.launch(cfg) }.w()?;
    } else {
        let rc = r * c;
        let items = n;
        let blocks = items.div_ceil(256).clamp(1, 1 << 20) as u32;
        let f = dev.get_or_load_custom_func(&format!("scale_act_{s}"), MODULE, PTX)?;
        let mut lb = f.builder();
        lb.arg(&xs).arg(&mut out);
        push_scale_shift!(lb);
        lb.arg(&items).arg(&rc).arg(&ci).arg(&sb).arg(&act_i).arg(&alpha);
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        unsafe { lb.launch(cfg) }.w()?;
    }
    drop(affine_views);
    drop(affine);
    drop(xs);
    drop(xs_guard);
    Ok(wrap(out, &dev, (b, h, w, c)))
}

// ---------------------------------------------------------------- GEMMs with accumulation

fn cublas_types(dtype: DType, tf32: bool) -> Result<(cublas_sys::cudaDataType, cublas_sys::cublasComputeType_t)> {
    use cublas_sys::{cublasComputeType_t as C, cudaDataType as D};
    Ok(match dtype {
        DType::F32 => (D::CUDA_R_32F, if tf32 { C::CUBLAS_COMPUTE_32F_FAST_TF32 } else { C::CUBLAS_COMPUTE_32F }),
        DType::F16 => (D::CUDA_R_16F, C::CUBLAS_COMPUTE_32F),
        DType::BF16 => (D::CUDA_R_16BF, C::CUBLAS_COMPUTE_32F),
        d => bail!("cuBLAS: unsupported dtype {d:?}"),
    })
}

/// Device address of a contiguous-or-offset tensor's first element.
pub(crate) fn dev_ptr(t: &Tensor) -> Result<u64> {
    let (g, l) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*g else { bail!("expected a CUDA tensor") };
    let stream = cs.device.cuda_stream();
    use candle_core::cuda::cudarc::driver::DevicePtr;
    let esz = t.dtype().size_in_bytes() as u64;
    let base = match t.dtype() {
        DType::F32 => cs.as_cuda_slice::<f32>()?.device_ptr(&stream).0,
        DType::F16 => cs.as_cuda_slice::<half::f16>()?.device_ptr(&stream).0,
        DType::BF16 => cs.as_cuda_slice::<half::bf16>()?.device_ptr(&stream).0,
        d => bail!("unsupported dtype {d:?}"),
    };
    Ok(base + l.start_offset() as u64 * esz)
}

/// Row-major strided-batched GEMM on raw device addresses, through the device's cuBLAS handle:
/// for i in 0..batch, Y_i (m x n, ldy) = X_i (m x k, ldx) . B_i + beta . Y_i, where B_i is
/// W_i (k x n, ldw) or, with `w_t`, W_i^T for W_i stored (n x k, ldw). Strides in elements.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_rm(
    dev: &CudaDevice,
    dtype: DType,
    tf32: bool,
    (m, n, k): (usize, usize, usize),
    (x, ldx, sx): (u64, usize, usize),
    (w, ldw, sw, w_t): (u64, usize, usize, bool),
    (y, ldy, sy): (u64, usize, usize),
    batch: usize,
    beta: f32,
) -> Result<()> {
    use cublas_sys::cublasOperation_t as Op;
    let (dt, ct) = cublas_types(dtype, tf32)?;
    let blas = dev.cublas_handle();
    let alpha = 1.0f32;
    // Row-major Y = X.B is column-major Y^T = B^T . X^T.
    unsafe {
        candle_core::cuda::cudarc::cublas::result::gemm_strided_batched_ex(
            *blas.handle(),
            if w_t { Op::CUBLAS_OP_T } else { Op::CUBLAS_OP_N },
            Op::CUBLAS_OP_N,
            n as i32,
            m as i32,
            k as i32,
            &alpha as *const f32 as *const std::ffi::c_void,
            w as *const std::ffi::c_void,
            dt,
            ldw as i32,
            sw as i64,
            x as *const std::ffi::c_void,
            dt,
            ldx as i32,
            sx as i64,
            &beta as *const f32 as *const std::ffi::c_void,
            y as *mut std::ffi::c_void,
            dt,
            ldy as i32,
            sy as i64,
            batch as i32,
            ct,
            cublas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| candle_core::Error::Msg(format!("cuBLAS gemm: {e:?}")))
}

fn empty_like_shape(dev: &CudaDevice, dtype: DType, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    Ok(match dtype {
        DType::F32 => wrap(unsafe { dev.alloc::<f32>(n)? }, dev, shape),
        DType::F16 => wrap(unsafe { dev.alloc::<half::f16>(n)? }, dev, shape),
        DType::BF16 => wrap(unsafe { dev.alloc::<half::bf16>(n)? }, dev, shape),
        d => bail!("unsupported dtype {d:?}"),
    })
}

fn check_acc(acc: Option<&Tensor>, shape: &[usize], dtype: DType) -> Result<()> {
    if let Some(a) = acc {
        if a.dims() != shape || a.dtype() != dtype || !a.is_contiguous() {
            bail!("accumulator {:?} {:?} does not match {shape:?} {dtype:?}", a.dims(), a.dtype());
        }
    }
    Ok(())
}

/// `nn.Linear` along F for h [N, Fi, C] (contiguous): out[n] = W [Fo, Fi] . h[n] (+ acc[n]).
/// With `acc`, the sum is written into `acc`'s memory (cuBLAS beta = 1) and `acc` is returned;
/// nothing else may be reading it.
pub fn linear_f(w: &Tensor, h: &Tensor, acc: Option<&Tensor>, tf32: bool) -> Result<Tensor> {
    let h = h.contiguous()?;
    let w = w.contiguous()?;
    let (nb, fi, c) = h.dims3()?;
    let (fo, fi2) = w.dims2()?;
    if fi != fi2 || w.dtype() != h.dtype() {
        bail!("linear_f: weight {:?} and input {:?} do not match", w.dims(), h.dims());
    }
    let Some(dev) = cuda_device(h.device()) else { bail!("linear_f: not a CUDA tensor") };
    check_acc(acc, &[nb, fo, c], h.dtype())?;
    let y = match acc {
        Some(a) => a.clone(),
        None => empty_like_shape(dev, h.dtype(), &[nb, fo, c])?,
    };
    let wp = dev_ptr(&w)?;
    let hp = dev_ptr(&h)?;
    let yp = dev_ptr(&y)?;
    // Y_n (fo x c) = W (fo x fi) . H_n (fi x c): "X" = W shared by all n, "B" = H_n.
    unsafe {
        gemm_rm(dev, h.dtype(), tf32, (fo, c, fi), (wp, fi, 0), (hp, c, fi * c, false), (yp, c, fo * c), nb, if acc.is_some() { 1.0 } else { 0.0 })?;
    }
    Ok(y)
}

/// y [M, Cout] = x [M, Cx] . W[:, off..off+Cx]^T (+ acc), W [Cout, Cin] row-major (a 1x1
/// convolution over part of the input channels). With `acc`, written into `acc`.
pub fn matmul_wt(x: &Tensor, w: &Tensor, off: usize, acc: Option<&Tensor>, tf32: bool) -> Result<Tensor> {
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let (m, cx) = x.dims2()?;
    let (cout, cin) = w.dims2()?;
    if off + cx > cin || w.dtype() != x.dtype() {
        bail!("matmul_wt: weight {:?} and input {:?} (offset {off}) do not match", w.dims(), x.dims());
    }
    let Some(dev) = cuda_device(x.device()) else { bail!("matmul_wt: not a CUDA tensor") };
    check_acc(acc, &[m, cout], x.dtype())?;
    let y = match acc {
        Some(a) => a.clone(),
        None => empty_like_shape(dev, x.dtype(), &[m, cout])?,
    };
    let esz = x.dtype().size_in_bytes() as u64;
    let wp = dev_ptr(&w)?;
    let xp = dev_ptr(&x)?;
    let yp = dev_ptr(&y)?;
    unsafe {
        gemm_rm(dev, x.dtype(), tf32, (m, cout, cx), (xp, cx, 0), (wp + off as u64 * esz, cin, 0, true), (yp, cout, 0), 1, if acc.is_some() { 1.0 } else { 0.0 })?;
    }
    Ok(y)
}

// ---------------------------------------------------------------- layout kernels

/// Upscale's depth-to-space fused with the decoder's concatenation: `up` [B*T*F, st*sf*Co]
/// (the transposed-conv matmul's output) and `skip` [B, T*st, F*sf, Cs] -> [B, T*st, F*sf, Co+Cs].
/// None when the channel counts do not allow 16-byte moves (the caller falls back).
pub fn upscale_concat(up: &Tensor, skip: &Tensor, (b, t, f): (usize, usize, usize), (st, sf): (usize, usize)) -> Result<Option<Tensor>> {
    let up = up.contiguous()?;
    let skip = skip.contiguous()?;
    let (rows, ucols) = up.dims2()?;
    let (b2, ty, fx, cs) = skip.dims4()?;
    let co = ucols / (st * sf);
    if rows != b * t * f || ucols != st * sf * co || (b2, ty, fx) != (b, t * st, f * sf) || up.dtype() != skip.dtype() {
        bail!("upscale_concat: {:?} and {:?} do not match", up.dims(), skip.dims());
    }
    let v = 16 / up.dtype().size_in_bytes();
    let esz = up.dtype().size_in_bytes();
    let aligned = |t: &Tensor| (t.layout().start_offset() * esz) % 16 == 0;
    let total = b * ty * fx * (co + cs) / v;
    if co % v != 0 || cs % v != 0 || !aligned(&up) || !aligned(&skip) || total >= (1usize << 31) {
        return Ok(None);
    }
    let Some(dev) = cuda_device(up.device()) else { bail!("upscale_concat: not a CUDA tensor") };
    let out = empty_like_shape(dev, up.dtype(), &[b, ty, fx, co + cs])?;
    let upp = dev_ptr(&up)?;
    let skp = dev_ptr(&skip)?;
    let outp = dev_ptr(&out)?;
    let f_ = dev.get_or_load_custom_func("d2s_concat", MODULE, PTX)?;
    let (ti, fi, sti, sfi, coi, csi, tot) = (t as i32, f as i32, st as i32, sf as i32, (co / v) as i32, (cs / v) as i32, total as u32);
    let mut lb = f_.builder();
    lb.arg(&upp).arg(&skp).arg(&outp).arg(&ti).arg(&fi).arg(&sti).arg(&sfi).arg(&coi).arg(&csi).arg(&tot);
    let cfg = LaunchConfig { grid_dim: (total.div_ceil(256).clamp(1, 1 << 20) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    unsafe { lb.launch(cfg) }.w()?;
    Ok(Some(out))
}

/// Upload host samples straight into a new device tensor (no intermediate host copy).
pub fn upload_f32(data: &[f32], shape: &[usize], dev: &CudaDevice) -> Result<Tensor> {
    if shape.iter().product::<usize>() != data.len() {
        bail!("upload_f32: {} values for shape {shape:?}", data.len());
    }
    let s = dev.clone_htod(data)?;
    Ok(wrap(s, dev, shape))
}

/// `a * b` for two contiguous tensors of the same shape and float dtype, 16 bytes per thread
/// (candle's broadcasting kernel reads at about a third of the bandwidth). None if unaligned.
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    if a.dims() != b.dims() || a.dtype() != b.dtype() {
        bail!("mul: {:?} {:?} and {:?} {:?}", a.dims(), a.dtype(), b.dims(), b.dtype());
    }
    let esz = a.dtype().size_in_bytes();
    let n = a.elem_count();
    let v = 16 / esz;
    let aligned = |t: &Tensor| (t.layout().start_offset() * esz) % 16 == 0;
    if n % v != 0 || !aligned(&a) || !aligned(&b) {
        return Ok(None);
    }
    let Some(dev) = cuda_device(a.device()) else { bail!("mul: not a CUDA tensor") };
    let out = empty_like_shape(dev, a.dtype(), a.dims())?;
    let (ap, bp, op) = (dev_ptr(&a)?, dev_ptr(&b)?, dev_ptr(&out)?);
    let nv = n / v;
    let f = dev.get_or_load_custom_func(&format!("mul_vec_{}", sfx(a.dtype())?), MODULE, PTX)?;
    let mut lb = f.builder();
    lb.arg(&ap).arg(&bp).arg(&op).arg(&nv);
    let cfg = LaunchConfig { grid_dim: (nv.div_ceil(256).clamp(1, 1 << 20) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    unsafe { lb.launch(cfg) }.w()?;
    Ok(Some(out))
}
