//! The RoFormer network over candle tensors (any device, f32/f16/bf16): band features in,
//! masks out. Structs mirror MSST's modules and find their weights by the checkpoint's names.

use super::bands::Bands;
use super::checkpoint::{AttnKind, layer_transformers, mask_mlp_dims, transformers_norm_output};
use super::config::RoformerConfig;
use crate::nets::checkpoint::Weights;
use candle_core::{D, DType, Result, Tensor};

/// The most bytes one slice of attention scores ([slice, heads, S, S] in the compute dtype)
/// may take: softmax attention runs over the batch (bands x chunks for the time transformer,
/// frames x chunks for the frequency one) in slices this bounds (at least one sequence a
/// slice).
pub const ATTN_SCORES_BYTES: usize = 64 << 20;

/// softmax(q k^T * scale) v for q, k, v [N, heads, S, d], over N in slices whose scores
/// ([slice, heads, S, S] in the dtype) take at most `max_bytes` (at least one sequence).
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, max_bytes: usize) -> Result<Tensor> {
    let (n, h, s, _) = q.dims4()?;
    let per_seq = h * s * s * q.dtype().size_in_bytes();
    let slice = (max_bytes / per_seq).max(1);
    let mut outs = vec![];
    let mut start = 0;
    while start < n {
        let len = slice.min(n - start);
        let (q, k, v) = (q.narrow(0, start, len)?, k.narrow(0, start, len)?, v.narrow(0, start, len)?);
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let attn = candle_nn::ops::softmax_last_dim(&scores)?;
        outs.push(attn.matmul(&v)?);
        start += len;
    }
    if outs.len() == 1 { Ok(outs.pop().expect("one slice")) } else { Tensor::cat(&outs, 0) }
}

/// `x @ w^T + b` over the last dimension.
fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (inp, out) = (dims[dims.len() - 1], w.dim(0)?);
    let rows = x.elem_count() / inp;
    let y = x.contiguous()?.reshape((rows, inp))?.matmul(&w.t()?)?;
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut od = dims;
    *od.last_mut().expect("rank >= 1") = out;
    y.reshape(od)
}

/// MSST's `RMSNorm`: `F.normalize(x, dim=-1) * sqrt(dim) * gamma`, computed in f32.
struct RmsNorm {
    /// `gamma * sqrt(dim)` in f32.
    scale: Tensor,
}

impl RmsNorm {
    fn new(w: &Weights<'_>, dim: usize) -> Result<Self> {
        let g = w.get(&[dim], "gamma")?.to_dtype(DType::F32)?;
        Ok(RmsNorm { scale: (g * (dim as f64).sqrt())? })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let n = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
        x.broadcast_div(&n)?.broadcast_mul(&self.scale)?.to_dtype(dtype)
    }
}

/// Softmax attention with rotary embeddings and per-head sigmoid gates (`Attention`).
struct Attention {
    norm: RmsNorm,
    to_qkv: Tensor,
    gates_w: Tensor,
    gates_b: Tensor,
    to_out: Tensor,
    /// cos and sin of the rotary angles, [S, dim_head / 2] in the compute dtype.
    cos: Tensor,
    sin: Tensor,
    heads: usize,
    dim_head: usize,
}

/// Linear attention over the feature axis (`LinearAttention`, El-Nouby et al.).
struct LinearAttention {
    norm: RmsNorm,
    to_qkv: Tensor,
    /// `exp(temperature)`, [heads, 1, 1].
    temperature_exp: Tensor,
    to_out: Tensor,
    heads: usize,
    dim_head: usize,
}

enum Attn {
    Softmax(Attention),
    Linear(LinearAttention),
}

struct FeedForward {
    norm: RmsNorm,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

/// One `Transformer`: (attention, feed-forward) residual pairs, then an optional RMSNorm.
struct Transformer {
    layers: Vec<(Attn, FeedForward)>,
    norm: Option<RmsNorm>,
}

/// A mask estimator's per-band MLP (Linear, Tanh, ..., Linear) before the GLU.
struct Mlp {
    linears: Vec<(Tensor, Tensor)>,
}

/// The network: band split, `depth` axial transformer layers, final norm, mask estimators.
pub struct RoformerNet {
    band_dims: Vec<usize>,
    band_split: Vec<(RmsNorm, Tensor, Tensor)>,
    /// Per layer: (linear transformer, time transformer, frequency transformer).
    layers: Vec<(Option<Transformer>, Transformer, Transformer)>,
    final_norm: Option<RmsNorm>,
    /// [stem][band].
    mask_estimators: Vec<Vec<Mlp>>,
    skip_connection: bool,
    dim: usize,
}

/// cos and sin of `pos * freqs[i]` for pos in 0..len, [len, freqs], as `rotary-embedding-torch`
/// computes them (f32), cast to `dtype`.
fn rotary_tables(freqs: &Tensor, len: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
    let f = freqs.to_dtype(DType::F32)?.to_device(&candle_core::Device::Cpu)?.to_vec1::<f32>()?;
    let angles: Vec<f32> = (0..len).flat_map(|p| f.iter().map(move |w| p as f32 * w)).collect();
    let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
    let dev = freqs.device();
    Ok((
        Tensor::from_vec(cos, (len, f.len()), dev)?.to_dtype(dtype)?,
        Tensor::from_vec(sin, (len, f.len()), dev)?.to_dtype(dtype)?,
    ))
}

impl Attention {
    fn new(w: &Weights<'_>, cfg: &RoformerConfig, seq: usize, dtype: DType) -> Result<Self> {
        let m = &cfg.model;
        let (dim, inner) = (m.dim, m.heads * m.dim_head);
        let (cos, sin) = rotary_tables(&w.get(&[m.dim_head / 2], "rotary_embed.freqs")?, seq, dtype)?;
        Ok(Attention {
            norm: RmsNorm::new(&w.pp("norm"), dim)?,
            to_qkv: w.get(&[3 * inner, dim], "to_qkv.weight")?,
            gates_w: w.get(&[m.heads, dim], "to_gates.weight")?,
            gates_b: w.get(&[m.heads], "to_gates.bias")?,
            to_out: w.get(&[dim, inner], "to_out.0.weight")?,
            cos,
            sin,
            heads: m.heads,
            dim_head: m.dim_head,
        })
    }

    /// x: [N, S, dim] -> [N, S, dim].
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, s, _) = x.dims3()?;
        let (h, d) = (self.heads, self.dim_head);
        let x = self.norm.forward(x)?;
        // 'b n (qkv h d) -> qkv b h n d'
        let qkv = linear(&x, &self.to_qkv, None)?.reshape((n, s, 3, h, d))?.permute((2, 0, 3, 1, 4))?;
        let q = candle_nn::rotary_emb::rope_i(&qkv.get(0)?.contiguous()?, &self.cos, &self.sin)?;
        let k = candle_nn::rotary_emb::rope_i(&qkv.get(1)?.contiguous()?, &self.cos, &self.sin)?;
        let v = qkv.get(2)?.contiguous()?;
        let out = attend(&q, &k, &v, (d as f64).powf(-0.5), ATTN_SCORES_BYTES)?;
        // Gates: 'b n h -> b h n 1', sigmoid.
        let gates = candle_nn::ops::sigmoid(&linear(&x, &self.gates_w, Some(&self.gates_b))?)?.permute((0, 2, 1))?.unsqueeze(3)?;
        let out = out.broadcast_mul(&gates)?.permute((0, 2, 1, 3))?.reshape((n, s, h * d))?;
        linear(&out, &self.to_out, None)
    }
}

impl LinearAttention {
    fn new(w: &Weights<'_>, cfg: &RoformerConfig) -> Result<Self> {
        let m = &cfg.model;
        let (dim, inner) = (m.dim, m.heads * m.dim_head);
        Ok(LinearAttention {
            norm: RmsNorm::new(&w.pp("norm"), dim)?,
            to_qkv: w.get(&[3 * inner, dim], "to_qkv.0.weight")?,
            temperature_exp: w.get(&[m.heads, 1, 1], "temperature")?.exp()?,
            to_out: w.get(&[dim, inner], "to_out.1.weight")?,
            heads: m.heads,
            dim_head: m.dim_head,
        })
    }

    /// x: [N, S, dim] -> [N, S, dim]: attention between the dim_head features of each head,
    /// over the whole sequence (scores are [dim_head, dim_head]).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, s, _) = x.dims3()?;
        let (h, d) = (self.heads, self.dim_head);
        let x = self.norm.forward(x)?;
        // 'b n (qkv h d) -> qkv b h d n'
        let qkv = linear(&x, &self.to_qkv, None)?.reshape((n, s, 3, h, d))?.permute((2, 0, 3, 4, 1))?;
        let l2 = |t: Tensor| -> Result<Tensor> {
            let dtype = t.dtype();
            let t = t.to_dtype(DType::F32)?;
            let norm = t.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
            t.broadcast_div(&norm)?.to_dtype(dtype)
        };
        let q = l2(qkv.get(0)?)?.broadcast_mul(&self.temperature_exp)?;
        let k = l2(qkv.get(1)?)?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = (q.contiguous()?.matmul(&k.t()?.contiguous()?)? * 8.0)?;
        let attn = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = attn.matmul(&v)?; // [n, h, d, s]
        let out = out.permute((0, 3, 1, 2))?.reshape((n, s, h * d))?;
        linear(&out, &self.to_out, None)
    }
}

impl FeedForward {
    fn new(w: &Weights<'_>, dim: usize) -> Result<Self> {
        Ok(FeedForward {
            norm: RmsNorm::new(&w.pp("0"), dim)?,
            w1: w.get(&[4 * dim, dim], "1.weight")?,
            b1: w.get(&[4 * dim], "1.bias")?,
            w2: w.get(&[dim, 4 * dim], "4.weight")?,
            b2: w.get(&[dim], "4.bias")?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = linear(&self.norm.forward(x)?, &self.w1, Some(&self.b1))?.gelu_erf()?;
        linear(&y, &self.w2, Some(&self.b2))
    }
}

impl Transformer {
    fn new(w: &Weights<'_>, cfg: &RoformerConfig, kind: AttnKind, depth: usize, seq: usize, dtype: DType) -> Result<Self> {
        let layers = (0..depth)
            .map(|l| {
                let lw = w.pp("layers").pp(l);
                let attn = match kind {
                    AttnKind::Softmax => Attn::Softmax(Attention::new(&lw.pp(0), cfg, seq, dtype)?),
                    AttnKind::Linear => Attn::Linear(LinearAttention::new(&lw.pp(0), cfg)?),
                };
                Ok((attn, FeedForward::new(&lw.pp(1).pp("net"), cfg.model.dim)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = if transformers_norm_output(cfg) { Some(RmsNorm::new(&w.pp("norm"), cfg.model.dim)?) } else { None };
        Ok(Transformer { layers, norm })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (attn, ff) in &self.layers {
            let a = match attn {
                Attn::Softmax(a) => a.forward(&x)?,
                Attn::Linear(a) => a.forward(&x)?,
            };
            x = (a + &x)?;
            x = (ff.forward(&x)? + &x)?;
        }
        match &self.norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, (w, b)) in self.linears.iter().enumerate() {
            x = linear(&x, w, Some(b))?;
            if i + 1 < self.linears.len() {
                x = x.tanh()?;
            }
        }
        // GLU over the last dimension.
        let half = x.dim(D::Minus1)? / 2;
        x.narrow(D::Minus1, 0, half)?.mul(&candle_nn::ops::sigmoid(&x.narrow(D::Minus1, half, half)?)?)
    }
}

impl RoformerNet {
    /// Build from tensors already in the compute dtype on the device, for chunks of `frames`
    /// STFT frames (the rotary tables are made for that length).
    pub fn new(cfg: &RoformerConfig, bands: &Bands, w: &Weights<'_>, frames: usize, dtype: DType) -> Result<Self> {
        let m = &cfg.model;
        let band_dims = bands.dims();
        let band_split = band_dims
            .iter()
            .enumerate()
            .map(|(k, &d)| {
                let bw = w.pp("band_split.to_features").pp(k);
                Ok((RmsNorm::new(&bw.pp(0), d)?, bw.get(&[m.dim, d], "1.weight")?, bw.get(&[m.dim], "1.bias")?))
            })
            .collect::<Result<Vec<_>>>()?;
        let nb = band_dims.len();
        let layers = (0..m.depth)
            .map(|i| {
                let ts = layer_transformers(cfg);
                let lw = w.pp("layers").pp(i);
                let mut linear = None;
                let mut rest = vec![];
                for (pos, (j, kind, depth)) in ts.into_iter().enumerate() {
                    match kind {
                        AttnKind::Linear => linear = Some(Transformer::new(&lw.pp(j), cfg, kind, depth, 0, dtype)?),
                        // time (sequence: frames), then frequency (sequence: bands).
                        AttnKind::Softmax => {
                            let seq = if rest.is_empty() { frames } else { nb };
                            let _ = pos;
                            rest.push(Transformer::new(&lw.pp(j), cfg, kind, depth, seq, dtype)?);
                        }
                    }
                }
                let freq = rest.pop().expect("frequency transformer");
                let time = rest.pop().expect("time transformer");
                Ok((linear, time, freq))
            })
            .collect::<Result<Vec<_>>>()?;
        let final_norm = if transformers_norm_output(cfg) { None } else { Some(RmsNorm::new(&w.pp("final_norm"), m.dim)?) };
        let mask_estimators = (0..m.num_stems)
            .map(|s| {
                band_dims
                    .iter()
                    .enumerate()
                    .map(|(k, &d)| {
                        let mw = w.pp("mask_estimators").pp(s).pp("to_freqs").pp(k).pp(0);
                        let linears = mask_mlp_dims(cfg, d)
                            .windows(2)
                            .enumerate()
                            .map(|(i, io)| Ok((mw.get(&[io[1], io[0]], &format!("{}.weight", 2 * i))?, mw.get(&[io[1]], &format!("{}.bias", 2 * i))?)))
                            .collect::<Result<Vec<_>>>()?;
                        Ok(Mlp { linears })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RoformerNet { band_dims, band_split, layers, final_norm, mask_estimators, skip_connection: m.skip_connection, dim: m.dim })
    }

    /// Band split: [B, T, sum of band dims] -> [B, T, bands, dim].
    pub fn band_split(&self, x: &Tensor) -> Result<Tensor> {
        let mut off = 0;
        let mut outs = vec![];
        for ((norm, w, b), &d) in self.band_split.iter().zip(&self.band_dims) {
            outs.push(linear(&norm.forward(&x.narrow(2, off, d)?)?, w, Some(b))?);
            off += d;
        }
        Tensor::stack(&outs, 2)
    }

    /// The axial transformer layers and the final norm: [B, T, bands, dim] -> the same.
    pub fn transform(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, k, d) = x.dims4()?;
        let mut x = x.clone();
        let mut store: Vec<Tensor> = vec![];
        for (linear, time, freq) in &self.layers {
            if let Some(lt) = linear {
                x = lt.forward(&x.reshape((b, t * k, d))?)?.reshape((b, t, k, d))?;
            }
            if self.skip_connection {
                for s in &store {
                    x = (x + s)?;
                }
            }
            let y = x.permute((0, 2, 1, 3))?.contiguous()?.reshape((b * k, t, d))?;
            let y = time.forward(&y)?.reshape((b, k, t, d))?.permute((0, 2, 1, 3))?.contiguous()?;
            x = freq.forward(&y.reshape((b * t, k, d))?)?.reshape((b, t, k, d))?;
            if self.skip_connection {
                store.push(x.clone());
            }
        }
        match &self.final_norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }

    /// Mask estimators: [B, T, bands, dim] -> [B, stems, T, sum of band dims].
    pub fn masks(&self, x: &Tensor) -> Result<Tensor> {
        let per_stem = self
            .mask_estimators
            .iter()
            .map(|mlps| {
                let outs = mlps.iter().enumerate().map(|(k, mlp)| mlp.forward(&x.narrow(2, k, 1)?.squeeze(2)?)).collect::<Result<Vec<_>>>()?;
                Tensor::cat(&outs, 2)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&per_stem, 1)
    }

    /// Band features [B, T, sum of band dims] -> masks [B, stems, T, sum of band dims].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.masks(&self.transform(&self.band_split(x)?)?)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
}
