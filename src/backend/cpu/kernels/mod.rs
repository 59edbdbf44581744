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

thread_local! {
    /// Each thread's scratch for the convolution kernels (Winograd's V and M, the implicit
    /// GEMM's input and output bands): one buffer that every kernel borrows in turn, so a pool
    /// thread holds the largest request of any kernel, not their sum. Every kernel bounds its
    /// request (at most 10.1 MiB), so memory does not grow with the layer size, and grows with
    /// the thread count only by that bound.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's scratch cut into two slices of `a` and `b` floats (the second
/// starting on a 64-byte boundary of the buffer). Their contents are whatever an earlier call
/// left. `f` must not start pool work that could run another `with_scratch` on this thread.
pub(crate) fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    let a_pad = a.next_multiple_of(16);
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < a_pad + b {
            // Drop the old buffer before allocating: never both at once.
            *s = Vec::new();
            *s = vec![0f32; a_pad + b];
        }
        let (x, y) = s.split_at_mut(a_pad);
        f(&mut x[..a], &mut y[..b])
    })
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
    /// Winograd F(4x4, 3x3), this machine's faster kernel ([`winograd_avx2_preferred`]): the
    /// AVX2 kernel on x86-64 with AVX2 but without AVX-512, else the portable one.
    Winograd,
    /// The AVX2 + FMA Winograd kernel (x86-64 only; elsewhere the GEMM kernel runs instead).
    WinogradAvx2,
    /// Winograd F(4x4, 3x3) in portable Rust with the `gemm` crate's kernels (every target;
    /// ARM64 and AVX-512 machines run it).
    WinogradPortable,
    /// Implicit GEMM on the `gemm` crate (every target).
    Gemm,
}

/// Whether [`Conv3x3Kernel::Winograd`] runs on this machine: x86-64 with AVX2 + FMA, or ARM64
/// (NEON is part of the base ARM64 target).
pub fn winograd_available() -> bool {
    avx2() || cfg!(target_arch = "aarch64")
}

/// Whether [`Conv3x3Kernel::Winograd`] is the AVX2 kernel here: x86-64 with AVX2 + FMA but
/// without AVX-512F. Where AVX-512 is present the portable kernel, whose GEMMs run on the `gemm`
/// crate's AVX-512 micro-kernels, is faster on every Winograd layer of the full-size network:
/// 1.0 to 1.9x at 2, 8 and 16 threads on the device host's Xeon (docs/benchmarks.md), and 1.1
/// to 1.4x at 2 threads on the 2-core build machine.
pub fn winograd_avx2_preferred() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static AVX512: OnceLock<bool> = OnceLock::new();
        avx2() && !*AVX512.get_or_init(|| is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The kernel [`conv3x3_f32`] picks on this machine for an `h` x `w` image: Winograd from
/// [`winograd_min_pixels`] up, else the GEMM kernel.
pub fn conv3x3_kernel(h: usize, w: usize) -> Conv3x3Kernel {
    if winograd_available() && h * w >= winograd_min_pixels() { Conv3x3Kernel::Winograd } else { Conv3x3Kernel::Gemm }
}

/// Smallest image (pixels) that [`conv3x3_f32`] runs with Winograd. Winograd pays a weight
/// transform of 36 x cin x cout values per call, which small images do not amortise. With the
/// AVX2 kernel the GEMM kernel is faster on 32 x 128 images at 2, 8 and 16 threads
/// (the device host's Xeon, 2026-11-30: 512->512 took 100 / 33 / 30 ms by GEMM against
/// 120 / 50 / 40 ms by Winograd): 8192. The portable kernel on AVX-512 beats the GEMM kernel
/// there (82.6 / 23.4 / 16.3 ms against 101 / 34.4 / 23.3 ms on the device host's Xeon,
/// `kernel-bench --only conv`) but not on 16 x 64 (16.3 against 13.7 ms at 16 threads): 4096.
/// ARM64 keeps 8192 (not measured there).
pub fn winograd_min_pixels() -> usize {
    if cfg!(target_arch = "x86_64") && !winograd_avx2_preferred() { 4096 } else { 8192 }
}

/// This machine's Winograd kernel with at most `nt` tiles per work unit (tests and
/// `kernel-bench --wino-nt`); the GEMM kernel where there is none.
pub fn winograd_nt(x: &[f32], w: &[f32], out: &mut [f32], shape: &ConvShape, nt: usize) {
    #[cfg(target_arch = "x86_64")]
    if winograd_avx2_preferred() {
        return winograd::conv3x3_nt(x, w, out, shape, nt);
    }
    if winograd_available() {
        winograd_portable::conv3x3_nt(x, w, out, shape, nt)
    } else {
        conv3x3_f32_with(Conv3x3Kernel::Gemm, x, w, out, shape)
    }
}

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
        Conv3x3Kernel::Winograd if winograd_avx2_preferred() => winograd::conv3x3(x, w, out, shape),
        #[cfg(target_arch = "x86_64")]
        Conv3x3Kernel::WinogradAvx2 if avx2() => winograd::conv3x3(x, w, out, shape),
        Conv3x3Kernel::Winograd if winograd_available() => winograd_portable::conv3x3(x, w, out, shape),
        Conv3x3Kernel::WinogradPortable => winograd_portable::conv3x3(x, w, out, shape),
        _ => conv_gemm::conv3x3(x, w, out, shape),
    }
}
