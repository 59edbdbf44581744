//! 3x3 convolution (stride 1, padding 1) by Winograd F(4x4, 3x3) in portable Rust: the fast f32
//! path of targets without the AVX2 kernel (`winograd.rs`), i.e. ARM64 (Apple Silicon without
//! Metal, ARM Linux).
//!
//! The same algorithm as the AVX2 kernel (points 0, ±1, ±2, ∞; 36 multiply-adds per 16 outputs
//! and channel pair instead of 144), written so that the compiler vectorises it for whatever SIMD
//! the target has (NEON on ARM64): the input and output transforms work on [`LANES`]
//! horizontally adjacent tiles at once, one tile per lane of `[f32; LANES]` arrays, and the 36
//! GEMMs `M_ξ[co][t] = Σ_ci U_ξ[co][ci] V_ξ[ci][t]` go to the `gemm` crate (its NEON kernels on
//! ARM64), as the implicit-GEMM kernel's do.
//!
//! Work units are (batch item, chunk of `nt` tiles, block of at most [`ROWS_MAX`] output
//! channels), cut per layer shape and thread count by [`super::split_work`]; tiles are numbered
//! row by row, each tile row padded to a multiple of [`LANES`] tiles. A unit walks the input
//! channels in blocks of [`KC`]: it transforms the block's input tiles into a per-thread `V`
//! [36][KC][nt] and runs the 36 GEMMs of the block, accumulating into `M` [36][rows][nt]; then
//! it transforms `M` into the output. The scratch is bounded whatever the channel count, and
//! every output is summed in the same order whatever the partition (bit-identical results at
//! any thread count). The weights are transformed once per call into `U` [36][cout][cin].

use super::ConvShape;
use super::pool::SendPtr;
use rayon::prelude::*;

/// Tiles per transform step (one per lane): 8 floats are two NEON or one AVX register.
pub const LANES: usize = 8;

/// Most tiles per work unit: the GEMMs' N.
const NT_MAX: usize = 96;
/// Input channels per block (the GEMMs' K; the `gemm` crate sums up to 512 in one pass).
const KC: usize = 256;
/// Most output channels per unit (the GEMMs' M).
const ROWS_MAX: usize = 256;
/// Fewest output channels per unit when output channels are split.
const MIN_ROWS: usize = 16;

/// 1-D transform of a 3-tap filter: G g, G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
/// 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1].
#[inline(always)]
fn g1d(g: [f32; 3]) -> [f32; 6] {
    let s02 = g[0] + g[2];
    [
        g[0] * 0.25,
        -(s02 + g[1]) * (1.0 / 6.0),
        -(s02 - g[1]) * (1.0 / 6.0),
        g[0] * (1.0 / 24.0) + g[1] * (1.0 / 12.0) + g[2] * (1.0 / 6.0),
        g[0] * (1.0 / 24.0) - g[1] * (1.0 / 12.0) + g[2] * (1.0 / 6.0),
        g[2],
    ]
}

/// G g G^T of one 3x3 filter `g` (row-major): the 36 values U_ξ, ξ = 6 * row + column (shared
/// with the AVX2 kernel, which stores them in its own layout).
#[inline(always)]
pub(super) fn g2d(g: &[f32]) -> [f32; 36] {
    // Columns of g transformed first: c_k = G g[:, k]; then each row a of those.
    let c0 = g1d([g[0], g[3], g[6]]);
    let c1 = g1d([g[1], g[4], g[7]]);
    let c2 = g1d([g[2], g[5], g[8]]);
    let mut u = [0f32; 36];
    for a in 0..6 {
        u[a * 6..][..6].copy_from_slice(&g1d([c0[a], c1[a], c2[a]]));
    }
    u
}

/// U = G g G^T into `U[ξ][co][ci]`.
fn transform_weights(w: &[f32], cout: usize, cin: usize, u: &mut [f32]) {
    debug_assert_eq!(u.len(), 36 * cout * cin);
    let up = SendPtr(u.as_mut_ptr());
    (0..cout).into_par_iter().for_each(|co| {
        for ci in 0..cin {
            for (xi, v) in g2d(&w[(co * cin + ci) * 9..][..9]).into_iter().enumerate() {
                // SAFETY: row co of every U_ξ is written by this task only; index within u.
                unsafe { *up.get().add((xi * cout + co) * cin + ci) = v };
            }
        }
    });
}

type Lanes = [f32; LANES];

/// B^T z lane-wise.
#[inline(always)]
fn bt(z: &[Lanes; 6]) -> [Lanes; 6] {
    let mut r = [[0f32; LANES]; 6];
    for l in 0..LANES {
        let d31 = z[3][l] - z[1][l];
        let d42 = z[4][l] - z[2][l];
        r[0][l] = 4.0 * z[0][l] - 5.0 * z[2][l] + z[4][l];
        r[1][l] = -4.0 * (z[1][l] + z[2][l]) + (z[3][l] + z[4][l]);
        r[2][l] = 4.0 * (z[1][l] - z[2][l]) + (z[4][l] - z[3][l]);
        r[3][l] = 2.0 * d31 + d42;
        r[4][l] = -2.0 * d31 + d42;
        r[5][l] = 4.0 * z[1][l] - 5.0 * z[3][l] + z[5][l];
    }
    r
}

/// A^T m lane-wise.
#[inline(always)]
fn at(m: &[Lanes; 6]) -> [Lanes; 4] {
    let mut r = [[0f32; LANES]; 4];
    for l in 0..LANES {
        let s12 = m[1][l] + m[2][l];
        let d12 = m[1][l] - m[2][l];
        let s34 = m[3][l] + m[4][l];
        let d34 = m[3][l] - m[4][l];
        r[0][l] = m[0][l] + s12 + s34;
        r[1][l] = d12 + 2.0 * d34;
        r[2][l] = s12 + 4.0 * s34;
        r[3][l] = d12 + 8.0 * d34 + m[5][l];
    }
    r
}

/// How a call is cut into work units.
#[derive(Clone, Copy, Debug)]
struct Plan {
    nt: usize,
    tiles_wp: usize,
    tiles: usize,
    nchunks: usize,
    /// Output channels per unit.
    rows: usize,
    nblocks: usize,
}

fn plan(b: usize, cout: usize, h: usize, w: usize, nthreads: usize, nt_max: usize) -> Plan {
    let tiles_wp = w.div_ceil(4).next_multiple_of(LANES);
    let tiles = h.div_ceil(4) * tiles_wp;
    // Costs as the AVX2 kernel's: GEMMs, the input transform repeated per output block, U's reads.
    let s = super::split_work(b, tiles, LANES, nt_max.max(LANES), cout, ROWS_MAX, MIN_ROWS, nthreads, |rows, nt| {
        (rows as f64 + 6.0) * (nt as f64 + 16.0)
    });
    Plan { nt: s.nt, tiles_wp, tiles, nchunks: s.nchunks, rows: s.per_block, nblocks: s.nblocks }
}

/// `out[b, co, y, x] = Σ_ci Σ_dy Σ_dx w[co, ci, dy, dx] x[b, ci, y + dy - 1, x + dx - 1]`; the
/// caller checks the lengths.
pub(crate) fn conv3x3(x: &[f32], w: &[f32], out: &mut [f32], shape: &ConvShape) {
    conv3x3_nt(x, w, out, shape, NT_MAX)
}

/// [`conv3x3`] with at most `nt_max` tiles per work unit (tests use small units).
pub fn conv3x3_nt(x: &[f32], w: &[f32], out: &mut [f32], shape: &ConvShape, nt_max: usize) {
    let ConvShape { n: b, cin, cout, h, w: wd, .. } = *shape;
    assert_eq!(out.len(), shape.output_len(), "conv3x3: output length");
    let mut u = vec![0f32; 36 * cout * cin];
    transform_weights(w, cout, cin, &mut u);
    let p = plan(b, cout, h, wd, rayon::current_num_threads(), nt_max);
    let outp = SendPtr(out.as_mut_ptr());
    let u = &u[..];
    (0..b * p.nchunks * p.nblocks).into_par_iter().for_each(|unit| {
        let blk = unit % p.nblocks;
        let chunk = (unit / p.nblocks) % p.nchunks;
        let bi = unit / (p.nblocks * p.nchunks);
        let co0 = blk * p.rows;
        let rows = p.rows.min(cout - co0);
        // V and M in this thread's scratch: at most 36 x (KC + ROWS_MAX) x NT_MAX floats (6.8 MiB).
        super::with_scratch(36 * KC.min(cin) * p.nt, 36 * rows * p.nt, |v, m| {
            let t0 = chunk * p.nt;
            let nt_used = (t0 + p.nt).min(p.tiles) - t0;
            let xb = &x[bi * cin * h * wd..][..cin * h * wd];
            for k0 in (0..cin).step_by(KC) {
                let kc = KC.min(cin - k0);
                input_transform(xb, v, &p, t0, nt_used, k0..k0 + kc, h, wd);
                for xi in 0..36 {
                    // SAFETY: U_ξ is [cout][cin] (rows co0.., columns k0.. of it), V_ξ [kc][nt]
                    // and M_ξ [rows][nt] with nt_used <= nt columns: every index stays inside u,
                    // v and m. The first block writes M, later ones add to it.
                    unsafe {
                        gemm::gemm(
                            rows,
                            nt_used,
                            kc,
                            m.as_mut_ptr().add(xi * rows * p.nt),
                            1,
                            p.nt as isize,
                            k0 > 0,
                            u.as_ptr().add((xi * cout + co0) * cin + k0),
                            1,
                            cin as isize,
                            v.as_ptr().add(xi * kc * p.nt),
                            1,
                            p.nt as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
            }
            // SAFETY: this unit writes only the output tiles t0..t0+nt_used of channels
            // co0..co0+rows of batch item bi.
            let ob = unsafe { outp.get().add((bi * cout + co0) * h * wd) };
            output_transform(m, ob, &p, t0, nt_used, rows, h, wd);
        });
    });
}

/// V[ξ][ci - k0][t - t0] for the channels `chans` = k0..k1 and tiles t0..t0+n (n a multiple of
/// LANES, groups never straddle a tile row).
#[allow(clippy::too_many_arguments)]
fn input_transform(x: &[f32], v: &mut [f32], p: &Plan, t0: usize, n: usize, chans: std::ops::Range<usize>, h: usize, w: usize) {
    let nt = p.nt;
    let (k0, kc) = (chans.start, chans.len());
    for ci in chans {
        let xc = &x[ci * h * w..][..h * w];
        for g in (0..n).step_by(LANES) {
            let t = t0 + g;
            let (ty, tx0) = (t / p.tiles_wp, t % p.tiles_wp);
            // d[i][j][l]: row 4ty - 1 + i, column 4(tx0 + l) - 1 + j, zero outside the image.
            let mut d = [[[0f32; LANES]; 6]; 6];
            for (i, di) in d.iter_mut().enumerate() {
                let y = (4 * ty + i) as isize - 1;
                if y < 0 || y >= h as isize {
                    continue;
                }
                let row = &xc[y as usize * w..][..w];
                let c0 = 4 * tx0 as isize - 1;
                if c0 >= 0 && c0 as usize + 4 * LANES + 2 <= w {
                    let r = &row[c0 as usize..][..4 * LANES + 2];
                    for (j, dij) in di.iter_mut().enumerate() {
                        for (l, v) in dij.iter_mut().enumerate() {
                            *v = r[4 * l + j];
                        }
                    }
                } else {
                    for (j, dij) in di.iter_mut().enumerate() {
                        for (l, v) in dij.iter_mut().enumerate() {
                            let c = c0 + (4 * l + j) as isize;
                            if c >= 0 && c < w as isize {
                                *v = row[c as usize];
                            }
                        }
                    }
                }
            }
            // Rows, then columns: W = B^T d B.
            let mut rt = [[[0f32; LANES]; 6]; 6];
            for i in 0..6 {
                rt[i] = bt(&d[i]);
            }
            for j in 0..6 {
                let col = bt(&[rt[0][j], rt[1][j], rt[2][j], rt[3][j], rt[4][j], rt[5][j]]);
                for (a, c) in col.iter().enumerate() {
                    let xi = a * 6 + j;
                    v[(xi * kc + ci - k0) * nt + g..][..LANES].copy_from_slice(c);
                }
            }
        }
    }
}

/// Y = A^T M A for tiles t0..t0+n of `cout` channels (M [36][cout][nt]) into the output images
/// at `ob` ([cout][h][w]).
/// SAFETY (of the caller): `ob` is writable for cout * h * w floats and no other thread writes
/// these tiles.
#[allow(clippy::too_many_arguments)]
fn output_transform(m: &[f32], ob: *mut f32, p: &Plan, t0: usize, n: usize, cout: usize, h: usize, w: usize) {
    let nt = p.nt;
    for co in 0..cout {
        for g in (0..n).step_by(LANES) {
            let t = t0 + g;
            let (ty, tx0) = (t / p.tiles_wp, t % p.tiles_wp);
            let (y0, x0) = (4 * ty, 4 * tx0);
            if x0 >= w {
                continue; // a group made only of row padding
            }
            let mut s = [[[0f32; LANES]; 6]; 4];
            for j in 0..6 {
                let mut col = [[0f32; LANES]; 6];
                for (a, c) in col.iter_mut().enumerate() {
                    c.copy_from_slice(&m[((a * 6 + j) * cout + co) * nt + g..][..LANES]);
                }
                let r = at(&col);
                for k in 0..4 {
                    s[k][j] = r[k];
                }
            }
            let ncols = (w - x0).min(4 * LANES);
            for (r, sr) in s.iter().enumerate() {
                let y = y0 + r;
                if y >= h {
                    break;
                }
                let yr = at(sr);
                let mut line = [0f32; 4 * LANES];
                for (c, yc) in yr.iter().enumerate() {
                    for l in 0..LANES {
                        line[4 * l + c] = yc[l];
                    }
                }
                // SAFETY: row y, columns x0..x0+ncols of channel co lie inside `ob`, owned by
                // this unit (see the function's contract).
                unsafe { std::ptr::copy_nonoverlapping(line.as_ptr(), ob.add((co * h + y) * w + x0), ncols) };
            }
        }
    }
}
