//! f32 matrix products on the current rayon pool, with the `gemm` crate's kernels.
//!
//! The network's products are skinny: the TDF linears ([T x F, 1024] x [1024, 256] and
//! [T x F, 256] x [256, 1024]), the 1x1 convolutions and the Upscale / Downscale matmuls
//! ([Cout, 128 or 256] x [128 or 256, T x F]). With the `gemm` crate's own parallel split they
//! run at a fraction of the 3x3 convolutions' rate at 16 threads (measured on the device host's
//! Xeon, 2026-11-30). [`MatmulSplit::Blocks`] cuts a large product here
//! instead: into blocks of output rows (or of output columns, when the output is wider than
//! tall) of about [`BLOCK_FLOP`] each, one single-threaded `gemm` call per block, spread over the
//! pool. The blocks depend on the shape only, never on the thread count, so the results are the
//! same at any thread count. [`MatmulSplit::DEFAULT`] is the blocks: on the device host's Xeon
//! at 16 threads they run the network's products 1.1 to 1.35x faster than the crate's split
//! (`kernel-bench --only mm`), and at 2 threads on the 2-core build machine within 5% of it.

use super::pool::SendPtr;
use rayon::prelude::*;

/// How [`matmul_f32`] spreads a product over the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulSplit {
    /// Blocks of output rows or columns, one single-threaded `gemm` call each.
    Blocks,
    /// One `gemm` call per product with the crate's own parallel split (what candle does).
    Gemm,
}

impl MatmulSplit {
    /// What the CPU backend's matmuls use.
    pub const DEFAULT: MatmulSplit = MatmulSplit::Blocks;
}

/// Multiply-adds x 2 per block: about 1 ms on one core, enough to amortise each call's packing of
/// the operand it shares with the other blocks.
const BLOCK_FLOP: usize = 1 << 27;
/// Fewest rows (or columns) per block.
const MIN_BLOCK: usize = 128;

/// How an `m` x `n` (inner dimension `k`) product is cut: `Some((by_rows, size))`, blocks of
/// `size` rows (or columns), or `None` for one call.
fn blocks(m: usize, n: usize, k: usize) -> Option<(bool, usize)> {
    let (dim, by_rows) = if m >= n { (m, true) } else { (n, false) };
    let nb = (2 * m * n * k / BLOCK_FLOP).min(dim / MIN_BLOCK);
    (nb >= 2).then(|| (by_rows, dim.div_ceil(nb).next_multiple_of(16)))
}

/// Where one operand's matrices are: matrix `i` at `offset + i * step` (`step` 0 for one matrix
/// shared by every product), element (r, c) at `r * rs + c * cs` from there.
#[derive(Clone, Copy, Debug)]
pub struct Strided {
    pub offset: usize,
    pub step: usize,
    pub rs: usize,
    pub cs: usize,
}

impl Strided {
    /// A contiguous row-major matrix (or `batch` of them, `step` apart).
    pub fn row_major(cols: usize, step: usize) -> Self {
        Strided { offset: 0, step, rs: cols, cs: 1 }
    }

    /// One past the largest index read for `batch` matrices of `rows` x `cols`.
    fn extent(&self, batch: usize, rows: usize, cols: usize) -> usize {
        if batch == 0 || rows == 0 || cols == 0 {
            return self.offset;
        }
        self.offset + (batch - 1) * self.step + (rows - 1) * self.rs + (cols - 1) * self.cs + 1
    }
}

/// `dst[i] = a[i] @ b[i]` (`dst[i] += ...` when `acc`) for `batch` products [m, k] x [k, n];
/// `dst` is contiguous [batch, m, n]. Runs on the current rayon pool.
#[allow(clippy::too_many_arguments)]
pub fn matmul_f32(
    dst: &mut [f32],
    acc: bool,
    a: &[f32],
    sa: Strided,
    b: &[f32],
    sb: Strided,
    (batch, m, k, n): (usize, usize, usize, usize),
    split: MatmulSplit,
) {
    assert!(
        sa.extent(batch, m, k) <= a.len() && sb.extent(batch, k, n) <= b.len() && dst.len() == batch * m * n,
        "matmul_f32: operand bounds"
    );
    if dst.is_empty() {
        return;
    }
    let threads = rayon::current_num_threads();
    // The same blocks at any thread count (one thread runs them in turn).
    let cut = if split == MatmulSplit::Blocks { blocks(m, n, k) } else { None };
    let dp = SendPtr(dst.as_mut_ptr());
    // SAFETY (of every call below): the assert bounds every index gemm reads, and each call
    // writes only its own rows / columns of its own product in `dst`.
    let call = |i: usize, r0: usize, rows: usize, c0: usize, cols: usize, par: gemm::Parallelism| unsafe {
        gemm::gemm(
            rows,
            cols,
            k,
            dp.get().add(i * m * n + r0 * n + c0),
            1,
            n as isize,
            acc,
            a.as_ptr().add(sa.offset + i * sa.step + r0 * sa.rs),
            sa.cs as isize,
            sa.rs as isize,
            b.as_ptr().add(sb.offset + i * sb.step + c0 * sb.cs),
            sb.cs as isize,
            sb.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    };
    match cut {
        None => {
            let par = if threads > 1 { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
            for i in 0..batch {
                call(i, 0, m, 0, n, par);
            }
        }
        Some((by_rows, size)) => {
            let dim = if by_rows { m } else { n };
            let nb = dim.div_ceil(size);
            (0..batch * nb).into_par_iter().for_each(|j| {
                let (i, s0) = (j / nb, (j % nb) * size);
                let len = size.min(dim - s0);
                if by_rows {
                    call(i, s0, len, 0, n, gemm::Parallelism::None);
                } else {
                    call(i, 0, m, s0, len, gemm::Parallelism::None);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::{pool, rand_vec};

    /// Products large enough to be cut (over rows, then over columns, a broadcast left operand
    /// and a ragged last block): the blocks give the same values at 1 and 3 threads, and agree
    /// with one call to `gemm` to rounding.
    #[test]
    fn blocks_are_the_same_at_any_thread_count_and_agree_with_one_gemm_call() {
        for (batch, m, k, n, a_step) in [(1, 4100, 260, 130, 0), (2, 130, 260, 4100, 0), (2, 2500, 300, 200, 2500 * 300)] {
            assert!(blocks(m, n, k).is_some(), "{:?} is cut", (m, k, n));
            let a = rand_vec(m * k * if a_step == 0 { 1 } else { batch }, 1);
            let b = rand_vec(batch * k * n, 2);
            let acc0 = rand_vec(batch * m * n, 3);
            let run = |threads: usize, split: MatmulSplit, acc: bool| {
                let mut dst = if acc { acc0.clone() } else { vec![f32::NAN; batch * m * n] };
                pool::build(threads).unwrap().install(|| {
                    matmul_f32(&mut dst, acc, &a, Strided::row_major(k, a_step), &b, Strided::row_major(n, k * n), (batch, m, k, n), split)
                });
                dst
            };
            for acc in [false, true] {
                let one = run(1, MatmulSplit::Blocks, acc);
                assert!(one == run(3, MatmulSplit::Blocks, acc), "{:?}: 1 and 3 threads differ", (m, k, n));
                let whole = run(2, MatmulSplit::Gemm, acc);
                let worst = one.iter().zip(&whole).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(worst <= 1e-4, "{:?} acc {acc}: blocks and one gemm call differ by {worst}", (m, k, n));
            }
        }
    }

    #[test]
    fn small_products_are_one_call() {
        assert_eq!(blocks(128, 256, 1024), None);
        assert_eq!(blocks(100, 100_000, 8), None);
        // The network's TDF linear at scale 0: blocks of rows, at least 16 of them.
        let (by_rows, size) = blocks(128 * 256, 256, 1024).unwrap();
        assert!(by_rows && (128 * 256) / size >= 16);
        let (by_rows, size) = blocks(128, 256 * 1024, 128).unwrap();
        assert!(!by_rows && (256 * 1024) / size >= 16);
    }
}
