//! TFC-TDF v3, the MDX23C network (Kim et al., "Sound Demixing Challenge 2023 – Music Demixing
//! Track Technical Report: TFC-TDF-UNet v3"; reference: ZFTurbo's Music-Source-Separation-Training
//! `models/mdx23c_tfc_tdf_v3.py`). Specification: `shared/docs/tfc-tdf-v3.md`.
//!
//! One Rust struct per PyTorch module, built from a [`Weights`] view whose `pp` prefixes mirror
//! the checkpoint's key paths (`Sequential` indices included: norm 0, act 1, conv 2), so real
//! checkpoints load without renaming. The network works on spectrogram tensors; the STFT and
//! iSTFT around it live in [`crate::dsp::stft`] and run on the CPU.
//!
//! Every layer is expressed with candle's own ops (matmul, conv2d, reshape/permute) so the CPU,
//! CUDA and Metal backends share one code path. 1x1 convs, the TDF linears, Downscale
//! (space-to-depth) and Upscale (depth-to-space) are plain matmuls.

use super::config::{ActKind, ModelConfig, NormKind};
use crate::kernels::norm::Activation;
use crate::kernels::ops::{self as cpu, NormActOp, NormParams};
use candle_core::{D, DType, Device, Module, Result, Tensor};
use std::collections::HashMap;

/// A prefix into a name -> tensor map; `pp` appends a path segment like candle's VarBuilder.
#[derive(Clone)]
pub struct Weights<'a> {
    map: &'a HashMap<String, Tensor>,
    prefix: String,
}

impl<'a> Weights<'a> {
    pub fn new(map: &'a HashMap<String, Tensor>) -> Self {
        Weights { map, prefix: String::new() }
    }
    pub fn pp(&self, s: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() { s.to_string() } else { format!("{}.{s}", self.prefix) };
        Weights { map: self.map, prefix }
    }
    /// The tensor `<prefix>.<name>`, checked against `shape`.
    pub fn get(&self, shape: &[usize], name: &str) -> Result<Tensor> {
        let key = format!("{}.{name}", self.prefix);
        let t = self
            .map
            .get(&key)
            .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {key}")))?;
        if t.dims() != shape {
            candle_core::bail!("tensor {key}: expected shape {shape:?}, found {:?}", t.dims());
        }
        Ok(t.clone())
    }
}

/// `a @ b`. candle's CPU backend has no bf16 matmul: there the product runs in f32 and is
/// rounded back to bf16, which keeps bf16's storage precision at every layer boundary.
pub(crate) fn mm(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if cpu::use_cpu_kernels(a) {
        return cpu::matmul(a, b);
    }
    if a.dtype() == DType::BF16 && a.device().is_cpu() {
        a.to_dtype(DType::F32)?.matmul(&b.to_dtype(DType::F32)?)?.to_dtype(DType::BF16)
    } else {
        a.matmul(b)
    }
}

/// Activation function.
#[derive(Debug, Clone, Copy)]
pub struct Act(pub ActKind);

impl Module for Act {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.0 {
            ActKind::Gelu => x.gelu_erf(),
            ActKind::Relu => x.relu(),
            ActKind::Elu(alpha) => x.elu(alpha),
        }
    }
}

impl Act {
    /// The CPU kernels' name for this activation.
    fn kernel(self) -> Activation {
        match self.0 {
            ActKind::Gelu => Activation::Gelu,
            ActKind::Relu => Activation::Relu,
            ActKind::Elu(alpha) => Activation::Elu(alpha as f32),
        }
    }

    /// [`Module::forward`] on an `x` nothing else refers to: in place on the CPU kernels' path.
    fn forward_owned(&self, x: Tensor) -> Result<Tensor> {
        if cpu::use_cpu_kernels(&x) {
            NormActOp { norm: NormParams::Identity, act: self.kernel() }.apply_inplace(x)
        } else {
            self.forward(&x)
        }
    }
}

/// A normalisation layer followed by the activation (`Sequential(norm, act, ...)` indices 0 and 1).
/// Statistics are computed in f32 whatever the compute dtype. f32 on the CPU runs the fused
/// kernel ([`crate::kernels::norm`]).
pub struct NormAct {
    norm: Norm,
    act: Act,
    /// The same layer for the CPU kernel, parameters on the host (built for CPU weights only).
    cpu: Option<NormActOp>,
}

enum Norm {
    /// InstanceNorm2d(affine) or GroupNorm(g): `groups` = channels for instance norm.
    Stats { groups: Option<usize>, weight: Tensor, bias: Tensor },
    /// BatchNorm2d in eval mode, folded to a per-channel scale and shift.
    Affine { scale: Tensor, shift: Tensor },
    Identity,
}

const EPS: f64 = 1e-5;

impl NormAct {
    pub fn new(kind: NormKind, act: ActKind, c: usize, w: &Weights) -> Result<Self> {
        let per_channel = |t: Tensor| t.to_dtype(DType::F32)?.reshape((1, c, 1, 1));
        let norm = match kind {
            NormKind::Identity => Norm::Identity,
            NormKind::Instance | NormKind::Group(_) => Norm::Stats {
                groups: if let NormKind::Group(g) = kind { Some(g) } else { None },
                weight: per_channel(w.get(&[c], "weight")?)?,
                bias: per_channel(w.get(&[c], "bias")?)?,
            },
            NormKind::Batch => {
                let weight = w.get(&[c], "weight")?.to_dtype(DType::F32)?;
                let bias = w.get(&[c], "bias")?.to_dtype(DType::F32)?;
                let mean = w.get(&[c], "running_mean")?.to_dtype(DType::F32)?;
                let var = w.get(&[c], "running_var")?.to_dtype(DType::F32)?;
                let scale = weight.div(&(var + EPS)?.sqrt()?)?;
                let shift = bias.sub(&mean.mul(&scale)?)?;
                Norm::Affine { scale: scale.reshape((1, c, 1, 1))?, shift: shift.reshape((1, c, 1, 1))? }
            }
        };
        let host = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let cpu = match &norm {
            Norm::Identity => Some(NormParams::Identity),
            Norm::Stats { groups, weight, bias } if weight.device().is_cpu() => {
                Some(NormParams::Stats { groups: *groups, eps: EPS, weight: host(weight)?, bias: host(bias)? })
            }
            Norm::Affine { scale, shift } if scale.device().is_cpu() => {
                Some(NormParams::Affine { scale: host(scale)?, shift: host(shift)? })
            }
            _ => None,
        };
        let act = Act(act);
        Ok(NormAct { norm, act, cpu: cpu.map(|norm| NormActOp { norm, act: act.kernel() }) })
    }

    /// [`Module::forward`] on an `x` that nothing else refers to: on the CPU kernel's path the
    /// result is written over `x` (no new buffer).
    pub fn forward_owned(&self, x: Tensor) -> Result<Tensor> {
        match &self.cpu {
            Some(op) if cpu::use_cpu_kernels(&x) => op.apply_inplace(x),
            _ => self.forward(&x),
        }
    }
}

impl Module for NormAct {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(op) = &self.cpu
            && cpu::use_cpu_kernels(x)
        {
            return op.apply(x);
        }
        let dtype = x.dtype();
        let y = match &self.norm {
            Norm::Identity => x.clone(),
            Norm::Affine { scale, shift } => {
                let x32 = x.to_dtype(DType::F32)?;
                x32.broadcast_mul(scale)?.broadcast_add(shift)?.to_dtype(dtype)?
            }
            Norm::Stats { groups, weight, bias } => {
                let (b, c, h, w) = x.dims4()?;
                let g = groups.unwrap_or(c);
                let x32 = x.to_dtype(DType::F32)?.reshape((b, g, (c / g) * h * w))?;
                let mean = x32.mean_keepdim(D::Minus1)?;
                let xc = x32.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
                let xn = xc.broadcast_div(&(var + EPS)?.sqrt()?)?.reshape((b, c, h, w))?;
                xn.broadcast_mul(weight)?.broadcast_add(bias)?.to_dtype(dtype)?
            }
        };
        self.act.forward(&y)
    }
}

/// 1x1 convolution without bias, as a matmul over channels.
pub struct Conv1x1 {
    /// [out, in]
    w: Tensor,
}

impl Conv1x1 {
    pub fn new(cin: usize, cout: usize, w: &Weights) -> Result<Self> {
        Ok(Conv1x1 { w: w.get(&[cout, cin, 1, 1], "weight")?.reshape((cout, cin))? })
    }
}

impl Module for Conv1x1 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let cout = self.w.dim(0)?;
        let y = mm(&self.w.broadcast_left(b)?, &x.reshape((b, c, h * w))?)?;
        y.reshape((b, cout, h, w))
    }
}

/// 3x3 convolution, padding 1, no bias.
pub struct Conv3x3 {
    /// [out, in, 3, 3]
    w: Tensor,
}

impl Conv3x3 {
    pub fn new(cin: usize, cout: usize, w: &Weights) -> Result<Self> {
        Ok(Conv3x3 { w: w.get(&[cout, cin, 3, 3], "weight")? })
    }
}

impl Module for Conv3x3 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if cpu::use_cpu_kernels(x) {
            return cpu::conv3x3(x, &self.w);
        }
        if x.dtype() == DType::BF16 && x.device().is_cpu() {
            // No bf16 GEMM on candle's CPU backend: see `mm`.
            let w = self.w.to_dtype(DType::F32)?;
            return x.to_dtype(DType::F32)?.conv2d(&w, 1, 1, 1, 1)?.to_dtype(DType::BF16);
        }
        x.conv2d(&self.w, 1, 1, 1, 1)
    }
}

/// `nn.Linear(f_in, f_out, bias=False)` applied along the last (frequency) axis.
pub struct Linear {
    /// [f_in, f_out] (the PyTorch weight transposed once at load).
    wt: Tensor,
}

impl Linear {
    pub fn new(fin: usize, fout: usize, w: &Weights) -> Result<Self> {
        Ok(Linear { wt: w.get(&[fout, fin], "weight")?.t()?.contiguous()? })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t, f) = x.dims4()?;
        let fout = self.wt.dim(1)?;
        mm(&x.reshape((b * c * t, f))?, &self.wt)?.reshape((b, c, t, fout))
    }
}

impl Linear {
    /// `acc + self(x)`; on the CPU kernels' path the product is accumulated straight into
    /// `acc` (one GEMM, no temporary), which nothing else may refer to.
    fn forward_acc(&self, acc: Tensor, x: &Tensor) -> Result<Tensor> {
        if !cpu::use_cpu_kernels(&acc) {
            return acc + self.forward(x)?;
        }
        let (b, c, t, f) = x.dims4()?;
        let fout = self.wt.dim(1)?;
        let acc = acc.reshape((b * c * t, fout))?;
        cpu::matmul_acc(acc, &x.reshape((b * c * t, f))?, &self.wt)?.reshape((b, c, t, fout))
    }
}

/// One TFC-TDF block: `tfc1`, `tdf` (with residual), `tfc2`, plus the 1x1 `shortcut`.
pub struct TfcTdfBlock {
    tfc1_norm: NormAct,
    tfc1_conv: Conv3x3,
    tdf_norm1: NormAct,
    tdf_lin1: Linear,
    tdf_norm2: NormAct,
    tdf_lin2: Linear,
    tfc2_norm: NormAct,
    tfc2_conv: Conv3x3,
    shortcut: Conv1x1,
}

impl TfcTdfBlock {
    fn new(cfg: &ModelConfig, in_c: usize, c: usize, f: usize, w: &Weights) -> Result<Self> {
        let (n, a) = (cfg.model.norm, cfg.model.act);
        let fb = f / cfg.model.bottleneck_factor;
        Ok(TfcTdfBlock {
            tfc1_norm: NormAct::new(n, a, in_c, &w.pp("tfc1.0"))?,
            tfc1_conv: Conv3x3::new(in_c, c, &w.pp("tfc1.2"))?,
            tdf_norm1: NormAct::new(n, a, c, &w.pp("tdf.0"))?,
            tdf_lin1: Linear::new(f, fb, &w.pp("tdf.2"))?,
            tdf_norm2: NormAct::new(n, a, c, &w.pp("tdf.3"))?,
            tdf_lin2: Linear::new(fb, f, &w.pp("tdf.5"))?,
            tfc2_norm: NormAct::new(n, a, c, &w.pp("tfc2.0"))?,
            tfc2_conv: Conv3x3::new(c, c, &w.pp("tfc2.2"))?,
            shortcut: Conv1x1::new(in_c, c, &w.pp("shortcut"))?,
        })
    }
}

impl TfcTdfBlock {
    /// [B, in_c, T, F] -> [B, c, T, F]. With `owned`, `x` is a tensor nothing else refers to and
    /// its buffer may be overwritten (the CPU kernels normalise it in place). Intermediates are
    /// dropped as soon as they are used, and the residual sums reuse their left operand.
    fn forward_impl(&self, x: Tensor, owned: bool) -> Result<Tensor> {
        let s = self.shortcut.forward(&x)?;
        let a = if owned { self.tfc1_norm.forward_owned(x)? } else { self.tfc1_norm.forward(&x)? };
        let x = self.tfc1_conv.forward(&a)?;
        drop(a);
        let t = self.tdf_lin1.forward(&self.tdf_norm1.forward(&x)?)?;
        let t = self.tdf_norm2.forward_owned(t)?;
        let x = self.tdf_lin2.forward_acc(x, &t)?; // x + tdf(x)
        drop(t);
        let x = self.tfc2_conv.forward(&self.tfc2_norm.forward_owned(x)?)?;
        add_owned(x, &s)
    }
}

/// `a + b`; on the CPU kernels' path written over `a`, which nothing else may refer to.
fn add_owned(a: Tensor, b: &Tensor) -> Result<Tensor> {
    if cpu::use_cpu_kernels(&a) { cpu::add_assign(a, b) } else { a + b }
}

/// `a * b`, as [`add_owned`].
fn mul_owned(a: Tensor, b: &Tensor) -> Result<Tensor> {
    if cpu::use_cpu_kernels(&a) { cpu::mul_assign(a, b) } else { a * b }
}

impl Module for TfcTdfBlock {
    /// [B, in_c, T, F] -> [B, c, T, F]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_impl(x.clone(), false)
    }
}

/// `TFC_TDF`: `num_blocks_per_scale` blocks (`<prefix>.blocks.{j}`).
pub struct TfcTdf {
    blocks: Vec<TfcTdfBlock>,
}

impl TfcTdf {
    fn new(cfg: &ModelConfig, in_c: usize, c: usize, f: usize, w: &Weights) -> Result<Self> {
        let blocks = (0..cfg.model.num_blocks_per_scale)
            .map(|j| TfcTdfBlock::new(cfg, if j == 0 { in_c } else { c }, c, f, &w.pp("blocks").pp(j)))
            .collect::<Result<_>>()?;
        Ok(TfcTdf { blocks })
    }

    /// [`Module::forward`] on an `x` that nothing else refers to (no clone, view or reshape of it
    /// in use): its buffer may be overwritten, which saves one activation of memory per block.
    pub fn forward_owned(&self, x: Tensor) -> Result<Tensor> {
        let mut x = x;
        for b in &self.blocks {
            x = b.forward_impl(x, true)?;
        }
        Ok(x)
    }
}

impl Module for TfcTdf {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut blocks = self.blocks.iter();
        let Some(first) = blocks.next() else { return Ok(x.clone()) };
        let mut x = first.forward_impl(x.clone(), false)?;
        for b in blocks {
            x = b.forward_impl(x, true)?;
        }
        Ok(x)
    }
}

/// `Downscale`: norm, act, conv with kernel = stride = scale, as space-to-depth + matmul.
pub struct Downscale {
    norm: NormAct,
    /// [out, in * st * sf], input channel fastest-varying last as in the PyTorch weight.
    w: Tensor,
    scale: [usize; 2],
}

impl Downscale {
    fn new(cfg: &ModelConfig, cin: usize, cout: usize, w: &Weights) -> Result<Self> {
        let [st, sf] = cfg.model.scale;
        let conv = w.pp("conv");
        Ok(Downscale {
            norm: NormAct::new(cfg.model.norm, cfg.model.act, cin, &conv.pp(0))?,
            w: conv.pp(2).get(&[cout, cin, st, sf], "weight")?.reshape((cout, cin * st * sf))?,
            scale: [st, sf],
        })
    }
}

impl Module for Downscale {
    /// [B, c, T, F] -> [B, c + growth, T / st, F / sf]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.norm.forward(x)?;
        let (b, c, t, f) = x.dims4()?;
        let [st, sf] = self.scale;
        let (to, fo) = (t / st, f / sf);
        // [B, c, to, st, fo, sf] -> [B, c, st, sf, to, fo] -> [B, c*st*sf, to*fo]
        let cols = x
            .reshape((b * c, to, st, fo, sf))?
            .permute((0, 2, 4, 1, 3))?
            .contiguous()?
            .reshape((b, c * st * sf, to * fo))?;
        let cout = self.w.dim(0)?;
        mm(&self.w.broadcast_left(b)?, &cols)?.reshape((b, cout, to, fo))
    }
}

/// `Upscale`: norm, act, transposed conv with kernel = stride = scale, as matmul + depth-to-space.
pub struct Upscale {
    norm: NormAct,
    /// [out * st * sf, in]
    w: Tensor,
    cout: usize,
    scale: [usize; 2],
}

impl Upscale {
    fn new(cfg: &ModelConfig, cin: usize, cout: usize, w: &Weights) -> Result<Self> {
        let [st, sf] = cfg.model.scale;
        let conv = w.pp("conv");
        // ConvTranspose2d weight: [in, out, st, sf].
        let wt = conv.pp(2).get(&[cin, cout, st, sf], "weight")?;
        Ok(Upscale {
            norm: NormAct::new(cfg.model.norm, cfg.model.act, cin, &conv.pp(0))?,
            w: wt.reshape((cin, cout * st * sf))?.t()?.contiguous()?,
            cout,
            scale: [st, sf],
        })
    }
}

impl Module for Upscale {
    /// [B, c, T, F] -> [B, c - growth, T * st, F * sf]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.norm.forward(x)?;
        let (b, c, t, f) = x.dims4()?;
        let [st, sf] = self.scale;
        let y = mm(&self.w.broadcast_left(b)?, &x.reshape((b, c, t * f))?)?;
        // [B, out, st, sf, T, F] -> [B, out, T, st, F, sf]
        y.reshape((b * self.cout, st, sf, t, f))?
            .permute((0, 3, 1, 4, 2))?
            .contiguous()?
            .reshape((b, self.cout, t * st, f * sf))
    }
}

struct EncoderBlock {
    tfc_tdf: TfcTdf,
    downscale: Downscale,
}

struct DecoderBlock {
    upscale: Upscale,
    tfc_tdf: TfcTdf,
}

/// The whole network, from the folded spectrogram to the stems' folded spectrograms (NCHW).
pub struct NchwNet {
    first_conv: Conv1x1,
    encoder_blocks: Vec<EncoderBlock>,
    bottleneck_block: TfcTdf,
    decoder_blocks: Vec<DecoderBlock>,
    final_conv0: Conv1x1,
    final_act: Act,
    final_conv2: Conv1x1,
    num_subbands: usize,
    dtype: DType,
    device: Device,
}

/// The network as built for its device: the NCHW reference below (CPU, Metal), or the
/// channels-last formulation in [`super::nhwc`] (CUDA; `MDX_STEMS_NCHW=1` keeps the reference).
pub enum TfcTdfNet {
    Nchw(NchwNet),
    Nhwc { net: super::nhwc::NhwcNet, dtype: DType, device: Device },
}

impl TfcTdfNet {
    /// Build from a checkpoint's tensors (already cast to the compute dtype and on `device`).
    pub fn new(cfg: &ModelConfig, w: &Weights, dtype: DType, device: &Device) -> Result<Self> {
        let keep_nchw = std::env::var("MDX_STEMS_NCHW").is_ok_and(|v| v == "1");
        if device.is_cuda() && !keep_nchw {
            let opts = super::nhwc::NhwcOptions::for_device(device);
            let net = super::nhwc::NhwcNet::new(cfg, w, device, opts)?;
            return Ok(TfcTdfNet::Nhwc { net, dtype, device: device.clone() });
        }
        NchwNet::new(cfg, w, dtype, device).map(TfcTdfNet::Nchw)
    }

    pub fn dtype(&self) -> DType {
        match self {
            TfcTdfNet::Nchw(n) => n.dtype,
            TfcTdfNet::Nhwc { dtype, .. } => *dtype,
        }
    }

    pub fn device(&self) -> &Device {
        match self {
            TfcTdfNet::Nchw(n) => &n.device,
            TfcTdfNet::Nhwc { device, .. } => device,
        }
    }

    /// `spec`: [B, 4, dim_f, T] (ch0.re, ch0.im, ch1.re, ch1.im) in the compute dtype on the device.
    /// Returns [B, stems, 4, dim_f, T].
    pub fn forward_spec(&self, spec: &Tensor) -> Result<Tensor> {
        match self {
            TfcTdfNet::Nchw(n) => n.forward_spec(spec),
            TfcTdfNet::Nhwc { net, .. } => net.forward_spec(spec),
        }
    }
}

impl NchwNet {
    /// Build from a checkpoint's tensors (already cast to the compute dtype and on `device`).
    pub fn new(cfg: &ModelConfig, w: &Weights, dtype: DType, device: &Device) -> Result<Self> {
        let m = &cfg.model;
        let dim_c = cfg.dim_c();
        let g = m.growth;
        let mut c = m.num_channels;
        let mut f = cfg.audio.dim_f / m.num_subbands;
        let first_conv = Conv1x1::new(dim_c, c, &w.pp("first_conv"))?;
        let mut encoder_blocks = vec![];
        for i in 0..m.num_scales {
            let wb = w.pp("encoder_blocks").pp(i);
            encoder_blocks.push(EncoderBlock {
                tfc_tdf: TfcTdf::new(cfg, c, c, f, &wb.pp("tfc_tdf"))?,
                downscale: Downscale::new(cfg, c, c + g, &wb.pp("downscale"))?,
            });
            f /= m.scale[1];
            c += g;
        }
        let bottleneck_block = TfcTdf::new(cfg, c, c, f, &w.pp("bottleneck_block"))?;
        let mut decoder_blocks = vec![];
        for i in 0..m.num_scales {
            let wb = w.pp("decoder_blocks").pp(i);
            let upscale = Upscale::new(cfg, c, c - g, &wb.pp("upscale"))?;
            f *= m.scale[1];
            c -= g;
            decoder_blocks.push(DecoderBlock { upscale, tfc_tdf: TfcTdf::new(cfg, 2 * c, c, f, &wb.pp("tfc_tdf"))? });
        }
        Ok(NchwNet {
            first_conv,
            encoder_blocks,
            bottleneck_block,
            decoder_blocks,
            final_conv0: Conv1x1::new(c + dim_c, c, &w.pp("final_conv").pp(0))?,
            final_act: Act(m.act),
            final_conv2: Conv1x1::new(c, cfg.num_stems() * dim_c, &w.pp("final_conv").pp(2))?,
            num_subbands: m.num_subbands,
            dtype,
            device: device.clone(),
        })
    }

    /// See [`TfcTdfNet::forward_spec`].
    pub fn forward_spec(&self, spec: &Tensor) -> Result<Tensor> {
        let (b, c4, dim_f, t) = spec.dims4()?;
        let k = self.num_subbands;
        // Subband fold: [B, C, F, T] -> [B, C*k, F/k, T] is a pure reshape. The body runs on
        // [B, c, T, F]: the folded input (dim_c channels) is transposed once, and everything up
        // to the last 1x1 conv stays in that layout (1x1 convs and the product with `first` are
        // per pixel), so no c-channel activation is ever transposed.
        let mix = spec.reshape((b, c4 * k, dim_f / k, t))?.transpose(2, 3)?.contiguous()?; // [B, dim_c, T, F]
        let mut x = self.first_conv.forward(&mix)?; // [B, c, T, F]
        let mut skips = Vec::with_capacity(self.encoder_blocks.len());
        // Every `forward_owned` input below is a fresh tensor held by `x` alone.
        for blk in &self.encoder_blocks {
            x = blk.tfc_tdf.forward_owned(x)?;
            skips.push(x.clone());
            x = blk.downscale.forward(&x)?;
        }
        x = self.bottleneck_block.forward_owned(x)?;
        for blk in &self.decoder_blocks {
            x = blk.upscale.forward(&x)?;
            let skip = skips.pop().expect("one skip per scale");
            x = Tensor::cat(&[&x, &skip], 1)?;
            drop(skip);
            x = blk.tfc_tdf.forward_owned(x)?;
        }
        // `first` (the first conv's output) is recomputed here rather than kept alive through
        // the whole body: a 1x1 conv of dim_c channels costs less than a full activation of memory.
        let x = mul_owned(x, &self.first_conv.forward(&mix)?)?;
        let cat = Tensor::cat(&[&mix, &x], 1)?;
        drop((mix, x));
        let x = self.final_conv0.forward(&cat)?;
        drop(cat);
        let x = self.final_conv2.forward(&self.final_act.forward_owned(x)?)?; // [B, S*dim_c, T, F/k]
        // Back to [B, S*dim_c, F/k, T]; unfold subbands ([B, S*4*k, F/k, T] -> [B, S, 4, F, T]) is
        // again a pure reshape.
        let x = x.transpose(2, 3)?.contiguous()?;
        let s = x.dim(1)? / (c4 * k);
        x.reshape((b, s, c4, dim_f, t))
    }
}
