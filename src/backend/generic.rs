//! candle's own ops: the backend of Metal, of half precision on the CPU and of the float64
//! references in the tests. Correct by construction (nothing here but candle), not fast.
//!
//! The network body runs in NCHW ([`Layout::ChannelsFirst`]), or in NHWC
//! ([`Layout::ChannelsLast`]: the CUDA backend's fallbacks, and the tests of the channels-last
//! formulation on the CPU), where norms and 3x3 convolutions go through NCHW transposes. 1x1
//! convolutions, the TDF linears, Downscale (space-to-depth) and Upscale (depth-to-space) are
//! plain matmuls in either layout. The prepared weights and layout helpers are shared with the
//! CPU backend, which runs the same NCHW formulation on its own kernels.

use super::{Act, Backend, NORM_EPS, NoStft, NormSpec, NormWeights};
use candle_core::{D, DType, Device, Result, Tensor};
use std::borrow::Cow;

/// Where the channels are in the network body's activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// [B, C, T, F]
    ChannelsFirst,
    /// [B, T, F, C]
    ChannelsLast,
}

impl Layout {
    /// The channel axis.
    pub fn channels(self) -> usize {
        match self {
            Layout::ChannelsFirst => 1,
            Layout::ChannelsLast => 3,
        }
    }
}

/// candle's ops on `device` in `dtype`, body in `layout`.
pub struct Generic {
    device: Device,
    dtype: DType,
    layout: Layout,
}

impl Generic {
    pub fn new(device: Device, dtype: DType, layout: Layout) -> Self {
        Generic { device, dtype, layout }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }
}

/// A 3x3 convolution's weights as one matrix over (tap, input channel): [out, 9 * in], column
/// `(3 * dy + dx) * in + ci`.
pub struct Conv3x3 {
    pub w: Tensor,
}

/// [out, in].
pub struct Conv1x1 {
    pub w: Tensor,
}

/// Channels-first: [in, out] (the PyTorch weight transposed once); channels-last: [out, in].
pub struct Linear {
    pub w: Tensor,
}

/// Channels-first: [out, in * st * sf] (the PyTorch weight, flattened); channels-last:
/// [(st, sf, in), out].
pub struct Downscale {
    pub w: Tensor,
    pub scale: [usize; 2],
}

/// Channels-first: [out * st * sf, in]; channels-last: [in, (st, sf, out)].
pub struct Upscale {
    pub w: Tensor,
    pub cout: usize,
    pub scale: [usize; 2],
}

/// A norm's parameters in f32, shaped [1, C, 1, 1].
#[derive(Clone)]
pub enum NormTensors {
    Identity,
    /// InstanceNorm (`groups` None: one group per channel) or GroupNorm.
    Stats { groups: Option<usize>, weight: Tensor, bias: Tensor },
    /// BatchNorm in eval mode, folded to a per-channel scale and shift.
    Affine { scale: Tensor, shift: Tensor },
}

/// Norm + activation; statistics in f32 whatever the compute dtype.
pub struct Norm {
    pub tensors: NormTensors,
    pub act: Act,
}

// ---------------------------------------------------------------- prepared weights

/// `[out, in, 3, 3]` -> `[out, (dy, dx, in)]`.
pub(crate) fn prepare_conv3x3(w: Tensor) -> Result<Conv3x3> {
    let (cout, cin, _, _) = w.dims4()?;
    Ok(Conv3x3 { w: w.permute((0, 2, 3, 1))?.contiguous()?.reshape((cout, 9 * cin))? })
}

pub(crate) fn prepare_conv1x1(w: Tensor) -> Result<Conv1x1> {
    let (cout, cin, _, _) = w.dims4()?;
    Ok(Conv1x1 { w: w.reshape((cout, cin))? })
}

pub(crate) fn prepare_linear(w: Tensor, layout: Layout) -> Result<Linear> {
    let w = match layout {
        Layout::ChannelsFirst => w.t()?.contiguous()?,
        Layout::ChannelsLast => w.contiguous()?,
    };
    Ok(Linear { w })
}

pub(crate) fn prepare_downscale(w: Tensor, layout: Layout) -> Result<Downscale> {
    let (cout, cin, st, sf) = w.dims4()?;
    let w = match layout {
        Layout::ChannelsFirst => w.reshape((cout, cin * st * sf))?,
        Layout::ChannelsLast => w.permute((2, 3, 1, 0))?.contiguous()?.reshape((st * sf * cin, cout))?,
    };
    Ok(Downscale { w, scale: [st, sf] })
}

pub(crate) fn prepare_upscale(w: Tensor, layout: Layout) -> Result<Upscale> {
    // ConvTranspose2d weight: [in, out, st, sf].
    let (cin, cout, st, sf) = w.dims4()?;
    let w = match layout {
        Layout::ChannelsFirst => w.reshape((cin, cout * st * sf))?.t()?.contiguous()?,
        Layout::ChannelsLast => w.permute((0, 2, 3, 1))?.contiguous()?.reshape((cin, st * sf * cout))?,
    };
    Ok(Upscale { w, cout, scale: [st, sf] })
}

pub(crate) fn prepare_norm(n: NormSpec) -> Result<Norm> {
    let c = n.channels;
    let per_channel = |t: Tensor| t.to_dtype(DType::F32)?.reshape((1, c, 1, 1));
    let tensors = match n.weights {
        NormWeights::Identity => NormTensors::Identity,
        NormWeights::Instance { weight, bias } => NormTensors::Stats { groups: None, weight: per_channel(weight)?, bias: per_channel(bias)? },
        NormWeights::Group { groups, weight, bias } => {
            NormTensors::Stats { groups: Some(groups), weight: per_channel(weight)?, bias: per_channel(bias)? }
        }
        NormWeights::Batch { weight, bias, mean, var } => {
            let weight = weight.to_dtype(DType::F32)?;
            let bias = bias.to_dtype(DType::F32)?;
            let mean = mean.to_dtype(DType::F32)?;
            let var = var.to_dtype(DType::F32)?;
            let scale = weight.div(&(var + NORM_EPS)?.sqrt()?)?;
            let shift = bias.sub(&mean.mul(&scale)?)?;
            NormTensors::Affine { scale: scale.reshape((1, c, 1, 1))?, shift: shift.reshape((1, c, 1, 1))? }
        }
    };
    Ok(Norm { tensors, act: n.act })
}

// ---------------------------------------------------------------- layout helpers

/// See [`Backend::layout_in`].
pub(crate) fn layout_in(spec: &Tensor, k: usize, layout: Layout) -> Result<Tensor> {
    let (b, c4, dim_f, t) = spec.dims4()?;
    // The subband fold [B, C, F, T] -> [B, C*k, F/k, T] is a pure reshape.
    let folded = spec.reshape((b, c4 * k, dim_f / k, t))?;
    match layout {
        Layout::ChannelsFirst => folded.transpose(2, 3)?.contiguous(),
        Layout::ChannelsLast => folded.permute((0, 3, 2, 1))?.contiguous(),
    }
}

/// See [`Backend::layout_out`].
pub(crate) fn layout_out(x: Tensor, shape: (usize, usize, usize, usize, usize), layout: Layout) -> Result<Tensor> {
    // Back to [B, S*C*k, F/k, T]; unfolding the subbands is then a reshape.
    let x = match layout {
        Layout::ChannelsFirst => x.transpose(2, 3)?.contiguous()?,
        Layout::ChannelsLast => x.permute((0, 3, 2, 1))?.contiguous()?,
    };
    x.reshape(shape)
}

/// Channels-first space-to-depth: [B, c, T, F] -> columns [B, c*st*sf, T/st * F/sf], ordered as
/// the PyTorch weight's input axes (c, st, sf); also (B, T/st, F/sf).
pub(crate) fn space_to_depth_first(x: &Tensor, [st, sf]: [usize; 2]) -> Result<(Tensor, (usize, usize, usize))> {
    let (b, c, t, f) = x.dims4()?;
    let (to, fo) = (t / st, f / sf);
    // [B, c, to, st, fo, sf] -> [B, c, st, sf, to, fo] -> [B, c*st*sf, to*fo]
    let cols = x.reshape((b * c, to, st, fo, sf))?.permute((0, 2, 4, 1, 3))?.contiguous()?.reshape((b, c * st * sf, to * fo))?;
    Ok((cols, (b, to, fo)))
}

/// Channels-first depth-to-space: the matmul's [B, out*st*sf, T*F] -> [B, out, T*st, F*sf].
pub(crate) fn depth_to_space_first(y: &Tensor, (b, t, f): (usize, usize, usize), cout: usize, [st, sf]: [usize; 2]) -> Result<Tensor> {
    // [B, out, st, sf, T, F] -> [B, out, T, st, F, sf]
    y.reshape((b * cout, st, sf, t, f))?.permute((0, 3, 1, 4, 2))?.contiguous()?.reshape((b, cout, t * st, f * sf))
}

/// Channels-last depth-to-space: the matmul's [B*T*F, st*sf*out] -> [B, T*st, F*sf, out].
pub(crate) fn depth_to_space_last(y: &Tensor, (b, t, f): (usize, usize, usize), cout: usize, [st, sf]: [usize; 2]) -> Result<Tensor> {
    // [B, T, F, st, sf*out] -> [B, T, st, F, sf*out]
    y.reshape((b, t, f, st, sf * cout))?.permute((0, 1, 3, 2, 4))?.contiguous()?.reshape((b, t * st, f * sf, cout))
}

/// [B, H, W, C] -> [B, C, H, W] and back.
fn to_nchw(x: &Tensor) -> Result<Tensor> {
    x.permute((0, 3, 1, 2))?.contiguous()
}
fn to_nhwc(x: &Tensor) -> Result<Tensor> {
    x.permute((0, 2, 3, 1))?.contiguous()
}

// ---------------------------------------------------------------- ops

/// `a @ b`, accumulated in f32 (as GPUs do for half precision). On the CPU two cases need help:
/// candle has no bf16 matmul, and on ARM64 CPUs with FP16 arithmetic (Apple Silicon, ARM
/// servers) the `gemm` crate's f16 kernels accumulate in f16, which lost 10 dB of the fixtures'
/// SNR under qemu (44.5 dB against 55 dB on x86, whose f16 kernels accumulate in f32). There the
/// product runs in f32 and is rounded back once.
fn mm(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dtype = a.dtype();
    let via_f32 = a.device().is_cpu() && (dtype == DType::BF16 || (dtype == DType::F16 && cfg!(target_arch = "aarch64")));
    if via_f32 {
        a.to_dtype(DType::F32)?.matmul(&b.to_dtype(DType::F32)?)?.to_dtype(dtype)
    } else {
        a.matmul(b)
    }
}

fn act(x: &Tensor, a: Act) -> Result<Tensor> {
    match a {
        Act::Gelu => x.gelu_erf(),
        Act::Relu => x.relu(),
        Act::Elu(alpha) => x.elu(alpha),
    }
}

/// Norm + activation on [B, C, H, W]. Statistics in f32; one op per statement, so that each
/// temporary is freed as soon as the next exists (a chained expression would keep every
/// intermediate of its statement alive: on Metal several f32 copies of the activation).
fn norm_act_nchw(n: &Norm, x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let y = match &n.tensors {
        NormTensors::Identity => x.clone(),
        NormTensors::Affine { scale, shift } => {
            let x32 = x.to_dtype(DType::F32)?;
            let y = x32.broadcast_mul(scale)?;
            drop(x32);
            let y = y.broadcast_add(shift)?;
            y.to_dtype(dtype)?
        }
        NormTensors::Stats { groups, weight, bias } => {
            let (b, c, h, w) = x.dims4()?;
            let g = groups.unwrap_or(c);
            let x32 = x.to_dtype(DType::F32)?.reshape((b, g, (c / g) * h * w))?;
            let mean = x32.mean_keepdim(D::Minus1)?;
            let xc = x32.broadcast_sub(&mean)?;
            drop(x32);
            let sq = xc.sqr()?;
            let var = sq.mean_keepdim(D::Minus1)?;
            drop(sq);
            let xn = xc.broadcast_div(&(var + NORM_EPS)?.sqrt()?)?.reshape((b, c, h, w))?;
            drop(xc);
            let y = xn.broadcast_mul(weight)?;
            drop(xn);
            let y = y.broadcast_add(bias)?;
            y.to_dtype(dtype)?
        }
    };
    act(&y, n.act)
}

/// Elements of one band's im2col operand, [B, 9C, rows * (W + 2)], at most (2^24: 32 MiB in
/// f16, 64 MiB in f32): what bounds the 3x3 convolution's temporary memory.
pub const CONV_BAND_ELEMENTS: usize = 1 << 24;

/// Output rows per band of [`conv3x3_nchw`] for a [B, C, H, W] input.
pub fn conv_band_rows(b: usize, c: usize, h: usize, w: usize) -> usize {
    (CONV_BAND_ELEMENTS / (9 * b * c * (w + 2)).max(1)).clamp(1, h.max(1))
}

/// 3x3 convolution, padding 1, on [B, C, H, W], band of output rows by band of output rows.
///
/// candle's own conv2d is one im2col of the whole input ([B, 9C, H*W]: 0.6 to 1.2 GB per
/// full-size layer in f16 on Metal). Here each band of `rows` output rows takes its input rows
/// (one more each side), zero-padded to width W + 2 and flattened, so that tap (dy, dx) is the
/// contiguous run that starts dy * (W + 2) + dx further on; the nine runs stacked on channels are
/// the band's im2col operand [B, 9C, rows * (W + 2)], one matmul with [Cout, 9C] gives the band
/// (the two extra columns per row are cropped), written into the output in place. One matmul
/// over all 9C inputs per output, as conv2d does (the same rounding in half precision), with
/// temporary memory bounded by [`CONV_BAND_ELEMENTS`] whatever the image size.
fn conv3x3_nchw(w: &Conv3x3, x: &Tensor) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    conv3x3_banded(w, x, conv_band_rows(b, c, h, wd))
}

/// [`conv3x3_nchw`] with bands of `rows` output rows (tests force several bands on small images).
pub fn conv3x3_banded(w: &Conv3x3, x: &Tensor, rows: usize) -> Result<Tensor> {
    let (b, _, h, wd) = x.dims4()?;
    let cout = w.w.dim(0)?;
    let rows = rows.max(1);
    if rows >= h {
        return conv3x3_band(w, x, 0, h);
    }
    let out = Tensor::zeros((b, cout, h, wd), x.dtype(), x.device())?;
    for y0 in (0..h).step_by(rows) {
        let band = conv3x3_band(w, x, y0, rows.min(h - y0))?;
        out.slice_set(&band, 2, y0)?;
    }
    Ok(out)
}

/// Output rows y0..y0+rows of [`conv3x3_nchw`]: [B, Cout, rows, W], contiguous.
fn conv3x3_band(w: &Conv3x3, x: &Tensor, y0: usize, rows: usize) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let cout = w.w.dim(0)?;
    let wp = wd + 2;
    // Input rows y0-1 ..= y0+rows, zero outside the image, one zero column each side, flattened,
    // plus 2 zeros so that tap (2, 2) can read the last row's two cropped columns.
    let top = y0.saturating_sub(1);
    let bottom = (y0 + rows + 1).min(h);
    let band = x.narrow(2, top, bottom - top)?.pad_with_zeros(2, usize::from(y0 == 0), usize::from(y0 + rows + 1 > h))?;
    let flat = band.pad_with_zeros(3, 1, 1)?.reshape((b, c, (rows + 2) * wp))?.pad_with_zeros(2, 0, 2)?;
    drop(band);
    let n = rows * wp;
    let taps: Vec<Tensor> = (0..9).map(|tap| flat.narrow(2, (tap / 3) * wp + tap % 3, n)).collect::<Result<_>>()?;
    let cols = Tensor::cat(&taps, 1)?;
    drop((taps, flat));
    let y = mm(&w.w.broadcast_left(b)?, &cols)?;
    drop(cols);
    y.reshape((b, cout, rows, wp))?.narrow(3, 0, wd)?.contiguous()
}

impl Generic {
    /// Channels-last Upscale's matmul: [B, T, F, c] -> [B*T*F, st*sf*out], and (B, T, F).
    pub(crate) fn upscale_gemm_last(&self, w: &Upscale, x: &Tensor) -> Result<(Tensor, (usize, usize, usize))> {
        let (b, t, f, c) = x.dims4()?;
        Ok((mm(&x.reshape((b * t * f, c))?, &w.w)?, (b, t, f)))
    }

    /// The linear along F without a residual.
    fn linear_only(&self, w: &Linear, x: &Tensor) -> Result<Tensor> {
        match self.layout {
            Layout::ChannelsFirst => {
                let (b, c, t, f) = x.dims4()?;
                let fout = w.w.dim(1)?;
                mm(&x.reshape((b * c * t, f))?, &w.w)?.reshape((b, c, t, fout))
            }
            Layout::ChannelsLast => {
                // Per (b, t): W [fout, fin] x X [fin, C].
                let (b, t, f, c) = x.dims4()?;
                let fout = w.w.dim(0)?;
                mm(&w.w.broadcast_left(b * t)?, &x.reshape((b * t, f, c))?)?.reshape((b, t, fout, c))
            }
        }
    }
}

impl Backend for Generic {
    type Conv3x3 = Conv3x3;
    type Conv1x1 = Conv1x1;
    type Linear = Linear;
    type Downscale = Downscale;
    type Upscale = Upscale;
    type Norm = Norm;
    type Stft = NoStft;

    fn name(&self) -> &'static str {
        "candle"
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn dtype(&self) -> DType {
        self.dtype
    }

    fn prepare_conv3x3(&self, w: Tensor) -> Result<Conv3x3> {
        prepare_conv3x3(w)
    }
    fn prepare_conv1x1(&self, w: Tensor) -> Result<Conv1x1> {
        prepare_conv1x1(w)
    }
    fn prepare_linear(&self, w: Tensor) -> Result<Linear> {
        prepare_linear(w, self.layout)
    }
    fn prepare_downscale(&self, w: Tensor) -> Result<Downscale> {
        prepare_downscale(w, self.layout)
    }
    fn prepare_upscale(&self, w: Tensor) -> Result<Upscale> {
        prepare_upscale(w, self.layout)
    }
    fn prepare_norm(&self, n: NormSpec) -> Result<Norm> {
        prepare_norm(n)
    }

    fn layout_in(&self, spec: &Tensor, subbands: usize) -> Result<Tensor> {
        layout_in(spec, subbands, self.layout)
    }
    fn layout_out(&self, x: Tensor, shape: (usize, usize, usize, usize, usize)) -> Result<Tensor> {
        layout_out(x, shape, self.layout)
    }

    fn norm_act(&self, n: &Norm, x: Cow<'_, Tensor>) -> Result<Tensor> {
        match self.layout {
            Layout::ChannelsFirst => norm_act_nchw(n, &x),
            Layout::ChannelsLast => to_nhwc(&norm_act_nchw(n, &to_nchw(&x)?)?),
        }
    }

    fn conv3x3(&self, w: &Conv3x3, x: &Tensor, acc: Option<Tensor>) -> Result<Tensor> {
        let y = match self.layout {
            Layout::ChannelsFirst => conv3x3_nchw(w, x)?,
            Layout::ChannelsLast => to_nhwc(&conv3x3_nchw(w, &to_nchw(x)?)?)?,
        };
        match acc {
            Some(a) => y.add(&a),
            None => Ok(y),
        }
    }

    fn conv1x1(&self, w: &Conv1x1, x: &Tensor) -> Result<Tensor> {
        let cout = w.w.dim(0)?;
        match self.layout {
            Layout::ChannelsFirst => {
                let (b, c, h, wd) = x.dims4()?;
                mm(&w.w.broadcast_left(b)?, &x.reshape((b, c, h * wd))?)?.reshape((b, cout, h, wd))
            }
            Layout::ChannelsLast => {
                let (b, h, wd, c) = x.dims4()?;
                mm(&x.reshape((b * h * wd, c))?, &w.w.t()?)?.reshape((b, h, wd, cout))
            }
        }
    }

    fn conv1x1_concat(&self, w: &Conv1x1, a: Tensor, b: Tensor) -> Result<Tensor> {
        let cat = Tensor::cat(&[&a, &b], self.layout.channels())?;
        drop((a, b));
        self.conv1x1(w, &cat)
    }

    fn linear(&self, w: &Linear, x: &Tensor, acc: Option<Tensor>) -> Result<Tensor> {
        let y = self.linear_only(w, x)?;
        match acc {
            Some(a) => y.add(&a),
            None => Ok(y),
        }
    }

    fn downscale(&self, w: &Downscale, x: Tensor) -> Result<Tensor> {
        let cout = w.w.dim(match self.layout {
            Layout::ChannelsFirst => 0,
            Layout::ChannelsLast => 1,
        })?;
        match self.layout {
            Layout::ChannelsFirst => {
                let (cols, (b, to, fo)) = space_to_depth_first(&x, w.scale)?;
                drop(x);
                mm(&w.w.broadcast_left(b)?, &cols)?.reshape((b, cout, to, fo))
            }
            Layout::ChannelsLast => {
                let (b, t, f, c) = x.dims4()?;
                let [st, sf] = w.scale;
                let (to, fo) = (t / st, f / sf);
                let cols = x.reshape((b, to, st, fo, sf * c))?.permute((0, 1, 3, 2, 4))?.contiguous()?.reshape((b * to * fo, st * sf * c))?;
                mm(&cols, &w.w)?.reshape((b, to, fo, cout))
            }
        }
    }

    fn upscale_concat(&self, w: &Upscale, x: Tensor, skip: Tensor) -> Result<Tensor> {
        let up = match self.layout {
            Layout::ChannelsFirst => {
                let (b, c, t, f) = x.dims4()?;
                let y = mm(&w.w.broadcast_left(b)?, &x.reshape((b, c, t * f))?)?;
                drop(x);
                depth_to_space_first(&y, (b, t, f), w.cout, w.scale)?
            }
            Layout::ChannelsLast => {
                let (y, btf) = self.upscale_gemm_last(w, &x)?;
                drop(x);
                depth_to_space_last(&y, btf, w.cout, w.scale)?
            }
        };
        Tensor::cat(&[&up, &skip], self.layout.channels())
    }

    fn mul(&self, x: Tensor, y: &Tensor) -> Result<Tensor> {
        x.mul(y)
    }

    fn stft(&self, s: &NoStft, _audio: &Tensor) -> Result<Tensor> {
        match *s {}
    }
    fn istft(&self, s: &NoStft, _spec: &Tensor) -> Result<Tensor> {
        match *s {}
    }
}
