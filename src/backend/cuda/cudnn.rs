//! Convolutions through cuDNN, channels-last (NHWC activations, KRSC filters).
//!
//! One [`Convs`] per network: it owns a cuDNN handle bound to the candle device's stream, one
//! plan (descriptors + algorithm) per distinct shape, and one workspace reused by every call,
//! so dropping the network frees all of it. The algorithm for a shape is chosen once, on its
//! first use (the engine's warm-up), by timing the candidates (`cudnnFindConvolutionForwardAlgorithmEx`;
//! [`CudnnSearch::heuristic`] uses cuDNN's heuristic ranking instead).
//!
//! Precision: f16 and bf16 use tensor cores with f32 accumulation. f32 is exact FP32 (no TF32)
//! unless the network asks for TF32 (`tf32 = true`). Only GEMM-type algorithms are accepted
//! (implicit GEMM, precomputed implicit GEMM, GEMM): no FFT or Winograd transforms, whose
//! rounding differs from a direct convolution.

use super::kernels::{cuda_device, dev_ptr, view, wrap};
use crate::backend::ConvShape;
use crate::options::CudnnSearch;
use candle_core::cuda::cudarc::cudnn::{result as cr, sys};
use candle_core::cuda::cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr};
use candle_core::cuda::CudaDType;
use candle_core::{CudaDevice, DType, Result, Tensor, bail};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

fn err(what: &str, e: cr::CudnnError) -> candle_core::Error {
    candle_core::Error::Msg(format!("cuDNN {what}: {e:?}"))
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Key {
    dtype: DType,
    tf32: bool,
    /// Accumulate into the output (beta = 1): a different graph for the graph API.
    acc: bool,
    shape: ConvShape,
}

struct Plan {
    x: sys::cudnnTensorDescriptor_t,
    f: sys::cudnnFilterDescriptor_t,
    conv: sys::cudnnConvolutionDescriptor_t,
    y: sys::cudnnTensorDescriptor_t,
    algo: sys::cudnnConvolutionFwdAlgo_t,
    ws: usize,
    ho: usize,
    wo: usize,
    /// The graph-API plan that timed faster than the legacy algorithm, if any.
    graph: Option<(super::cudnn_graph::Graph, super::cudnn_graph::Plan)>,
    /// What was chosen, for logs.
    chosen: String,
}

impl Drop for Plan {
    fn drop(&mut self) {
        unsafe {
            let _ = cr::destroy_tensor_descriptor(self.x);
            let _ = cr::destroy_filter_descriptor(self.f);
            let _ = cr::destroy_convolution_descriptor(self.conv);
            let _ = cr::destroy_tensor_descriptor(self.y);
        }
    }
}

impl Plan {
    /// y = conv(x, w) + beta * y with the legacy API's algorithm (device addresses; `ws` of
    /// `ws_len` bytes, null when the algorithm needs none).
    fn legacy_forward(&self, handle: sys::cudnnHandle_t, x: u64, w: u64, y: u64, ws: *mut c_void, ws_len: usize, beta: f32) -> Result<()> {
        let alpha: f32 = 1.0;
        // SAFETY: the descriptors describe x, w and y as the caller allocated them; cuDNN only
        // enqueues work on the handle's stream.
        unsafe {
            cr::convolution_forward(
                handle,
                &alpha as *const f32 as *const c_void,
                self.x,
                x as *const c_void,
                self.f,
                w as *const c_void,
                self.conv,
                self.algo,
                ws,
                ws_len,
                &beta as *const f32 as *const c_void,
                self.y,
                y as *mut c_void,
            )
        }
        .map_err(|e| err("convolution forward", e))
    }
}

struct Inner {
    dev: CudaDevice,
    handle: sys::cudnnHandle_t,
    plans: HashMap<Key, Plan>,
    workspace: Option<CudaSlice<u8>>,
    search: CudnnSearch,
}

// The raw cuDNN handle and descriptors are only used under the mutex, one call at a time,
// which is what cuDNN requires of a handle shared between threads.
unsafe impl Send for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        self.plans.clear();
        let _ = self.dev.cuda_stream().context().bind_to_thread();
        unsafe {
            let _ = cr::destroy_handle(self.handle);
        }
    }
}

/// cuDNN state for one network on one CUDA device.
pub struct Convs {
    inner: Mutex<Inner>,
}

/// What cuDNN reports about the algorithm chosen for a shape (for logs and benchmarks).
#[derive(Debug, Clone)]
pub struct PlanInfo {
    pub shape: String,
    pub algo: String,
    pub workspace: usize,
}

const ALLOWED: [sys::cudnnConvolutionFwdAlgo_t; 3] = [
    sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
    sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
    sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
];
/// Largest workspace an algorithm may ask for.
const WORKSPACE_LIMIT: usize = 256 << 20;

fn data_type(d: DType) -> Result<sys::cudnnDataType_t> {
    Ok(match d {
        DType::F32 => sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
        DType::F16 => sys::cudnnDataType_t::CUDNN_DATA_HALF,
        DType::BF16 => sys::cudnnDataType_t::CUDNN_DATA_BFLOAT16,
        d => bail!("cuDNN conv: unsupported dtype {d:?}"),
    })
}

impl Convs {
    pub fn new(dev: &CudaDevice, search: CudnnSearch) -> Result<Self> {
        let stream = dev.cuda_stream();
        stream.context().bind_to_thread().map_err(candle_core::Error::wrap)?;
        let handle = cr::create_handle().map_err(|e| err("create", e))?;
        unsafe { cr::set_stream(handle, stream.cu_stream() as *mut _) }.map_err(|e| err("set stream", e))?;
        Ok(Convs { inner: Mutex::new(Inner { dev: dev.clone(), handle, plans: HashMap::new(), workspace: None, search }) })
    }

    /// Algorithms chosen so far, one per shape.
    pub fn plans(&self) -> Vec<PlanInfo> {
        let inner = self.inner.lock().unwrap();
        inner
            .plans
            .iter()
            .map(|(k, p)| PlanInfo {
                shape: {
                    let s = &k.shape;
                    let (dt, tf32, acc) = (k.dtype, if k.tf32 { "/tf32" } else { "" }, if k.acc { "+acc" } else { "" });
                    format!("{dt:?}{tf32}{acc} n{} {}x{} c{}->k{} {}x{} pad{} stride{}", s.n, s.h, s.w, s.cin, s.cout, s.kh, s.kw, s.pad, s.stride)
                },
                algo: p.chosen.clone(),
                workspace: p.graph.as_ref().map(|(_, g)| g.workspace).unwrap_or(p.ws),
            })
            .collect()
    }

    /// Bytes held by the shared workspace.
    pub fn workspace_bytes(&self) -> usize {
        self.inner.lock().unwrap().workspace.as_ref().map(|w| w.len()).unwrap_or(0)
    }

    /// `x` [N, H, W, C] (channels-last, contiguous) convolved with `w` [K, R, S, C] (KRSC,
    /// contiguous), zero padding `pad`, stride `stride` -> [N, Ho, Wo, K].
    pub fn conv(&self, x: &Tensor, w: &Tensor, pad: usize, stride: usize, tf32: bool) -> Result<Tensor> {
        self.conv_acc(x, w, pad, stride, tf32, None)
    }

    /// As [`Convs::conv`], but with `acc` = Some(t): t += conv(x, w) in place (cuDNN's beta = 1),
    /// returning t. `t` must be a contiguous [N, Ho, Wo, K] tensor of the same dtype that nothing
    /// else reads (a residual branch computed just before).
    pub fn conv_acc(&self, x: &Tensor, w: &Tensor, pad: usize, stride: usize, tf32: bool, acc: Option<&Tensor>) -> Result<Tensor> {
        match x.dtype() {
            DType::F32 => self.conv_t::<f32>(x, w, pad, stride, tf32, acc),
            DType::F16 => self.conv_t::<half::f16>(x, w, pad, stride, false, acc),
            DType::BF16 => self.conv_t::<half::bf16>(x, w, pad, stride, false, acc),
            d => bail!("cuDNN conv: unsupported dtype {d:?}"),
        }
    }

    fn conv_t<T: CudaDType + DeviceRepr>(&self, x: &Tensor, w: &Tensor, pad: usize, stride: usize, tf32: bool, acc: Option<&Tensor>) -> Result<Tensor> {
        let x = x.contiguous()?;
        let w = w.contiguous()?;
        let (n, h, wd, c) = x.dims4()?;
        let (k, r, s, c2) = w.dims4()?;
        if c != c2 || w.dtype() != x.dtype() {
            bail!("cuDNN conv: input {:?} {:?} and filter {:?} {:?} do not match", x.dims(), x.dtype(), w.dims(), w.dtype());
        }
        let Some(dev) = cuda_device(x.device()) else { bail!("cuDNN conv: not a CUDA tensor") };
        let shape = ConvShape { n, cin: c, cout: k, h, w: wd, kh: r, kw: s, pad, stride };
        let key = Key { dtype: x.dtype(), tf32, acc: acc.is_some(), shape };
        let mut guard = self.inner.lock().unwrap();
        let inner = &mut *guard;
        let stream = dev.cuda_stream();
        stream.context().bind_to_thread().map_err(candle_core::Error::wrap)?;

        let (xg, xl) = x.storage_and_layout();
        let (wg, wl) = w.storage_and_layout();
        let xv = view::<T>(&xg, xl, n * h * wd * c)?;
        let wv = view::<T>(&wg, wl, k * r * s * c)?;
        let (ho, wo) = shape.out_hw();
        let mut y = unsafe { dev.alloc::<T>(n * ho * wo * k)? };

        if !inner.plans.contains_key(&key) {
            let mut plan = make_plan(inner, key, &xv, &wv, &mut y)?;
            plan.chosen = format!("legacy {:?}", plan.algo);
            let strict = key.dtype == DType::F32 && !key.tf32;
            if !strict && inner.search.graph_api {
                let (xp, _gx) = xv.device_ptr(&stream);
                let (wp, _gw) = wv.device_ptr(&stream);
                let (yp, _gy) = y.device_ptr_mut(&stream);
                match autotune_graph(inner, &plan, key, xp, wp, yp) {
                    Ok(Some(g)) => {
                        plan.chosen = g.1.name.clone();
                        plan.graph = Some(g);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        if inner.search.log {
                            eprintln!("cudnn: graph API unavailable for {key:?}: {e}");
                        }
                    }
                }
            }
            if inner.search.log {
                eprintln!("cudnn: {key:?} -> {}, workspace {} B", plan.chosen, plan.graph.as_ref().map(|(_, g)| g.workspace).unwrap_or(plan.ws));
            }
            inner.plans.insert(key, plan);
        }
        let plan = &inner.plans[&key];
        debug_assert_eq!((plan.ho, plan.wo), (ho, wo));
        let need_ws = plan.graph.as_ref().map(|(_, g)| g.workspace).unwrap_or(plan.ws);
        if need_ws > inner.workspace.as_ref().map(|b| b.len()).unwrap_or(0) {
            inner.workspace = None;
            inner.workspace = Some(unsafe { dev.alloc::<u8>(need_ws)? });
        }
        if let Some(a) = acc {
            if a.dims() != [n, ho, wo, k] || a.dtype() != x.dtype() || !a.is_contiguous() {
                bail!("cuDNN conv: accumulator {:?} {:?} does not match the output [{n}, {ho}, {wo}, {k}]", a.dims(), a.dtype());
            }
        }
        let beta: f32 = if acc.is_some() { 1.0 } else { 0.0 };
        let acc_guard = acc.map(|a| a.storage_and_layout());
        let acc_view = match &acc_guard {
            Some((g, l)) => Some(view::<T>(g, l, n * ho * wo * k)?),
            None => None,
        };
        {
            let (xp, _gx) = xv.device_ptr(&stream);
            let (wp, _gw) = wv.device_ptr(&stream);
            let (yp, _gy) = match &acc_view {
                // cuDNN reads and writes the accumulator in place (device memory, stream-ordered).
                Some(av) => av.device_ptr(&stream),
                None => y.device_ptr_mut(&stream),
            };
            let (wsp, wss) = match (need_ws, inner.workspace.as_mut()) {
                (0, _) | (_, None) => (std::ptr::null_mut::<c_void>(), 0usize),
                (_, Some(buf)) => {
                    let (p, _g) = buf.device_ptr_mut(&stream);
                    (p as *mut c_void, need_ws)
                }
            };
            if let Some((_, gp)) = &plan.graph {
                super::cudnn_graph::execute(inner.handle, gp, xp, wp, yp, wsp as u64)?;
            } else {
                plan.legacy_forward(inner.handle, xp, wp, yp, wsp, wss, beta)?;
            }
        }
        drop(xv);
        drop(wv);
        drop(xg);
        drop(wg);
        drop(acc_view);
        drop(acc_guard);
        match acc {
            Some(a) => Ok(a.clone()),
            None => Ok(wrap(y, dev, (n, ho, wo, k))),
        }
    }
}

fn make_plan<T: CudaDType + DeviceRepr>(
    inner: &mut Inner,
    key: Key,
    xv: &candle_core::cuda::cudarc::driver::CudaView<T>,
    wv: &candle_core::cuda::cudarc::driver::CudaView<T>,
    y: &mut CudaSlice<T>,
) -> Result<Plan> {
    let dt = data_type(key.dtype)?;
    let nhwc = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC;
    let sh = key.shape;
    let (ho, wo) = sh.out_hw();
    let i = |v: usize| v as i32;
    let plan = unsafe {
        let x = cr::create_tensor_descriptor().map_err(|e| err("descriptor", e))?;
        let f = cr::create_filter_descriptor().map_err(|e| err("descriptor", e))?;
        let conv = cr::create_convolution_descriptor().map_err(|e| err("descriptor", e))?;
        let yd = cr::create_tensor_descriptor().map_err(|e| err("descriptor", e))?;
        let plan = Plan { x, f, conv, y: yd, algo: ALLOWED[0], ws: 0, ho, wo, graph: None, chosen: String::new() };
        cr::set_tensor4d_descriptor(plan.x, nhwc, dt, [i(sh.n), i(sh.cin), i(sh.h), i(sh.w)]).map_err(|e| err("x descriptor", e))?;
        cr::set_filter4d_descriptor(plan.f, dt, nhwc, [i(sh.cout), i(sh.cin), i(sh.kh), i(sh.kw)]).map_err(|e| err("filter descriptor", e))?;
        cr::set_convolution2d_descriptor(
            plan.conv,
            i(sh.pad),
            i(sh.pad),
            i(sh.stride),
            i(sh.stride),
            1,
            1,
            sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
        )
        .map_err(|e| err("conv descriptor", e))?;
        cr::set_tensor4d_descriptor(plan.y, nhwc, dt, [i(sh.n), i(sh.cout), i(ho), i(wo)]).map_err(|e| err("y descriptor", e))?;
        plan
    };
    let math = match (key.dtype, key.tf32) {
        (DType::F32, false) => sys::cudnnMathType_t::CUDNN_FMA_MATH,
        (DType::F32, true) => sys::cudnnMathType_t::CUDNN_DEFAULT_MATH,
        _ => sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
    };
    unsafe { cr::set_convolution_math_type(plan.conv, math) }.map_err(|e| err("math type", e))?;

    const N: usize = 8;
    let mut perf: [sys::cudnnConvolutionFwdAlgoPerf_t; N] = unsafe { std::mem::zeroed() };
    let mut count: i32 = 0;
    if inner.search.heuristic {
        unsafe {
            sys::cudnnGetConvolutionForwardAlgorithm_v7(inner.handle, plan.x, plan.f, plan.conv, plan.y, N as i32, &mut count, perf.as_mut_ptr())
        }
        .result()
        .map_err(|e| err("algorithm heuristics", e))?;
    } else {
        // Time the candidates on the real buffers with a workspace of up to WORKSPACE_LIMIT.
        let stream = inner.dev.cuda_stream();
        let limit = WORKSPACE_LIMIT;
        if inner.workspace.as_ref().map(|b| b.len()).unwrap_or(0) < limit {
            inner.workspace = None;
            inner.workspace = Some(unsafe { inner.dev.alloc::<u8>(limit)? });
        }
        let ws = inner.workspace.as_mut().expect("allocated above");
        let (xp, _gx) = xv.device_ptr(&stream);
        let (wp, _gw) = wv.device_ptr(&stream);
        let (yp, _gy) = y.device_ptr_mut(&stream);
        let (wsp, _gws) = ws.device_ptr_mut(&stream);
        let found = unsafe {
            sys::cudnnFindConvolutionForwardAlgorithmEx(
                inner.handle,
                plan.x,
                xp as *const c_void,
                plan.f,
                wp as *const c_void,
                plan.conv,
                plan.y,
                yp as *mut c_void,
                N as i32,
                &mut count,
                perf.as_mut_ptr(),
                wsp as *mut c_void,
                limit,
            )
        }
        .result()
        .map_err(|e| err("algorithm search", e));
        drop((_gx, _gw, _gy, _gws));
        // The search workspace is only needed now; calls allocate what their algorithm needs.
        inner.workspace = None;
        found?;
    }
    let strict = key.dtype == DType::F32 && !key.tf32;
    let any_algo = inner.search.any_algo;
    let chosen = perf[..count.max(0) as usize].iter().find(|p| {
        p.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
            && p.memory <= WORKSPACE_LIMIT
            && (any_algo || ALLOWED.contains(&p.algo))
            && (!strict || p.mathType == sys::cudnnMathType_t::CUDNN_FMA_MATH || p.mathType == sys::cudnnMathType_t::CUDNN_DEFAULT_MATH)
    });
    let Some(p) = chosen else {
        let seen: Vec<String> = perf[..count.max(0) as usize].iter().map(|p| format!("{:?}/{:?}/{:?}", p.algo, p.status, p.mathType)).collect();
        bail!("cuDNN: no usable forward algorithm for {key:?} (candidates: {})", seen.join(", "));
    };
    if inner.search.log {
        for q in &perf[..count.max(0) as usize] {
            eprintln!("cudnn:   candidate {:?} {:?} {:?} {:.3} ms {} B", q.algo, q.status, q.mathType, q.time, q.memory);
        }
    }
    // Keep the strict math type for exact f32 even if cuDNN reports DEFAULT for the result.
    let math = if strict { sys::cudnnMathType_t::CUDNN_FMA_MATH } else { p.mathType };
    unsafe { cr::set_convolution_math_type(plan.conv, math) }.map_err(|e| err("math type", e))?;
    let mut plan = plan;
    plan.algo = p.algo;
    plan.ws = unsafe { cr::get_convolution_forward_workspace_size(inner.handle, plan.x, plan.f, plan.conv, plan.y, plan.algo) }
        .map_err(|e| err("workspace size", e))?;
    Ok(plan)
}

/// Time the legacy algorithm of `plan` and the graph API's best-ranked plans on the real
/// buffers (y is scratch here); return the graph plan if one is faster.
fn autotune_graph(
    inner: &mut Inner,
    plan: &Plan,
    key: Key,
    xp: u64,
    wp: u64,
    yp: u64,
) -> Result<Option<(super::cudnn_graph::Graph, super::cudnn_graph::Plan)>> {
    use super::cudnn_graph as g;
    let shape = key.shape;
    let beta: f32 = if key.acc { 1.0 } else { 0.0 };
    let (graph, cands) = g::plans(inner.handle, key.dtype, shape, beta, 8)?;
    let cands: Vec<_> = cands.into_iter().filter(|c| c.workspace <= WORKSPACE_LIMIT).collect();
    if cands.is_empty() {
        return Ok(None);
    }
    let need = cands.iter().map(|c| c.workspace).max().unwrap_or(0).max(plan.ws);
    if inner.workspace.as_ref().map(|b| b.len()).unwrap_or(0) < need {
        inner.workspace = None;
        inner.workspace = Some(unsafe { inner.dev.alloc::<u8>(need.max(1))? });
    }
    let stream = inner.dev.cuda_stream();
    let wsp = match inner.workspace.as_mut() {
        Some(buf) => buf.device_ptr_mut(&stream).0,
        None => 0,
    };
    let sync = || stream.synchronize().map_err(candle_core::Error::wrap);
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        f()?;
        sync()?;
        let t = std::time::Instant::now();
        for _ in 0..3 {
            f()?;
        }
        sync()?;
        Ok(t.elapsed().as_secs_f64() / 3.0)
    };
    let handle = inner.handle;
    // The legacy algorithm into the output at `out`.
    let legacy_ws = if plan.ws > 0 { wsp as *mut c_void } else { std::ptr::null_mut() };
    let legacy_into = |out: u64| plan.legacy_forward(handle, xp, wp, out, legacy_ws, plan.ws, beta);
    let legacy = time(&mut || legacy_into(yp))?;
    let log = inner.search.log;
    // Reference output of the legacy algorithm (from zeros, so beta = 1 adds nothing) to check
    // each candidate's numerics against: an engine that rounds more (reduced-precision
    // reductions, say) is not taken, however fast.
    let dev = candle_core::Device::Cuda(inner.dev.clone());
    let (ho, wo) = shape.out_hw();
    let oshape = (shape.n, ho, wo, shape.cout);
    let reference = candle_core::Tensor::zeros(oshape, key.dtype, &dev)?;
    legacy_into(dev_ptr(&reference)?)?;
    let ref_max = reference.to_dtype(candle_core::DType::F32)?.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-30);
    let tol = match key.dtype {
        DType::BF16 => 3e-2,
        DType::F16 => 1e-2,
        _ => 1e-2,
    };
    let mut best: Option<(f64, usize)> = None;
    for (i, c) in cands.iter().enumerate() {
        let check = (|| -> Result<f32> {
            let out = candle_core::Tensor::zeros(oshape, key.dtype, &dev)?;
            g::execute(handle, c, xp, wp, dev_ptr(&out)?, wsp)?;
            let d = (out.to_dtype(candle_core::DType::F32)? - reference.to_dtype(candle_core::DType::F32)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
            Ok(d / ref_max)
        })();
        match check {
            Ok(e) if e.is_finite() && e <= tol => {}
            Ok(e) => {
                if log {
                    eprintln!("cudnn:   graph {} rejected: differs from legacy by {e:.2e} of max", c.name);
                }
                continue;
            }
            Err(e) => {
                if log {
                    eprintln!("cudnn:   graph {} failed: {e}", c.name);
                }
                continue;
            }
        }
        match time(&mut || g::execute(handle, c, xp, wp, yp, wsp)) {
            Ok(t) => {
                if log {
                    eprintln!("cudnn:   graph {} {:.3} ms (workspace {} B)", c.name, t * 1e3, c.workspace);
                }
                if best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, i));
                }
            }
            Err(e) => {
                if log {
                    eprintln!("cudnn:   graph {} failed: {e}", c.name);
                }
            }
        }
    }
    if log {
        eprintln!("cudnn:   legacy {:?} {:.3} ms", plan.algo, legacy * 1e3);
    }
    match best {
        Some((t, i)) if t < legacy => {
            let mut cands = cands;
            let mut chosen = cands.swap_remove(i);
            chosen.name = format!("graph {} ({:.3} ms vs legacy {:.3} ms)", chosen.name, t * 1e3, legacy * 1e3);
            Ok(Some((graph, chosen)))
        }
        _ => Ok(None),
    }
}
