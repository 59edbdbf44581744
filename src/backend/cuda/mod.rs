//! TFC-TDF v3 in channels-last layout: the network body runs on [B, T, F, C] tensors.
//!
//! This is the CUDA path of [`super::network::TfcTdfNet`] (chosen when the device is CUDA).
//! Channels-last is what tensor-core convolutions want, and it turns every 1x1 convolution,
//! Downscale and Upscale into one plain row-major matmul over the channel axis:
//! - 3x3 convolutions: cuDNN in NHWC with KRSC filters (feature `cudnn`), else candle's conv2d
//!   on a transposed view;
//! - norm + activation: one fused CUDA kernel family ([`crate::cuda::norm_act`]), statistics
//!   in f32, else the reference [`NormAct`] on a transposed view;
//! - 1x1 convs, TDF linears, Downscale (space-to-depth), Upscale (depth-to-space): candle
//!   matmuls (cuBLAS, f32 accumulation) plus reshapes/permutes.
//!
//! Without CUDA every op falls back to candle's own ops, so the whole formulation runs (and is
//! tested against the NCHW reference) on the CPU; that fallback is not meant to be fast.
//! `MDX_PROFILE=1` makes [`profile_take`] report device-synchronised time per op kind.

use super::config::{ActKind, ModelConfig, NormKind};
use super::network::{Conv3x3 as RefConv3x3, NormAct, Weights, mm};
#[cfg(feature = "cuda")]
use candle_core::DType;
use candle_core::{Device, Module, Result, Tensor};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- profiling

static PROFILE: Mutex<Option<BTreeMap<String, (Duration, usize)>>> = Mutex::new(None);

/// Start collecting per-op times (each op then synchronises the device: slower overall).
pub fn profile_start() {
    *PROFILE.lock().unwrap() = Some(BTreeMap::new());
}

/// Stop collecting and return (op kind and input shape, total time, calls).
pub fn profile_take() -> Vec<(String, Duration, usize)> {
    PROFILE.lock().unwrap().take().map(|m| m.into_iter().map(|(k, (d, n))| (k, d, n)).collect()).unwrap_or_default()
}

/// Run `f`; when profiling, synchronise around it and add its time to `what` + `x`'s shape.
fn timed<T>(dev: &Device, what: &'static str, x: &Tensor, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if PROFILE.lock().unwrap().is_none() {
        return f();
    }
    let what = format!("{what:14} {:?}", x.dims());
    dev.synchronize()?;
    let t = Instant::now();
    let r = f()?;
    dev.synchronize()?;
    let dt = t.elapsed();
    if let Some(m) = PROFILE.lock().unwrap().as_mut() {
        let e = m.entry(what).or_default();
        e.0 += dt;
        e.1 += 1;
    }
    Ok(r)
}

// ---------------------------------------------------------------- fault injection (tests)

static FAULT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Make the next [`NhwcNet::forward_spec`] (or the next GPU chunk pass, which may replay a
/// CUDA graph instead of calling it) fail as a GPU error would (tests of the engine's CPU retry).
#[doc(hidden)]
pub fn inject_fault_once() {
    FAULT.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether a fault was injected, clearing it.
pub(crate) fn take_injected_fault() -> bool {
    FAULT.swap(false, std::sync::atomic::Ordering::SeqCst)
}

// ---------------------------------------------------------------- execution context

/// Which implementation each op uses; owned by the network (dropping it frees cuDNN state).
struct Ctx {
    device: Device,
    /// Our CUDA kernels for norm + activation.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    kernels: bool,
    #[cfg(feature = "cudnn")]
    convs: Option<crate::cuda::cudnn::Convs>,
    /// f32 convolutions and matmuls may use TF32 tensor cores.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    tf32: bool,
    /// Add the block's shortcut inside the last convolution (cuDNN beta = 1).
    #[cfg_attr(not(feature = "cudnn"), allow(dead_code))]
    fuse_residual: bool,
}

/// [B, H, W, C] -> [B, C, H, W] and back, for the reference fallbacks.
fn to_nchw(x: &Tensor) -> Result<Tensor> {
    x.permute((0, 3, 1, 2))?.contiguous()
}
fn to_nhwc(x: &Tensor) -> Result<Tensor> {
    x.permute((0, 2, 3, 1))?.contiguous()
}

// ---------------------------------------------------------------- layers

/// Norm + activation on channels-last tensors.
struct NormActL {
    reference: NormAct,
    #[cfg(feature = "cuda")]
    params: Option<crate::cuda::NormParams>,
    act: ActKind,
}

impl NormActL {
    fn new(kind: NormKind, act: ActKind, c: usize, w: &Weights, device: &Device) -> Result<Self> {
        let reference = NormAct::new(kind, act, c, w)?;
        #[cfg(feature = "cuda")]
        let params = if device.is_cuda() { Some(crate::cuda::NormParams::from_weights(kind, c, w, device)?) } else { None };
        #[cfg(not(feature = "cuda"))]
        let _ = device;
        Ok(NormActL {
            reference,
            #[cfg(feature = "cuda")]
            params,
            act,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        timed(&ctx.device, "norm+act", x, || {
            #[cfg(feature = "cuda")]
            if ctx.kernels {
                if let Some(p) = &self.params {
                    return crate::cuda::norm_act(x, p, self.act);
                }
            }
            let _ = self.act;
            to_nhwc(&self.reference.forward(&to_nchw(x)?)?)
        })
    }
}

/// 3x3 convolution, padding 1, channels-last.
struct Conv3x3L {
    /// KRSC [out, 3, 3, in] for cuDNN.
    #[cfg(feature = "cudnn")]
    krsc: Option<Tensor>,
    /// The reference layer, kept only where cuDNN is not used (no second copy of the weights).
    reference: Option<RefConv3x3>,
}

impl Conv3x3L {
    fn new(cin: usize, cout: usize, w: &Weights, cudnn: bool) -> Result<Self> {
        #[cfg(feature = "cudnn")]
        let krsc = if cudnn { Some(w.get(&[cout, cin, 3, 3], "weight")?.permute((0, 2, 3, 1))?.contiguous()?) } else { None };
        #[cfg(feature = "cudnn")]
        let reference = if cudnn { None } else { Some(RefConv3x3::new(cin, cout, w)?) };
        #[cfg(not(feature = "cudnn"))]
        let reference = {
            let _ = cudnn;
            Some(RefConv3x3::new(cin, cout, w)?)
        };
        Ok(Conv3x3L {
            #[cfg(feature = "cudnn")]
            krsc,
            reference,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        timed(&ctx.device, "conv3x3", x, || {
            #[cfg(feature = "cudnn")]
            if let (Some(convs), Some(w)) = (&ctx.convs, &self.krsc) {
                return convs.conv(x, w, 1, 1, ctx.tf32);
            }
            match &self.reference {
                Some(r) => to_nhwc(&r.forward(&to_nchw(x)?)?),
                None => candle_core::bail!("conv3x3: built for cuDNN, which is not available"),
            }
        })
    }
}

impl Conv3x3L {
    /// `acc + conv(x)`; with cuDNN the sum is formed by the convolution itself (beta = 1),
    /// in `acc`'s memory, saving one pass over the activation. `acc` must not be used elsewhere.
    fn forward_acc(&self, x: &Tensor, acc: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        #[cfg(feature = "cudnn")]
        if ctx.fuse_residual {
            if let (Some(convs), Some(w)) = (&ctx.convs, &self.krsc) {
                return timed(&ctx.device, "conv3x3+res", x, || convs.conv_acc(x, w, 1, 1, ctx.tf32, Some(acc)));
            }
        }
        let y = self.forward(x, ctx)?;
        timed(&ctx.device, "add", &y, || &y + acc)
    }
}

/// 1x1 convolution over the channel axis: [.., Cin] x [Cin, Cout].
struct Conv1x1L {
    /// [out, in]; used transposed.
    w: Tensor,
}

impl Conv1x1L {
    fn new(cin: usize, cout: usize, w: &Weights) -> Result<Self> {
        Ok(Conv1x1L { w: w.get(&[cout, cin, 1, 1], "weight")?.reshape((cout, cin))? })
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        timed(&ctx.device, "conv1x1", x, || {
            let (b, h, w, c) = x.dims4()?;
            let cout = self.w.dim(0)?;
            mm(&x.reshape((b * h * w, c))?, &self.w.t()?)?.reshape((b, h, w, cout))
        })
    }
}

/// `nn.Linear` along F for [B, T, F, C]: per (b, t), W [fout, fin] x X [fin, C].
struct LinearL {
    /// [fout, fin], the PyTorch layout.
    w: Tensor,
}

impl LinearL {
    fn new(fin: usize, fout: usize, w: &Weights) -> Result<Self> {
        Ok(LinearL { w: w.get(&[fout, fin], "weight")?.contiguous()? })
    }

    /// [B, T, Fi, C] -> [B, T, Fo, C], plus `acc` if given (on CUDA: accumulated in `acc`'s
    /// memory by the GEMM itself; `acc` must not be used elsewhere).
    fn forward(&self, x: &Tensor, acc: Option<&Tensor>, ctx: &Ctx) -> Result<Tensor> {
        let (b, t, f, c) = x.dims4()?;
        let fout = self.w.dim(0)?;
        #[cfg(feature = "cuda")]
        if ctx.kernels {
            let label = if acc.is_some() { "tdf linear+res" } else { "tdf linear" };
            return timed(&ctx.device, label, x, || {
                let acc3 = acc.map(|a| a.reshape((b * t, fout, c))).transpose()?;
                crate::cuda::linear_f(&self.w, &x.reshape((b * t, f, c))?, acc3.as_ref(), ctx.tf32)?.reshape((b, t, fout, c))
            });
        }
        let y = timed(&ctx.device, "tdf linear", x, || mm(&self.w.broadcast_left(b * t)?, &x.reshape((b * t, f, c))?)?.reshape((b, t, fout, c)))?;
        match acc {
            Some(a) => timed(&ctx.device, "add", &y, || &y + a),
            None => Ok(y),
        }
    }
}

struct BlockL {
    tfc1_norm: NormActL,
    tfc1_conv: Conv3x3L,
    tdf_norm1: NormActL,
    tdf_lin1: LinearL,
    tdf_norm2: NormActL,
    tdf_lin2: LinearL,
    tfc2_norm: NormActL,
    tfc2_conv: Conv3x3L,
    shortcut: Conv1x1L,
}

impl BlockL {
    fn new(cfg: &ModelConfig, in_c: usize, c: usize, f: usize, w: &Weights, dev: &Device, cudnn: bool) -> Result<Self> {
        let (n, a) = (cfg.model.norm, cfg.model.act);
        let fb = f / cfg.model.bottleneck_factor;
        Ok(BlockL {
            tfc1_norm: NormActL::new(n, a, in_c, &w.pp("tfc1.0"), dev)?,
            tfc1_conv: Conv3x3L::new(in_c, c, &w.pp("tfc1.2"), cudnn)?,
            tdf_norm1: NormActL::new(n, a, c, &w.pp("tdf.0"), dev)?,
            tdf_lin1: LinearL::new(f, fb, &w.pp("tdf.2"))?,
            tdf_norm2: NormActL::new(n, a, c, &w.pp("tdf.3"), dev)?,
            tdf_lin2: LinearL::new(fb, f, &w.pp("tdf.5"))?,
            tfc2_norm: NormActL::new(n, a, c, &w.pp("tfc2.0"), dev)?,
            tfc2_conv: Conv3x3L::new(c, c, &w.pp("tfc2.2"), cudnn)?,
            shortcut: Conv1x1L::new(in_c, c, &w.pp("shortcut"))?,
        })
    }

    /// [B, T, F, in_c] -> [B, T, F, c]
    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let s = self.shortcut.forward(x, ctx)?;
        let x = self.tfc1_conv.forward(&self.tfc1_norm.forward(x, ctx)?, ctx)?;
        let h = self.tdf_lin1.forward(&self.tdf_norm1.forward(&x, ctx)?, None, ctx)?;
        // x + tdf(x), the sum formed by the second linear's GEMM on CUDA.
        let x = self.tdf_lin2.forward(&self.tdf_norm2.forward(&h, ctx)?, Some(&x), ctx)?;
        self.tfc2_conv.forward_acc(&self.tfc2_norm.forward(&x, ctx)?, &s, ctx)
    }
}

struct TfcTdfL {
    blocks: Vec<BlockL>,
}

impl TfcTdfL {
    fn new(cfg: &ModelConfig, in_c: usize, c: usize, f: usize, w: &Weights, dev: &Device, cudnn: bool) -> Result<Self> {
        let blocks = (0..cfg.model.num_blocks_per_scale)
            .map(|j| BlockL::new(cfg, if j == 0 { in_c } else { c }, c, f, &w.pp("blocks").pp(j), dev, cudnn))
            .collect::<Result<_>>()?;
        Ok(TfcTdfL { blocks })
    }

    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let mut x = x.clone();
        for b in &self.blocks {
            x = b.forward(&x, ctx)?;
        }
        Ok(x)
    }
}

/// Norm, act, conv with kernel = stride = scale: space-to-depth + one matmul.
struct DownscaleL {
    norm: NormActL,
    /// [(st, sf, in), out]
    w: Tensor,
    /// KRSC [out, st, sf, in] for a cuDNN convolution (square scales only).
    #[cfg(feature = "cudnn")]
    krsc: Option<Tensor>,
    scale: [usize; 2],
}

impl DownscaleL {
    fn new(cfg: &ModelConfig, cin: usize, cout: usize, w: &Weights, dev: &Device, cudnn: bool) -> Result<Self> {
        let [st, sf] = cfg.model.scale;
        let conv = w.pp("conv");
        let wt = conv.pp(2).get(&[cout, cin, st, sf], "weight")?;
        #[cfg(feature = "cudnn")]
        let krsc = if cudnn && st == sf { Some(wt.permute((0, 2, 3, 1))?.contiguous()?) } else { None };
        #[cfg(not(feature = "cudnn"))]
        let _ = cudnn;
        Ok(DownscaleL {
            norm: NormActL::new(cfg.model.norm, cfg.model.act, cin, &conv.pp(0), dev)?,
            w: wt.permute((2, 3, 1, 0))?.contiguous()?.reshape((st * sf * cin, cout))?,
            #[cfg(feature = "cudnn")]
            krsc,
            scale: [st, sf],
        })
    }

    /// [B, T, F, c] -> [B, T/st, F/sf, c + growth]
    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let x = self.norm.forward(x, ctx)?;
        #[cfg(feature = "cudnn")]
        if let (Some(convs), Some(w)) = (&ctx.convs, &self.krsc) {
            return timed(&ctx.device, "downscale", &x, || convs.conv(&x, w, 0, self.scale[0], ctx.tf32));
        }
        timed(&ctx.device, "downscale", &x, || {
            let (b, t, f, c) = x.dims4()?;
            let [st, sf] = self.scale;
            let (to, fo) = (t / st, f / sf);
            let cols = x.reshape((b, to, st, fo, sf * c))?.permute((0, 1, 3, 2, 4))?.contiguous()?.reshape((b * to * fo, st * sf * c))?;
            let cout = self.w.dim(1)?;
            mm(&cols, &self.w)?.reshape((b, to, fo, cout))
        })
    }
}

/// Norm, act, transposed conv with kernel = stride = scale: one matmul + depth-to-space.
struct UpscaleL {
    norm: NormActL,
    /// [in, (st, sf, out)]
    w: Tensor,
    cout: usize,
    scale: [usize; 2],
}

impl UpscaleL {
    fn new(cfg: &ModelConfig, cin: usize, cout: usize, w: &Weights, dev: &Device) -> Result<Self> {
        let [st, sf] = cfg.model.scale;
        let conv = w.pp("conv");
        let wt = conv.pp(2).get(&[cin, cout, st, sf], "weight")?;
        Ok(UpscaleL {
            norm: NormActL::new(cfg.model.norm, cfg.model.act, cin, &conv.pp(0), dev)?,
            w: wt.permute((0, 2, 3, 1))?.contiguous()?.reshape((cin, st * sf * cout))?,
            cout,
            scale: [st, sf],
        })
    }

    /// [B, T, F, c] -> [B, T*st, F*sf, c - growth], concatenated with `skip` on channels
    /// (upscaled first, as the reference does). On CUDA, depth-to-space and the concatenation
    /// are one pass over memory.
    fn forward_concat(&self, x: &Tensor, skip: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let x = self.norm.forward(x, ctx)?;
        let (b, t, f, c) = x.dims4()?;
        let [st, sf] = self.scale;
        let y = timed(&ctx.device, "upscale gemm", &x, || mm(&x.reshape((b * t * f, c))?, &self.w))?;
        #[cfg(feature = "cuda")]
        if ctx.kernels {
            if let Some(out) = timed(&ctx.device, "d2s+concat", &y, || crate::cuda::upscale_concat(&y, skip, (b, t, f), (st, sf)))? {
                return Ok(out);
            }
        }
        let up = timed(&ctx.device, "depth-to-space", &y, || {
            // [B, T, F, st, sf*out] -> [B, T, st, F, sf*out]
            y.reshape((b, t, f, st, sf * self.cout))?.permute((0, 1, 3, 2, 4))?.contiguous()?.reshape((b, t * st, f * sf, self.cout))
        })?;
        timed(&ctx.device, "concat", &up, || Tensor::cat(&[&up, skip], 3))
    }
}

struct EncoderL {
    tfc_tdf: TfcTdfL,
    downscale: DownscaleL,
}

struct DecoderL {
    upscale: UpscaleL,
    tfc_tdf: TfcTdfL,
}

/// The network in channels-last layout (see the module docs).
pub struct NhwcNet {
    first_conv: Conv1x1L,
    encoder_blocks: Vec<EncoderL>,
    bottleneck_block: TfcTdfL,
    decoder_blocks: Vec<DecoderL>,
    final_conv0: Conv1x1L,
    /// The final activation: an identity norm + act (one kernel on CUDA).
    final_act: NormActL,
    final_conv2: Conv1x1L,
    num_subbands: usize,
    /// Most channels of any activation at full resolution (for the batch limit).
    max_channels: usize,
    ctx: Ctx,
}

/// Which accelerated pieces a [`NhwcNet`] may use (all off: candle ops only).
#[derive(Debug, Clone, Copy)]
pub struct NhwcOptions {
    /// Our fused norm + activation kernels (CUDA only).
    pub kernels: bool,
    /// cuDNN convolutions (CUDA with the `cudnn` feature only).
    pub cudnn: bool,
    /// f32 convolutions and matmuls may use TF32 tensor cores.
    pub tf32: bool,
}

impl NhwcOptions {
    /// Everything this build and device support; `MDX_STEMS_TF32=1` turns TF32 on for f32,
    /// `MDX_STEMS_NO_CUDNN=1` / `MDX_STEMS_NO_KERNELS=1` switch pieces off (for comparisons).
    pub fn for_device(device: &Device) -> Self {
        let on = |k: &str| std::env::var(k).is_ok_and(|v| v != "0" && !v.is_empty());
        let cuda = device.is_cuda();
        NhwcOptions {
            kernels: cuda && cfg!(feature = "cuda") && !on("MDX_STEMS_NO_KERNELS"),
            cudnn: cuda && cfg!(feature = "cudnn") && !on("MDX_STEMS_NO_CUDNN"),
            tf32: on("MDX_STEMS_TF32"),
        }
    }
}

impl NhwcNet {
    /// Build from a checkpoint's tensors (already in the compute dtype on `device`).
    pub fn new(cfg: &ModelConfig, w: &Weights, device: &Device, opts: NhwcOptions) -> Result<Self> {
        let m = &cfg.model;
        let dim_c = cfg.dim_c();
        let g = m.growth;
        let dev = device;
        let cudnn = opts.cudnn && cfg!(feature = "cudnn") && device.is_cuda();
        let mut c = m.num_channels;
        let mut f = cfg.audio.dim_f / m.num_subbands;
        let first_conv = Conv1x1L::new(dim_c, c, &w.pp("first_conv"))?;
        let mut encoder_blocks = vec![];
        for i in 0..m.num_scales {
            let wb = w.pp("encoder_blocks").pp(i);
            encoder_blocks.push(EncoderL {
                tfc_tdf: TfcTdfL::new(cfg, c, c, f, &wb.pp("tfc_tdf"), dev, cudnn)?,
                downscale: DownscaleL::new(cfg, c, c + g, &wb.pp("downscale"), dev, cudnn)?,
            });
            f /= m.scale[1];
            c += g;
        }
        let bottleneck_block = TfcTdfL::new(cfg, c, c, f, &w.pp("bottleneck_block"), dev, cudnn)?;
        let mut decoder_blocks = vec![];
        for i in 0..m.num_scales {
            let wb = w.pp("decoder_blocks").pp(i);
            let upscale = UpscaleL::new(cfg, c, c - g, &wb.pp("upscale"), dev)?;
            f *= m.scale[1];
            c -= g;
            decoder_blocks.push(DecoderL { upscale, tfc_tdf: TfcTdfL::new(cfg, 2 * c, c, f, &wb.pp("tfc_tdf"), dev, cudnn)? });
        }
        let ident = NormActL::new(NormKind::Identity, m.act, c, w, dev)?;
        #[cfg(feature = "cuda")]
        if let Some(d) = crate::cuda::cuda_device(device) {
            crate::cuda::single_stream_mode(d);
        }
        #[cfg(feature = "cudnn")]
        let convs = match (cudnn, crate::cuda::cuda_device(device)) {
            (true, Some(d)) => Some(crate::cuda::cudnn::Convs::new(d)?),
            _ => None,
        };
        Ok(NhwcNet {
            first_conv,
            encoder_blocks,
            bottleneck_block,
            decoder_blocks,
            final_conv0: Conv1x1L::new(c + dim_c, c, &w.pp("final_conv").pp(0))?,
            final_act: ident,
            final_conv2: Conv1x1L::new(c, cfg.num_stems() * dim_c, &w.pp("final_conv").pp(2))?,
            num_subbands: m.num_subbands,
            max_channels: (2 * m.num_channels).max(m.num_channels + dim_c).max(cfg.num_stems() * dim_c),
            ctx: Ctx {
                device: device.clone(),
                kernels: opts.kernels && device.is_cuda(),
                #[cfg(feature = "cudnn")]
                convs,
                tf32: opts.tf32,
                fuse_residual: !std::env::var("MDX_STEMS_NO_FUSED_RES").is_ok_and(|v| v == "1"),
            },
        })
    }

    /// `final_conv.0` on concat([mix, x]) on channels: on CUDA two GEMMs into one output
    /// (W[:, :mix] . mix + W[:, mix:] . x) instead of building the concatenation.
    fn final_conv0_of_concat(&self, mix: &Tensor, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if ctx.kernels {
            return timed(&ctx.device, "final conv0", x, || {
                let (b, t, f, c) = x.dims4()?;
                let cm = mix.dim(3)?;
                let w = &self.final_conv0.w;
                let cout = w.dim(0)?;
                let y = crate::cuda::matmul_wt(&x.reshape((b * t * f, c))?, w, cm, None, ctx.tf32)?;
                let y = crate::cuda::matmul_wt(&mix.reshape((b * t * f, cm))?, w, 0, Some(&y), ctx.tf32)?;
                y.reshape((b, t, f, cout))
            });
        }
        let xc = timed(&ctx.device, "concat", x, || Tensor::cat(&[mix, x], 3))?;
        self.final_conv0.forward(&xc, ctx)
    }

    /// cuDNN algorithms chosen so far, one line per convolution shape.
    pub fn conv_plans(&self) -> Vec<String> {
        #[cfg(feature = "cudnn")]
        if let Some(c) = &self.ctx.convs {
            return c.plans().into_iter().map(|p| format!("{}: {} (workspace {} B)", p.shape, p.algo, p.workspace)).collect();
        }
        vec![]
    }

    /// `spec`: [B, 4, dim_f, T] -> [B, stems, 4, dim_f, T], as [`super::TfcTdfNet::forward_spec`].
    /// Batches whose largest activation would exceed 2^31 elements (cuDNN's and our kernels'
    /// 32-bit indexing) run in several passes.
    pub fn forward_spec(&self, spec: &Tensor) -> Result<Tensor> {
        if take_injected_fault() {
            candle_core::bail!("injected GPU fault (test)");
        }
        let (b, _, dim_f, t) = spec.dims4()?;
        let per_item = t * (dim_f / self.num_subbands) * self.max_channels;
        let max_b = ((i32::MAX as usize) / per_item.max(1)).max(1);
        if b > max_b {
            let mut outs = vec![];
            let mut i = 0;
            while i < b {
                let n = max_b.min(b - i);
                outs.push(self.forward_batch(&spec.narrow(0, i, n)?)?);
                i += n;
            }
            return Tensor::cat(&outs, 0);
        }
        self.forward_batch(spec)
    }

    fn forward_batch(&self, spec: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        let _tf32 = Tf32Guard::new(self.ctx.tf32 && spec.dtype() == DType::F32 && self.ctx.device.is_cuda());
        let ctx = &self.ctx;
        let (b, c4, dim_f, t) = spec.dims4()?;
        let k = self.num_subbands;
        let f = dim_f / k;
        // Subband fold [B, C, F, T] -> [B, C*k, F/k, T], then channels-last [B, T, F/k, C*k].
        let mix = timed(&ctx.device, "layout in", spec, || spec.reshape((b, c4 * k, f, t))?.permute((0, 3, 2, 1))?.contiguous())?;
        let first = self.first_conv.forward(&mix, ctx)?;
        let mut x = first.clone();
        let mut skips = Vec::with_capacity(self.encoder_blocks.len());
        for blk in &self.encoder_blocks {
            x = blk.tfc_tdf.forward(&x, ctx)?;
            skips.push(x.clone());
            x = blk.downscale.forward(&x, ctx)?;
        }
        x = self.bottleneck_block.forward(&x, ctx)?;
        for blk in &self.decoder_blocks {
            let skip = skips.pop().expect("one skip per scale");
            x = blk.upscale.forward_concat(&x, &skip, ctx)?;
            drop(skip);
            x = blk.tfc_tdf.forward(&x, ctx)?;
        }
        let x = timed(&ctx.device, "mul", &x, || {
            #[cfg(feature = "cuda")]
            if ctx.kernels {
                if let Some(y) = crate::cuda::mul(&x, &first)? {
                    return Ok(y);
                }
            }
            x.mul(&first)
        })?;
        let x = self.final_conv0_of_concat(&mix, &x, ctx)?;
        let x = self.final_act.forward(&x, ctx)?;
        let x = self.final_conv2.forward(&x, ctx)?; // [B, T, F, S*C*k]
        let s = x.dim(3)? / (c4 * k);
        // Back to [B, S*C*k, F, T]; unfolding the subbands is then a reshape.
        timed(&ctx.device, "layout out", &x, || x.permute((0, 3, 2, 1))?.contiguous()?.reshape((b, s, c4, dim_f, t)))
    }
}

/// Turns candle's TF32 matmuls on for the duration of one forward pass (candle keeps the switch
/// process-wide).
#[cfg(feature = "cuda")]
struct Tf32Guard(Option<bool>);

#[cfg(feature = "cuda")]
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

#[cfg(feature = "cuda")]
impl Drop for Tf32Guard {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            candle_core::cuda::set_gemm_reduced_precision_f32(b);
        }
    }
}
