//! Fused normalisation + activation over NCHW f32, in two passes over memory.
//!
//! Pass 1 (statistics, [`Norm::Stats`] only): per channel, blocks of up to 1024 values are
//! reduced exactly in f32 (block mean, then the block's sum of squared deviations from it, while
//! the block is in L1) and merged in f64 with Chan's parallel update; channels are merged the
//! same way into their group. Pass 2: `y = act((x - mean) * (rstd * weight[c]) + bias[c])`.
//! Both passes run on the kernels' pool, over channels (and slices of channels).
//!
//! GELU is the exact (erf) form. `erf` is a piecewise polynomial: |x| in [0, 4) is cut into 8
//! intervals of 0.5, each with a degree-7 fit (Chebyshev, about 1e-9 in f64); evaluated in f32 the
//! maximum absolute error is 7.4e-8 (about one ulp of 1.0) against the exact function, and for
//! |x| >= 4 it returns ±1 (erf(4) = 1 - 1.5e-8). The AVX2 version picks each lane's coefficients
//! with one `vpermps` per coefficient.

use super::pool::SendPtr;
use rayon::prelude::*;

/// The activation after the norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Identity,
    /// `0.5 x (1 + erf(x / sqrt 2))`.
    Gelu,
    Relu,
    /// `x > 0 ? x : alpha (exp(x) - 1)`.
    Elu(f32),
}

/// The normalisation before the activation; per-channel slices have `c` entries.
#[derive(Clone, Copy, Debug)]
pub enum Norm<'a> {
    Identity,
    /// `x * scale[c] + shift[c]` (BatchNorm in eval mode, folded).
    Affine { scale: &'a [f32], shift: &'a [f32] },
    /// GroupNorm with `groups` groups (InstanceNorm: `groups == c`): statistics over the group's
    /// channels x H x W per batch item, biased variance, then `* weight[c] + bias[c]`.
    Stats { groups: usize, eps: f64, weight: &'a [f32], bias: &'a [f32] },
}

const MIDS: [f32; 8] = [0.0, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75];
#[allow(clippy::excessive_precision)] // the fitted values as printed
/// ERF_C[k][i]: coefficient of t^k on interval i (|x| in [i/2, i/2 + 1/2)), t = |x| - MIDS[i].
const ERF_C: [[f32; 8]; 8] = [
    [0.0, 7.111556530e-01, 9.229001403e-01, 9.866716862e-01, 9.985373020e-01, 9.998993874e-01, 9.999957085e-01, 9.999998808e-01],
    [1.128379464e+00, 6.429310441e-01, 2.365211248e-01, 5.277499557e-02, 7.142319344e-03, 5.862772814e-04, 2.918901191e-05, 8.814288321e-07],
    [-1.132159923e-05, -4.821981490e-01, -2.956517339e-01, -9.235620499e-02, -1.607015729e-02, -1.612267457e-03, -9.486933413e-05, -3.306070994e-06],
    [-3.759489954e-01, 2.678835019e-02, 1.675358862e-01, 9.015738964e-02, 2.172451280e-02, 2.760380274e-03, 1.958126231e-04, 7.970327715e-06],
    [-1.350297011e-03, 1.506756246e-01, -6.132035051e-03, -4.810552299e-02, -1.908825710e-02, -3.257710487e-03, -2.861694375e-04, -1.378540946e-05],
    [1.183055341e-01, -5.321709067e-02, -4.718655348e-02, 6.618473213e-03, 1.066005975e-02, 2.756291069e-03, 3.136288433e-04, 1.833005990e-05],
    [-1.168489642e-02, -2.658282965e-02, 2.059773728e-02, 9.049494751e-03, -2.779565286e-03, -1.667850534e-03, -2.737584582e-04, -2.069242328e-05],
    [-1.580337062e-02, 1.788549498e-02, 3.745110473e-03, -5.933099426e-03, -7.215270307e-04, 6.358153769e-04, 1.735965052e-04, 1.714471728e-05],
];

/// erf in f32, max abs error 7.4e-8.
#[inline]
pub fn erf_f32(x: f32) -> f32 {
    let ax = x.abs();
    if ax.is_nan() {
        return x;
    }
    if ax >= 4.0 {
        return 1f32.copysign(x);
    }
    let i = ((ax * 2.0) as usize).min(7);
    let t = ax - MIDS[i];
    let mut r = ERF_C[7][i];
    for k in (0..7).rev() {
        r = r * t + ERF_C[k][i];
    }
    r.copysign(x)
}

/// Exact (erf) GELU in f32.
#[inline]
pub fn gelu_f32(x: f32) -> f32 {
    let h = 0.5 * x;
    h.mul_add(erf_f32(x * std::f32::consts::FRAC_1_SQRT_2), h)
}

#[inline]
fn act1(v: f32, act: Activation) -> f32 {
    match act {
        Activation::Identity => v,
        Activation::Gelu => gelu_f32(v),
        Activation::Relu => v.max(0.0),
        Activation::Elu(alpha) => {
            if v.is_sign_positive() {
                v
            } else {
                (v.exp() - 1.0) * alpha
            }
        }
    }
}

/// `out = act(norm(x))`, x and out [b, c, hw] contiguous. Runs on the current rayon pool.
pub fn norm_act_f32(x: &[f32], out: &mut [f32], b: usize, c: usize, hw: usize, norm: &Norm, act: Activation) {
    assert_eq!(x.len(), b * c * hw, "norm_act_f32: input length");
    assert_eq!(out.len(), b * c * hw, "norm_act_f32: output length");
    let params = channel_params(x, b, c, hw, norm);
    // SAFETY: both slices hold b * c * hw values and do not overlap (one is &mut).
    unsafe { apply_all(x.as_ptr(), out.as_mut_ptr(), hw, &params, act) };
}

/// `x = act(norm(x))` in place, x [b, c, hw] contiguous. Runs on the current rayon pool.
pub fn norm_act_inplace_f32(x: &mut [f32], b: usize, c: usize, hw: usize, norm: &Norm, act: Activation) {
    assert_eq!(x.len(), b * c * hw, "norm_act_inplace_f32: length");
    let params = channel_params(x, b, c, hw, norm);
    let p = x.as_mut_ptr();
    // SAFETY: the apply pass reads each value once, then writes the same index.
    unsafe { apply_all(p, p, hw, &params, act) };
}

/// Per (batch item, channel): `y = (x - sub) * mul + add`.
fn channel_params(x: &[f32], b: usize, c: usize, hw: usize, norm: &Norm) -> Vec<(f32, f32, f32)> {
    match *norm {
        Norm::Identity => vec![(0.0, 1.0, 0.0); b * c],
        Norm::Affine { scale, shift } => {
            assert!(scale.len() == c && shift.len() == c, "norm_act: affine parameters");
            (0..b * c).map(|i| (0.0, scale[i % c], shift[i % c])).collect()
        }
        Norm::Stats { groups, eps, weight, bias } => {
            assert!(groups > 0 && c.is_multiple_of(groups), "norm_act: {c} channels in {groups} groups");
            assert!(weight.len() == c && bias.len() == c, "norm_act: affine parameters");
            let stats: Vec<Stat> = (0..b * c).into_par_iter().map(|i| channel_stats(&x[i * hw..(i + 1) * hw])).collect();
            let cg = c / groups;
            let mut params = Vec::with_capacity(b * c);
            for g in stats.chunks(cg) {
                let s = g.iter().fold(Stat::default(), |a, s| a.merge(s));
                let var = if s.n > 0.0 { s.m2 / s.n } else { 0.0 };
                let rstd = 1.0 / (var + eps).sqrt();
                for _ in 0..cg {
                    let ch = params.len() % c;
                    params.push((s.mean as f32, (rstd * weight[ch] as f64) as f32, bias[ch]));
                }
            }
            params
        }
    }
}

/// The apply pass over `params.len()` channels of `hw` values, in parallel slices.
/// SAFETY: `src` and `dst` hold `params.len() * hw` values each; they are equal or disjoint.
unsafe fn apply_all(src: *const f32, dst: *mut f32, hw: usize, params: &[(f32, f32, f32)], act: Activation) {
    // Slices of at most CHUNK values of one channel.
    const CHUNK: usize = 1 << 15;
    let per = hw.div_ceil(CHUNK).max(1);
    let srcp = SendPtr(src as *mut f32);
    let dstp = SendPtr(dst);
    (0..params.len() * per).into_par_iter().for_each(|u| {
        let (srcp, dstp) = (srcp, dstp);
        let ch = u / per;
        let lo = (u % per) * CHUNK;
        let hi = (lo + CHUNK).min(hw);
        if lo >= hi {
            return;
        }
        let (sub, mul, add) = params[ch];
        // SAFETY: units cover disjoint index ranges; see the function's contract.
        unsafe { apply(srcp.get().add(ch * hw + lo), dstp.get().add(ch * hw + lo), hi - lo, sub, mul, add, act) };
    });
}

#[derive(Clone, Copy, Default)]
struct Stat {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Stat {
    fn merge(self, o: &Stat) -> Stat {
        if o.n == 0.0 {
            return self;
        }
        if self.n == 0.0 {
            return *o;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        Stat { n, mean: self.mean + d * (o.n / n), m2: self.m2 + o.m2 + d * d * (self.n * o.n / n) }
    }
}

fn channel_stats(x: &[f32]) -> Stat {
    let mut s = Stat::default();
    for blk in x.chunks(1024) {
        let (sum, _) = sum_f32(blk, None);
        let mean = sum / blk.len() as f32;
        let (_, m2) = sum_f32(blk, Some(mean));
        s = s.merge(&Stat { n: blk.len() as f64, mean: mean as f64, m2: m2 as f64 });
    }
    s
}

/// (Σ x, Σ (x - center)²) with 8 independent accumulators (the second only when `center` is given).
fn sum_f32(x: &[f32], center: Option<f32>) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2() {
        // SAFETY: AVX2/FMA present.
        return unsafe { avx::sum_f32(x, center) };
    }
    let mut a = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    match center {
        None => {
            for ch in chunks {
                for j in 0..8 {
                    a[j] += ch[j];
                }
            }
            let s: f32 = a.iter().sum::<f32>() + rest.iter().sum::<f32>();
            (s, 0.0)
        }
        Some(m) => {
            for ch in chunks {
                for j in 0..8 {
                    let d = ch[j] - m;
                    a[j] += d * d;
                }
            }
            let s: f32 = a.iter().sum::<f32>() + rest.iter().map(|v| (v - m) * (v - m)).sum::<f32>();
            (0.0, s)
        }
    }
}

/// `dst[i] = act((src[i] - sub) * mul + add)` for i < n.
/// SAFETY: `src` and `dst` hold `n` values; they are equal or disjoint.
unsafe fn apply(src: *const f32, dst: *mut f32, n: usize, sub: f32, mul: f32, add: f32, act: Activation) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2() {
        // SAFETY: AVX2/FMA present; pointers as the caller promises.
        unsafe { avx::apply(src, dst, n, sub, mul, add, act) };
        return;
    }
    for i in 0..n {
        // SAFETY: i < n.
        unsafe { *dst.add(i) = act1((*src.add(i) - sub).mul_add(mul, add), act) };
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{ERF_C, MIDS, act1, Activation};
    use std::arch::x86_64::*;

    /// Load 8 floats. SAFETY: `p` readable for 8 floats.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn ld(p: *const f32) -> __m256 {
        unsafe { _mm256_loadu_ps(p) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        let q = _mm_add_ss(q, _mm_shuffle_ps::<1>(q, q));
        _mm_cvtss_f32(q)
    }

    /// (Σ x, 0) or (0, Σ (x - center)²), 16 lanes of partial sums.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sum_f32(x: &[f32], center: Option<f32>) -> (f32, f32) {
        let n8 = x.len() / 8 * 8;
        let p = x.as_ptr();
        let mut a0 = _mm256_setzero_ps();
        let mut a1 = _mm256_setzero_ps();
        let mut i = 0;
        match center {
            None => {
                // SAFETY: every load is at i + 8 <= n8 <= x.len().
                unsafe {
                    while i + 16 <= n8 {
                        a0 = _mm256_add_ps(a0, ld(p.add(i)));
                        a1 = _mm256_add_ps(a1, ld(p.add(i + 8)));
                        i += 16;
                    }
                    if i < n8 {
                        a0 = _mm256_add_ps(a0, ld(p.add(i)));
                    }
                }
                (hsum(_mm256_add_ps(a0, a1)) + x[n8..].iter().sum::<f32>(), 0.0)
            }
            Some(m) => {
                let mv = _mm256_set1_ps(m);
                // SAFETY: as above.
                unsafe {
                    while i + 16 <= n8 {
                        let d0 = _mm256_sub_ps(ld(p.add(i)), mv);
                        let d1 = _mm256_sub_ps(ld(p.add(i + 8)), mv);
                        a0 = _mm256_fmadd_ps(d0, d0, a0);
                        a1 = _mm256_fmadd_ps(d1, d1, a1);
                        i += 16;
                    }
                    if i < n8 {
                        let d0 = _mm256_sub_ps(ld(p.add(i)), mv);
                        a0 = _mm256_fmadd_ps(d0, d0, a0);
                    }
                }
                (0.0, hsum(_mm256_add_ps(a0, a1)) + x[n8..].iter().map(|v| (v - m) * (v - m)).sum::<f32>())
            }
        }
    }

    /// erf, lanes as [`super::erf_f32`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn erf8(z: __m256) -> __m256 {
        let sign = _mm256_set1_ps(-0.0);
        let az = _mm256_andnot_ps(sign, z);
        let idx = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_mul_ps(az, _mm256_set1_ps(2.0))), _mm256_set1_epi32(7));
        // SAFETY: each table row holds 8 floats.
        let c = |k: usize| _mm256_permutevar8x32_ps(unsafe { ld(ERF_C[k].as_ptr()) }, idx);
        let t = _mm256_sub_ps(az, _mm256_permutevar8x32_ps(unsafe { ld(MIDS.as_ptr()) }, idx));
        let mut r = c(7);
        r = _mm256_fmadd_ps(r, t, c(6));
        r = _mm256_fmadd_ps(r, t, c(5));
        r = _mm256_fmadd_ps(r, t, c(4));
        r = _mm256_fmadd_ps(r, t, c(3));
        r = _mm256_fmadd_ps(r, t, c(2));
        r = _mm256_fmadd_ps(r, t, c(1));
        r = _mm256_fmadd_ps(r, t, c(0));
        let big = _mm256_cmp_ps::<_CMP_GE_OQ>(az, _mm256_set1_ps(4.0));
        r = _mm256_blendv_ps(r, _mm256_set1_ps(1.0), big);
        // NaN stays NaN: the polynomial of NaN is NaN and the compare is false.
        _mm256_or_ps(r, _mm256_and_ps(sign, z))
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn gelu8(y: __m256) -> __m256 {
        let h = _mm256_mul_ps(y, _mm256_set1_ps(0.5));
        let e = erf8(_mm256_mul_ps(y, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2)));
        _mm256_fmadd_ps(h, e, h)
    }

    /// e^x for x <= 0 (inputs below -87 give e^-87), relative error about 1e-7: x = n ln 2 + r,
    /// |r| <= ln 2 / 2, e^r by its degree-7 Taylor polynomial, 2^n through the exponent bits.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn exp8_nonpositive(x: __m256) -> __m256 {
        let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_setzero_ps()), _mm256_set1_ps(-87.0));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 5040.0);
        for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
        _mm256_mul_ps(p, _mm256_castsi256_ps(e))
    }

    /// ELU: y > 0 ? y : alpha (e^y - 1); NaN stays NaN.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn elu8(y: __m256, alpha: f32) -> __m256 {
        let neg = _mm256_mul_ps(_mm256_set1_ps(alpha), _mm256_sub_ps(exp8_nonpositive(y), _mm256_set1_ps(1.0)));
        let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(y, _mm256_setzero_ps());
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(y, y);
        _mm256_blendv_ps(neg, y, _mm256_or_ps(pos, nan))
    }

    /// SAFETY: `s` and `d` hold `n` values; equal or disjoint.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn apply(s: *const f32, d: *mut f32, n: usize, sub: f32, mul: f32, add: f32, act: Activation) {
        let n8 = n / 8 * 8;
        let (vs, vm, va) = (_mm256_set1_ps(sub), _mm256_set1_ps(mul), _mm256_set1_ps(add));
        macro_rules! run {
            ($f:expr) => {{
                let mut i = 0;
                while i < n8 {
                    // SAFETY: i + 8 <= n.
                    let y = _mm256_fmadd_ps(_mm256_sub_ps(unsafe { ld(s.add(i)) }, vs), vm, va);
                    unsafe { _mm256_storeu_ps(d.add(i), $f(y)) };
                    i += 8;
                }
            }};
        }
        match act {
            Activation::Identity => run!(|y| y),
            Activation::Relu => run!(|y| _mm256_max_ps(y, _mm256_setzero_ps())),
            Activation::Gelu => run!(|y| gelu8(y)),
            Activation::Elu(alpha) => run!(|y| elu8(y, alpha)),
        }
        for i in n8..n {
            // SAFETY: i < n.
            unsafe { *d.add(i) = act1((*s.add(i) - sub).mul_add(mul, add), act) };
        }
    }
}
