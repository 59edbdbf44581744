//! The audio thread's side of the stream ([`AudioSide`]). Built in `activate` (main thread,
//! where every buffer is allocated), then owned and used only by `process` and `reset` on the
//! audio thread. It is made of one part per concern:
//! - [`Pace`] (`../pace.rs`): how long a call may wait for a result. Live, at most a quarter of
//!   the host's largest buffer and never more than 2 ms in one call, a quarter of the audio in
//!   all ([`super::pace::live_wait_bound`]); when the host renders (declared offline, or proven
//!   by [`Pace`]) every result is waited for, bounded by the render watchdog: after `watchdog`
//!   seconds without progress the rest of the activation plays dry.
//! - [`transport::Transport`]: stream positions and epochs; a new stream starts on activation,
//!   on `reset`, and when the playing position jumps, anchored to the project timeline where
//!   the host gives a position ([`StreamPlan::anchor`]).
//! - [`pools::Pools`]: the channel ends and buffers shared with the inference thread. Every `b`
//!   frames the input block goes to the worker (`try_send`) and a fresh buffer comes from the
//!   free pool; answers are taken in order, stale ones recycled.
//! - [`dry::DryLine`] and [`dry::Fades`]: the input delayed by the full latency, and the gains
//!   of every crossfade.
//!
//! Per host buffer, [`AudioSide::process`] plays output block `j` from stream position
//! `j * b + A` on ([`StreamPlan::audio_delay`]): stems times their gains on the stem outputs,
//! the kept stems summed on the main output (mute, solo and preset changes ramp over 10 ms); for
//! single-target models one more output carries the complement (the delayed input minus the
//! target). When block `j` is not there in time (or is marked invalid) it plays the delayed dry
//! input on the main output and silence on the stem outputs, counts a dropout, and crossfades
//! back to the stems over 10 ms once results are there again (at once where the dry signal played
//! was silence: there is nothing to fade from). A block that will be missing is
//! foreseen when the last 10 ms of the previous one begin (the next result is waited for there,
//! within the live budget), and those 10 ms fade out, so both directions are whole crossfades.
//!
//! After each buffer, [`meter::publish`] hands the outputs' peaks to the editor's meters.
//!
//! Real time: nothing here allocates, frees or locks (received buffers are recycled through the
//! pools, never dropped). The live wait polls the channel with short sleeps. While the host
//! renders, waits block on the channel (which may allocate inside crossbeam, so they are
//! wrapped in `permit_alloc`).

mod dry;
pub mod meter;
mod pools;
#[cfg(test)]
mod tests;
mod transport;

use super::pace::{Declared, Pace};
use super::params::{MAX_STEMS, MdxParams, kept_stems};
use super::plan::StreamPlan;
use super::shared::{EngineState, Problem, Shared};
use super::worker::AudioEnds;
use crossbeam_channel::RecvTimeoutError;
use dry::{DryLine, Fades};
use nice_plug::util::permit_alloc;
use pools::Pools;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use transport::Transport;

/// Length of every crossfade (wet/dry both ways, mute/solo/preset ramps).
pub const FADE_SECONDS: f32 = 0.010;

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
    /// What the host declared: an offline render (wait for every result), a live mode, or
    /// real time (where [`Pace`] may still prove a render).
    pub declared: Declared,
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
    /// Frames per input/output block.
    block: usize,
    /// Stems the worker delivers, and outputs (stems plus the complement).
    stems: usize,
    outputs: usize,
    shared: Arc<Shared>,
    transport: Transport,
    pools: Pools,
    dry: DryLine,
    fades: Fades,
    pace: Pace,
    clock: Instant,
    watchdog: Duration,
    /// The inference thread, unparked when a result is waited for (it polls, parked between
    /// polls: the first block of a burst is answered at once, not at its next poll).
    waker: Option<std::thread::Thread>,
    /// The render watchdog fired: dry from now on.
    tripped: bool,
    /// Whether the input was silent for a whole latency before the block being filled began.
    block_quiet: bool,
    /// Output block last counted as a dropout.
    missed: Option<u64>,
}

impl AudioSide {
    /// Main thread, in `activate`: allocate everything for `plan`.
    pub fn new(plan: &StreamPlan, ends: AudioEnds, shared: Arc<Shared>, opts: AudioOptions, waker: Option<std::thread::Thread>) -> Self {
        let stems = plan.stems.min(MAX_STEMS);
        let complement = opts.complement && stems < MAX_STEMS;
        let side = AudioSide {
            block: plan.block,
            stems,
            outputs: stems + complement as usize,
            shared,
            transport: Transport::new(plan, opts.position_offset),
            pools: Pools::new(ends),
            dry: DryLine::new(plan.latency_samples(), plan.max_block),
            fades: Fades::new(plan.host_rate),
            pace: Pace::new(plan.host_rate, plan.max_block, opts.declared),
            clock: Instant::now(),
            watchdog: opts.watchdog,
            waker,
            tripped: false,
            block_quiet: true,
            missed: None,
        };
        side.shared.rendering.store(side.pace.rendering(), Ordering::Release);
        side.transport.publish(&side.shared);
        side
    }

    /// Audio thread: the host restarts the stream (`reset`: transport jump, or before a new
    /// render). The dry history is cleared; the next buffer starts a new stream. Does not
    /// allocate.
    pub fn reset(&mut self) {
        self.dry.clear();
        self.transport.restart();
    }

    /// Start a new stream when the host's position says so ([`Transport::follow`]).
    fn follow_transport(&mut self, position: Position) {
        if self.transport.follow(position) {
            self.pools.new_stream(self.block, self.transport.in_offset());
            self.block_quiet = self.dry.quiet();
            self.missed = None;
            self.transport.publish(&self.shared);
        }
    }

    /// Whether the host renders (nothing may be missed).
    fn rendering(&self) -> bool {
        self.pace.rendering()
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
        let render = self.pace.on_call(self.clock.elapsed().as_secs_f64(), n, position.playing);
        if self.shared.rendering.swap(render, Ordering::AcqRel) != render {
            self.shared.changed();
        }
        self.follow_transport(position);
        let kept = kept_stems(params, self.outputs);
        let mut off = 0;
        while off < n {
            let len = (n - off).min(self.transport.room());
            self.pools.write_input(main, off, len, self.block, self.transport.in_offset());
            self.dry.write(main, off, len);
            self.render(main, aux, off, len, &kept, params);
            self.dry.advance(len);
            off += len;
            if let Some(index) = self.transport.advance(len) {
                self.send_block(index);
            }
        }
        self.transport.publish(&self.shared);
        meter::publish(&self.shared, main, aux);
    }

    /// Send input block `index` and take a fresh buffer for the next one, waiting for one as
    /// the pace allows when the worker has not given one back yet.
    fn send_block(&mut self, index: u64) {
        let (epoch, song_start) = (self.transport.epoch(), self.transport.song_start());
        if !self.pools.send(epoch, index, self.block_quiet, song_start) && !self.tripped {
            if self.rendering() {
                self.wait_render(|s, t| s.pools.wait_free_input(t));
            } else {
                // The worker is behind (a host faster than real time, not yet a proven render).
                self.wait_live(|s| s.pools.take_free_input().then_some(()));
            }
        }
        self.block_quiet = self.dry.quiet();
    }

    /// While the host renders: block on `f` until it yields, as long as the worker lives (its
    /// ends of the channels are connected) and makes progress (the watchdog). Returns whether
    /// it yielded.
    fn wait_render(&mut self, mut f: impl FnMut(&mut Self, Duration) -> Result<(), RecvTimeoutError>) -> bool {
        let start = Instant::now();
        let mut seen = self.shared.progress.load(Ordering::Acquire);
        let mut since = start;
        let got = permit_alloc(|| {
            loop {
                match f(self, Duration::from_millis(50)) {
                    Ok(()) => return Ok(()),
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
            Ok(()) => true,
            Err(tripped) => {
                if tripped {
                    self.tripped = true;
                    let secs = self.watchdog.as_secs() as u32;
                    // Rendering: no real-time deadline, so logging and the status lock are fine.
                    permit_alloc(|| self.shared.set_problem(Problem::Watchdog(secs)));
                }
                false
            }
        }
    }

    /// Outside a render: poll `f` for as long as the live budget allows ([`Pace::wait_budget`]),
    /// without allocating or locking.
    fn wait_live<T>(&mut self, mut f: impl FnMut(&mut Self) -> Option<T>) -> Option<T> {
        let budget = self.pace.wait_budget();
        if budget.is_zero() {
            return None;
        }
        if let Some(w) = &self.waker {
            // No allocation or lock: an atomic, and a futex wake if the thread is parked.
            w.unpark();
        }
        let start = Instant::now();
        let mut spins = 0u32;
        let got = loop {
            if let Some(v) = f(self) {
                break Some(v);
            }
            let spent = start.elapsed();
            if spent >= budget {
                break None;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep((budget - spent).min(Duration::from_micros(100)));
            }
        };
        self.pace.add_wait(start.elapsed());
        got
    }

    /// Make the pools hold output block `j` if it is there, waiting as the pace allows: while
    /// rendering until it comes, else at most the live budget.
    fn fetch(&mut self, j: u64) -> bool {
        let epoch = self.transport.epoch();
        loop {
            if let Some(here) = self.pools.take_output(epoch, j) {
                return here;
            }
            if self.tripped {
                return false;
            }
            if self.rendering() {
                if !self.wait_render(|s, t| s.pools.wait_output(t)) {
                    return false;
                }
            } else {
                return self.wait_live(|s| s.pools.take_output(epoch, j)).unwrap_or(false);
            }
        }
    }

    /// Whether output block `j + 1` is here and valid, waiting for the worker's next answer as
    /// the live budget allows.
    fn next_coming(&mut self, j: u64) -> bool {
        let epoch = self.transport.epoch();
        match self.pools.next_arrived(epoch, j) {
            Some(valid) => valid,
            None => self.wait_live(|s| s.pools.next_arrived(epoch, j)).unwrap_or(false),
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
        let (j, o, due) = self.transport.out_block();
        let epoch = self.transport.epoch();
        let usable = due && !self.tripped && self.fetch(j) && self.pools.playing(epoch, j).is_some();
        if !usable {
            self.fades.cut();
            if due && self.missed != Some(j) && self.shared.state() == EngineState::Ready {
                self.missed = Some(j);
                self.shared.dropouts.fetch_add(1, Ordering::Relaxed);
                self.shared.changed();
            }
        }
        // Fade out ahead of a block that will not be there: the last `fade_len` frames of this
        // block ramp the wet gain down to zero, decided when this call reaches them, after
        // waiting for the next result within the live budget (a render waits for it instead).
        // A fade is never shorter than that window.
        let fade_len = self.fades.out_len(hh);
        let window = hh - fade_len;
        let fade_out = usable && o + len > window && !self.rendering() && !self.next_coming(j);
        let data: &[f32] = if usable { self.pools.playing(epoch, j).unwrap_or(&[]) } else { &[] };
        for t in 0..len {
            if usable && self.fades.wet() == 0.0 && self.dry.played_silence(fade_len) {
                // Stems after dry silence: nothing to crossfade from.
                self.fades.resume();
            }
            let dry = self.dry.play(t);
            let wet = if fade_out && o + t >= window {
                // Frames of the block after this one, over the window: reaches 0 at its end.
                self.fades.fade_out(hh - (o + t) - 1, fade_len)
            } else if usable {
                self.fades.fade_in()
            } else {
                self.fades.wet()
            };
            let mut mix = [0f32; 2];
            for (s, sp) in params.stems.iter().enumerate().take(outs) {
                let g = sp.gain.smoothed.next();
                let w = self.fades.weight(s, kept[s]);
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
                    *m += v * w;
                }
            }
            for (ch, out) in main.iter_mut().enumerate().take(2) {
                out[off + t] = mix[ch] + (1.0 - wet) * dry[ch];
            }
        }
    }
}
