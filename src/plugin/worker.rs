//! The inference thread: one per plugin instance, started in `activate`, joined in
//! `deactivate` (or when the handle is dropped). Never detached.
//!
//! It takes the engine (a [`Separator`] from the [`super::loader`], or a test engine) and owns
//! the [`Streamer`]. It waits for the model first (the audio thread meanwhile plays its dry
//! fallback), then answers every input block with exactly one output block, in order. When it
//! stops it gives the engine back to the loader's cache for the next activation.
//!
//! # Channels (all bounded, all buffers allocated in [`link`])
//!
//! ```text
//!            InBlock (audio -> worker)        Vec<f32> back (worker -> audio): free input pool
//! audio  --------------------------------->  worker
//!        <---------------------------------
//!            OutBlock (worker -> audio)       Vec<f32> back (audio -> worker): free output pool
//! ```
//!
//! Each channel can hold its whole pool, so a `try_send` of a pooled buffer never fails for
//! lack of room; the audio thread never allocates, frees, locks or blocks on them in real time.
//! In real-time mode the worker *polls* its receiving ends (`try_recv` + a short sleep) rather
//! than blocking: a blocked receiver would make the audio thread's `try_send` wake it, which is
//! a syscall on the audio thread. In offline mode both sides block (`recv`), which is allowed
//! there and makes a bounce wait for every result.
//!
//! # Late blocks
//! The audio thread publishes the index of the output block it needs next
//! ([`Shared::play_position`]). A block whose answer is already too late is still pushed
//! through the stream (cheap: resampling and bookkeeping) but without running the network, so
//! a slow engine falls back to dry playback and catches up instead of drifting further behind.
//!
//! # Test hook
//! `MDX_STEMS_TEST_SLOW_MS=<ms>` in the environment when the worker starts makes it sleep that
//! long before every chunk: an artificially slow engine, for the real-time fallback tests.
//! With `MDX_STEMS_TEST_SLOW_CHUNKS=<n>` only the first `n` chunks are slow (recovery tests).

use super::loader::{EngineCache, LoadKey, Taken};
use super::plan::StreamPlan;
use super::shared::{EngineState, Shared, epoch_tag};
use super::stream::Streamer;
use crate::engine::Separator;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, bounded};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Environment variable of the slow-engine test hook (milliseconds of sleep per chunk).
pub const SLOW_ENV: &str = "MDX_STEMS_TEST_SLOW_MS";
/// With the hook on: only this many chunks are slow (unset: all of them).
pub const SLOW_CHUNKS_ENV: &str = "MDX_STEMS_TEST_SLOW_CHUNKS";

/// One host-rate input block, `[2][Hh]` planar.
pub struct InBlock {
    /// The audio thread's stream epoch (bumped on every reset).
    pub epoch: u32,
    /// Block number in the epoch: the block covers stream frames `[index * Hh, (index + 1) * Hh)`.
    pub index: u64,
    pub data: Vec<f32>,
}

/// The answer to input block `index`, `[stems][2][Hh]` planar.
pub struct OutBlock {
    pub epoch: u32,
    pub index: u64,
    /// False when a chunk behind it was not computed (late, or the engine failed or is not
    /// loaded): the audio thread plays its dry fallback instead.
    pub valid: bool,
    pub data: Vec<f32>,
}

/// Something that separates one stereo chunk: `[2][C]` in, `[stems][2][C]` out.
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
}

impl ChunkEngine for Separator {
    fn process(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), String> {
        let r = self.process_chunks(input, 1, out).map_err(|e| e.to_string());
        self.drain_events();
        r
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
}

/// Where the worker gets its engine.
pub enum EngineSource {
    /// This engine (tests); the worker returns it when it stops.
    Ready(Box<dyn ChunkEngine>),
    /// The loader's engine for `key`: wait for it, take it, give it back when stopping.
    Cache { cache: Arc<EngineCache>, key: LoadKey },
}

/// The audio thread's ends of the link.
pub struct AudioEnds {
    pub to_worker: Sender<InBlock>,
    pub free_in: Receiver<Vec<f32>>,
    pub from_worker: Receiver<OutBlock>,
    pub free_out: Sender<Vec<f32>>,
    /// Buffers in the system: input pool + output pool (a bound for any local parking).
    pub total_buffers: usize,
}

/// The worker's ends of the link.
pub struct WorkerEnds {
    from_audio: Receiver<InBlock>,
    free_in: Sender<Vec<f32>>,
    to_audio: Sender<OutBlock>,
    free_out: Receiver<Vec<f32>>,
}

/// Create the channels and fill both pools (main thread, in `activate`).
pub fn link(plan: &StreamPlan) -> (AudioEnds, WorkerEnds) {
    let (n_in, n_out) = (plan.input_pool(), plan.output_pool());
    let in_len = 2 * plan.block;
    let out_len = plan.stems * 2 * plan.block;
    let (to_worker, from_audio) = bounded(n_in);
    let (free_in_tx, free_in_rx) = bounded(n_in);
    let (to_audio, from_worker) = bounded(n_out);
    let (free_out_tx, free_out_rx) = bounded(n_out);
    for _ in 0..n_in {
        free_in_tx.try_send(vec![0f32; in_len]).expect("pool fits its channel");
    }
    for _ in 0..n_out {
        free_out_tx.try_send(vec![0f32; out_len]).expect("pool fits its channel");
    }
    (
        AudioEnds { to_worker, free_in: free_in_rx, from_worker, free_out: free_out_tx, total_buffers: n_in + n_out },
        WorkerEnds { from_audio, free_in: free_in_tx, to_audio, free_out: free_out_rx },
    )
}

/// How the worker runs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Real-time mode: poll, skip late work. Offline: block, never skip.
    pub realtime: bool,
    /// Test hook: sleep this long before every chunk...
    pub slow: Duration,
    /// ...for this many chunks (`None`: all).
    pub slow_chunks: Option<u64>,
}

impl WorkerOptions {
    /// Options for the host's mode, with the slow-engine test hook read from the environment.
    pub fn from_env(realtime: bool) -> Self {
        let num = |var: &str| std::env::var(var).ok().and_then(|v| v.trim().parse::<u64>().ok());
        WorkerOptions { realtime, slow: Duration::from_millis(num(SLOW_ENV).unwrap_or(0)), slow_chunks: num(SLOW_CHUNKS_ENV) }
    }
}

/// The running inference thread. Dropping it stops and joins the thread.
pub struct WorkerHandle {
    thread: Option<JoinHandle<Option<Box<dyn ChunkEngine>>>>,
    stop: Arc<AtomicBool>,
}

impl WorkerHandle {
    /// Start the inference thread for `plan`.
    pub fn spawn(
        plan: StreamPlan,
        source: EngineSource,
        shared: Arc<Shared>,
        ends: WorkerEnds,
        options: WorkerOptions,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        shared.worker_alive.store(true, Ordering::Release);
        let ctx = Worker { plan, shared: shared.clone(), ends, options, stop: stop.clone() };
        let thread = std::thread::Builder::new().name("mdx-stems inference".into()).spawn(move || {
            let shared = ctx.shared.clone();
            let engine = ctx.run(source);
            shared.worker_alive.store(false, Ordering::Release);
            engine
        });
        match thread {
            Ok(t) => Ok(WorkerHandle { thread: Some(t), stop }),
            Err(e) => {
                shared.worker_alive.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Stop and join the thread; returns a [`EngineSource::Ready`] engine (an engine from the
    /// cache goes back to the cache instead).
    pub fn stop(mut self) -> Option<Box<dyn ChunkEngine>> {
        self.join()
    }

    fn join(&mut self) -> Option<Box<dyn ChunkEngine>> {
        self.stop.store(true, Ordering::Release);
        let t = self.thread.take()?;
        t.join().unwrap_or_default()
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

struct Worker {
    plan: StreamPlan,
    shared: Arc<Shared>,
    ends: WorkerEnds,
    options: WorkerOptions,
    stop: Arc<AtomicBool>,
}

enum Next<T> {
    Item(T),
    Stop,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Receive from one of the worker's ends: poll in real time, block (in slices, to notice
    /// `stop`) offline.
    fn recv<T>(&self, rx: &Receiver<T>) -> Next<T> {
        let poll = Duration::from_secs_f64((self.plan.block as f64 / self.plan.host_rate as f64 / 8.0).clamp(0.0002, 0.002));
        loop {
            if self.stopped() {
                return Next::Stop;
            }
            if self.options.realtime {
                match rx.try_recv() {
                    Ok(v) => return Next::Item(v),
                    Err(TryRecvError::Empty) => std::thread::sleep(poll),
                    Err(TryRecvError::Disconnected) => return Next::Stop,
                }
            } else {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(v) => return Next::Item(v),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Next::Stop,
                }
            }
        }
    }

    /// Get the engine; `None` when it cannot be used (the status says why) or on stop.
    fn acquire(&self, source: EngineSource) -> Acquired {
        let (engine, home) = match source {
            EngineSource::Ready(e) => (e, None),
            EngineSource::Cache { cache, key } => match cache.take(&key, &self.stop) {
                Taken::Engine(e) => (e, Some((cache, key))),
                // The loader has put the reason in the status line.
                Taken::Failed(_) => return Acquired { engine: None, home: None, stopped: false },
                Taken::Stopped => return Acquired { engine: None, home: None, stopped: true },
            },
        };
        if engine.chunk_len() != self.plan.chunk || engine.num_stems() != self.plan.stems {
            self.shared.set(
                EngineState::Error,
                format!(
                    "the loaded model has chunk {} and {} stems, the plan expected {} and {} (playing the dry signal)",
                    engine.chunk_len(),
                    engine.num_stems(),
                    self.plan.chunk,
                    self.plan.stems
                ),
            );
        } else {
            self.shared.set(EngineState::Ready, format!("Ready on {}", engine.describe()));
        }
        Acquired { engine: Some(engine), home, stopped: false }
    }

    fn run(self, source: EngineSource) -> Option<Box<dyn ChunkEngine>> {
        let Acquired { mut engine, home, stopped } = self.acquire(source);
        if stopped {
            return None;
        }
        let mut usable = engine.is_some() && self.shared.state() == EngineState::Ready;
        let mut streamer = Streamer::new(&self.plan);
        let mut stream_epoch: Option<u32> = None;
        let mut expected = 0u64;
        // The real-time budget of one chunk: a hop of audio.
        let hop_secs = self.plan.hop as f64 / self.plan.model_rate as f64;
        let mut load = 0f64;
        let mut chunks_run = 0u64;
        let mut last_memory = Instant::now() - Duration::from_secs(1);
        while let Next::Item(msg) = self.recv(&self.ends.from_audio) {
            let (play_epoch, needed) = Shared::unpack_position(self.shared.play_position.load(Ordering::Acquire));
            if epoch_tag(msg.epoch) != play_epoch {
                // From before the last reset: nobody will play it.
                let _ = self.ends.free_in.try_send(msg.data);
                continue;
            }
            if stream_epoch != Some(msg.epoch) || msg.index != expected {
                // New stream (reset) or a block the audio thread could not send: start over
                // from this block, as UVR would at the start of a song.
                streamer.restart();
                stream_epoch = Some(msg.epoch);
            }
            expected = msg.index + 1;
            let late = self.options.realtime && msg.index < needed;
            let mut out = match self.recv(&self.ends.free_out) {
                Next::Item(b) => b,
                Next::Stop => break,
            };
            let t0 = Instant::now();
            let mut failure: Option<String> = None;
            let slow = self.options.slow;
            let result = {
                let mut run = |input: &[f32], output: &mut [f32]| -> bool {
                    let Some(e) = engine.as_mut() else { return false };
                    if !slow.is_zero() && self.options.slow_chunks.is_none_or(|n| chunks_run < n) {
                        std::thread::sleep(slow);
                    }
                    chunks_run += 1;
                    match e.process(input, output) {
                        Ok(()) => true,
                        Err(err) => {
                            failure = Some(err);
                            false
                        }
                    }
                };
                streamer.push_block(&msg.data, late || !usable, &mut run, &mut out)
            };
            if let Some(err) = failure {
                self.shared.set(EngineState::Error, format!("the model failed: {err} (playing the dry signal)"));
                usable = false;
            }
            if last_memory.elapsed() >= Duration::from_secs(1) {
                last_memory = Instant::now();
                let mb = |b: Option<u64>| b.map_or(-1.0, |b| (b as f64 / 1e6) as f32);
                self.shared.peak_rss_mb.store(mb(crate::memory::peak_rss_bytes()), Ordering::Relaxed);
                self.shared.gpu_mb.store(mb(engine.as_ref().and_then(|e| e.gpu_memory())), Ordering::Relaxed);
            }
            if !late && usable && result.chunks > 0 {
                // Inference time per hop of audio (1.0 = just real time).
                let ratio = t0.elapsed().as_secs_f64() / (result.chunks as f64 * hop_secs);
                load = if load == 0.0 { ratio } else { 0.9 * load + 0.1 * ratio };
                self.shared.load.store(load as f32, Ordering::Relaxed);
            }
            let _ = self.ends.free_in.try_send(msg.data);
            let reply = OutBlock { epoch: msg.epoch, index: msg.index, valid: result.valid && usable, data: out };
            if self.ends.to_audio.try_send(reply).is_err() {
                // Cannot happen (the channel holds the whole pool); the buffer is freed here,
                // on the worker, never on the audio thread.
            }
        }
        if !usable {
            // Keep a failed engine out of the cache: the next activation loads it afresh.
            engine = None;
        }
        match (engine, home) {
            (Some(e), Some((cache, key))) => {
                cache.put_back(key, e);
                None
            }
            (engine, _) => engine,
        }
    }
}

struct Acquired {
    engine: Option<Box<dyn ChunkEngine>>,
    /// Where the engine goes back when the worker stops.
    home: Option<(Arc<EngineCache>, LoadKey)>,
    stopped: bool,
}
