//! The inference thread: one per activation, started in `activate`. `deactivate` only asks it to
//! stop and returns at once; the plugin keeps the handle and joins the thread once it has
//! finished the chunk it was computing. When the plugin is removed, a thread still in the middle
//! of a chunk (seconds on a CPU) is not waited for: after at most [`super::detach::GRACE`] it
//! is left to finish the chunk on its own, detached, with the plugin's library pinned
//! ([`super::detach`]); it owns all it touches and gives the engine back (or drops it) itself.
//!
//! It takes the engine (a [`Separator`](crate::engine::Separator) from the [`super::loader`],
//! through the [`EngineCache`], or a test engine) and owns
//! the [`Streamer`]. It answers every input block with exactly one output block, in order. Until
//! the model is loaded it leaves the blocks in their channel (the audio thread plays its dry
//! fallback meanwhile, or waits while the host renders); then it works through them, without
//! computing the chunks of those already played (in real time), so that it catches up. When it
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
//! While audio flows in real time the worker *polls* its receiving ends (`try_recv` + a short
//! sleep): a blocked receiver would make every `try_send` of the audio thread a wake-up
//! syscall. When no block has come for [`IDLE`] (transport stopped in a host that stops
//! calling, plugin bypassed) it blocks on the channel instead, so an idle plugin costs nothing;
//! the audio thread's next block then wakes it (one wake-up per idle period). While the host
//! renders, both sides block on the channels (no real-time deadline then).
//!
//! # Streams
//! Every block carries its stream epoch and index. A new epoch (host reset, transport jump) or
//! a missing block restarts the [`Streamer`] at the block's stream position
//! ([`Streamer::restart_at`]: the chunk grid stays on the project timeline); the silence it
//! starts with is marked invalid unless the input before it was silent.
//!
//! # Late blocks
//! The audio thread publishes the index of the output block it needs next
//! ([`Shared::play_position`]). In real time, a block whose answer is already too late is still
//! pushed through the stream (cheap: resampling and bookkeeping) but without running the
//! network, so a slow engine falls back to dry playback and catches up instead of drifting
//! further behind. While the host renders nothing is skipped.
//!
//! # Test hook
//! `MDX_STEMS_TEST_SLOW_MS=<ms>` in the environment when the plugin activates makes the worker
//! sleep that long before every chunk: an artificially slow engine, for the real-time fallback
//! tests. With `MDX_STEMS_TEST_SLOW_CHUNKS=<n>` only the first `n` chunks are slow.

pub use super::cache::ChunkEngine;
use super::cache::{EngineCache, LoadKey, Taken};
use super::detach;
use super::plan::StreamPlan;
use super::shared::{Problem, Shared, epoch_tag};
use super::stream::Streamer;
use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded, select};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Environment variable of the slow-engine test hook (milliseconds of sleep per chunk).
pub const SLOW_ENV: &str = "MDX_STEMS_TEST_SLOW_MS";
/// With the hook on: only this many chunks are slow (unset: all of them).
pub const SLOW_CHUNKS_ENV: &str = "MDX_STEMS_TEST_SLOW_CHUNKS";

/// No block for this long: the worker stops polling and blocks on its channel.
pub const IDLE: Duration = Duration::from_millis(250);
/// The poll period while blocks come in bursts, and how long after the last burst.
pub const BURST_POLL: Duration = Duration::from_micros(200);
pub const BURST_HOLD: Duration = Duration::from_millis(250);

/// One host-rate input block, `[2][b]` planar.
pub struct InBlock {
    /// The audio thread's stream epoch (bumped on every reset and transport jump).
    pub epoch: u32,
    /// Block number in the epoch: the block covers stream frames `[index * b, (index + 1) * b)`.
    pub index: u64,
    /// The host's input was digital silence for at least the plugin's latency before this block
    /// began: a stream restarted here may play its initial silence as computed output.
    pub quiet: bool,
    /// Stream position of the project's start when the stream starts before it (else 0).
    pub song_start: u64,
    pub data: Vec<f32>,
}

/// The answer to input block `index`, `[stems][2][b]` planar.
pub struct OutBlock {
    pub epoch: u32,
    pub index: u64,
    /// False when a chunk behind it was not computed (late, or the engine failed or is not
    /// loaded): the audio thread plays its dry fallback instead.
    pub valid: bool,
    pub data: Vec<f32>,
}

/// Where the worker gets its engine.
pub enum EngineSource {
    /// This engine (tests); the worker returns it when it stops.
    Ready(Box<dyn ChunkEngine>),
    /// The loader's engine for `key`: take it when it is loaded, give it back when stopping.
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
    /// The host activated in real-time mode (else it declared an offline render: never skip).
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

/// The running inference thread. Dropping it stops the thread, joins it if it ends within
/// [`detach::GRACE`] and otherwise lets it finish its chunk detached.
pub struct WorkerHandle {
    thread: Option<JoinHandle<Option<Box<dyn ChunkEngine>>>>,
    stop: Arc<AtomicBool>,
    /// Dropped (disconnected) to wake a worker blocked on its channels.
    stop_tx: Option<Sender<()>>,
    /// The cache a worker may be waiting on for its engine (woken on stop).
    cache: Option<Arc<EngineCache>>,
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
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let cache = match &source {
            EngineSource::Cache { cache, .. } => Some(cache.clone()),
            EngineSource::Ready(_) => None,
        };
        let ctx = Worker { plan, shared: shared.clone(), ends, options, stop: stop.clone(), stop_rx, burst: Default::default() };
        // The thread's channel ends drop when it ends: the audio side sees it as disconnected.
        let thread = std::thread::Builder::new().name("mdx-stems inference".into()).spawn(move || {
            crate::backend::cpu::kernels::pool::flush_denormals();
            ctx.run(source)
        })?;
        Ok(WorkerHandle { thread: Some(thread), stop, stop_tx: Some(stop_tx), cache })
    }

    /// Ask the thread to stop, without waiting: it finishes the chunk it is computing (if any),
    /// gives the engine back and ends. Returns at once.
    pub fn request_stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.stop_tx = None;
        if let Some(cache) = self.cache.take() {
            // A worker waiting for its engine wakes now, not at its next timeout.
            cache.wake();
        }
    }

    /// The thread, for the audio thread to unpark when it waits for a result (the worker's
    /// polls park with a timeout).
    pub fn waker(&self) -> Option<std::thread::Thread> {
        self.thread.as_ref().map(|t| t.thread().clone())
    }

    /// Whether the thread has ended (joining it is then instant).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stop and join the thread, however long its chunk takes; returns a
    /// [`EngineSource::Ready`] engine (an engine from the cache goes back to the cache instead).
    pub fn stop(mut self) -> Option<Box<dyn ChunkEngine>> {
        self.request_stop();
        self.thread.take()?.join().unwrap_or_default()
    }

    /// Stop the thread; join it if it ends by `deadline`, else let it finish detached (a
    /// [`EngineSource::Ready`] engine is then dropped on the thread). Never waits past
    /// `deadline` (unless the library cannot be pinned, see [`detach::join_or_detach`]).
    pub fn finish_by(mut self, deadline: Instant) {
        self.request_stop();
        if let Some(t) = self.thread.take() {
            detach::join_or_detach(t, deadline, "the inference thread");
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.request_stop();
        if let Some(t) = self.thread.take() {
            detach::join_or_detach(t, Instant::now() + detach::GRACE, "the inference thread");
        }
    }
}

struct Worker {
    plan: StreamPlan,
    shared: Arc<Shared>,
    ends: WorkerEnds,
    options: WorkerOptions,
    stop: Arc<AtomicBool>,
    stop_rx: Receiver<()>,
    /// When two blocks last came in a burst (see [`Worker::recv`]).
    burst: std::cell::Cell<Option<Instant>>,
}

/// The engine as the worker holds it.
enum Slot {
    /// The loader's engine is not there yet.
    Pending { cache: Arc<EngineCache>, key: LoadKey },
    /// Separating; `home` is where the engine goes back when the worker stops.
    Ready { engine: Box<dyn ChunkEngine>, home: Option<(Arc<EngineCache>, LoadKey)> },
    /// No usable engine (the load failed, the model does not fit the plan, or it failed while
    /// running): every block is answered invalid; the status says why.
    Unusable,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether nothing may be skipped or answered without the model: the host declared an
    /// offline render, or the audio thread measured one.
    fn rendering(&self) -> bool {
        !self.options.realtime || self.shared.rendering.load(Ordering::Acquire)
    }

    /// Receive from one of the worker's ends: poll while audio flows in real time, block while
    /// idle or rendering. `None` on stop or when the audio side is gone.
    ///
    /// The poll period is an eighth of a block (0.2 to 2 ms); for [`BURST_HOLD`] after two
    /// blocks came closer together than half a block's duration (a host filling its
    /// render-ahead, a device buffer handed over as several calls, a render not yet proven:
    /// the audio thread then waits only briefly for each result), [`BURST_POLL`].
    fn recv<T>(&self, rx: &Receiver<T>, last_block: &mut Instant) -> Option<T> {
        let block_secs = self.plan.block as f64 / self.plan.host_rate as f64;
        let poll = Duration::from_secs_f64((block_secs / 8.0).clamp(0.0002, 0.002));
        let got = |last_block: &mut Instant| {
            let now = Instant::now();
            if now.duration_since(*last_block).as_secs_f64() < 0.5 * block_secs {
                self.burst.set(Some(now));
            }
            *last_block = now;
        };
        loop {
            if self.stopped() {
                return None;
            }
            match rx.try_recv() {
                Ok(v) => {
                    got(last_block);
                    return Some(v);
                }
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            if self.rendering() || last_block.elapsed() >= IDLE {
                // Wake on data, on stop (the handle drops its sender), or now and then to
                // notice a change of mode.
                select! {
                    recv(rx) -> v => match v {
                        Ok(v) => {
                            got(last_block);
                            return Some(v);
                        }
                        Err(_) => return None,
                    },
                    recv(self.stop_rx) -> _ => return None,
                    default(Duration::from_millis(100)) => {}
                }
            } else {
                let bursty = self.burst.get().is_some_and(|t| t.elapsed() < BURST_HOLD);
                // Parked, not asleep: the audio thread unparks it when it waits for a result.
                std::thread::park_timeout(if bursty { BURST_POLL } else { poll });
            }
        }
    }

    /// Take the engine if it is there within `wait` (while the host renders: wait for it).
    fn acquire(&self, slot: Slot, wait: Duration) -> Slot {
        let Slot::Pending { cache, key } = slot else { return slot };
        let taken = if self.rendering() { cache.take(&key, &self.stop) } else { cache.take_within(&key, wait) };
        match taken {
            Taken::Engine(mut engine) => {
                if engine.chunk_len() != self.plan.chunk || engine.num_stems() != self.plan.stems {
                    self.shared.set_problem(Problem::EngineMismatch {
                        chunk: engine.chunk_len(),
                        stems: engine.num_stems(),
                        plan_chunk: self.plan.chunk,
                        plan_stems: self.plan.stems,
                    });
                    cache.put_back(key, engine);
                    return Slot::Unusable;
                }
                for w in engine.take_warnings() {
                    self.shared.push_notice(w);
                }
                self.shared.set_ready(engine.describe());
                Slot::Ready { engine, home: Some((cache, key)) }
            }
            // The loader has put the reason in the status.
            Taken::Failed(_) => Slot::Unusable,
            Taken::NotYet | Taken::Stopped => Slot::Pending { cache, key },
        }
    }

    fn run(self, source: EngineSource) -> Option<Box<dyn ChunkEngine>> {
        let mut slot = match source {
            EngineSource::Ready(engine) => {
                self.shared.set_ready(engine.describe());
                Slot::Ready { engine, home: None }
            }
            EngineSource::Cache { cache, key } => self.acquire(Slot::Pending { cache, key }, Duration::ZERO),
        };
        let mut streamer = Streamer::new(&self.plan);
        let mut stream_epoch: Option<u32> = None;
        let mut expected = 0u64;
        // The real-time budget of one chunk: a hop of audio.
        let hop_secs = self.plan.hop as f64 / self.plan.model_rate as f64;
        let mut load = 0f64;
        let mut chunks_run = 0u64;
        let mut last_memory = Instant::now() - Duration::from_secs(1);
        let mut last_block = Instant::now();
        loop {
            if matches!(slot, Slot::Pending { .. }) {
                // The model is not there yet: leave the blocks queued (see the module docs).
                slot = self.acquire(slot, Duration::from_millis(20));
                if self.stopped() {
                    break;
                }
                if matches!(slot, Slot::Pending { .. }) {
                    continue;
                }
            }
            let Some(msg) = self.recv(&self.ends.from_audio, &mut last_block) else { break };
            let (play_epoch, needed) = Shared::unpack_position(self.shared.play_position.load(Ordering::Acquire));
            if epoch_tag(msg.epoch) != play_epoch {
                // From before the last reset: nobody will play it.
                let _ = self.ends.free_in.try_send(msg.data);
                continue;
            }
            if stream_epoch != Some(msg.epoch) || msg.index != expected {
                // A new stream (reset, transport jump) or a block the audio thread could not
                // send: continue from this block's position on the timeline's grid.
                nice_plug::nice_log!(
                    "stream restart at block {} (epoch {}, expected {expected}, quiet {}, rendering {})",
                    msg.index,
                    msg.epoch,
                    msg.quiet,
                    self.rendering()
                );
                streamer.restart_at(msg.index * self.plan.block as u64, msg.quiet, msg.song_start);
                stream_epoch = Some(msg.epoch);
            }
            expected = msg.index + 1;
            let late = !self.rendering() && msg.index < needed;
            let Some(mut out) = self.recv(&self.ends.free_out, &mut last_block) else {
                let _ = self.ends.free_in.try_send(msg.data);
                break;
            };
            let t0 = Instant::now();
            let mut failure: Option<String> = None;
            let slow = self.options.slow;
            let ready = matches!(slot, Slot::Ready { .. });
            let result = {
                let mut run = |input: &[f32], output: &mut [f32], fresh: bool| -> bool {
                    let Slot::Ready { engine, .. } = &mut slot else { return false };
                    if !slow.is_zero() && self.options.slow_chunks.is_none_or(|n| chunks_run < n) {
                        std::thread::sleep(slow);
                    }
                    chunks_run += 1;
                    if fresh {
                        engine.reset();
                    }
                    let r = engine.process(input, output);
                    for w in engine.take_warnings() {
                        self.shared.push_notice(w);
                    }
                    match r {
                        Ok(()) => true,
                        Err(err) => {
                            failure = Some(err);
                            false
                        }
                    }
                };
                streamer.push_block(&msg.data, late || !ready, &mut run, &mut out)
            };
            if let Some(err) = failure {
                self.shared.set_problem(Problem::ModelFailed(err));
                // Keep a failed engine out of the cache: the next activation loads it afresh.
                if let Slot::Ready { home: Some((cache, key)), .. } = &slot {
                    cache.discard(key);
                }
                slot = Slot::Unusable;
            }
            if last_memory.elapsed() >= Duration::from_secs(1) {
                last_memory = Instant::now();
                let mb = |b: Option<u64>| b.map_or(-1.0, |b| (b as f64 / 1e6) as f32);
                let gpu = match &slot {
                    Slot::Ready { engine, .. } => engine.gpu_memory(),
                    _ => None,
                };
                self.shared.peak_rss_mb.store(mb(crate::memory::peak_rss_bytes()), Ordering::Relaxed);
                self.shared.gpu_mb.store(mb(gpu), Ordering::Relaxed);
                self.shared.changed();
            }
            let usable = matches!(slot, Slot::Ready { .. });
            if !late && usable && result.chunks > 0 {
                // Inference time per hop of audio (1.0 = just real time).
                let per_chunk = t0.elapsed().as_secs_f64() / result.chunks as f64;
                let ratio = per_chunk / hop_secs;
                load = if load == 0.0 { ratio } else { 0.9 * load + 0.1 * ratio };
                self.shared.chunk_secs.store((load * hop_secs) as f32, Ordering::Relaxed);
                let before = self.shared.load.swap(load as f32, Ordering::Relaxed);
                if (100.0 * before).round() != (100.0 * load as f32).round() {
                    self.shared.changed();
                }
            }
            let _ = self.ends.free_in.try_send(msg.data);
            let reply = OutBlock { epoch: msg.epoch, index: msg.index, valid: result.valid && usable, data: out };
            self.shared.progress.fetch_add(1, Ordering::Release);
            if self.ends.to_audio.try_send(reply).is_err() {
                // Cannot happen (the channel holds the whole pool); the buffer is freed here,
                // on the worker, never on the audio thread.
            }
        }
        match slot {
            Slot::Ready { engine, home: Some((cache, key)) } => {
                cache.put_back(key, engine);
                None
            }
            Slot::Ready { engine, home: None } => Some(engine),
            Slot::Pending { .. } | Slot::Unusable => None,
        }
    }
}
