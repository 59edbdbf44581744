//! candle glue: the CPU kernels as candle custom ops, for f32 tensors on the CPU device (what
//! the CPU backend, [`super::Cpu`], runs). Inputs that are not contiguous are made contiguous
//! first. In-place ops ([`NormActOp::apply_inplace`], [`add_assign`]) write into the tensor's
//! storage: use them only on tensors nothing else refers to (no clones, views or reshapes of it
//! still in use).

use super::kernels::norm::{self, Activation, Norm};
use super::kernels::matmul::{MatmulSplit, Strided, matmul_f32};
use super::kernels::{ConvShape, alloc_output, conv3x3_f32, elementwise, layout};
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, InplaceOp1, InplaceOp2, InplaceOp3, Layout, Result, Shape, Tensor, bail,
};

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
/// [B, Cout, H, W] with [`conv3x3_f32`].
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
        let mut out = alloc_output(b * cout * h * w);
        conv3x3_f32(x, k, &mut out, &ConvShape::conv3x3(b, cin, cout, h, w));
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
        let mut out = alloc_output(x.len());
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
            AssignOp::Add => elementwise::add_assign_f32(a, b),
            AssignOp::Mul => elementwise::mul_assign_f32(a, b),
        }
        Ok(())
    }
}

/// `a @ b` for f32 CPU tensors: [M, K] x [K, N], or batches [B, M, K] x [B, K, N] where either
/// side may be a single matrix or a stride-0 broadcast. Any strides within a matrix.
/// [`matmul_f32`] does the work on the current rayon pool; the output is an [`alloc_output`]
/// buffer.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.apply_op2_no_bwd(b, &MatMul)
}

/// `dst += a @ b` in place (shapes as [`matmul`], `dst` contiguous [.., M, N]); returns `dst`.
/// Only for a `dst` nothing else refers to (see the module docs).
pub fn matmul_acc(dst: Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dst = if dst.is_contiguous() { dst } else { dst.contiguous()? };
    dst.inplace_op3(a, b, &MatMul)?;
    Ok(dst)
}

struct MatMul;

/// One operand: `batch` matrices of `rows` x `cols` at `offset + i * bstride`, element (r, c) at
/// `r * rs + c * cs` from there.
#[derive(Clone, Copy, Debug)]
struct Operand {
    batch: usize,
    rows: usize,
    cols: usize,
    offset: usize,
    bstride: usize,
    rs: usize,
    cs: usize,
}

impl Operand {
    fn of(l: &Layout, what: &str) -> Result<Self> {
        let (d, st) = (l.dims(), l.stride());
        let (batch, bstride, r) = match d.len() {
            2 => (1, 0, 0),
            3 => (d[0], if d[0] == 1 { 0 } else { st[0] }, 1),
            _ => bail!("mdx-matmul: {what} has shape {d:?}, not [M, K] or [B, M, K]"),
        };
        Ok(Operand { batch, rows: d[r], cols: d[r + 1], offset: l.start_offset(), bstride, rs: st[r], cs: st[r + 1] })
    }
}

impl MatMul {
    /// (batch, m, k, n) after checking the shapes agree.
    fn shapes(a: &Operand, b: &Operand) -> Result<(usize, usize, usize, usize)> {
        if a.cols != b.rows {
            bail!("mdx-matmul: [{}, {}] x [{}, {}]", a.rows, a.cols, b.rows, b.cols);
        }
        let batch = match (a.batch, b.batch) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => bail!("mdx-matmul: batches {x} and {y}"),
        };
        Ok((batch, a.rows, a.cols, b.cols))
    }

    /// `dst[i] (+)= a[i] @ b[i]` for every batch item; `dst` contiguous [batch, m, n].
    #[allow(clippy::too_many_arguments)]
    fn run(dst: &mut [f32], acc: bool, a: &[f32], ao: Operand, b: &[f32], bo: Operand, batch: usize, m: usize, k: usize, n: usize) {
        let strided = |o: Operand| Strided { offset: o.offset, step: if o.batch == 1 { 0 } else { o.bstride }, rs: o.rs, cs: o.cs };
        matmul_f32(dst, acc, a, strided(ao), b, strided(bo), (batch, m, k, n), MatmulSplit::DEFAULT);
    }
}

fn f32_all<'a>(s: &'a CpuStorage, op: &str) -> Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v),
        _ => bail!("{op}: expected f32, got {:?}", s.dtype()),
    }
}

impl CustomOp2 for MatMul {
    fn name(&self) -> &'static str {
        "mdx-matmul"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (ao, bo) = (Operand::of(l1, "lhs")?, Operand::of(l2, "rhs")?);
        let (batch, m, k, n) = MatMul::shapes(&ao, &bo)?;
        let mut out = alloc_output(batch * m * n);
        MatMul::run(&mut out, false, f32_all(s1, "mdx-matmul")?, ao, f32_all(s2, "mdx-matmul")?, bo, batch, m, k, n);
        let shape = if l1.dims().len() == 2 && l2.dims().len() == 2 { Shape::from((m, n)) } else { Shape::from((batch, m, n)) };
        Ok((CpuStorage::F32(out), shape))
    }
}

impl InplaceOp3 for MatMul {
    fn name(&self) -> &'static str {
        "mdx-matmul-acc"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<()> {
        let (ao, bo) = (Operand::of(l2, "lhs")?, Operand::of(l3, "rhs")?);
        let (batch, m, k, n) = MatMul::shapes(&ao, &bo)?;
        let d = l1.dims();
        let ok = match d.len() {
            2 => batch == 1 && d == [m, n],
            3 => d == [batch, m, n],
            _ => false,
        };
        if !ok {
            bail!("mdx-matmul-acc: destination {d:?} for a [{batch}, {m}, {n}] product");
        }
        let dst = f32_slice_mut(s1, l1, "mdx-matmul-acc")?;
        MatMul::run(dst, true, f32_all(s2, "mdx-matmul-acc")?, ao, f32_all(s3, "mdx-matmul-acc")?, bo, batch, m, k, n);
        Ok(())
    }
}

/// `x.permute(perm)?.contiguous()` on the pool ([`layout::permute_f32`]).
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    contiguous(x)?.apply_op1_no_bwd(&PermuteOp(perm.to_vec()))
}

struct PermuteOp(Vec<usize>);

impl CustomOp1 for PermuteOp {
    fn name(&self) -> &'static str {
        "mdx-permute"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l.dims();
        if self.0.len() != dims.len() {
            bail!("mdx-permute: {:?} for a tensor of shape {dims:?}", self.0);
        }
        let x = f32_slice(s, l, self.name())?;
        let mut out = alloc_output(x.len());
        layout::permute_f32(x, dims, &self.0, &mut out);
        let od: Vec<usize> = self.0.iter().map(|&p| dims[p]).collect();
        Ok((CpuStorage::F32(out), Shape::from(od)))
    }
}

/// `Tensor::cat(&[a, b], 1)` for two [B, C, ...] tensors, on the pool ([`layout::concat_f32`]).
pub fn cat_channels(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    contiguous(a)?.apply_op2_no_bwd(&contiguous(b)?, &CatChannels)
}

struct CatChannels;

impl CustomOp2 for CatChannels {
    fn name(&self) -> &'static str {
        "mdx-cat-channels"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (da, db) = (l1.dims(), l2.dims());
        if da.len() < 2 || da.len() != db.len() || da[0] != db[0] || da[2..] != db[2..] {
            bail!("mdx-cat-channels: shapes {da:?} and {db:?} do not concatenate along axis 1");
        }
        let (a, b) = (f32_slice(s1, l1, self.name())?, f32_slice(s2, l2, self.name())?);
        let mut out = alloc_output(a.len() + b.len());
        layout::concat_f32(&[a, b], da[0], &mut out);
        let mut d = da.to_vec();
        d[1] += db[1];
        Ok((CpuStorage::F32(out), Shape::from(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::rand_vec;
    use candle_core::Device;

    fn tensor(dims: &[usize], seed: u64) -> Tensor {
        let n = dims.iter().product();
        Tensor::from_vec(rand_vec(n, seed), dims, &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The network's permutations (layout in/out, space-to-depth, depth-to-space) and a few
    /// odd ones, on 1 and 3 threads: exactly candle's `permute(..).contiguous()`.
    #[test]
    fn permute_and_concat_equal_candles_copies_exactly() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[2, 6, 40, 33], &[0, 1, 3, 2]),
            (&[12, 5, 2, 7, 2], &[0, 2, 4, 1, 3]),
            (&[12, 2, 2, 5, 7], &[0, 3, 1, 4, 2]),
            (&[3, 4, 5], &[2, 0, 1]),
            (&[1, 200, 300], &[0, 2, 1]),
            (&[7], &[0]),
        ];
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                for (i, (dims, perm)) in cases.iter().enumerate() {
                    let x = tensor(dims, i as u64);
                    let want = x.permute(*perm).unwrap().contiguous().unwrap();
                    let got = permute(&x, perm).unwrap();
                    assert_eq!(got.dims(), want.dims(), "{dims:?} {perm:?}");
                    assert_eq!(values(&got), values(&want), "{dims:?} {perm:?}");
                }
                for (da, db) in [([2, 3, 50, 70], [2, 5, 50, 70]), ([1, 128, 9, 4], [1, 1, 9, 4])] {
                    let (a, b) = (tensor(&da, 7), tensor(&db, 8));
                    let want = Tensor::cat(&[&a, &b], 1).unwrap();
                    let got = cat_channels(&a, &b).unwrap();
                    assert_eq!(got.dims(), want.dims());
                    assert_eq!(values(&got), values(&want));
                }
                assert!(cat_channels(&tensor(&[2, 3, 4, 4], 1), &tensor(&[1, 3, 4, 4], 2)).is_err());
            });
        }
    }
}
