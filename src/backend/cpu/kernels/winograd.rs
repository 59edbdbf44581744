//! 3x3 convolution (stride 1, padding 1) by Winograd F(4x4, 3x3), AVX2 + FMA.
//!
//! Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A on 6x6 input tiles d that overlap by 2, each giving a
//! 4x4 output tile; interpolation points 0, ±1, ±2, ∞ (Lavin & Gray). The 36 element-wise
//! products summed over input channels are 36 independent GEMMs
//! `M_ξ[co][t] = Σ_ci U_ξ[co][ci] V_ξ[ci][t]`, which is where the time goes: 36 multiply-adds per
//! 16 outputs and channel pair instead of 144, i.e. 4x fewer than direct convolution.
//!
//! Work is split into units = (batch item, chunk of `nt` tiles, block of at most [`ROWS_MAX`]
//! output channels), chosen per layer shape and thread count by [`plan`] so that deep layers
//! with few tiles still give every thread work. A unit walks the input channels in blocks of
//! [`KC`]: it transforms the block's input tiles into a per-thread scratch `V`
//! [36][nt/24][KC][24], runs the 36 GEMMs for that block with a 4x24 register-blocked
//! micro-kernel, accumulating into a scratch `M` [36][nt/24][rows][24], and after the last block
//! transforms `M` straight into the output. The scratch is therefore bounded (36 x (KC +
//! ROWS_MAX) x nt floats, at most 10.1 MiB) whatever the channel count, so memory does not grow
//! with cin, and grows with the thread count only by that bound. Every output is summed over the
//! input channels in the same order (passes of KP channels in turn, each from zero, then added
//! to the sum so far) whatever the partition, so results are bit-identical at any thread count
//! (and to the kernel before input-channel blocks, which summed in the same 128-channel passes).
//!
//! Tiles are numbered row by row with each tile row padded to a multiple of 8 tiles, so that 8
//! horizontally adjacent tiles (32 output columns) are always processed together, one per SIMD
//! lane. The weights are transformed once per call into `U` [36][ceil(cout/4)][cin][4] (they are
//! not cached: for the full model that would be 4x the conv weights, about 1.5 GB).

use super::ConvShape;
use super::pool::SendPtr;
use super::winograd_portable::g2d;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Micro-kernel rows (output channels).
const MR: usize = 4;
/// Micro-kernel columns (tiles): 3 AVX registers.
const NR: usize = 24;
/// Input channels per block: the unit's V holds one block. 256 rather than 128: M does not stay
/// in L2 from one block to the next, so fewer blocks save its traffic.
const KC: usize = 256;
/// Input channels per micro-kernel pass (the V micro-panel, KP x 24 floats, is 12 KiB: in L1).
/// Every output is the sum of its KP-channel passes in channel order (each pass from zero, then
/// added), whatever the unit sizes.
const KP: usize = 128;
/// Most output channels per unit: M is 36 x rows x nt floats.
const ROWS_MAX: usize = 128;
/// Fewest output-channel panels (of 4) per unit when output channels are split: below that the
/// input transform, repeated for every block, costs more than the split gains.
const MIN_PANELS: usize = 4;
/// Most tiles per work unit (the GEMMs' N). Every unit reads its rows of U (36 x cin x rows
/// floats) once per input-channel block and uses them on its nt tiles: with more than 128 output
/// channels U is large, and 192 tiles were clearly faster than 48 or 96 at 2 threads on the 2-core
/// build machine (as before input-channel blocks); with 128, smaller units keep V and M closer to
/// L2. The scratch is at most 36 x (KC + ROWS_MAX) x 192 floats (10.1 MiB) per thread, whatever
/// the channel count; deep layers with few tiles take smaller units at high thread counts.
fn tiles_per_unit(cout: usize) -> usize {
    if cout <= 128 { 48 } else { 192 }
}

/// U = G g G^T into `U[ξ][co/4][ci][co%4]`, ξ = 6 * row + column. `u` must be zeroed
/// (rows past `cout` in the last panel stay zero).
fn transform_weights(w: &[f32], cout: usize, cin: usize, u: &mut [f32]) {
    let cpan = cout.div_ceil(MR);
    debug_assert_eq!(u.len(), 36 * cpan * cin * MR);
    let up = SendPtr(u.as_mut_ptr());
    (0..cpan).into_par_iter().for_each(|p| {
        for r in 0..MR.min(cout - p * MR) {
            let co = p * MR + r;
            for ci in 0..cin {
                for (xi, v) in g2d(&w[(co * cin + ci) * 9..][..9]).into_iter().enumerate() {
                    // SAFETY: panel p is written by this task only; index within u.
                    unsafe { *up.get().add(((xi * cpan + p) * cin + ci) * MR + r) = v };
                }
            }
        }
    });
}

/// How a call is cut into work units.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub nt: usize,
    pub tiles_wp: usize,
    pub tiles_h: usize,
    pub nchunks: usize,
    /// Output channel panels (of 4) per unit.
    pub panels_per_block: usize,
    pub nblocks: usize,
}

/// Relative cost of one unit of `rows` output channels and `nt` tiles: the GEMMs (rows x nt),
/// plus the input transform, repeated by every output-channel block (about as much as 6 rows
/// of GEMM per tile), plus the unit's reads of U from beyond L2, reused over its tiles (about
/// as much as 16 tiles of GEMM per row).
fn unit_cost(rows: usize, nt: usize) -> f64 {
    (rows as f64 + 6.0) * (nt as f64 + 16.0)
}

/// Cut a call into units ([`super::split_work`]): tile chunks of at most `nt_max` tiles (a
/// multiple of 24) and blocks of at most [`ROWS_MAX`] output channels.
pub(crate) fn plan(b: usize, cout: usize, h: usize, w: usize, nthreads: usize, nt_max: usize) -> Plan {
    let tiles_wp = w.div_ceil(4).next_multiple_of(8);
    let tiles_h = h.div_ceil(4);
    let cpan = cout.div_ceil(MR);
    let s = super::split_work(b, tiles_h * tiles_wp, NR, nt_max, cpan, ROWS_MAX / MR, MIN_PANELS, nthreads, |pp, nt| {
        unit_cost(pp * MR, nt)
    });
    Plan { nt: s.nt, tiles_wp, tiles_h, nchunks: s.nchunks, panels_per_block: s.per_block, nblocks: s.nblocks }
}

/// `out[b, co, y, x] = Σ_ci Σ_dy Σ_dx w[co, ci, dy, dx] x[b, ci, y + dy - 1, x + dx - 1]`.
/// The caller checks AVX2 + FMA and the lengths.
pub(crate) fn conv3x3(x: &[f32], w: &[f32], out: &mut [f32], shape: &ConvShape) {
    conv3x3_nt(x, w, out, shape, tiles_per_unit(shape.cout))
}

/// [`conv3x3`] with at most `nt_max` tiles per work unit (tests use small units).
pub fn conv3x3_nt(x: &[f32], w: &[f32], out: &mut [f32], shape: &ConvShape, nt_max: usize) {
    let ConvShape { n: b, cin, cout, h, w: wd, .. } = *shape;
    let cpan = cout.div_ceil(MR);
    let mut u = vec![0f32; 36 * cpan * cin * MR];
    transform_weights(w, cout, cin, &mut u);
    let p = plan(b, cout, h, wd, rayon::current_num_threads(), nt_max);
    let units = b * p.nchunks * p.nblocks;
    let outp = SendPtr(out.as_mut_ptr());
    let u = &u[..];
    (0..units).into_par_iter().for_each(|unit| {
        let blk = unit % p.nblocks;
        let chunk = (unit / p.nblocks) % p.nchunks;
        let bi = unit / (p.nblocks * p.nchunks);
        let p0 = blk * p.panels_per_block;
        let p1 = (p0 + p.panels_per_block).min(cpan);
        // V and M in this thread's scratch: at most 36 x (KC + ROWS_MAX) x nt floats.
        super::with_scratch(36 * KC.min(cin) * p.nt, 36 * (p1 - p0) * MR * p.nt, |v, m| {
            // SAFETY: AVX2/FMA checked by the caller; each unit writes only its own
            // (batch item, tiles, output channels) region of `out`.
            unsafe {
                run_unit(
                    x,
                    u,
                    outp.get(),
                    &p,
                    UnitArgs { bi, chunk, p0, p1, cin, cout, h, w: wd },
                    v.as_mut_ptr(),
                    m.as_mut_ptr(),
                );
            }
        });
    });
}

struct UnitArgs {
    bi: usize,
    chunk: usize,
    p0: usize,
    p1: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
}

static ZEROS: [f32; 40] = [0.0; 40];

/// (offset, length) in floats of the runs of one input plane that tiles `t_begin..t_end` read
/// (6 rows per tile row, clipped to the image).
fn input_spans(t_begin: usize, t_end: usize, tiles_wp: usize, h: usize, w: usize) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut t = t_begin;
    while t < t_end {
        let ty = t / tiles_wp;
        let row_end = ((ty + 1) * tiles_wp).min(t_end);
        let c0 = (4 * (t % tiles_wp)).saturating_sub(1);
        let c1 = (4 * (row_end - ty * tiles_wp) + 2).min(w);
        if c0 < c1 {
            for r in (4 * ty).saturating_sub(1)..(4 * ty + 5).min(h) {
                spans.push((r * w + c0, c1 - c0));
            }
        }
        t = row_end;
    }
    spans
}

/// One work unit: per block of [`KC`] input channels, input transform and GEMMs accumulating
/// into M; then the output transform.
/// SAFETY: AVX2 + FMA; `v` and `m` hold `36 * min(KC, cin) * nt` and `36 * (p1 - p0) * 4 * nt`
/// floats; `out` is the whole output, of which this unit writes only its tiles of channels
/// `4 * p0 .. 4 * p1` of batch item `bi`.
#[target_feature(enable = "avx2,fma")]
unsafe fn run_unit(x: &[f32], u: &[f32], out: *mut f32, p: &Plan, a: UnitArgs, v: *mut f32, m: *mut f32) {
    // SAFETY: the caller passes buffers of the sizes `conv3x3_nt` allocates and a unit whose output region no
    // other unit writes; every pointer below stays inside them (see the index comments).
    unsafe {
        let UnitArgs { bi, chunk, p0, p1, cin, cout, h, w } = a;
        let nt = p.nt;
        let ntp = nt / NR;
        let cpan = cout.div_ceil(MR);
        let tiles = p.tiles_h * p.tiles_wp;
        let t_begin = chunk * nt;
        let t_end = (t_begin + nt).min(tiles);
        let hw = h * w;
        let mut local = [[0f32; 36]; 6];
        let spans = input_spans(t_begin, t_end, p.tiles_wp, h, w);
        let rows_m = (p1 - p0) * MR;
        let ntp_used = (t_end - t_begin).div_ceil(NR);

        for k0 in (0..cin).step_by(KC) {
            let kc = KC.min(cin - k0);
            // 1. Input transform of channels k0..k0+kc: V[ξ][t/24][ci - k0][t%24] for the
            //    chunk's tiles (index < 36 * nt * kc). The input rows a channel's tiles read are
            //    short runs 1 plane apart, which the hardware prefetchers follow poorly: the next
            //    channel's runs are prefetched while this one is transformed.
            let v_xi = nt * kc;
            for ci in k0..k0 + kc {
                let xc = x.as_ptr().add((bi * cin + ci) * hw);
                if ci + 1 < cin {
                    for &(start, len) in &spans {
                        let mut o = 0;
                        while o < len {
                            _mm_prefetch::<_MM_HINT_T0>(xc.add(hw + start + o) as *const i8);
                            o += 16;
                        }
                        _mm_prefetch::<_MM_HINT_T0>(xc.add(hw + start + len - 1) as *const i8);
                    }
                }
                let mut t = t_begin;
                while t < t_end {
                    let ty = t / p.tiles_wp;
                    let tx0 = t % p.tiles_wp;
                    let s = 4 * tx0 as isize - 1;
                    let col_ok = s >= 0 && s + 36 <= w as isize;
                    let mut rows = [ZEROS.as_ptr(); 6];
                    for (i, rp) in rows.iter_mut().enumerate() {
                        let r = (4 * ty + i) as isize - 1;
                        if r < 0 || r >= h as isize {
                            continue;
                        }
                        let row = xc.add(r as usize * w);
                        if col_ok {
                            *rp = row.offset(s);
                        } else {
                            let l = &mut local[i];
                            for (c, lv) in l.iter_mut().enumerate() {
                                let col = s + c as isize;
                                *lv = if col >= 0 && col < w as isize { *row.offset(col) } else { 0.0 };
                            }
                            *rp = l.as_ptr();
                        }
                    }
                    let lt = t - t_begin;
                    let dst = v.add(((lt / NR) * kc + (ci - k0)) * NR + lt % NR);
                    input_tile8(&rows, dst, v_xi);
                    t += 8;
                }
            }

            // 2. The 36 GEMMs of this block: M[ξ][t/24][row][t%24] (+)= Σ_ci U[ξ][row][ci]
            //    V[ξ][ci][t] for output panels p0..p1 (index < 36 * nt * rows). The first block writes M, later ones add to it, so
            //    each output is summed in the same order whatever the unit sizes.
            //    Within the block, passes of KP channels, so that the V micro-panel (KP x 24)
            //    stays in L1 while the panels of U stream past it, and M_ξ stays in L2 from one
            //    pass to the next.
            for xi in 0..36 {
                for s0 in (0..kc).step_by(KP) {
                    let kp = KP.min(kc - s0);
                    for tp in 0..ntp_used {
                        let vb = v.add(((xi * ntp + tp) * kc + s0) * NR);
                        // M's 4 x 24 tiles in the order this loop visits them: one sequential
                        // stream, which the hardware prefetchers follow.
                        let mt = m.add((xi * ntp + tp) * rows_m * NR);
                        for pi in p0..p1 {
                            let ub = u.as_ptr().add(((xi * cpan + pi) * cin + k0 + s0) * MR);
                            kernel_4x24(kp, ub, vb, mt.add((pi - p0) * MR * NR), NR, k0 + s0 > 0);
                        }
                    }
                }
            }
        }

        // 3. Output transform straight into `out`.
        let m_xi = rows_m * nt;
        let mut lout = [[0f32; 32]; 4];
        for co in p0 * MR..(p1 * MR).min(cout) {
            let oc = out.add((bi * cout + co) * hw);
            let row = co - p0 * MR;
            let mut t = t_begin;
            while t < t_end {
                let ty = t / p.tiles_wp;
                let tx0 = t % p.tiles_wp;
                let y0 = 4 * ty;
                let x0 = 4 * tx0;
                let direct = y0 + 4 <= h && x0 + 32 <= w;
                let mut rows: [*mut f32; 4] = [std::ptr::null_mut(); 4];
                for (r, rp) in rows.iter_mut().enumerate() {
                    *rp = if direct { oc.add((y0 + r) * w + x0) } else { lout[r].as_mut_ptr() };
                }
                let lt = t - t_begin;
                output_tile8(m.add(((lt / NR) * rows_m + row) * NR + lt % NR), m_xi, &rows);
                if !direct {
                    for (r, lr) in lout.iter().enumerate() {
                        let y = y0 + r;
                        if y >= h || x0 >= w {
                            continue;
                        }
                        let n = (w - x0).min(32);
                        std::ptr::copy_nonoverlapping(lr.as_ptr(), oc.add(y * w + x0), n);
                    }
                }
                t += 8;
            }
        }
    }
}

/// 4x4 transpose inside each 128-bit half: with a_k = [tile 2k | tile 2k+1] (4 values each),
/// returns c_j = [t0 t2 t4 t6 | t1 t3 t5 t7][j]. Its own inverse in the same lane order.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn transpose4(a0: __m256, a1: __m256, a2: __m256, a3: __m256) -> [__m256; 4] {
    let t0 = _mm256_unpacklo_ps(a0, a1);
    let t1 = _mm256_unpacklo_ps(a2, a3);
    let t2 = _mm256_unpackhi_ps(a0, a1);
    let t3 = _mm256_unpackhi_ps(a2, a3);
    [
        _mm256_shuffle_ps::<0x44>(t0, t1),
        _mm256_shuffle_ps::<0xEE>(t0, t1),
        _mm256_shuffle_ps::<0x44>(t2, t3),
        _mm256_shuffle_ps::<0xEE>(t2, t3),
    ]
}

/// B^T z for F(4x4, 3x3).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn bt(z: [__m256; 6]) -> [__m256; 6] {
    let four = _mm256_set1_ps(4.0);
    let m_four = _mm256_set1_ps(-4.0);
    let m_five = _mm256_set1_ps(-5.0);
    let two = _mm256_set1_ps(2.0);
    let d31 = _mm256_sub_ps(z[3], z[1]);
    let d42 = _mm256_sub_ps(z[4], z[2]);
    [
        _mm256_fmadd_ps(four, z[0], _mm256_fmadd_ps(m_five, z[2], z[4])),
        _mm256_fmadd_ps(m_four, _mm256_add_ps(z[1], z[2]), _mm256_add_ps(z[3], z[4])),
        _mm256_fmadd_ps(four, _mm256_sub_ps(z[1], z[2]), _mm256_sub_ps(z[4], z[3])),
        _mm256_fmadd_ps(two, d31, d42),
        _mm256_fnmadd_ps(two, d31, d42),
        _mm256_fmadd_ps(four, z[1], _mm256_fmadd_ps(m_five, z[3], z[5])),
    ]
}

/// A^T m for F(4x4, 3x3).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn at(m: [__m256; 6]) -> [__m256; 4] {
    let s12 = _mm256_add_ps(m[1], m[2]);
    let d12 = _mm256_sub_ps(m[1], m[2]);
    let s34 = _mm256_add_ps(m[3], m[4]);
    let d34 = _mm256_sub_ps(m[3], m[4]);
    [
        _mm256_add_ps(_mm256_add_ps(m[0], s12), s34),
        _mm256_fmadd_ps(_mm256_set1_ps(2.0), d34, d12),
        _mm256_fmadd_ps(_mm256_set1_ps(4.0), s34, s12),
        _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0), d34, d12), m[5]),
    ]
}

#[allow(clippy::needless_range_loop)] // ξ = 6a + j indexing reads clearer
/// Input transform of 8 adjacent tiles: `rows[i]` points at input column 4*tx0 - 1 of window
/// row i and is readable for 36 floats. Writes V_ξ (8 lanes, tile order 0 2 4 6 1 3 5 7) at
/// `dst + ξ * stride`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn input_tile8(rows: &[*const f32; 6], dst: *mut f32, stride: usize) {
    // SAFETY: `rows[i]` readable for 36 floats, `dst + ξ * stride` writable for 8 (the contract).
    unsafe {
        let mut wr = [[_mm256_setzero_ps(); 6]; 6];
        for i in 0..6 {
            let r = rows[i];
            let c = transpose4(
                _mm256_loadu_ps(r),
                _mm256_loadu_ps(r.add(8)),
                _mm256_loadu_ps(r.add(16)),
                _mm256_loadu_ps(r.add(24)),
            );
            let b0 = _mm256_loadu_ps(r.add(4));
            let b1 = _mm256_loadu_ps(r.add(12));
            let b2 = _mm256_loadu_ps(r.add(20));
            let b3 = _mm256_loadu_ps(r.add(28));
            let t0 = _mm256_unpacklo_ps(b0, b1);
            let t1 = _mm256_unpacklo_ps(b2, b3);
            let c4 = _mm256_shuffle_ps::<0x44>(t0, t1);
            let c5 = _mm256_shuffle_ps::<0xEE>(t0, t1);
            wr[i] = bt([c[0], c[1], c[2], c[3], c4, c5]);
        }
        for j in 0..6 {
            let col = bt([wr[0][j], wr[1][j], wr[2][j], wr[3][j], wr[4][j], wr[5][j]]);
            for (a, cv) in col.iter().enumerate() {
                _mm256_storeu_ps(dst.add((a * 6 + j) * stride), *cv);
            }
        }
    }
}

#[allow(clippy::needless_range_loop)]
/// Output transform of 8 adjacent tiles (lanes as [`input_tile8`] leaves them): M_ξ at
/// `src + ξ * stride`; writes 4 rows of 32 floats at `rows[r]`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn output_tile8(src: *const f32, stride: usize, rows: &[*mut f32; 4]) {
    // SAFETY: `src + ξ * stride` readable for 8 floats, `rows[r]` writable for 32 (the contract).
    unsafe {
        // Columns first (over the row index a), then rows.
        let mut s = [[_mm256_setzero_ps(); 6]; 4];
        for j in 0..6 {
            let mut col = [_mm256_setzero_ps(); 6];
            for (a, c) in col.iter_mut().enumerate() {
                *c = _mm256_loadu_ps(src.add((a * 6 + j) * stride));
            }
            let r = at(col);
            for k in 0..4 {
                s[k][j] = r[k];
            }
        }
        for r in 0..4 {
            let y = at(s[r]);
            let o = transpose4(y[0], y[1], y[2], y[3]);
            let d = rows[r];
            _mm256_storeu_ps(d, o[0]);
            _mm256_storeu_ps(d.add(8), o[1]);
            _mm256_storeu_ps(d.add(16), o[2]);
            _mm256_storeu_ps(d.add(24), o[3]);
        }
    }
}

/// C[4][24] (row stride `ldc` floats) = Σ_k U[k][0..4]^T ⊗ V[k][0..24], added to C's values
/// when `acc`.
///
/// Written in assembly so that the 12 accumulators, 3 V registers and the broadcast register
/// use exactly the 16 AVX registers: compiled from intrinsics, LLVM spilled an accumulator to
/// the stack inside the loop, which cost 2.5x.
/// SAFETY: AVX2 + FMA present; U readable for 4k floats, V for 24k, C writable for 4 rows of 24.
#[inline]
unsafe fn kernel_4x24(k: usize, u: *const f32, v: *const f32, c: *mut f32, ldc: usize, acc: bool) {
    // SAFETY: see the function's contract; only the named registers are touched.
    unsafe {
        std::arch::asm!(
            "vxorps ymm0, ymm0, ymm0",
            "vxorps ymm1, ymm1, ymm1",
            "vxorps ymm2, ymm2, ymm2",
            "vxorps ymm3, ymm3, ymm3",
            "vxorps ymm4, ymm4, ymm4",
            "vxorps ymm5, ymm5, ymm5",
            "vxorps ymm6, ymm6, ymm6",
            "vxorps ymm7, ymm7, ymm7",
            "vxorps ymm8, ymm8, ymm8",
            "vxorps ymm9, ymm9, ymm9",
            "vxorps ymm10, ymm10, ymm10",
            "vxorps ymm11, ymm11, ymm11",
            "test {k}, {k}",
            "jz 3f",
            "2:",
            "vmovups ymm12, [{v}]",
            "vmovups ymm13, [{v} + 32]",
            "vmovups ymm14, [{v} + 64]",
            "vbroadcastss ymm15, dword ptr [{u}]",
            "vfmadd231ps ymm0, ymm12, ymm15",
            "vfmadd231ps ymm1, ymm13, ymm15",
            "vfmadd231ps ymm2, ymm14, ymm15",
            "vbroadcastss ymm15, dword ptr [{u} + 4]",
            "vfmadd231ps ymm3, ymm12, ymm15",
            "vfmadd231ps ymm4, ymm13, ymm15",
            "vfmadd231ps ymm5, ymm14, ymm15",
            "vbroadcastss ymm15, dword ptr [{u} + 8]",
            "vfmadd231ps ymm6, ymm12, ymm15",
            "vfmadd231ps ymm7, ymm13, ymm15",
            "vfmadd231ps ymm8, ymm14, ymm15",
            "vbroadcastss ymm15, dword ptr [{u} + 12]",
            "vfmadd231ps ymm9, ymm12, ymm15",
            "vfmadd231ps ymm10, ymm13, ymm15",
            "vfmadd231ps ymm11, ymm14, ymm15",
            "add {u}, 16",
            "add {v}, 96",
            "dec {k}",
            "jnz 2b",
            "3:",
            "test {acc:e}, {acc:e}",
            "jz 4f",
            "vaddps ymm0, ymm0, [{c}]",
            "vaddps ymm1, ymm1, [{c} + 32]",
            "vaddps ymm2, ymm2, [{c} + 64]",
            "vaddps ymm3, ymm3, [{c} + {ldb}]",
            "vaddps ymm4, ymm4, [{c} + {ldb} + 32]",
            "vaddps ymm5, ymm5, [{c} + {ldb} + 64]",
            "vaddps ymm6, ymm6, [{c} + 2*{ldb}]",
            "vaddps ymm7, ymm7, [{c} + 2*{ldb} + 32]",
            "vaddps ymm8, ymm8, [{c} + 2*{ldb} + 64]",
            "vaddps ymm9, ymm9, [{c} + {ldb3}]",
            "vaddps ymm10, ymm10, [{c} + {ldb3} + 32]",
            "vaddps ymm11, ymm11, [{c} + {ldb3} + 64]",
            "4:",
            "vmovups [{c}], ymm0",
            "vmovups [{c} + 32], ymm1",
            "vmovups [{c} + 64], ymm2",
            "vmovups [{c} + {ldb}], ymm3",
            "vmovups [{c} + {ldb} + 32], ymm4",
            "vmovups [{c} + {ldb} + 64], ymm5",
            "vmovups [{c} + 2*{ldb}], ymm6",
            "vmovups [{c} + 2*{ldb} + 32], ymm7",
            "vmovups [{c} + 2*{ldb} + 64], ymm8",
            "vmovups [{c} + {ldb3}], ymm9",
            "vmovups [{c} + {ldb3} + 32], ymm10",
            "vmovups [{c} + {ldb3} + 64], ymm11",
            k = inout(reg) k => _,
            u = inout(reg) u => _,
            v = inout(reg) v => _,
            c = in(reg) c,
            ldb = in(reg) ldc * 4,
            ldb3 = in(reg) ldc * 12,
            acc = in(reg) acc as u32,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack),
        );
    }
}
