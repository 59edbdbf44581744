//! TFC-TDF v3, the MDX23C network (Kim et al., "Sound Demixing Challenge 2023 – Music Demixing
//! Track Technical Report: TFC-TDF-UNet v3"; reference: ZFTurbo's Music-Source-Separation-Training
//! `models/mdx23c_tfc_tdf_v3.py`). Specification: `docs/tfc-tdf-v3.md`.
//!
//! Written once, over [`Backend`]: one Rust struct per PyTorch module, fields named after the
//! checkpoint's key paths (`Sequential` indices included: norm 0, act 1, conv 2), built from a
//! [`Weights`] view whose `pp` prefixes mirror those paths, so real checkpoints load without
//! renaming. Each backend prepares the tensors in its own form and runs the ops in its own
//! layout; the graph only says what is computed and which activations it gives up (ownership,
//! see [`crate::backend`]).

use super::checkpoint::Weights;
use super::config::{ActKind, ModelConfig, NormKind};
use crate::backend::{Act, Backend, NormSpec, NormWeights};
use candle_core::{Result, Tensor};
use std::borrow::Cow;

/// The whole network, from the spectrogram to the stems' spectrograms, for backend `B`.
pub struct TfcTdfNet<B: Backend> {
    first_conv: B::Conv1x1,
    encoder_blocks: Vec<EncoderBlock<B>>,
    bottleneck_block: TfcTdf<B>,
    decoder_blocks: Vec<DecoderBlock<B>>,
    final_conv: FinalConv<B>,
    num_subbands: usize,
    num_stems: usize,
    /// Most channels of any activation at full resolution (for [`Backend::max_elements`]).
    max_channels: usize,
}

struct EncoderBlock<B: Backend> {
    tfc_tdf: TfcTdf<B>,
    downscale: Downscale<B>,
}

struct DecoderBlock<B: Backend> {
    upscale: Upscale<B>,
    tfc_tdf: TfcTdf<B>,
}

/// `TFC_TDF`: `num_blocks_per_scale` blocks (`<prefix>.blocks.{j}`).
struct TfcTdf<B: Backend> {
    blocks: Vec<TfcTdfBlock<B>>,
}

/// One TFC-TDF block: `tfc1`, `tdf` (with residual), `tfc2`, plus the 1x1 `shortcut`.
struct TfcTdfBlock<B: Backend> {
    tfc1: Tfc<B>,
    tdf: Tdf<B>,
    tfc2: Tfc<B>,
    shortcut: B::Conv1x1,
}

/// `Sequential(norm, act, conv3x3)`: `.0` and `.2`.
struct Tfc<B: Backend> {
    norm: B::Norm,
    conv: B::Conv3x3,
}

/// `Sequential(norm, act, Linear(f -> f/bn), norm, act, Linear(f/bn -> f))`: `.0 .2 .3 .5`.
struct Tdf<B: Backend> {
    norm1: B::Norm,
    lin1: B::Linear,
    norm2: B::Norm,
    lin2: B::Linear,
}

/// `conv = Sequential(norm, act, conv kernel = stride = scale)`.
struct Downscale<B: Backend> {
    norm: B::Norm,
    conv: B::Downscale,
}

/// `conv = Sequential(norm, act, transposed conv kernel = stride = scale)`.
struct Upscale<B: Backend> {
    norm: B::Norm,
    conv: B::Upscale,
}

/// `final_conv = Sequential(conv1x1, act, conv1x1)`; the act as an identity norm + act.
struct FinalConv<B: Backend> {
    conv0: B::Conv1x1,
    act: B::Norm,
    conv2: B::Conv1x1,
}

fn act(a: ActKind) -> Act {
    match a {
        ActKind::Gelu => Act::Gelu,
        ActKind::Relu => Act::Relu,
        ActKind::Elu(alpha) => Act::Elu(alpha),
    }
}

/// The tensors of `norm` (+ `act`) over `c` channels stored under `w`.
fn norm<B: Backend>(b: &B, kind: NormKind, a: ActKind, c: usize, w: &Weights) -> Result<B::Norm> {
    let weights = match kind {
        NormKind::Identity => NormWeights::Identity,
        NormKind::Instance => NormWeights::Instance { weight: w.get(&[c], "weight")?, bias: w.get(&[c], "bias")? },
        NormKind::Group(groups) => NormWeights::Group { groups, weight: w.get(&[c], "weight")?, bias: w.get(&[c], "bias")? },
        NormKind::Batch => NormWeights::Batch {
            weight: w.get(&[c], "weight")?,
            bias: w.get(&[c], "bias")?,
            mean: w.get(&[c], "running_mean")?,
            var: w.get(&[c], "running_var")?,
        },
    };
    b.prepare_norm(NormSpec { weights, act: act(a), channels: c })
}

fn conv1x1<B: Backend>(b: &B, cin: usize, cout: usize, w: &Weights) -> Result<B::Conv1x1> {
    b.prepare_conv1x1(w.get(&[cout, cin, 1, 1], "weight")?)
}

impl<B: Backend> Tfc<B> {
    fn new(b: &B, cfg: &ModelConfig, cin: usize, cout: usize, w: &Weights) -> Result<Self> {
        Ok(Tfc {
            norm: norm(b, cfg.model.norm, cfg.model.act, cin, &w.pp(0))?,
            conv: b.prepare_conv3x3(w.pp(2).get(&[cout, cin, 3, 3], "weight")?)?,
        })
    }
}

impl<B: Backend> Tdf<B> {
    fn new(b: &B, cfg: &ModelConfig, c: usize, f: usize, w: &Weights) -> Result<Self> {
        let (n, a) = (cfg.model.norm, cfg.model.act);
        let fb = f / cfg.model.bottleneck_factor;
        Ok(Tdf {
            norm1: norm(b, n, a, c, &w.pp(0))?,
            lin1: b.prepare_linear(w.pp(2).get(&[fb, f], "weight")?)?,
            norm2: norm(b, n, a, c, &w.pp(3))?,
            lin2: b.prepare_linear(w.pp(5).get(&[f, fb], "weight")?)?,
        })
    }
}

impl<B: Backend> TfcTdfBlock<B> {
    fn new(b: &B, cfg: &ModelConfig, in_c: usize, c: usize, f: usize, w: &Weights) -> Result<Self> {
        Ok(TfcTdfBlock {
            tfc1: Tfc::new(b, cfg, in_c, c, &w.pp("tfc1"))?,
            tdf: Tdf::new(b, cfg, c, f, &w.pp("tdf"))?,
            tfc2: Tfc::new(b, cfg, c, c, &w.pp("tfc2"))?,
            shortcut: conv1x1(b, in_c, c, &w.pp("shortcut"))?,
        })
    }

    /// [B, in_c, T, F] -> [B, c, T, F]. `x` is given up unless `shared` (another handle refers
    /// to it). Intermediates are dropped as soon as they are used; the residual sums are formed
    /// in the memory of their other operand.
    fn forward(&self, b: &B, x: Tensor, shared: bool) -> Result<Tensor> {
        let s = b.conv1x1(&self.shortcut, &x)?;
        let a = if shared { b.norm_act(&self.tfc1.norm, Cow::Borrowed(&x))? } else { b.norm_act(&self.tfc1.norm, Cow::Owned(x))? };
        let x = b.conv3x3(&self.tfc1.conv, &a, None)?;
        drop(a);
        let t = b.linear(&self.tdf.lin1, &b.norm_act(&self.tdf.norm1, Cow::Borrowed(&x))?, None)?;
        let t = b.norm_act(&self.tdf.norm2, Cow::Owned(t))?;
        let x = b.linear(&self.tdf.lin2, &t, Some(x))?; // x + tdf(x)
        drop(t);
        let a = b.norm_act(&self.tfc2.norm, Cow::Owned(x))?;
        b.conv3x3(&self.tfc2.conv, &a, Some(s)) // tfc2(x) + shortcut
    }
}

impl<B: Backend> TfcTdf<B> {
    fn new(b: &B, cfg: &ModelConfig, in_c: usize, c: usize, f: usize, w: &Weights) -> Result<Self> {
        let blocks = (0..cfg.model.num_blocks_per_scale)
            .map(|j| TfcTdfBlock::new(b, cfg, if j == 0 { in_c } else { c }, c, f, &w.pp("blocks").pp(j)))
            .collect::<Result<_>>()?;
        Ok(TfcTdf { blocks })
    }

    /// See [`TfcTdfBlock::forward`]; only the first block's input may be shared.
    fn forward(&self, b: &B, x: Tensor, shared: bool) -> Result<Tensor> {
        let mut x = x;
        let mut shared = shared;
        for blk in &self.blocks {
            x = blk.forward(b, x, shared)?;
            shared = false;
        }
        Ok(x)
    }
}

impl<B: Backend> TfcTdfNet<B> {
    /// Build from a checkpoint's tensors (already in the compute dtype on the backend's device).
    pub fn new(b: &B, cfg: &ModelConfig, w: &Weights) -> Result<Self> {
        let m = &cfg.model;
        let dim_c = cfg.dim_c();
        let g = m.growth;
        let [st, sf] = m.scale;
        let mut c = m.num_channels;
        let mut f = cfg.audio.dim_f / m.num_subbands;
        let first_conv = conv1x1(b, dim_c, c, &w.pp("first_conv"))?;
        let mut encoder_blocks = vec![];
        for i in 0..m.num_scales {
            let wb = w.pp("encoder_blocks").pp(i);
            let conv = wb.pp("downscale").pp("conv");
            encoder_blocks.push(EncoderBlock {
                tfc_tdf: TfcTdf::new(b, cfg, c, c, f, &wb.pp("tfc_tdf"))?,
                downscale: Downscale {
                    norm: norm(b, m.norm, m.act, c, &conv.pp(0))?,
                    conv: b.prepare_downscale(conv.pp(2).get(&[c + g, c, st, sf], "weight")?)?,
                },
            });
            f /= sf;
            c += g;
        }
        let bottleneck_block = TfcTdf::new(b, cfg, c, c, f, &w.pp("bottleneck_block"))?;
        let mut decoder_blocks = vec![];
        for i in 0..m.num_scales {
            let wb = w.pp("decoder_blocks").pp(i);
            let conv = wb.pp("upscale").pp("conv");
            let upscale = Upscale {
                norm: norm(b, m.norm, m.act, c, &conv.pp(0))?,
                // ConvTranspose2d weight: [in, out, st, sf].
                conv: b.prepare_upscale(conv.pp(2).get(&[c, c - g, st, sf], "weight")?)?,
            };
            f *= sf;
            c -= g;
            decoder_blocks.push(DecoderBlock { upscale, tfc_tdf: TfcTdf::new(b, cfg, 2 * c, c, f, &wb.pp("tfc_tdf"))? });
        }
        let fc = w.pp("final_conv");
        let final_conv = FinalConv {
            conv0: conv1x1(b, c + dim_c, c, &fc.pp(0))?,
            act: norm(b, NormKind::Identity, m.act, c, &fc.pp(1))?,
            conv2: conv1x1(b, c, cfg.num_stems() * dim_c, &fc.pp(2))?,
        };
        Ok(TfcTdfNet {
            first_conv,
            encoder_blocks,
            bottleneck_block,
            decoder_blocks,
            final_conv,
            num_subbands: m.num_subbands,
            num_stems: cfg.num_stems(),
            max_channels: (2 * m.num_channels).max(m.num_channels + dim_c).max(cfg.num_stems() * dim_c),
        })
    }

    /// `spec`: [B, 4, dim_f, T] (ch0.re, ch0.im, ch1.re, ch1.im) in the compute dtype on the
    /// device -> [B, stems, 4, dim_f, T]. Batches whose largest activation would exceed the
    /// backend's [`Backend::max_elements`] run in several passes.
    pub fn forward(&self, b: &B, spec: &Tensor) -> Result<Tensor> {
        let (n, _, dim_f, t) = spec.dims4()?;
        let per_item = t * (dim_f / self.num_subbands) * self.max_channels;
        let max_n = (b.max_elements() / per_item.max(1)).max(1);
        if n <= max_n {
            return b.scoped(|| self.forward_batch(b, spec));
        }
        let mut outs = vec![];
        let mut i = 0;
        while i < n {
            let m = max_n.min(n - i);
            outs.push(b.scoped(|| self.forward_batch(b, &spec.narrow(0, i, m)?))?);
            i += m;
        }
        Tensor::cat(&outs, 0)
    }

    fn forward_batch(&self, b: &B, spec: &Tensor) -> Result<Tensor> {
        let (n, c4, dim_f, t) = spec.dims4()?;
        let k = self.num_subbands;
        // The body runs on [B, c, T, F/k] (in the backend's layout): the folded input is laid
        // out once, and everything up to the last 1x1 conv stays that way (1x1 convs and the
        // product with `first` are per pixel).
        let mix = b.layout_in(spec, k)?;
        let mut x = b.conv1x1(&self.first_conv, &mix)?;
        // `first` (the first conv's output) is kept alive through the body where the backend
        // wants it; else it is computed again at the end, which costs less than an activation
        // of memory.
        let first = b.keep_first().then(|| x.clone());
        let mut skips = Vec::with_capacity(self.encoder_blocks.len());
        for (i, blk) in self.encoder_blocks.iter().enumerate() {
            x = blk.tfc_tdf.forward(b, x, i == 0 && first.is_some())?;
            skips.push(x.clone());
            let a = b.norm_act(&blk.downscale.norm, Cow::Borrowed(&x))?; // x is also the skip
            x = b.downscale(&blk.downscale.conv, a)?;
        }
        x = self.bottleneck_block.forward(b, x, false)?;
        for blk in &self.decoder_blocks {
            let skip = skips.pop().expect("one skip per scale");
            let a = b.norm_act(&blk.upscale.norm, Cow::Owned(x))?;
            x = b.upscale_concat(&blk.upscale.conv, a, skip)?; // [upscaled, skip] on channels
            x = blk.tfc_tdf.forward(b, x, false)?;
        }
        let first = match first {
            Some(f) => f,
            None => b.conv1x1(&self.first_conv, &mix)?,
        };
        let x = b.mul(x, &first)?;
        drop(first);
        let x = b.conv1x1_concat(&self.final_conv.conv0, mix, x)?;
        let a = b.norm_act(&self.final_conv.act, Cow::Owned(x))?;
        let x = b.conv1x1(&self.final_conv.conv2, &a)?; // [B, S*4*k, T, F/k]
        drop(a);
        b.layout_out(x, (n, self.num_stems, c4, dim_f, t))
    }
}
