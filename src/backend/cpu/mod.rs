//! The CPU backend: f32 on the CPU through our kernels ([`kernels`]), which do what candle's CPU
//! backend does slowly (its `conv2d` is about 3x slower than PyTorch's for this network).
//!
//! The body runs in NCHW, the same formulation and prepared weights as
//! [`super::generic`]'s channels-first layout, with these ops on our kernels instead of candle's:
//! 3x3 convolutions (Winograd F(4x4, 3x3) with AVX2 + FMA, else an implicit GEMM), norm +
//! activation fused in two passes (in place when the graph gives the activation up), 1x1
//! convolutions, TDF linears, Downscale and Upscale as `gemm` matmuls (the TDF residual
//! accumulated by the GEMM itself), residual sums and the final product in place.
//!
//! Threads: every kernel runs on the *current* rayon pool (see [`kernels::pool`]); the engine
//! runs the network inside a pool of the size the user chose.

pub mod kernels;
pub mod ops;

use super::generic::{self, Conv1x1, Downscale, Layout, Linear, NormTensors, Upscale};
use super::{Act, Backend, NORM_EPS, NoStft, NormSpec};
use candle_core::{DType, Device, Result, Tensor};
use kernels::norm::Activation;
use ops::{NormActOp, NormParams};
use crate::options::OpProfiler;
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// f32 on the CPU through our kernels.
pub struct Cpu {
    device: Device,
    /// While started: each op's wall and process CPU time (`bench --ops`).
    profiler: Option<OpProfiler>,
}

impl Cpu {
    pub fn new() -> Self {
        Cpu { device: Device::Cpu, profiler: None }
    }

    pub fn with_profiler(profiler: Option<OpProfiler>) -> Self {
        Cpu { device: Device::Cpu, profiler }
    }

    /// Run `f`; while the profiler runs, add its wall and CPU time to `what` + the input's shape.
    fn timed<T>(&self, what: &'static str, x: &Tensor, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let Some(p) = self.profiler.as_ref().filter(|p| p.is_on()) else { return f() };
        let what = format!("{what:14} {:?}", x.dims());
        self.time_into(p, what, f)
    }

    fn time_into<T>(&self, p: &OpProfiler, what: String, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let (t, c) = (Instant::now(), crate::memory::process_cpu_time());
        let r = f()?;
        let cpu = crate::memory::process_cpu_time().zip(c).map_or(Duration::ZERO, |(b, a)| b.saturating_sub(a));
        p.record_with_cpu(what, t.elapsed(), cpu);
        Ok(r)
    }
}

impl Default for Cpu {
    fn default() -> Self {
        Self::new()
    }
}

const LAYOUT: Layout = Layout::ChannelsFirst;

/// A 3x3 convolution's weights as the checkpoint holds them, [out, in, 3, 3] (the kernels
/// transform them per call).
pub struct Conv3x3 {
    pub w: Tensor,
}

fn activation(a: Act) -> Activation {
    match a {
        Act::Gelu => Activation::Gelu,
        Act::Relu => Activation::Relu,
        Act::Elu(alpha) => Activation::Elu(alpha as f32),
    }
}

/// [`generic::layout_out`] for channels-first, the copy on the pool.
fn layout_out(x: Tensor, shape: (usize, usize, usize, usize, usize)) -> Result<Tensor> {
    let y = ops::permute(&x, &[0, 1, 3, 2])?;
    drop(x);
    y.reshape(shape)
}

/// [`generic::space_to_depth_first`], the copy on the pool.
fn space_to_depth(x: &Tensor, [st, sf]: [usize; 2]) -> Result<(Tensor, (usize, usize, usize))> {
    let (b, c, t, f) = x.dims4()?;
    let (to, fo) = (t / st, f / sf);
    let cols = ops::permute(&x.reshape((b * c, to, st, fo, sf))?, &[0, 2, 4, 1, 3])?.reshape((b, c * st * sf, to * fo))?;
    Ok((cols, (b, to, fo)))
}

/// [`generic::depth_to_space_first`], the copy on the pool.
fn depth_to_space(y: &Tensor, (b, t, f): (usize, usize, usize), cout: usize, [st, sf]: [usize; 2]) -> Result<Tensor> {
    ops::permute(&y.reshape((b * cout, st, sf, t, f))?, &[0, 3, 1, 4, 2])?.reshape((b, cout, t * st, f * sf))
}

impl Backend for Cpu {
    type Conv3x3 = Conv3x3;
    type Conv1x1 = Conv1x1;
    type Linear = Linear;
    type Downscale = Downscale;
    type Upscale = Upscale;
    type Norm = NormActOp;
    type Stft = NoStft;

    fn name(&self) -> &'static str {
        "CPU kernels"
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn dtype(&self) -> DType {
        DType::F32
    }

    fn prepare_conv3x3(&self, w: Tensor) -> Result<Conv3x3> {
        Ok(Conv3x3 { w })
    }
    fn prepare_conv1x1(&self, w: Tensor) -> Result<Conv1x1> {
        generic::prepare_conv1x1(w)
    }
    fn prepare_linear(&self, w: Tensor) -> Result<Linear> {
        generic::prepare_linear(w, LAYOUT)
    }
    fn prepare_downscale(&self, w: Tensor) -> Result<Downscale> {
        generic::prepare_downscale(w, LAYOUT)
    }
    fn prepare_upscale(&self, w: Tensor) -> Result<Upscale> {
        generic::prepare_upscale(w, LAYOUT)
    }
    /// The parameters as the generic backend folds them (f32), copied to the host.
    fn prepare_norm(&self, n: NormSpec) -> Result<NormActOp> {
        let g = generic::prepare_norm(n)?;
        let host = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let norm = match &g.tensors {
            NormTensors::Identity => NormParams::Identity,
            NormTensors::Stats { groups, weight, bias } => {
                NormParams::Stats { groups: *groups, eps: NORM_EPS, weight: host(weight)?, bias: host(bias)? }
            }
            NormTensors::Affine { scale, shift } => NormParams::Affine { scale: host(scale)?, shift: host(shift)? },
        };
        Ok(NormActOp { norm, act: activation(g.act) })
    }

    fn layout_in(&self, spec: &Tensor, subbands: usize) -> Result<Tensor> {
        self.timed("layout_in", spec, || {
            // The subband fold is a reshape; then [B, C, F, T] -> [B, C, T, F] (generic::layout_in).
            let (b, c4, dim_f, t) = spec.dims4()?;
            ops::permute(&spec.reshape((b, c4 * subbands, dim_f / subbands, t))?, &[0, 1, 3, 2])
        })
    }
    fn layout_out(&self, x: Tensor, shape: (usize, usize, usize, usize, usize)) -> Result<Tensor> {
        match self.profiler.as_ref().filter(|p| p.is_on()) {
            Some(p) => self.time_into(p, format!("{:14} {:?}", "layout_out", x.dims()), || layout_out(x, shape)),
            None => layout_out(x, shape),
        }
    }

    fn norm_act(&self, n: &NormActOp, x: Cow<'_, Tensor>) -> Result<Tensor> {
        match x {
            Cow::Owned(x) => match self.profiler.as_ref().filter(|p| p.is_on()) {
                Some(p) => self.time_into(p, format!("{:14} {:?}", "norm_act", x.dims()), || n.apply_inplace(x)),
                None => n.apply_inplace(x),
            },
            Cow::Borrowed(x) => self.timed("norm_act copy", x, || n.apply(x)),
        }
    }

    fn conv3x3(&self, w: &Conv3x3, x: &Tensor, acc: Option<Tensor>) -> Result<Tensor> {
        let y = self.timed("conv3x3", x, || ops::conv3x3(x, &w.w))?;
        match acc {
            Some(a) => self.timed("add", &a, || ops::add_assign(y, &a)),
            None => Ok(y),
        }
    }

    fn conv1x1(&self, w: &Conv1x1, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, wd) = x.dims4()?;
        let cout = w.w.dim(0)?;
        self.timed("conv1x1", x, || ops::matmul(&w.w.broadcast_left(b)?, &x.reshape((b, c, h * wd))?)?.reshape((b, cout, h, wd)))
    }

    fn conv1x1_concat(&self, w: &Conv1x1, a: Tensor, b: Tensor) -> Result<Tensor> {
        let cat = self.timed("concat", &a, || ops::cat_channels(&a, &b))?;
        drop((a, b));
        self.conv1x1(w, &cat)
    }

    /// `[B*C*T, F] x [F, Fout]`; with `acc`, accumulated into it by the GEMM (no temporary).
    fn linear(&self, w: &Linear, x: &Tensor, acc: Option<Tensor>) -> Result<Tensor> {
        let (b, c, t, f) = x.dims4()?;
        let fout = w.w.dim(1)?;
        let x = x.reshape((b * c * t, f))?;
        match acc {
            Some(acc) => self.timed("linear acc", &x, || ops::matmul_acc(acc.reshape((b * c * t, fout))?, &x, &w.w)?.reshape((b, c, t, fout))),
            None => self.timed("linear", &x, || ops::matmul(&x, &w.w)?.reshape((b, c, t, fout))),
        }
    }

    fn downscale(&self, w: &Downscale, x: Tensor) -> Result<Tensor> {
        let (cols, (b, to, fo)) = self.timed("space_to_depth", &x, || space_to_depth(&x, w.scale))?;
        drop(x);
        let cout = w.w.dim(0)?;
        self.timed("downscale mm", &cols, || ops::matmul(&w.w.broadcast_left(b)?, &cols)?.reshape((b, cout, to, fo)))
    }

    fn upscale_concat(&self, w: &Upscale, x: Tensor, skip: Tensor) -> Result<Tensor> {
        let (b, c, t, f) = x.dims4()?;
        let y = self.timed("upscale mm", &x, || ops::matmul(&w.w.broadcast_left(b)?, &x.reshape((b, c, t * f))?))?;
        drop(x);
        let up = self.timed("depth_to_space", &y, || depth_to_space(&y, (b, t, f), w.cout, w.scale))?;
        drop(y);
        self.timed("concat", &up, || ops::cat_channels(&up, &skip))
    }

    fn mul(&self, x: Tensor, y: &Tensor) -> Result<Tensor> {
        self.timed("mul", y, || ops::mul_assign(x, y))
    }

    fn stft(&self, s: &NoStft, _audio: &Tensor) -> Result<Tensor> {
        match *s {}
    }
    fn istft(&self, s: &NoStft, _spec: &Tensor) -> Result<Tensor> {
        match *s {}
    }
}
