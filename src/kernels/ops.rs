//! candle glue: the CPU kernels as candle custom ops, for f32 tensors on the CPU device.
//!
//! [`use_cpu_kernels`] says whether a tensor takes this path; the network falls back to
//! candle's own ops otherwise (CUDA, Metal, f16/bf16). Inputs that are not contiguous are made
//! contiguous first. In-place ops ([`NormActOp::apply_inplace`], [`add_assign`]) write into the
//! tensor's storage: use them only on tensors nothing else refers to (no clones, views or
//! reshapes of it still in use).

use super::norm::{self, Activation, Norm};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, InplaceOp1, InplaceOp2, Layout, Result, Shape, Tensor, bail};

/// Whether `x` runs through the CPU kernels: f32 on the CPU device.
pub fn use_cpu_kernels(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// The contiguous f32 values a layout covers.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("{op}: expected f32, got {:?}", s.dtype()) };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: input is not contiguous"),
    }
}

fn f32_slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let dtype = s.dtype();
    let CpuStorage::F32(v) = s else { bail!("{op}: expected f32, got {dtype:?}") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => bail!("{op}: output is not contiguous"),
    }
}

fn contiguous(x: &Tensor) -> Result<Tensor> {
    if x.is_contiguous() { Ok(x.clone()) } else { x.contiguous() }
}

/// 3x3 convolution, stride 1, padding 1, no bias: x [B, Cin, H, W], w [Cout, Cin, 3, 3] ->
/// [B, Cout, H, W] with [`super::conv3x3_f32`].
pub fn conv3x3(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    contiguous(x)?.apply_op2_no_bwd(&contiguous(w)?, &Conv3x3Op)
}

struct Conv3x3Op;

impl CustomOp2 for Conv3x3Op {
    fn name(&self) -> &'static str {
        "mdx-conv3x3"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[b, cin, h, w] = l1.dims() else { bail!("mdx-conv3x3: input {:?} is not [B, C, H, W]", l1.dims()) };
        let &[cout, cin2, 3, 3] = l2.dims() else { bail!("mdx-conv3x3: weight {:?} is not [O, I, 3, 3]", l2.dims()) };
        if cin != cin2 {
            bail!("mdx-conv3x3: input has {cin} channels, weight {cin2}");
        }
        let x = f32_slice(s1, l1, self.name())?;
        let k = f32_slice(s2, l2, self.name())?;
        let mut out = vec![0f32; b * cout * h * w];
        super::conv3x3_f32(x, k, &mut out, b, cin, cout, h, w);
        Ok((CpuStorage::F32(out), Shape::from((b, cout, h, w))))
    }
}

/// The normalisation of a [`NormActOp`], with its parameters on the host.
#[derive(Clone, Debug)]
pub enum NormParams {
    Identity,
    /// Folded BatchNorm: `x * scale[c] + shift[c]`.
    Affine { scale: Vec<f32>, shift: Vec<f32> },
    /// GroupNorm (`groups` groups) or InstanceNorm (`groups` = channels), then `* weight + bias`.
    Stats { groups: Option<usize>, eps: f64, weight: Vec<f32>, bias: Vec<f32> },
}

/// Fused normalisation + activation over [B, C, H, W] (or any [B, C, ...]).
#[derive(Clone, Debug)]
pub struct NormActOp {
    pub norm: NormParams,
    pub act: Activation,
}

impl NormActOp {
    /// `act(norm(x))` into a new tensor.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        contiguous(x)?.apply_op1_no_bwd(self)
    }

    /// `x = act(norm(x))` in place; returns `x`. Only for tensors nothing else refers to (see the
    /// module docs); a non-contiguous `x` is copied first.
    pub fn apply_inplace(&self, x: Tensor) -> Result<Tensor> {
        let x = if x.is_contiguous() { x } else { x.contiguous()? };
        x.inplace_op1(self)?;
        Ok(x)
    }

    /// The kernel's view of the parameters, and (B, C, H*W) of `dims`.
    fn norm_for(&self, dims: &[usize]) -> Result<(Norm<'_>, usize, usize, usize)> {
        let &[b, c, ..] = dims else { bail!("mdx-norm-act: input {dims:?} has no [B, C] axes") };
        let hw: usize = dims[2..].iter().product();
        let norm = match &self.norm {
            NormParams::Identity => Norm::Identity,
            NormParams::Affine { scale, shift } => Norm::Affine { scale, shift },
            NormParams::Stats { groups, eps, weight, bias } => {
                Norm::Stats { groups: groups.unwrap_or(c), eps: *eps, weight, bias }
            }
        };
        Ok((norm, b, c, hw))
    }
}

impl CustomOp1 for NormActOp {
    fn name(&self) -> &'static str {
        "mdx-norm-act"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "mdx-norm-act")?;
        let (norm, b, c, hw) = self.norm_for(l.dims())?;
        let mut out = vec![0f32; x.len()];
        norm::norm_act_f32(x, &mut out, b, c, hw, &norm, self.act);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

impl InplaceOp1 for NormActOp {
    fn name(&self) -> &'static str {
        "mdx-norm-act-inplace"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let (norm, b, c, hw) = self.norm_for(l.dims())?;
        let x = f32_slice_mut(s, l, "mdx-norm-act-inplace")?;
        norm::norm_act_inplace_f32(x, b, c, hw, &norm, self.act);
        Ok(())
    }
}

/// `dst += src` in place (same shape, f32, CPU); returns `dst`. Only for a `dst` nothing else
/// refers to (see the module docs).
pub fn add_assign(dst: Tensor, src: &Tensor) -> Result<Tensor> {
    assign_op(dst, src, AssignOp::Add)
}

/// `dst *= src` in place, as [`add_assign`].
pub fn mul_assign(dst: Tensor, src: &Tensor) -> Result<Tensor> {
    assign_op(dst, src, AssignOp::Mul)
}

fn assign_op(dst: Tensor, src: &Tensor, op: AssignOp) -> Result<Tensor> {
    if dst.shape() != src.shape() {
        bail!("{}: shapes {:?} and {:?} differ", InplaceOp2::name(&op), dst.shape(), src.shape());
    }
    let dst = if dst.is_contiguous() { dst } else { dst.contiguous()? };
    dst.inplace_op2(&contiguous(src)?, &op)?;
    Ok(dst)
}

#[derive(Clone, Copy)]
enum AssignOp {
    Add,
    Mul,
}

impl InplaceOp2 for AssignOp {
    fn name(&self) -> &'static str {
        match self {
            AssignOp::Add => "mdx-add-assign",
            AssignOp::Mul => "mdx-mul-assign",
        }
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let name = InplaceOp2::name(self);
        let a = f32_slice_mut(s1, l1, name)?;
        let b = f32_slice(s2, l2, name)?;
        match self {
            AssignOp::Add => super::elementwise::add_assign_f32(a, b),
            AssignOp::Mul => super::elementwise::mul_assign_f32(a, b),
        }
        Ok(())
    }
}
