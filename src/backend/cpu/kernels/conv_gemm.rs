//! Portable 3x3 convolution (stride 1, padding 1): implicit GEMM with the `gemm` crate.
//!
//! Output rows are cut into bands; for each band the input rows it needs are copied, zero-padded
//! by one column each side, so that for tap (dy, dx) the shifted operand is a strided view of
//! that copy (row stride W + 2): each tap is one GEMM [Cout x Cin] x [Cin x (rows * (W + 2))]
//! accumulating into a padded-width output band that is then cropped. No im2col.

use super::ConvShape;
use super::pool::SendPtr;
use rayon::prelude::*;

/// Target GEMM width (output pixels, padded width) per band.
const BAND_COLS: usize = 6144;
/// Most floats of per-thread scratch ([`super::with_scratch`]: a band's input rows and its
/// output, 6 MiB): bands of deep layers are cut shorter, so that the scratch stays bounded.
const SCRATCH_FLOATS: usize = 3 << 19;

pub(crate) fn conv3x3(x: &[f32], w: &[f32], out: &mut [f32], shape: &ConvShape) {
    let ConvShape { n: b, cin, cout, h, w: wd, .. } = *shape;
    // Per-tap weights [9][cout][cin], on the pool: on the deep layers (768 channels: 5.3 M
    // values) one thread took as long as the convolution's GEMMs at 16 threads.
    let mut wt = vec![0f32; 9 * cout * cin];
    let wtp = SendPtr(wt.as_mut_ptr());
    (0..cout).into_par_iter().for_each(|co| {
        for tap in 0..9 {
            // SAFETY: row co of every tap's matrix is written by this task only; index within wt.
            let row = unsafe { std::slice::from_raw_parts_mut(wtp.get().add((tap * cout + co) * cin), cin) };
            for (ci, v) in row.iter_mut().enumerate() {
                *v = w[(co * cin + ci) * 9 + tap];
            }
        }
    });
    let wp = wd + 2;
    let nthreads = rayon::current_num_threads();
    let mut hb = (BAND_COLS / wp).min(SCRATCH_FLOATS / ((cin + cout) * wp)).clamp(1, h);
    // Enough bands for every thread.
    while b * h.div_ceil(hb) < 2 * nthreads && hb > 1 {
        hb = hb.div_ceil(2);
    }
    let nbands = h.div_ceil(hb);
    let outp = SendPtr(out.as_mut_ptr());
    let wt = &wt[..];
    (0..b * nbands).into_par_iter().for_each(|unit| {
        let bi = unit / nbands;
        let y0 = (unit % nbands) * hb;
        let rows = hb.min(h - y0);
        let plane = (rows + 2) * wp + 2;
        let n = rows * wp;
        super::with_scratch(cin * plane, cout * n, |xb, ob| {
            for ci in 0..cin {
                let dst = &mut xb[ci * plane..(ci + 1) * plane];
                dst.fill(0.0);
                for r in 0..rows + 2 {
                    let y = (y0 + r) as isize - 1;
                    if y < 0 || y >= h as isize {
                        continue;
                    }
                    let src = &x[((bi * cin + ci) * h + y as usize) * wd..][..wd];
                    dst[r * wp + 1..r * wp + 1 + wd].copy_from_slice(src);
                }
            }
            for tap in 0..9 {
                let (dy, dx) = (tap / 3, tap % 3);
                // SAFETY: every operand index stays inside xb / ob / wt: the largest rhs index is
                // (cin - 1) * plane + 2 * wp + 2 + n - 1 < cin * plane.
                unsafe {
                    gemm::gemm(
                        cout,
                        n,
                        cin,
                        ob.as_mut_ptr(),
                        1,
                        n as isize,
                        tap > 0,
                        wt.as_ptr().add(tap * cout * cin),
                        1,
                        cin as isize,
                        xb.as_ptr().add(dy * wp + dx),
                        1,
                        plane as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
            for co in 0..cout {
                for r in 0..rows {
                    let src = &ob[co * n + r * wp..][..wd];
                    // SAFETY: this unit owns rows y0..y0+rows of batch item bi.
                    unsafe {
                        let d = outp.get().add(((bi * cout + co) * h + y0 + r) * wd);
                        std::ptr::copy_nonoverlapping(src.as_ptr(), d, wd);
                    }
                }
            }
        });
    });
}
