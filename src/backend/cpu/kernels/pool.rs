//! Thread pools for the CPU path, and a pointer type for disjoint parallel writes.
//!
//! The kernels never pick a pool themselves: they run on the current rayon pool. The engine
//! owns a pool built here with the thread count the user chose (`--threads`, or the plugin's
//! setting) and runs the whole network inside it, so the kernels and candle's CPU matmuls (the
//! `gemm` crate parallelises on the current rayon pool too) use at most that many threads, and
//! two engines in one process (two plugin instances) can use different counts.

use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

/// The thread count `n` stands for: `n`, or every core this process may run on when `n` is 0.
pub fn resolve_threads(n: usize) -> usize {
    match n {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    }
}

/// A rayon pool of [`resolve_threads`]`(n)` threads named `mdx-cpu-<i>`, with denormals
/// flushed to zero on every thread ([`flush_denormals`]).
pub fn build(n: usize) -> Result<Arc<CpuPool>, rayon::ThreadPoolBuildError> {
    CpuPool::new(rayon::ThreadPoolBuilder::new().num_threads(resolve_threads(n)))
}

/// A rayon pool whose threads this crate spawns, so that freeing it ends them. Rayon's own
/// pool only tells its threads to end when it is dropped: they run on for a moment, in the
/// plugin's library, which the host may unload as soon as the last plugin instance is gone.
/// Dropping the last reference to a `CpuPool` ends its threads and joins them, waiting at most
/// [`crate::detach::GRACE`] (idle threads end within microseconds); a thread still running then
/// is left to end on its own with the library pinned ([`crate::detach::join_or_detach`]).
pub struct CpuPool {
    /// `None` only while it is dropped.
    pool: Option<rayon::ThreadPool>,
    threads: Vec<JoinHandle<()>>,
}

impl CpuPool {
    /// `builder`'s pool, its threads named `mdx-cpu-<i>`, denormals flushed on each.
    fn new(builder: rayon::ThreadPoolBuilder) -> Result<Arc<Self>, rayon::ThreadPoolBuildError> {
        let mut threads = Vec::new();
        let pool = builder
            .thread_name(|i| format!("mdx-cpu-{i}"))
            .start_handler(|_| flush_denormals())
            .spawn_handler(|thread| {
                let mut b = std::thread::Builder::new();
                if let Some(name) = thread.name() {
                    b = b.name(name.to_owned());
                }
                if let Some(size) = thread.stack_size() {
                    b = b.stack_size(size);
                }
                threads.push(b.spawn(move || thread.run())?);
                Ok(())
            })
            .build()?;
        Ok(Arc::new(CpuPool { pool: Some(pool), threads }))
    }
}

impl std::ops::Deref for CpuPool {
    type Target = rayon::ThreadPool;
    fn deref(&self) -> &rayon::ThreadPool {
        self.pool.as_ref().expect("the pool lives until it is dropped")
    }
}

impl Drop for CpuPool {
    fn drop(&mut self) {
        // Rayon tells the threads to end once their jobs (none: no engine uses the pool) are done.
        drop(self.pool.take());
        let deadline = Instant::now() + crate::detach::GRACE;
        let me = std::thread::current().id();
        for t in self.threads.drain(..).filter(|t| t.thread().id() != me) {
            crate::detach::join_or_detach(t, deadline, "a CPU pool thread");
        }
    }
}

/// The process's pool of [`resolve_threads`]`(n)` threads: every engine that asks for the same
/// count shares one pool (built on first use, freed with its last user), so several plugin
/// instances share one CPU budget instead of each taking that many cores. Their chunks then
/// take turns on the same threads.
pub fn shared(n: usize) -> Result<Arc<CpuPool>, rayon::ThreadPoolBuildError> {
    static POOLS: Mutex<Vec<(usize, Weak<CpuPool>)>> = Mutex::new(Vec::new());
    let n = resolve_threads(n);
    let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    pools.retain(|(_, w)| w.strong_count() > 0);
    if let Some(p) = pools.iter().find(|(k, _)| *k == n).and_then(|(_, w)| w.upgrade()) {
        return Ok(p);
    }
    let p = build(n)?;
    pools.push((n, Arc::downgrade(&p)));
    Ok(p)
}

/// Flush denormal (subnormal) floats to zero on the calling thread, inputs and results alike
/// (x86-64: MXCSR's FTZ and DAZ bits; AArch64: FPCR's FZ bit). Denormals arise in the decaying
/// tails of audio and in near-silent activations, and cost up to a hundred times a normal
/// operation on many CPUs; flushing them changes results by less than 1e-37. For threads this
/// crate owns (workers, pools); the host's audio thread uses [`DenormalsFlushed`].
pub fn flush_denormals() {
    let _ = set_flush_bits();
}

/// Sets the flush bits and returns the control register's previous value.
fn set_flush_bits() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads and writes the calling thread's SSE control register only.
    unsafe {
        let mut csr: u32 = 0;
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        let old = csr;
        csr |= (1 << 15) | (1 << 6);
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
        u64::from(old)
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads and writes the calling thread's floating-point control register only.
    unsafe {
        let fpcr: u64;
        std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack));
        std::arch::asm!("msr fpcr, {}", in(reg) fpcr | (1 << 24), options(nomem, nostack));
        fpcr
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    0
}

fn restore_flush_bits(old: u64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: restores the value read from the same register by `set_flush_bits`.
    unsafe {
        let csr = old as u32;
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: restores the value read from the same register by `set_flush_bits`.
    unsafe {
        std::arch::asm!("msr fpcr, {}", in(reg) old, options(nomem, nostack));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = old;
}

/// Denormals flushed on the calling thread while this lives; the previous setting comes back on
/// drop. The plugin holds one for each `process` call: the thread belongs to the host.
pub struct DenormalsFlushed(u64);

impl DenormalsFlushed {
    pub fn new() -> Self {
        Self(set_flush_bits())
    }
}

impl Default for DenormalsFlushed {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DenormalsFlushed {
    fn drop(&mut self) {
        restore_flush_bits(self.0);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_asking_for_the_same_thread_count_share_one_pool() {
        let a = shared(3).unwrap();
        let b = shared(3).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.current_num_threads(), 3);
        let c = shared(2).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }

    thread_local! {
        /// Set on a pool thread: counts it as alive until the thread has ended.
        static ALIVE: std::cell::RefCell<Option<Alive>> = const { std::cell::RefCell::new(None) };
    }

    struct Alive(Arc<std::sync::atomic::AtomicUsize>);

    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn freeing_the_last_reference_to_a_pool_ends_its_threads_before_it_returns() {
        // After the last engine is freed, no thread may still run code of the plugin's library
        // (the host may unload it): every thread has ended, its thread-locals dropped.
        use std::sync::atomic::Ordering::SeqCst;
        let alive = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let pool = build(4).unwrap();
        let other = pool.clone();
        pool.broadcast(|_| {
            alive.fetch_add(1, SeqCst);
            ALIVE.with(|a| *a.borrow_mut() = Some(Alive(alive.clone())));
        });
        assert_eq!(alive.load(SeqCst), 4);
        drop(pool);
        assert_eq!(alive.load(SeqCst), 4, "a pool still referenced keeps its threads");
        drop(other);
        assert_eq!(alive.load(SeqCst), 0, "pool threads outlived the pool");
    }

    #[test]
    fn a_pool_thread_that_does_not_end_is_left_running_after_the_grace() {
        // The threads take 400 ms to end: freeing the pool waits no longer than the grace
        // (the library is pinned meanwhile; the test binary is the executable, never unloaded).
        let pool = CpuPool::new(rayon::ThreadPoolBuilder::new().num_threads(2).exit_handler(|_| {
            std::thread::sleep(std::time::Duration::from_millis(400));
        }))
        .unwrap();
        let start = Instant::now();
        drop(pool);
        let took = start.elapsed();
        assert!(took < crate::detach::GRACE + std::time::Duration::from_millis(30), "freeing the pool took {took:?}");
        assert!(crate::detach::pin_library());
    }

    #[test]
    fn pool_threads_flush_denormals() {
        let tiny = f32::MIN_POSITIVE;
        let pool = build(1).unwrap();
        let flushed = pool.install(|| std::hint::black_box(tiny) * std::hint::black_box(0.25));
        assert_eq!(flushed, 0.0);
        // A thread of our own keeps the IEEE default.
        let kept = std::thread::spawn(move || std::hint::black_box(tiny) * std::hint::black_box(0.25)).join().unwrap();
        assert!(kept > 0.0);
    }

    #[test]
    fn the_scoped_guard_flushes_and_then_restores_the_threads_setting() {
        std::thread::spawn(|| {
            let tiny = f32::MIN_POSITIVE;
            let quarter = || std::hint::black_box(tiny) * std::hint::black_box(0.25);
            {
                let _guard = DenormalsFlushed::new();
                assert_eq!(quarter(), 0.0);
            }
            assert!(quarter() > 0.0);
        })
        .join()
        .unwrap();
    }
}
