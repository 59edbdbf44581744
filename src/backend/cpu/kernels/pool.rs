//! Thread pools for the CPU path, and a pointer type for disjoint parallel writes.
//!
//! The kernels never pick a pool themselves: they run on the current rayon pool. The engine
//! owns a pool built here with the thread count the user chose (`--threads`, or the plugin's
//! setting) and runs the whole network inside it, so the kernels and candle's CPU matmuls (the
//! `gemm` crate parallelises on the current rayon pool too) use at most that many threads, and
//! two engines in one process (two plugin instances) can use different counts.

use std::sync::Arc;

/// The thread count `n` stands for: `n`, or every core this process may run on when `n` is 0.
pub fn resolve_threads(n: usize) -> usize {
    match n {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    }
}

/// A rayon pool of [`resolve_threads`]`(n)` threads named `mdx-cpu-<i>`.
pub fn build(n: usize) -> Result<Arc<rayon::ThreadPool>, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(resolve_threads(n))
        .thread_name(|i| format!("mdx-cpu-{i}"))
        .build()
        .map(Arc::new)
}

/// A raw pointer that may cross threads: the kernels hand disjoint parts of one output buffer
/// to different workers.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
// SAFETY: only used to write disjoint regions from different threads (each use says why).
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}
