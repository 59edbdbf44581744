//! The model loader: one thread per plugin instance, started on the first model request and
//! joined when the plugin is dropped. It loads models off the audio and main threads and keeps
//! the last one, so that re-activations (hosts restart plugins often, e.g. right after the first
//! activation to read the latency) neither reload the model nor wait for a load in progress.
//!
//! Who touches what: the main thread sends requests ([`Loader::request`]); the inference thread
//! of the current activation takes the engine out of the [`EngineCache`] when it is ready and
//! puts it back when it stops. The audio thread never touches any of it (it locks a mutex).
//!
//! Test hook: `MDX_STEMS_TEST_SLOW_LOAD_MS=<ms>` makes every load take that much longer.

use super::shared::{Problem, Shared};
use super::worker::ChunkEngine;
use crate::device::Precision;
use crate::engine::{LoadOptions, Separator};
use crossbeam_channel::{Sender, unbounded};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Test hook: extra milliseconds per model load.
pub const SLOW_LOAD_ENV: &str = "MDX_STEMS_TEST_SLOW_LOAD_MS";

/// What decides whether a loaded model can serve an activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadKey {
    pub model: PathBuf,
    pub dim_t: Option<usize>,
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

    /// Whether the engine for `key` is loaded, taken or being loaded (no new load needed).
    fn has(&self, key: &LoadKey) -> bool {
        let st = self.lock();
        st.ready.as_ref().is_some_and(|(k, _)| k == key) || st.taken.as_ref() == Some(key) || st.loading.as_ref() == Some(key)
    }
}

struct Request {
    key: LoadKey,
    options: LoadOptions,
    name: String,
}

/// The loader thread and its request channel. Dropping it joins the thread (after the load in
/// progress, if any).
pub struct Loader {
    cache: Arc<EngineCache>,
    shared: Arc<Shared>,
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Loader {
    pub fn new(shared: Arc<Shared>) -> Self {
        Loader { cache: Arc::new(EngineCache::default()), shared, tx: None, thread: None }
    }

    pub fn cache(&self) -> Arc<EngineCache> {
        self.cache.clone()
    }

    /// Main thread: make sure the model for `key` is (being) loaded. Never waits.
    pub fn request(&mut self, key: LoadKey, options: LoadOptions, name: String) {
        if self.cache.has(&key) {
            return;
        }
        {
            // Mark it now, so a second activation before the thread picks it up does not queue it
            // twice and an inference thread knows to wait for it.
            let mut st = self.cache.lock();
            st.loading = Some(key.clone());
            st.failed = None;
        }
        self.shared.set_loading(name.clone());
        if self.tx.is_none() {
            let (tx, rx) = unbounded::<Request>();
            let cache = self.cache.clone();
            let shared = self.shared.clone();
            let thread = std::thread::Builder::new().name("mdx-stems model loader".into()).spawn(move || {
                while let Ok(req) = rx.recv() {
                    load(&cache, &shared, req);
                }
            });
            match thread {
                Ok(t) => {
                    self.tx = Some(tx);
                    self.thread = Some(t);
                }
                Err(e) => {
                    let mut st = self.cache.lock();
                    st.loading = None;
                    st.failed = Some((key, format!("cannot start the model loader thread: {e}")));
                    self.cache.changed.notify_all();
                    return;
                }
            }
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Request { key, options, name });
        }
    }
}

fn load(cache: &EngineCache, shared: &Shared, req: Request) {
    {
        let mut st = cache.lock();
        if st.loading.as_ref() != Some(&req.key) {
            return; // superseded by a later request
        }
        // Free the previous model before reading the next one.
        st.ready = None;
    }
    shared.set_loading(req.name.clone());
    if let Some(ms) = std::env::var(SLOW_LOAD_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let result = Separator::load(&req.options);
    let mut st = cache.lock();
    let current = st.loading.as_ref() == Some(&req.key);
    match result {
        Ok(sep) => {
            if current {
                st.loading = None;
                st.ready = Some((req.key, Box::new(sep)));
            }
        }
        Err(e) => {
            if current {
                st.loading = None;
                let problem = Problem::LoadFailed { model: req.name.clone(), message: e.to_string() };
                st.failed = Some((req.key, problem.to_string()));
                shared.set_problem(problem);
            }
        }
    }
    cache.changed.notify_all();
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
