//! The model loader: one thread per plugin instance, started on the first model request. It
//! loads models off the audio and main threads into the [`EngineCache`], which keeps the last
//! one, so that re-activations (hosts restart plugins often, e.g. right after the first
//! activation to read the latency) neither reload the model nor wait for a load in progress.
//!
//! Who touches what: the main thread sends requests ([`Loader::request`]); the loader thread
//! loads them; the inference thread of the current activation takes the engine out of the cache
//! when it is ready and puts it back when it stops ([`super::cache`]). The audio thread never
//! touches any of it.
//!
//! When the plugin is removed, the thread is joined if it is idle or ends within
//! [`super::detach::GRACE`]; a load in progress (seconds) finishes detached, on its own: the
//! model it loads goes into the cache, which the thread then drops with its own reference
//! (the last one, the plugin's being gone), freeing the model on that thread.
//!
//! Test hook: `MDX_STEMS_TEST_SLOW_LOAD_MS=<ms>` makes every load take that much longer.

use super::cache::{EngineCache, LoadKey};
use super::detach;
use super::shared::{Problem, Shared};
use crate::engine::{LoadOptions, Separator};
use crossbeam_channel::{Sender, unbounded};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Test hook: extra milliseconds per model load.
pub const SLOW_LOAD_ENV: &str = "MDX_STEMS_TEST_SLOW_LOAD_MS";

struct Request {
    key: LoadKey,
    options: LoadOptions,
    name: String,
}

/// The loader thread and its request channel. Dropping it ends the thread: joined if it is idle
/// (or ends within [`detach::GRACE`]), else detached after the load in progress
/// ([`detach::join_or_detach`]).
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
        // Mark it now, so a second activation before the thread picks it up does not queue it
        // twice and an inference thread knows to wait for it.
        self.cache.mark_loading(key.clone());
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
                    self.cache.fail(key, format!("cannot start the model loader thread: {e}"));
                    return;
                }
            }
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Request { key, options, name });
        }
    }

    /// Main thread: no more requests; the thread ends after the load in progress, if any.
    pub fn request_stop(&mut self) {
        self.tx = None;
    }

    /// [`Loader::request_stop`], then join the thread if it ends by `deadline`, else let it
    /// finish detached. Never waits past `deadline` (unless the library cannot be pinned).
    pub fn finish_by(&mut self, deadline: Instant) {
        self.request_stop();
        if let Some(t) = self.thread.take() {
            detach::join_or_detach(t, deadline, "the model loader");
        }
    }
}

fn load(cache: &EngineCache, shared: &Shared, req: Request) {
    if !cache.begin_load(&req.key) {
        return; // superseded by a later request
    }
    shared.set_loading(req.name.clone());
    if let Some(ms) = std::env::var(SLOW_LOAD_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    match Separator::load(&req.options) {
        Ok(sep) => cache.finish_load(req.key, Ok(Box::new(sep)), || {}),
        Err(e) => {
            let problem = Problem::LoadFailed { model: req.name.clone(), message: e.to_string() };
            let why = problem.to_string();
            cache.finish_load(req.key, Err(why), || shared.set_problem(problem));
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.finish_by(Instant::now() + detach::GRACE);
    }
}
