//! Convolutions through cuDNN's graph (backend) API: one operation graph per shape, the engine
//! configurations cuDNN's heuristics rank first (mode A), each finalised into an execution plan
//! that [`super::cudnn::Convs`] times on the real buffers. This reaches the Hopper kernels that
//! the legacy `cudnnConvolutionForward` algorithms do not pick for every shape (measured: the
//! legacy path ran the 128->128 3x3 conv at 256x1024 at 245 TFLOP/s for one image and
//! 620 TFLOP/s for four).

use candle_core::cuda::cudarc::cudnn::sys;
use crate::backend::ConvShape;
use candle_core::{DType, Result, bail};
use std::ffi::c_void;

use sys::cudnnBackendAttributeName_t as A;
use sys::cudnnBackendAttributeType_t as T;
use sys::cudnnBackendDescriptorType_t as D;

/// An owned backend descriptor.
pub(crate) struct Desc(pub(crate) sys::cudnnBackendDescriptor_t);

impl Drop for Desc {
    fn drop(&mut self) {
        if !self.0.is_null() {
            unsafe {
                let _ = sys::cudnnBackendDestroyDescriptor(self.0);
            }
        }
    }
}

fn check(what: &str, s: sys::cudnnStatus_t) -> Result<()> {
    if s != sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        bail!("cuDNN graph {what}: {s:?}");
    }
    Ok(())
}

impl Desc {
    fn new(ty: D) -> Result<Self> {
        let mut d: sys::cudnnBackendDescriptor_t = std::ptr::null_mut();
        check("create", unsafe { sys::cudnnBackendCreateDescriptor(ty, &mut d) })?;
        Ok(Desc(d))
    }
    fn set<V>(&self, name: A, ty: T, vals: &[V]) -> Result<()> {
        check(&format!("set {name:?}"), unsafe { sys::cudnnBackendSetAttribute(self.0, name, ty, vals.len() as i64, vals.as_ptr() as *const c_void) })
    }
    fn finalize(&self, what: &str) -> Result<()> {
        check(&format!("finalize {what}"), unsafe { sys::cudnnBackendFinalize(self.0) })
    }
}

const UID_X: i64 = 1;
const UID_W: i64 = 2;
const UID_Y: i64 = 3;

fn data_type(d: DType) -> Result<sys::cudnnDataType_t> {
    Ok(match d {
        DType::F32 => sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
        DType::F16 => sys::cudnnDataType_t::CUDNN_DATA_HALF,
        DType::BF16 => sys::cudnnDataType_t::CUDNN_DATA_BFLOAT16,
        d => bail!("cuDNN graph: unsupported dtype {d:?}"),
    })
}

/// A channels-last tensor: logical dims [n, c, h, w], NHWC strides.
fn tensor(uid: i64, dt: sys::cudnnDataType_t, [n, c, h, w]: [i64; 4]) -> Result<Desc> {
    let d = Desc::new(D::CUDNN_BACKEND_TENSOR_DESCRIPTOR)?;
    d.set(A::CUDNN_ATTR_TENSOR_DATA_TYPE, T::CUDNN_TYPE_DATA_TYPE, &[dt])?;
    d.set(A::CUDNN_ATTR_TENSOR_DIMENSIONS, T::CUDNN_TYPE_INT64, &[n, c, h, w])?;
    d.set(A::CUDNN_ATTR_TENSOR_STRIDES, T::CUDNN_TYPE_INT64, &[h * w * c, 1, w * c, c])?;
    d.set(A::CUDNN_ATTR_TENSOR_UNIQUE_ID, T::CUDNN_TYPE_INT64, &[uid])?;
    d.set(A::CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, T::CUDNN_TYPE_INT64, &[16i64])?;
    d.finalize("tensor")?;
    Ok(d)
}

/// The descriptors of one convolution graph, kept alive as long as its plans.
pub(crate) struct Graph {
    _x: Desc,
    _w: Desc,
    _y: Desc,
    _conv: Desc,
    _op: Desc,
    graph: Desc,
}

/// One finalised execution plan and its workspace size.
pub(crate) struct Plan {
    pub(crate) plan: Desc,
    pub(crate) workspace: usize,
    pub(crate) name: String,
}

/// Build the operation graph for y = alpha * conv(x, w) + beta * y (alpha 1) and finalise up
/// to `max_plans` execution plans from the heuristics' ranking.
pub(crate) fn plans(handle: sys::cudnnHandle_t, dtype: DType, sh: ConvShape, beta: f32, max_plans: usize) -> Result<(Graph, Vec<Plan>)> {
    let dt = data_type(dtype)?;
    let (ho, wo) = sh.out_hw();
    let i = |v: usize| v as i64;
    let x = tensor(UID_X, dt, [i(sh.n), i(sh.cin), i(sh.h), i(sh.w)])?;
    let w = tensor(UID_W, dt, [i(sh.cout), i(sh.cin), i(sh.kh), i(sh.kw)])?;
    let y = tensor(UID_Y, dt, [i(sh.n), i(sh.cout), i(ho), i(wo)])?;
    let conv = Desc::new(D::CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR)?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_COMP_TYPE, T::CUDNN_TYPE_DATA_TYPE, &[sys::cudnnDataType_t::CUDNN_DATA_FLOAT])?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_CONV_MODE, T::CUDNN_TYPE_CONVOLUTION_MODE, &[sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION])?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, T::CUDNN_TYPE_INT64, &[2i64])?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_DILATIONS, T::CUDNN_TYPE_INT64, &[1i64, 1])?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, T::CUDNN_TYPE_INT64, &[i(sh.stride), i(sh.stride)])?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, T::CUDNN_TYPE_INT64, &[i(sh.pad), i(sh.pad)])?;
    conv.set(A::CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, T::CUDNN_TYPE_INT64, &[i(sh.pad), i(sh.pad)])?;
    conv.finalize("convolution")?;
    let op = Desc::new(D::CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR)?;
    op.set(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, &[conv.0])?;
    op.set(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, &[x.0])?;
    op.set(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, &[w.0])?;
    op.set(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, &[y.0])?;
    op.set(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, T::CUDNN_TYPE_FLOAT, &[1.0f32])?;
    op.set(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, T::CUDNN_TYPE_FLOAT, &[beta])?;
    op.finalize("operation")?;
    let graph = Desc::new(D::CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)?;
    graph.set(A::CUDNN_ATTR_OPERATIONGRAPH_HANDLE, T::CUDNN_TYPE_HANDLE, &[handle])?;
    graph.set(A::CUDNN_ATTR_OPERATIONGRAPH_OPS, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, &[op.0])?;
    graph.finalize("operation graph")?;

    let heur = Desc::new(D::CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR)?;
    heur.set(A::CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, &[graph.0])?;
    heur.set(A::CUDNN_ATTR_ENGINEHEUR_MODE, T::CUDNN_TYPE_HEUR_MODE, &[sys::cudnnBackendHeurMode_t::CUDNN_HEUR_MODE_A])?;
    heur.finalize("heuristics")?;
    let mut count: i64 = 0;
    check("heuristics count", unsafe {
        sys::cudnnBackendGetAttribute(heur.0, A::CUDNN_ATTR_ENGINEHEUR_RESULTS, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &mut count, std::ptr::null_mut())
    })?;
    let count = (count.max(0) as usize).min(64);
    let cfgs: Vec<Desc> = (0..count).map(|_| Desc::new(D::CUDNN_BACKEND_ENGINECFG_DESCRIPTOR)).collect::<Result<_>>()?;
    let mut raw: Vec<sys::cudnnBackendDescriptor_t> = cfgs.iter().map(|d| d.0).collect();
    let mut got: i64 = 0;
    check("heuristics results", unsafe {
        sys::cudnnBackendGetAttribute(heur.0, A::CUDNN_ATTR_ENGINEHEUR_RESULTS, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, count as i64, &mut got, raw.as_mut_ptr() as *mut c_void)
    })?;
    let mut out = vec![];
    for (idx, cfg) in cfgs.iter().take(got.max(0) as usize).enumerate() {
        if out.len() >= max_plans {
            break;
        }
        let plan = Desc::new(D::CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)?;
        plan.set(A::CUDNN_ATTR_EXECUTION_PLAN_HANDLE, T::CUDNN_TYPE_HANDLE, &[handle])?;
        plan.set(A::CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, &[cfg.0])?;
        if plan.finalize("plan").is_err() {
            continue;
        }
        let mut ws: i64 = 0;
        let mut n: i64 = 0;
        check("workspace size", unsafe {
            sys::cudnnBackendGetAttribute(plan.0, A::CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, T::CUDNN_TYPE_INT64, 1, &mut n, &mut ws as *mut i64 as *mut c_void)
        })?;
        out.push(Plan { plan, workspace: ws.max(0) as usize, name: format!("heuristic #{idx}") });
    }
    Ok((Graph { _x: x, _w: w, _y: y, _conv: conv, _op: op, graph }, out))
}

impl Graph {
    #[allow(dead_code)]
    pub(crate) fn raw(&self) -> sys::cudnnBackendDescriptor_t {
        self.graph.0
    }
}

/// Run `plan` on device addresses x, w, y (y read too when beta != 0) with a workspace.
pub(crate) fn execute(handle: sys::cudnnHandle_t, plan: &Plan, x: u64, w: u64, y: u64, ws: u64) -> Result<()> {
    let vp = Desc::new(D::CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)?;
    let ptrs: [*mut c_void; 3] = [x as *mut c_void, w as *mut c_void, y as *mut c_void];
    vp.set(A::CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, T::CUDNN_TYPE_VOID_PTR, &ptrs)?;
    vp.set(A::CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, T::CUDNN_TYPE_INT64, &[UID_X, UID_W, UID_Y])?;
    vp.set(A::CUDNN_ATTR_VARIANT_PACK_WORKSPACE, T::CUDNN_TYPE_VOID_PTR, &[ws as *mut c_void])?;
    vp.finalize("variant pack")?;
    check("execute", unsafe { sys::cudnnBackendExecute(handle, plan.plan.0, vp.0) })
}
