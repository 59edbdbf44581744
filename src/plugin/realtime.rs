//! The audio thread's side of the stream. Built in `activate` (main thread, where every buffer
//! is allocated), then owned and used only by `process` and `reset` on the audio thread.
//!
//! Per host buffer it:
//! - measures how fast the host delivers audio ([`Pace`]): in real time it never waits; when
//!   the host is ahead of the clock it may wait up to that lead; when the host renders (declared
//!   offline, or measured faster than real time) it waits for every result;
//! - follows the host's transport: a new stream starts on activation, on `reset`, and when the
//!   playing position jumps; with a position the stream is anchored to the project timeline
//!   ([`StreamPlan::anchor`]), so its chunk grid is the whole-song render's;
//! - copies the input into the current input block (a pooled buffer) and into the dry delay
//!   line; every `b` frames the block goes to the inference thread (`try_send`) and a fresh
//!   buffer comes from the free pool (`try_recv`);
//! - plays output block `j` from stream position `j * b + A` on ([`StreamPlan::audio_delay`]):
//!   stems times their gains on the stem outputs, the kept stems summed on the main output
//!   (mute, solo and preset changes ramp over 10 ms); for single-target models one more output
//!   carries the complement (the delayed input minus the target);
//! - when block `j` is not there in time (or is marked invalid) it plays the dry input delayed
//!   by the full latency on the main output and silence on the stem outputs, counts a dropout,
//!   and crossfades back to the stems over 10 ms once results are there again. A block that
//!   will be missing is foreseen at the end of the previous one, which then fades out, so both
//!   directions are crossfades.
//!
//! Real time: nothing here allocates, frees, locks or makes a syscall (received buffers are
//! recycled through the pools, never dropped). Waiting on the lead polls the channel with short
//! sleeps (no allocation, no lock). While the host renders, waits block on the channel (which
//! may allocate inside crossbeam, so they are wrapped in `permit_alloc`), bounded by the render
//! watchdog: after `watchdog` seconds without progress the rest of the activation plays dry.

use super::pace::Pace;
use super::params::{MAX_STEMS, MdxParams, kept_stems};
use super::plan::StreamPlan;
use super::shared::{EngineState, Problem, Shared};
use super::worker::{AudioEnds, InBlock, OutBlock};
use crossbeam_channel::RecvTimeoutError;
use nice_plug::util::permit_alloc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Length of every crossfade (wet/dry both ways, mute/solo/preset ramps).
pub const FADE_SECONDS: f32 = 0.010;

/// Input at or below this level counts as silence (about -120 dBFS).
const QUIET_LEVEL: f32 = 1e-6;

/// Where the host's transport is, as the audio thread needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub playing: bool,
    /// Project position of the buffer's first frame, in host samples, when the host tells it.
    pub samples: Option<i64>,
}

/// Fixed by the activation, for [`AudioSide::new`].
#[derive(Debug, Clone, Copy)]
pub struct AudioOptions {
    /// The host declared an offline render: always wait for every result.
    pub offline: bool,
    /// One more output carries the input minus stem 0 (single-target models).
    pub complement: bool,
    /// The render watchdog.
    pub watchdog: Duration,
    /// Added to the host's transport position to get the position of the input
    /// ([`super::host::position_offset`]).
    pub position_offset: i64,
}

/// See the module docs.
pub struct AudioSide {
    block: usize,
    audio_delay: u64,
    latency: u64,
    /// Stems the worker delivers, and outputs (stems plus the complement).
    stems: usize,
    outputs: usize,
    anchor: Option<u64>,
    offline: bool,
    watchdog: Duration,
    position_offset: i64,
    ends: AudioEnds,
    shared: Arc<Shared>,
    /// Stream epoch (16 bits), bumped by every new stream.
    epoch: u32,
    /// Stream position of the next frame.
    pos: u64,
    /// The stream's first block: the worker answers blocks from this one on (earlier output
    /// blocks stand for input from before the stream and are never coming).
    first_block: u64,
    /// Project position of stream position 0 while the stream is anchored to the timeline.
    timeline: Option<i64>,
    /// Stream position of the project's start when the stream starts before it (else 0).
    song_start: u64,
    /// Start a new stream at the next call (activation, `reset`).
    start_pending: bool,
    /// Input frames since the last non-silent one (saturating).
    quiet_run: u64,
    /// Whether the input was silent for a whole latency before the block being filled began.
    block_quiet: bool,
    /// The input block being filled; `None` when the pool was empty at the block's start
    /// (that block is then not sent).
    cur_in: Option<Vec<f32>>,
    /// Dry delay line, 2 channels, `latency + max_block + 1` frames each, written at `dry_pos`
    /// (frames since activation, independent of stream restarts).
    dry: [Vec<f32>; 2],
    dry_pos: u64,
    /// The output block being played, and one received ahead of time.
    cur_out: Option<OutBlock>,
    ahead: Option<OutBlock>,
    /// Parking for buffers that could not go back to their pool (never expected; never
    /// dropped here either). Capacity: every buffer in the system.
    parked: Vec<Vec<f32>>,
    /// Wet/dry mix of the main output and gain of the stem outputs, 0..=1.
    wet: f32,
    fade_step: f32,
    /// Smoothed main-mix weight of each output (mute, solo, preset), 0..=1.
    weights: [f32; MAX_STEMS],
    /// Output block last counted as a dropout.
    missed: Option<u64>,
    pace: Pace,
    clock: Instant,
    /// The render watchdog fired: dry from now on.
    tripped: bool,
}

impl AudioSide {
    /// Main thread, in `activate`: allocate everything for `plan`.
    pub fn new(plan: &StreamPlan, ends: AudioEnds, shared: Arc<Shared>, opts: AudioOptions) -> Self {
        let latency = plan.latency_samples();
        let ring = latency + plan.max_block + 1;
        let parked = Vec::with_capacity(ends.total_buffers);
        let stems = plan.stems.min(MAX_STEMS);
        let complement = opts.complement && stems < MAX_STEMS;
        let mut side = AudioSide {
            block: plan.block,
            audio_delay: plan.audio_delay as u64,
            latency: latency as u64,
            stems,
            outputs: stems + complement as usize,
            anchor: plan.anchor,
            offline: opts.offline,
            watchdog: opts.watchdog,
            position_offset: opts.position_offset,
            ends,
            shared,
            epoch: 0,
            pos: 0,
            first_block: 0,
            timeline: None,
            song_start: 0,
            start_pending: true,
            quiet_run: u64::MAX,
            block_quiet: true,
            cur_in: None,
            dry: [vec![0.0; ring], vec![0.0; ring]],
            dry_pos: 0,
            cur_out: None,
            ahead: None,
            parked,
            wet: 0.0,
            fade_step: 1.0 / (FADE_SECONDS * plan.host_rate as f32).max(1.0),
            weights: [0.0; MAX_STEMS],
            missed: None,
            pace: Pace::new(plan.host_rate, plan.max_block),
            clock: Instant::now(),
            tripped: false,
        };
        side.cur_in = side.ends.free_in.try_recv().ok();
        side.shared.rendering.store(opts.offline, Ordering::Release);
        side.publish_position();
        side
    }

    /// Audio thread: the host restarts the stream (`reset`: transport jump, or before a new
    /// render). The dry history is cleared; the next buffer starts a new stream. Does not
    /// allocate.
    pub fn reset(&mut self) {
        for d in &mut self.dry {
            d.fill(0.0);
        }
        self.quiet_run = u64::MAX;
        self.start_pending = true;
    }

    /// A new stream: at project position `at` when the host tells it (anchored to the timeline
    /// grid), else at stream position 0.
    fn start_stream(&mut self, at: Option<i64>) {
        self.epoch = (self.epoch + 1) & 0xffff;
        self.start_pending = false;
        let (pos, timeline) = match (at, self.anchor) {
            (Some(p), Some(a)) => {
                let a = a as i64;
                let origin = p.div_euclid(a) * a;
                ((p - origin) as u64, Some(origin))
            }
            _ => (0, None),
        };
        self.pos = pos;
        self.first_block = pos / self.block as u64;
        self.timeline = timeline;
        self.song_start = timeline.map_or(0, |t0| t0.min(0).unsigned_abs());
        if let Some(b) = self.cur_out.take() {
            self.recycle(b.data);
        }
        if let Some(b) = self.ahead.take() {
            self.recycle(b.data);
        }
        if self.cur_in.is_none() {
            self.cur_in = self.ends.free_in.try_recv().ok();
        }
        // The block being filled starts at a block boundary: silence up to `pos`.
        let (hh, at) = (self.block, (pos % self.block as u64) as usize);
        if let Some(buf) = self.cur_in.as_mut() {
            buf[..at].fill(0.0);
            buf[hh..hh + at].fill(0.0);
        }
        self.block_quiet = self.quiet_run >= self.latency;
        self.missed = None;
        self.publish_position();
    }

    /// Start a new stream when the host's position says so (see the module docs).
    fn follow_transport(&mut self, position: Position) {
        let at = position.samples.filter(|_| position.playing && self.anchor.is_some()).map(|p| p + self.position_offset);
        if self.start_pending {
            self.start_stream(at);
            return;
        }
        if let Some(p) = at {
            // CLAP and VST3 positions reach us through seconds: allow a sample of rounding.
            let jumped = self.timeline.is_none_or(|t0| (p - (t0 + self.pos as i64)).abs() > 1);
            if jumped {
                self.start_stream(Some(p));
            }
        }
    }

    /// The output block the next buffer starts in: every block before it has been played.
    fn publish_position(&self) {
        let needed = self.pos.saturating_sub(self.audio_delay) / self.block as u64;
        self.shared.play_position.store(Shared::pack_position(self.epoch, needed), Ordering::Release);
    }

    fn recycle(&mut self, buf: Vec<f32>) {
        if let Err(e) = self.ends.free_out.try_send(buf) {
            let buf = e.into_inner();
            if self.parked.len() < self.parked.capacity() {
                self.parked.push(buf);
            } else {
                // Unreachable by construction (capacity = every buffer); leaking beats freeing
                // memory on the audio thread.
                std::mem::forget(buf);
            }
        }
    }

    /// Whether the host renders (nothing may be missed).
    fn rendering(&self) -> bool {
        self.offline || self.pace.rendering()
    }

    /// Audio thread: process one host buffer. `main` holds the input on entry (2 channels) and
    /// receives the main output; `aux[s]` is output `s` (2 channels) when the host gave it.
    pub fn process(
        &mut self,
        main: &mut [&mut [f32]],
        aux: &mut [Option<&mut [&mut [f32]]>],
        params: &MdxParams,
        position: Position,
    ) {
        let n = main.first().map_or(0, |c| c.len());
        let render = self.offline || self.pace.on_call(self.clock.elapsed().as_secs_f64(), n);
        if self.shared.rendering.swap(render, Ordering::AcqRel) != render {
            self.shared.changed();
        }
        self.shared.ahead.store(render || !self.pace.wait_budget().is_zero(), Ordering::Release);
        self.follow_transport(position);
        let kept = kept_stems(params, self.outputs);
        let hh = self.block;
        let mut off = 0;
        while off < n {
            let in_room = hh - (self.pos % hh as u64) as usize;
            let out_room = if self.pos < self.audio_delay {
                (self.audio_delay - self.pos) as usize
            } else {
                hh - ((self.pos - self.audio_delay) % hh as u64) as usize
            };
            let len = (n - off).min(in_room).min(out_room);
            self.take_input(main, off, len);
            self.render(main, aux, off, len, &kept, params);
            self.pos += len as u64;
            self.dry_pos += len as u64;
            off += len;
            if self.pos.is_multiple_of(hh as u64) {
                self.send_block(self.pos / hh as u64 - 1);
            }
        }
        self.publish_position();
    }

    fn take_input(&mut self, main: &[&mut [f32]], off: usize, len: usize) {
        let hh = self.block;
        let at = (self.pos % hh as u64) as usize;
        let ring = self.dry[0].len();
        let w = (self.dry_pos % ring as u64) as usize;
        let mut last_sound: Option<usize> = None;
        for ch in 0..2 {
            let src = &main[ch.min(main.len() - 1)][off..off + len];
            if let Some(buf) = self.cur_in.as_mut() {
                buf[ch * hh + at..ch * hh + at + len].copy_from_slice(src);
            }
            let first = len.min(ring - w);
            self.dry[ch][w..w + first].copy_from_slice(&src[..first]);
            self.dry[ch][..len - first].copy_from_slice(&src[first..]);
            if let Some(i) = src.iter().rposition(|v| v.abs() > QUIET_LEVEL) {
                last_sound = Some(last_sound.map_or(i, |l| l.max(i)));
            }
        }
        self.quiet_run = match last_sound {
            Some(i) => (len - 1 - i) as u64,
            None => self.quiet_run.saturating_add(len as u64),
        };
    }

    fn send_block(&mut self, index: u64) {
        if let Some(data) = self.cur_in.take()
            && let Err(e) = self.ends.to_worker.try_send(InBlock { epoch: self.epoch, index, quiet: self.block_quiet, song_start: self.song_start, data })
        {
            // The worker is gone or the channel is full (cannot happen: it holds the pool):
            // reuse the buffer for the next block; this one is lost.
            self.cur_in = Some(e.into_inner().data);
            return;
        }
        self.cur_in = match self.ends.free_in.try_recv() {
            Ok(b) => Some(b),
            Err(_) if self.rendering() && !self.tripped => self.wait_render(|s, t| s.ends.free_in.recv_timeout(t)),
            Err(_) => None,
        };
        self.block_quiet = self.quiet_run >= self.latency;
    }

    /// While the host renders: block until `f` yields, as long as the worker lives (its ends of
    /// the channels are connected) and makes progress (the watchdog). Counts the time against
    /// the pace's lead.
    fn wait_render<T>(&mut self, f: impl Fn(&Self, Duration) -> Result<T, RecvTimeoutError>) -> Option<T> {
        let start = Instant::now();
        let mut seen = self.shared.progress.load(Ordering::Acquire);
        let mut since = start;
        let got = permit_alloc(|| {
            loop {
                match f(self, Duration::from_millis(50)) {
                    Ok(v) => return Ok(v),
                    Err(RecvTimeoutError::Disconnected) => return Err(false),
                    Err(RecvTimeoutError::Timeout) => {
                        let p = self.shared.progress.load(Ordering::Acquire);
                        if p != seen {
                            (seen, since) = (p, Instant::now());
                        } else if since.elapsed() >= self.watchdog {
                            return Err(true);
                        }
                    }
                }
            }
        });
        self.pace.add_wait(start.elapsed());
        match got {
            Ok(v) => Some(v),
            Err(tripped) => {
                if tripped {
                    self.tripped = true;
                    let secs = self.watchdog.as_secs() as u32;
                    // Rendering: no real-time deadline, so logging and the status lock are fine.
                    permit_alloc(|| self.shared.set_problem(Problem::Watchdog(secs)));
                }
                None
            }
        }
    }

    /// The next message from the worker, waiting as the host's pace allows (see the module docs).
    fn next_message(&mut self) -> Option<OutBlock> {
        if let Ok(m) = self.ends.from_worker.try_recv() {
            return Some(m);
        }
        if self.tripped {
            return None;
        }
        if self.rendering() {
            return self.wait_render(|s, t| s.ends.from_worker.recv_timeout(t));
        }
        let budget = self.pace.wait_budget();
        if budget.is_zero() {
            return None;
        }
        // The host is ahead of the clock by more than this: poll, without allocating or locking.
        let start = Instant::now();
        let mut spins = 0u32;
        let got = loop {
            if let Ok(m) = self.ends.from_worker.try_recv() {
                break Some(m);
            }
            let spent = start.elapsed();
            if spent >= budget {
                break None;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep((budget - spent).min(Duration::from_micros(200)));
            }
        };
        self.pace.add_wait(start.elapsed());
        got
    }

    /// Make `cur_out` hold output block `j` if it is there (waiting as the pace allows).
    fn fetch(&mut self, j: u64) -> bool {
        if self.cur_out.as_ref().is_some_and(|b| b.index == j && b.epoch == self.epoch) {
            return true;
        }
        if let Some(b) = self.cur_out.take() {
            self.recycle(b.data);
        }
        loop {
            let msg = match self.ahead.take() {
                Some(m) => m,
                None => match self.next_message() {
                    Some(m) => m,
                    None => return false,
                },
            };
            if msg.epoch != self.epoch || msg.index < j {
                self.recycle(msg.data);
                continue;
            }
            if msg.index > j {
                self.ahead = Some(msg);
                return false;
            }
            self.cur_out = Some(msg);
            return true;
        }
    }

    /// Whether output block `j + 1` is already here and valid (without waiting).
    fn next_ready(&mut self, j: u64) -> bool {
        loop {
            if let Some(a) = &self.ahead {
                return a.epoch == self.epoch && a.index == j + 1 && a.valid;
            }
            match self.ends.from_worker.try_recv() {
                Ok(m) if m.epoch != self.epoch || m.index <= j => self.recycle(m.data),
                Ok(m) => self.ahead = Some(m),
                Err(_) => return false,
            }
        }
    }

    fn render(
        &mut self,
        main: &mut [&mut [f32]],
        aux: &mut [Option<&mut [&mut [f32]]>],
        off: usize,
        len: usize,
        kept: &[bool; MAX_STEMS],
        params: &MdxParams,
    ) {
        let (s_n, outs) = (self.stems, self.outputs);
        // Unused stem ports stay silent.
        for port in aux.iter_mut().skip(outs).flatten() {
            for ch in port.iter_mut() {
                ch[off..off + len].fill(0.0);
            }
        }
        let hh = self.block;
        let (j, o) = if self.pos >= self.audio_delay {
            let rel = self.pos - self.audio_delay;
            (rel / hh as u64, (rel % hh as u64) as usize)
        } else {
            (0, 0)
        };
        // Before the stream's first answer is due there is nothing to play but the dry signal.
        let due = self.pos >= self.audio_delay && j >= self.first_block;
        let usable = due && !self.tripped && self.fetch(j) && self.cur_out.as_ref().is_some_and(|b| b.valid);
        if !usable {
            self.wet = 0.0;
            if due && self.missed != Some(j) && self.shared.state() == EngineState::Ready {
                self.missed = Some(j);
                self.shared.dropouts.fetch_add(1, Ordering::Relaxed);
                self.shared.changed();
            }
        }
        // Fade out ahead of a block that will not be there: decided once the rest of this block
        // is no longer than a fade, from what has arrived (a render waits instead).
        let fade_len = (1.0 / self.fade_step) as usize;
        let remaining = hh - o;
        let fade_out = usable
            && remaining <= fade_len.max(len)
            && !self.rendering()
            && self.pace.wait_budget().is_zero()
            && !self.next_ready(j);
        let out_step = if fade_out { self.wet / (remaining.max(1) as f32) } else { 0.0 };
        let ring = self.dry[0].len() as u64;
        let data: &[f32] = match (&self.cur_out, usable) {
            (Some(b), true) => &b.data,
            _ => &[],
        };
        for t in 0..len {
            if fade_out {
                self.wet = (self.wet - out_step).max(0.0);
            } else if usable && self.wet < 1.0 {
                self.wet = (self.wet + self.fade_step).min(1.0);
            }
            let wet = self.wet;
            let at = self.dry_pos + t as u64;
            let d = ((at + ring - self.latency % ring) % ring) as usize;
            let dry = [self.dry[0][d], self.dry[1][d]];
            let mut mix = [0f32; 2];
            for (s, sp) in params.stems.iter().enumerate().take(outs) {
                let g = sp.gain.smoothed.next();
                let target = kept[s] as u8 as f32;
                let w = &mut self.weights[s];
                *w = if *w < target { (*w + self.fade_step).min(target) } else { (*w - self.fade_step).max(target) };
                for (ch, m) in mix.iter_mut().enumerate() {
                    let v = if !usable {
                        0.0
                    } else if s < s_n {
                        data[(s * 2 + ch) * hh + o + t]
                    } else {
                        // The complement of a single-target model: the input minus the target.
                        dry[ch] - data[ch * hh + o + t]
                    } * g
                        * wet;
                    if let Some(c) = aux.get_mut(s).and_then(|p| p.as_mut()).and_then(|port| port.get_mut(ch)) {
                        c[off + t] = v;
                    }
                    *m += v * *w;
                }
            }
            for (ch, out) in main.iter_mut().enumerate().take(2) {
                out[off + t] = mix[ch] + (1.0 - wet) * dry[ch];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The audio side and the inference thread together, with a stand-in engine (no model,
    //! no host): offline exactness with resampling and random block sizes, the real-time dry
    //! fallback and its crossfades, measured renders, and timeline anchoring.
    use super::*;
    use crate::dsp::overlap::{self, OverlapParams, Scheme};
    use crate::plugin::worker::{ChunkEngine, EngineSource, WorkerHandle, WorkerOptions, link};
    use std::sync::RwLock;
    use std::time::{Duration, Instant};

    /// Output depends on the position in the chunk, so misaligned chunks would show.
    struct Fake {
        c: usize,
        stems: usize,
        delay: Duration,
        /// Only the first `slow_chunks` chunks take `delay` (all when `None`)...
        slow_chunks: Option<usize>,
        /// ...and the first `fast_chunks` take no time at all.
        fast_chunks: usize,
        done: usize,
    }

    fn fake_chunk(c: usize, stems: usize, input: &[f32], out: &mut [f32]) {
        for s in 0..stems {
            for ch in 0..2 {
                for t in 0..c {
                    out[(s * 2 + ch) * c + t] = (s + 1) as f32 * input[ch * c + t] * (1.0 + t as f32 / c as f32) / (stems * 2) as f32;
                }
            }
        }
    }

    impl ChunkEngine for Fake {
        fn process(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), String> {
            if self.done >= self.fast_chunks && self.slow_chunks.is_none_or(|n| self.done < n) {
                std::thread::sleep(self.delay);
            }
            self.done += 1;
            fake_chunk(self.c, self.stems, input, out);
            Ok(())
        }
        fn chunk_len(&self) -> usize {
            self.c
        }
        fn num_stems(&self) -> usize {
            self.stems
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn signal(n: usize) -> [Vec<f32>; 2] {
        let f = |k: f32| (0..n).map(|i| 0.4 * (i as f32 * k).sin() + 0.2 * ((i * 7919 % 1000) as f32 / 1000.0 - 0.5)).collect();
        [f(0.011), f(0.017)]
    }

    /// How `run` paces the host.
    #[derive(Clone, Copy, PartialEq)]
    enum Host {
        /// Declares an offline render (`ProcessMode::Offline`).
        Offline,
        /// Real time, each block handed over at its audio time.
        Paced,
        /// Says real time but calls as fast as it can (an undeclared render).
        Fast,
    }

    struct Run {
        out: Vec<[Vec<f32>; 2]>,
        worst: Duration,
        shared: Arc<Shared>,
    }

    /// Run `x` (then silence) through an activated audio side + worker; `out` is [port][ch].
    fn run(plan: &StreamPlan, host: Host, engine: Fake, x: &[Vec<f32>; 2], seed: u64, complement: bool) -> Run {
        let names = Arc::new(RwLock::new(vec![]));
        let params = MdxParams::new(names.clone());
        for sp in &params.stems {
            // What the host wrapper does on activation.
            sp.gain.smoothed.reset(sp.gain.value());
        }
        let shared = Arc::new(Shared::new(names));
        let (a, w) = link(plan);
        let worker = WorkerHandle::spawn(
            plan.clone(),
            EngineSource::Ready(Box::new(engine)),
            shared.clone(),
            w,
            WorkerOptions { realtime: host != Host::Offline, slow: Duration::ZERO, slow_chunks: None },
        )
        .unwrap();
        let opts = AudioOptions { offline: host == Host::Offline, complement, watchdog: Duration::from_secs(20), position_offset: 0 };
        let mut side = AudioSide::new(plan, a, shared.clone(), opts);
        let total = x[0].len() + plan.latency_samples();
        let mut out: Vec<[Vec<f32>; 2]> = (0..1 + MAX_STEMS).map(|_| [vec![0.0; total], vec![0.0; total]]).collect();
        let mut state = seed;
        let mut pos = 0;
        let mut worst = Duration::ZERO;
        let start = Instant::now();
        while pos < total {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let n = (1 + (state >> 33) as usize % plan.max_block).min(total - pos);
            if host == Host::Paced {
                let due = start + Duration::from_secs_f64(pos as f64 / plan.host_rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let (main_out, aux_out) = out.split_at_mut(1);
            let [l, r] = &mut main_out[0];
            for (i, v) in l[pos..pos + n].iter_mut().enumerate() {
                *v = x[0].get(pos + i).copied().unwrap_or(0.0);
            }
            for (i, v) in r[pos..pos + n].iter_mut().enumerate() {
                *v = x[1].get(pos + i).copied().unwrap_or(0.0);
            }
            let mut main: [&mut [f32]; 2] = [&mut l[pos..pos + n], &mut r[pos..pos + n]];
            let mut chans: Vec<[&mut [f32]; 2]> =
                aux_out.iter_mut().map(|[a, b]| [&mut a[pos..pos + n], &mut b[pos..pos + n]]).collect();
            let mut ports: Vec<Option<&mut [&mut [f32]]>> = chans.iter_mut().map(|c| Some(&mut c[..])).collect();
            let t = Instant::now();
            side.process(&mut main, &mut ports, &params, Position::default());
            worst = worst.max(t.elapsed());
            pos += n;
        }
        drop(side);
        drop(worker);
        Run { out, worst, shared }
    }

    fn fake(plan: &StreamPlan, delay: Duration) -> Fake {
        Fake { c: plan.chunk, stems: plan.stems, delay, slow_chunks: None, fast_chunks: 0, done: 0 }
    }

    /// The CLI's path for the fake engine: resample, UVR overlap-add, resample back.
    fn whole_signal(plan: &StreamPlan, x: &[Vec<f32>; 2]) -> Vec<Vec<Vec<f32>>> {
        let (c, stems, host) = (plan.chunk, plan.stems, plan.host_rate);
        let mix = crate::audio::resample(x, host, plan.model_rate).unwrap();
        let p = OverlapParams { chunk: c, overlap: plan.overlap, stems, batch: 1 };
        let mut runner = |i: &[f32], m: usize, o: &mut [f32]| -> Result<(), ()> {
            for j in 0..m {
                fake_chunk(c, stems, &i[j * 2 * c..(j + 1) * 2 * c], &mut o[j * stems * 2 * c..(j + 1) * stems * 2 * c]);
            }
            Ok(())
        };
        let want = overlap::separate(Scheme::Uvr, &p, &mix, &mut runner, &mut |_, _| {}).unwrap();
        want.iter().map(|s| crate::audio::resample(s, plan.model_rate, host).unwrap()).collect()
    }

    fn check_equals_whole_signal(plan: &StreamPlan, r: &Run, x: &[Vec<f32>; 2], what: &str) {
        let (lat, n, stems) = (plan.latency_samples(), x[0].len(), plan.stems);
        let want = whole_signal(plan, x);
        let cmp = n - 3000; // the CLI cuts at the song's end before resampling back
        for s in 0..stems {
            for ch in 0..2 {
                let got = &r.out[1 + s][ch][lat..lat + cmp];
                let e = got.iter().zip(&want[s][ch][..cmp]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                let first = got.iter().zip(&want[s][ch][..cmp]).position(|(a, b)| (a - b).abs() >= 1e-5);
                assert!(e < 1e-5, "{what}: stem {s} ch {ch}: {e}, first at {first:?} of {cmp}");
            }
        }
        for ch in 0..2 {
            let sum: Vec<f32> = (0..cmp).map(|t| (0..stems).map(|s| r.out[1 + s][ch][lat + t]).sum()).collect();
            let e = r.out[0][ch][lat..lat + cmp].iter().zip(&sum).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(e < 1e-5, "{what}: main ch {ch}: {e}");
            for port in &r.out[1 + stems..] {
                assert!(port[ch].iter().all(|v| *v == 0.0));
            }
        }
    }

    #[test]
    fn offline_output_equals_the_whole_signal_pipeline_after_the_latency() {
        for (host, k, max_block) in [(44100u32, 4usize, 700usize), (48000, 2, 4096), (96000, 4, 64)] {
            let plan = StreamPlan::new(host, 44100, 1984, k, 3, max_block, 0).unwrap();
            let x = signal(host as usize / 2);
            let r = run(&plan, Host::Offline, fake(&plan, Duration::ZERO), &x, host as u64, false);
            check_equals_whole_signal(&plan, &r, &x, &format!("{host} Hz offline"));
        }
    }

    #[test]
    fn an_undeclared_render_with_a_slow_engine_still_equals_the_whole_signal_pipeline() {
        // The host says "real time" but calls as fast as it can. The first 0.8 s of chunks are
        // instant (the waits on the host's lead keep up until the render is recognised, after
        // 0.3 s of audio); after that every chunk takes 25 ms, far slower than the 11 ms hop:
        // only waiting for every result gives the stems.
        for host in [44100u32, 48000] {
            let plan = StreamPlan::new(host, 44100, 1984, 4, 2, 512, 0).unwrap();
            let x = signal(host as usize * 2);
            let engine = Fake { fast_chunks: 72, ..fake(&plan, Duration::from_millis(25)) };
            let r = run(&plan, Host::Fast, engine, &x, 3, false);
            assert!(r.shared.rendering.load(Ordering::Relaxed), "the render was not recognised");
            check_equals_whole_signal(&plan, &r, &x, &format!("{host} Hz undeclared render"));
            assert_eq!(r.shared.dropouts.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn realtime_with_a_slow_engine_plays_the_delayed_dry_signal_and_never_waits() {
        // 60 ms per chunk; a hop is 496 samples = 11 ms: every answer is late.
        let plan = StreamPlan::new(44100, 44100, 1984, 4, 2, 256, 0).unwrap();
        let lat = plan.latency_samples();
        let x = signal(22050);
        let r = run(&plan, Host::Paced, fake(&plan, Duration::from_millis(60)), &x, 5, false);
        assert!(r.worst < Duration::from_millis(30), "process took {:?} (waiting for the engine would take 60 ms)", r.worst);
        for ch in 0..2 {
            assert_eq!(&r.out[0][ch][lat..lat + x[0].len()], &x[ch][..]);
            assert!(r.out[1][ch].iter().chain(&r.out[2][ch]).all(|v| *v == 0.0));
        }
    }

    /// Largest sample-to-sample step of `a`.
    fn max_step(a: &[f32]) -> f32 {
        a.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn recovering_from_slow_chunks_never_plays_silence_and_every_switch_is_a_crossfade() {
        // The first 6 chunks take 150 ms (a hop is 11 ms), the rest are instant.
        let plan = StreamPlan::new(44100, 44100, 1984, 4, 2, 128, 0).unwrap();
        let lat = plan.latency_samples();
        let x = signal(44100 * 2);
        let engine = Fake { slow_chunks: Some(6), ..fake(&plan, Duration::from_millis(150)) };
        let r = run(&plan, Host::Paced, engine, &x, 11, false);
        let n = x[0].len();
        let main = &r.out[0];
        // Never exact silence where the (delayed) input plays: 32-sample windows.
        for ch in 0..2 {
            for w in (lat..lat + n - 32).step_by(32) {
                let input_peak = x[ch][w - lat..w - lat + 32].iter().fold(0f32, |m, v| m.max(v.abs()));
                let out_peak = main[ch][w..w + 32].iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(input_peak < 0.01 || out_peak > 0.0, "silence at {w} (ch {ch}) while the input plays");
            }
        }
        // Both the dry input and the separated mix move by at most `s` per sample; a 10 ms
        // crossfade between two signals within `peak` of each other adds at most
        // 2 * peak / fade frames per sample.
        let fade = (FADE_SECONDS * 44100.0) as f32;
        let peak = x.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
        let wet_sum: Vec<f32> = (0..main[0].len()).map(|t| r.out[1][0][t] + r.out[2][0][t]).collect();
        let bound = max_step(&x[0]).max(max_step(&wet_sum[lat..])) + 2.0 * 2.0 * peak / fade;
        let step = max_step(&main[0][lat..lat + n]);
        assert!(step <= bound, "largest step {step} > bound {bound}");
        assert!(r.shared.dropouts.load(Ordering::Relaxed) > 0, "the slow chunks caused no dry fallback: the test proves nothing");
        // The stems are back by the end.
        let tail = lat + n - 4000..lat + n - 1000;
        assert!(r.out[1][0][tail].iter().any(|v| *v != 0.0), "the stems never came back");
    }

    #[test]
    fn the_complement_output_is_the_delayed_input_minus_the_target() {
        let plan = StreamPlan::new(44100, 44100, 1984, 2, 1, 512, 0).unwrap();
        let lat = plan.latency_samples();
        let x = signal(20000);
        let r = run(&plan, Host::Offline, fake(&plan, Duration::ZERO), &x, 2, true);
        for ch in 0..2 {
            for t in lat..lat + x[0].len() - 1000 {
                let want = x[ch][t - lat] - r.out[1][ch][t];
                assert!((r.out[2][ch][t] - want).abs() < 1e-6, "ch {ch} at {t}");
                // Target + complement = the input: the main output is the dry signal.
                assert!((r.out[0][ch][t] - x[ch][t - lat]).abs() < 1e-5);
            }
            assert!(r.out[3][ch].iter().all(|v| *v == 0.0));
        }
    }
}
