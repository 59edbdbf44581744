//! CPU kernels for f32: what candle's CPU backend does slowly.
//!
//! - [`conv3x3_f32`]: 3x3 convolution, stride 1, padding 1, by Winograd F(4x4, 3x3) (4x fewer
//!   multiply-adds than direct convolution): on x86-64 with AVX2 + FMA the hand-written kernel
//!   (`winograd.rs`), on ARM64 the portable one (`winograd_portable.rs`: transforms the compiler
//!   vectorises for NEON, GEMMs on the `gemm` crate); small images and other targets take an
//!   implicit GEMM on the `gemm` crate (`conv_gemm.rs`, no im2col buffer).
//! - [`norm::norm_act_f32`]: normalisation (instance / group / folded batch norm) fused with the
//!   activation (exact-erf GELU, ReLU, ELU): two passes over memory, statistics in f64.
//! - [`matmul::matmul_f32`]: matrix products on the `gemm` crate's kernels, with the crate's
//!   own parallel split or (`MatmulSplit::Blocks`, compared by `kernel-bench --only mm`) cut
//!   into blocks of rows or columns over the pool by our own code.
//! - [`elementwise`]: in-place sums and products; [`layout`]: permutations and concatenation.
//!
//! The candle glue that the CPU backend ([`super`]) calls is in [`super::ops`].
//!
//! Threads: every kernel runs on the *current* rayon pool (`rayon::current_num_threads`), like
//! candle's CPU matmul. [`pool::build`] makes a pool of a chosen size and the engine runs the
//! network inside it (`ThreadPool::install`), which limits kernels and candle's matmuls alike.

pub mod conv_gemm;
pub mod elementwise;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod pool;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
pub mod winograd;
pub mod winograd_portable;

pub use crate::backend::ConvShape;

/// Deterministic pseudo-random values in [-1, 1) (xorshift), for the kernels' tests and
/// benchmarks (`kernel-bench`).
#[doc(hidden)]
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A zeroed buffer of `n` floats for a kernel's output. Large buffers come straight from the
/// OS untouched (calloc of a fresh mapping); on Linux they are marked for transparent huge
/// pages before the kernel's first write, so that filling 128 MiB takes 64 page faults
/// instead of 32768 (the network allocates a few hundred such buffers per chunk).
pub fn alloc_output(n: usize) -> Vec<f32> {
    let v = vec![0f32; n];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = n * std::mem::size_of::<f32>();
        if bytes >= 2 * HUGE {
            let start = (v.as_ptr() as usize).next_multiple_of(HUGE);
            let end = (v.as_ptr() as usize + bytes) / HUGE * HUGE;
            if end > start {
                // SAFETY: advice only, on whole pages inside this allocation; failure is harmless.
                unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
            }
        }
    }
    v
}

/// How a convolution is cut into work units of (batch item, chunk of `nt` tiles, block of
/// `per_block` output-channel groups); see [`split_work`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Split {
    pub nt: usize,
    pub nchunks: usize,
    pub per_block: usize,
    pub nblocks: usize,
}

/// Cut `b` images of `tiles` tiles and `groups` groups of output channels into units for
/// `nthreads` threads: tile chunks of equal size (a multiple of `step`, at most `nt_max`) and
/// blocks of at most `max_per_block` groups (at least `min_per_block` unless that is all of
/// them), picked to minimise the time of the busiest thread, estimated as (rounds of units) x
/// `cost(groups per block, tiles per chunk)`. With plenty of tiles that is the largest units; with
/// few (the deep layers) it splits tiles and output channels until every thread has work.
/// Only the speed depends on the split: the Winograd kernels sum every output in the same order
/// whatever it is.
#[allow(clippy::too_many_arguments)]
pub(crate) fn split_work(
    b: usize,
    tiles: usize,
    step: usize,
    nt_max: usize,
    groups: usize,
    max_per_block: usize,
    min_per_block: usize,
    nthreads: usize,
    cost: impl Fn(usize, usize) -> f64,
) -> Split {
    let threads = nthreads.max(1);
    let tiles = tiles.max(1);
    let groups = groups.max(1);
    let nt_cap = tiles.next_multiple_of(step).min(nt_max.max(1).next_multiple_of(step));
    let nb_min = groups.div_ceil(max_per_block.max(1));
    let nb_max = groups.div_ceil(min_per_block.max(1)).max(nb_min);
    let mut best: Option<(f64, Split)> = None;
    for want in tiles.div_ceil(nt_cap)..=tiles.div_ceil(step) {
        // Chunks of equal size; a count that rounds to fewer chunks was seen already.
        let nt = tiles.div_ceil(want).next_multiple_of(step);
        let nchunks = tiles.div_ceil(nt);
        if nchunks != want {
            continue;
        }
        for nb in nb_min..=nb_max {
            let per_block = groups.div_ceil(nb);
            let nblocks = groups.div_ceil(per_block);
            if nblocks != nb {
                continue;
            }
            let rounds = (b * nchunks * nblocks).div_ceil(threads);
            let c = rounds as f64 * cost(per_block, nt);
            // Ties go to the fewer, larger units (seen first).
            if best.is_none_or(|(bc, _)| c < bc * (1.0 - 1e-9)) {
                best = Some((c, Split { nt, nchunks, per_block, nblocks }));
            }
        }
        // Eight units a thread with the largest output blocks: smaller chunks could at best
        // round the last units off a little better, at more cost per tile.
        if b * nchunks * nb_min >= 8 * threads {
            break;
        }
    }
    best.map_or(Split { nt: nt_cap, nchunks: tiles.div_ceil(nt_cap), per_block: groups, nblocks: 1 }, |(_, s)| s)
}

/// Whether the AVX2 + FMA code paths may run (checked once).
#[inline]
pub(crate) fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which 3x3 convolution kernel [`conv3x3_f32`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conv3x3Kernel {
    /// Winograd F(4x4, 3x3): AVX2 + FMA on x86-64, the portable kernel on ARM64.
    Winograd,
    /// Winograd F(4x4, 3x3) in portable Rust (every target; the one ARM64 runs).
    WinogradPortable,
    /// Implicit GEMM on the `gemm` crate (every target).
    Gemm,
}

/// Whether [`Conv3x3Kernel::Winograd`] runs on this machine: x86-64 with AVX2 + FMA, or ARM64
/// (NEON is part of the base ARM64 target).
pub fn winograd_available() -> bool {
    avx2() || cfg!(target_arch = "aarch64")
}

/// The kernel [`conv3x3_f32`] picks on this machine for an `h` x `w` image. Winograd pays a
/// weight transform of 36 x cin x cout values per call, which small images do not amortise:
/// on the full-size network's deep layers (32 x 128 and smaller) the GEMM kernel is faster at
/// 2, 8 and 16 threads (`../shared/docs/cpu-scaling-notes.md`: 512->512 on 32 x 128 took 100 /
/// 33 / 30 ms by GEMM against 120 / 50 / 40 ms by Winograd).
pub fn conv3x3_kernel(h: usize, w: usize) -> Conv3x3Kernel {
    if winograd_available() && h * w >= WINOGRAD_MIN_PIXELS { Conv3x3Kernel::Winograd } else { Conv3x3Kernel::Gemm }
}

/// This machine's Winograd kernel with at most `nt` tiles per work unit (tests and
/// `kernel-bench --wino-nt`); the GEMM kernel where there is none.
pub fn winograd_nt(x: &[f32], w: &[f32], out: &mut [f32], shape: &ConvShape, nt: usize) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        return winograd::conv3x3_nt(x, w, out, shape, nt);
    }
    if cfg!(target_arch = "aarch64") {
        winograd_portable::conv3x3_nt(x, w, out, shape, nt)
    } else {
        conv3x3_f32_with(Conv3x3Kernel::Gemm, x, w, out, shape)
    }
}

/// Smallest image (pixels) that [`conv3x3_f32`] runs with Winograd.
pub const WINOGRAD_MIN_PIXELS: usize = 8192;

/// `out[b, co, y, x] = Σ_ci Σ_dy Σ_dx w[co, ci, dy, dx] · x[b, ci, y + dy - 1, x + dx - 1]`
/// (zero padding), all contiguous NCHW / OIHW f32; `shape` is 3x3, padding 1, stride 1. Runs on
/// the current rayon pool.
pub fn conv3x3_f32(x: &[f32], w: &[f32], out: &mut [f32], shape: &ConvShape) {
    conv3x3_f32_with(conv3x3_kernel(shape.h, shape.w), x, w, out, shape)
}

/// [`conv3x3_f32`] with a chosen kernel (tests and benchmarks compare them). Asking for
/// [`Conv3x3Kernel::Winograd`] where it cannot run falls back to the GEMM kernel.
pub fn conv3x3_f32_with(kernel: Conv3x3Kernel, x: &[f32], w: &[f32], out: &mut [f32], shape: &ConvShape) {
    assert!(shape.kh == 3 && shape.kw == 3 && shape.pad == 1 && shape.stride == 1, "conv3x3: {shape:?}");
    assert_eq!(x.len(), shape.input_len(), "conv3x3: input length");
    assert_eq!(w.len(), shape.filter_len(), "conv3x3: weight length");
    assert_eq!(out.len(), shape.output_len(), "conv3x3: output length");
    if out.is_empty() {
        return;
    }
    if shape.cin == 0 {
        out.fill(0.0);
        return;
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Conv3x3Kernel::Winograd if avx2() => winograd::conv3x3(x, w, out, shape),
        Conv3x3Kernel::Winograd if cfg!(target_arch = "aarch64") => winograd_portable::conv3x3(x, w, out, shape),
        Conv3x3Kernel::WinogradPortable => winograd_portable::conv3x3(x, w, out, shape),
        _ => conv_gemm::conv3x3(x, w, out, shape),
    }
}
