//! The engine as the plugin's threads pass it around: [`ChunkEngine`] (what the inference
//! thread runs: a [`Separator`], or a test engine) and [`EngineCache`] (the loaded engine kept
//! across activations, with the loader's progress).
//!
//! Both the model loader ([`super::loader`]) and the inference thread ([`super::worker`]) use
//! this module; neither uses the other. Who touches what: the main thread marks a load
//! ([`EngineCache::mark_loading`]); the loader thread fills the cache
//! ([`EngineCache::begin_load`], [`EngineCache::finish_load`]); the inference thread of the
//! current activation takes the engine out when it is ready and puts it back when it stops. The
//! audio thread never touches any of it (it locks a mutex). Whoever drops the last reference to
//! the cache drops the engine it holds, on that thread (an inference or loader thread still
//! finishing after the plugin was removed drops it on its own thread).

use crate::device::Precision;
use crate::engine::Separator;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Something that separates stereo chunks: `[2][C]` in, `[stems][2][C]` out.
pub trait ChunkEngine: Send {
    fn process(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), String>;
    fn chunk_len(&self) -> usize;
    fn num_stems(&self) -> usize;
    /// One line for the status display ("CPU, f32").
    fn describe(&self) -> String;
    /// Peak GPU memory of the engine in bytes, where there is a GPU that can tell.
    fn gpu_memory(&self) -> Option<u64> {
        None
    }
    /// What the engine had to tell the user since the last call (GPU fallbacks, reduced batch).
    fn take_warnings(&mut self) -> Vec<String> {
        vec![]
    }
    /// Start a new stream (a streaming model forgets its state; chunked models keep none).
    fn reset(&mut self) {}
}

impl ChunkEngine for Separator {
    fn process(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), String> {
        self.process_chunks(input, 1, out).map_err(|e| e.to_string())
    }
    fn chunk_len(&self) -> usize {
        Separator::chunk_len(self)
    }
    fn num_stems(&self) -> usize {
        Separator::num_stems(self)
    }
    fn describe(&self) -> String {
        format!("{}, {}", self.device_name(), self.precision().name())
    }
    fn gpu_memory(&self) -> Option<u64> {
        crate::memory::gpu_peak_memory(self.device())
    }
    fn take_warnings(&mut self) -> Vec<String> {
        self.drain_events().map(|e| e.to_string()).collect()
    }
    fn reset(&mut self) {
        Separator::reset(self)
    }
}

/// What decides whether a loaded model can serve an activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadKey {
    pub model: PathBuf,
    /// The segment chosen ([`crate::nets::Segments`]; `None`: the config's own).
    pub segment: Option<usize>,
    pub precision: Option<Precision>,
    /// CPU threads of the engine (resolved, never 0).
    pub threads: usize,
    /// The host's rate (built-ins are built at it; networks ignore it).
    pub rate: u32,
}

#[derive(Default)]
struct CacheState {
    /// A loaded engine nobody is using.
    ready: Option<(LoadKey, Box<dyn ChunkEngine>)>,
    /// The key of the engine an inference thread has taken.
    taken: Option<LoadKey>,
    /// The key being loaded now.
    loading: Option<LoadKey>,
    /// The last load that failed, with the reason.
    failed: Option<(LoadKey, String)>,
}

/// The loaded engine and the loader's progress, shared by the loader and inference threads.
#[derive(Default)]
pub struct EngineCache {
    state: Mutex<CacheState>,
    changed: Condvar,
}

/// What [`EngineCache::take`] / [`EngineCache::take_within`] found.
pub enum Taken {
    Engine(Box<dyn ChunkEngine>),
    Failed(String),
    /// Still loading, or still held by the previous activation's inference thread.
    NotYet,
    Stopped,
}

impl EngineCache {
    fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inference thread: wait until the engine for `key` is loaded (and given back by the
    /// previous activation's inference thread, if it holds it) and take it, or until its load
    /// failed, or until `stop` is set.
    pub fn take(&self, key: &LoadKey, stop: &AtomicBool) -> Taken {
        let mut st = self.lock();
        loop {
            if stop.load(Ordering::Acquire) {
                return Taken::Stopped;
            }
            match Self::take_locked(&mut st, key) {
                Taken::NotYet => {}
                found => return found,
            }
            st = self.changed.wait_timeout(st, Duration::from_millis(50)).map(|r| r.0).unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Inference thread: [`EngineCache::take`], waiting at most `wait`.
    pub fn take_within(&self, key: &LoadKey, wait: Duration) -> Taken {
        let mut st = self.lock();
        match Self::take_locked(&mut st, key) {
            Taken::NotYet => {}
            found => return found,
        }
        st = self.changed.wait_timeout(st, wait).map(|r| r.0).unwrap_or_else(|p| p.into_inner().0);
        Self::take_locked(&mut st, key)
    }

    fn take_locked(st: &mut CacheState, key: &LoadKey) -> Taken {
        if st.ready.as_ref().is_some_and(|(k, _)| k == key) {
            let (k, e) = st.ready.take().expect("checked");
            st.taken = Some(k);
            return Taken::Engine(e);
        }
        if let Some((k, why)) = &st.failed
            && k == key
            && st.loading.as_ref() != Some(key)
        {
            return Taken::Failed(why.clone());
        }
        Taken::NotYet
    }

    /// Inference thread: the engine it took for `key` failed and has been dropped; the next
    /// activation loads the model afresh.
    pub fn discard(&self, key: &LoadKey) {
        let mut st = self.lock();
        if st.taken.as_ref() == Some(key) {
            st.taken = None;
        }
        self.changed.notify_all();
    }

    /// Inference thread, when it stops: give the engine back for the next activation (unless a
    /// newer model has been loaded meanwhile; the old one is then freed here).
    pub fn put_back(&self, key: LoadKey, engine: Box<dyn ChunkEngine>) {
        let mut st = self.lock();
        if st.taken.as_ref() == Some(&key) {
            st.taken = None;
        }
        if st.ready.is_none() && st.loading.is_none() {
            st.ready = Some((key, engine));
        } else {
            drop(st);
            drop(engine);
        }
        self.changed.notify_all();
    }

    /// Main thread: the model for `key` is going to be loaded (a second request before the
    /// loader picks it up is not queued twice, and an inference thread knows to wait for it).
    pub fn mark_loading(&self, key: LoadKey) {
        let mut st = self.lock();
        st.loading = Some(key);
        st.failed = None;
    }

    /// The load of `key` cannot happen (or failed): inference threads waiting for it stop
    /// waiting and read `why`.
    pub fn fail(&self, key: LoadKey, why: String) {
        let mut st = self.lock();
        if st.loading.as_ref() == Some(&key) {
            st.loading = None;
        }
        st.failed = Some((key, why));
        self.changed.notify_all();
    }

    /// Loader thread, before loading `key`: whether it is still the model wanted (a later request
    /// supersedes it); if so the previous model is freed first, so that two are never in memory.
    pub fn begin_load(&self, key: &LoadKey) -> bool {
        let old = {
            let mut st = self.lock();
            if st.loading.as_ref() != Some(key) {
                return false;
            }
            st.ready.take()
        };
        drop(old);
        true
    }

    /// Loader thread: the load of `key` ended. A result for a superseded key is dropped. `Err`
    /// carries the reason shown to the user; `on_failure` runs when that failure is recorded
    /// (under the cache's lock, so that a newer request's status cannot come in between).
    pub fn finish_load(&self, key: LoadKey, result: Result<Box<dyn ChunkEngine>, String>, on_failure: impl FnOnce()) {
        let mut st = self.lock();
        let mut unused = None;
        if st.loading.as_ref() == Some(&key) {
            st.loading = None;
            match result {
                Ok(engine) => st.ready = Some((key, engine)),
                Err(why) => {
                    st.failed = Some((key, why));
                    on_failure();
                }
            }
        } else {
            unused = result.ok();
        }
        self.changed.notify_all();
        drop(st);
        drop(unused);
    }

    /// Wake every thread waiting in [`EngineCache::take`] or [`EngineCache::take_within`] (their
    /// stop flag was set: they notice it at once instead of at their next timeout).
    pub fn wake(&self) {
        let _st = self.lock();
        self.changed.notify_all();
    }

    /// Whether the engine for `key` is loaded, taken or being loaded (no new load needed).
    pub fn has(&self, key: &LoadKey) -> bool {
        let st = self.lock();
        st.ready.as_ref().is_some_and(|(k, _)| k == key) || st.taken.as_ref() == Some(key) || st.loading.as_ref() == Some(key)
    }
}
