//! The audio thread's side of the stream. Built in `activate` (main thread, where every buffer
//! is allocated), then owned and used only by `process` and `reset` on the audio thread.
//!
//! Per host buffer it:
//! - copies the input into the current input block (a pooled buffer) and into the dry delay
//!   line; every `Hh` frames the block goes to the inference thread (`try_send`) and a fresh
//!   buffer comes from the free pool (`try_recv`);
//! - plays output block `j` from stream frame `j * Hh + A` on ([`StreamPlan::audio_delay`]):
//!   stems times their gains on the stem outputs, the kept stems summed on the main output;
//! - if block `j` is not there in time (or is marked invalid), plays the dry input delayed by
//!   the full latency on the main output and silence on the stem outputs, counts a dropout,
//!   and fades the stems back in over 10 ms once results are there again.
//!
//! Real-time mode: nothing here allocates, frees, locks, blocks or makes a syscall (received
//! buffers are recycled through the pools, never dropped). Offline mode (a bounce): when a
//! result or a free buffer is not there yet, it *waits* on the channel, so the bounce is
//! complete and deterministic; that wait may allocate inside crossbeam and is wrapped in
//! `permit_alloc` (offline rendering has no real-time deadline).

use super::params::{MAX_STEMS, MdxParams, kept_stems};
use super::plan::StreamPlan;
use super::shared::{EngineState, Shared};
use super::worker::{AudioEnds, InBlock, OutBlock};
use crossbeam_channel::RecvTimeoutError;
use nice_plug::util::permit_alloc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Length of the fade from the dry fallback back to the separated signal.
const FADE_SECONDS: f32 = 0.010;

/// See the module docs.
pub struct AudioSide {
    block: usize,
    audio_delay: u64,
    latency: u64,
    stems: usize,
    realtime: bool,
    ends: AudioEnds,
    shared: Arc<Shared>,
    /// Stream epoch (16 bits), bumped by `reset`.
    epoch: u32,
    /// Frames since the last reset.
    pos: u64,
    /// The input block being filled; `None` when the pool was empty at the block's start
    /// (that block is then not sent).
    cur_in: Option<Vec<f32>>,
    /// Dry delay line, 2 channels, `latency + max_block` frames each.
    dry: [Vec<f32>; 2],
    /// The output block being played, and one received ahead of time.
    cur_out: Option<OutBlock>,
    ahead: Option<OutBlock>,
    /// Parking for buffers that could not go back to their pool (never expected; never
    /// dropped here either). Capacity: every buffer in the system.
    parked: Vec<Vec<f32>>,
    /// Wet/dry mix of the main output and gain of the stem outputs, 0..=1.
    wet: f32,
    fade_step: f32,
    /// Output block last counted as a dropout.
    missed: Option<u64>,
}

impl AudioSide {
    /// Main thread, in `activate`: allocate everything for `plan`.
    pub fn new(plan: &StreamPlan, ends: AudioEnds, shared: Arc<Shared>, realtime: bool) -> Self {
        let latency = plan.latency_samples();
        let ring = latency + plan.max_block + 1;
        let parked = Vec::with_capacity(ends.total_buffers);
        let mut side = AudioSide {
            block: plan.block,
            audio_delay: plan.audio_delay as u64,
            latency: latency as u64,
            stems: plan.stems.min(MAX_STEMS),
            realtime,
            ends,
            shared,
            epoch: 0,
            pos: 0,
            cur_in: None,
            dry: [vec![0.0; ring], vec![0.0; ring]],
            cur_out: None,
            ahead: None,
            parked,
            wet: 1.0,
            fade_step: 1.0 / (FADE_SECONDS * plan.host_rate as f32).max(1.0),
            missed: None,
        };
        side.cur_in = side.ends.free_in.try_recv().ok();
        side.publish_position();
        side
    }

    /// Audio thread: start a new stream (transport jump, `reset`). Does not allocate.
    pub fn reset(&mut self) {
        self.epoch = (self.epoch + 1) & 0xffff;
        self.pos = 0;
        for d in &mut self.dry {
            d.fill(0.0);
        }
        if let Some(b) = self.cur_out.take() {
            self.recycle(b.data);
        }
        if let Some(b) = self.ahead.take() {
            self.recycle(b.data);
        }
        if self.cur_in.is_none() {
            self.cur_in = self.ends.free_in.try_recv().ok();
        }
        self.wet = 1.0;
        self.missed = None;
        self.publish_position();
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

    /// Audio thread: process one host buffer. `main` holds the input on entry (2 channels) and
    /// receives the main output; `aux[s]` is stem output `s` (2 channels) when the host gave it.
    pub fn process(&mut self, main: &mut [&mut [f32]], aux: &mut [Option<&mut [&mut [f32]]>], params: &MdxParams) {
        let n = main.first().map_or(0, |c| c.len());
        let kept = kept_stems(params, self.stems);
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
            off += len;
            if self.pos % hh as u64 == 0 {
                self.send_block(self.pos / hh as u64 - 1);
            }
        }
        self.publish_position();
    }

    fn take_input(&mut self, main: &[&mut [f32]], off: usize, len: usize) {
        let hh = self.block;
        let at = (self.pos % hh as u64) as usize;
        let ring = self.dry[0].len();
        let w = (self.pos % ring as u64) as usize;
        for ch in 0..2 {
            let src = &main[ch.min(main.len() - 1)][off..off + len];
            if let Some(buf) = self.cur_in.as_mut() {
                buf[ch * hh + at..ch * hh + at + len].copy_from_slice(src);
            }
            let first = len.min(ring - w);
            self.dry[ch][w..w + first].copy_from_slice(&src[..first]);
            self.dry[ch][..len - first].copy_from_slice(&src[first..]);
        }
    }

    fn send_block(&mut self, index: u64) {
        if let Some(data) = self.cur_in.take() {
            if let Err(e) = self.ends.to_worker.try_send(InBlock { epoch: self.epoch, index, data }) {
                // The worker is gone or the channel is full (cannot happen: it holds the pool):
                // reuse the buffer for the next block; this one is lost.
                self.cur_in = Some(e.into_inner().data);
                return;
            }
        }
        self.cur_in = match self.ends.free_in.try_recv() {
            Ok(b) => Some(b),
            Err(_) if !self.realtime => self.wait(|s, t| s.ends.free_in.recv_timeout(t)),
            Err(_) => None,
        };
    }

    /// Offline only: block until `f` yields, as long as the worker lives.
    fn wait<T>(&self, f: impl Fn(&Self, Duration) -> Result<T, RecvTimeoutError>) -> Option<T> {
        permit_alloc(|| loop {
            match f(self, Duration::from_millis(200)) {
                Ok(v) => return Some(v),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    if !self.shared.worker_alive.load(Ordering::Acquire) {
                        return None;
                    }
                }
            }
        })
    }

    /// Make `cur_out` hold output block `j` if it is there (offline: wait for it).
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
                None => match self.ends.from_worker.try_recv() {
                    Ok(m) => m,
                    Err(_) if !self.realtime => match self.wait(|s, t| s.ends.from_worker.recv_timeout(t)) {
                        Some(m) => m,
                        None => return false,
                    },
                    Err(_) => return false,
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

    fn render(
        &mut self,
        main: &mut [&mut [f32]],
        aux: &mut [Option<&mut [&mut [f32]]>],
        off: usize,
        len: usize,
        kept: &[bool; MAX_STEMS],
        params: &MdxParams,
    ) {
        let s_n = self.stems;
        // Unused stem ports stay silent.
        for port in aux.iter_mut().skip(s_n).flatten() {
            for ch in port.iter_mut() {
                ch[off..off + len].fill(0.0);
            }
        }
        if self.pos < self.audio_delay {
            // Before the first answer can be due: the stream's own silence (the dry signal,
            // delayed by the latency, is silent here too).
            for ch in main.iter_mut() {
                ch[off..off + len].fill(0.0);
            }
            for port in aux.iter_mut().take(s_n).flatten() {
                for ch in port.iter_mut() {
                    ch[off..off + len].fill(0.0);
                }
            }
            for s in params.stems.iter().take(s_n) {
                for _ in 0..len {
                    s.gain.smoothed.next();
                }
            }
            return;
        }
        let hh = self.block;
        let rel = self.pos - self.audio_delay;
        let j = rel / hh as u64;
        let o = (rel % hh as u64) as usize;
        let present = self.fetch(j);
        let usable = present && self.cur_out.as_ref().is_some_and(|b| b.valid);
        if !usable {
            self.wet = 0.0;
            if self.missed != Some(j) && self.shared.state() == EngineState::Ready {
                self.missed = Some(j);
                self.shared.dropouts.fetch_add(1, Ordering::Relaxed);
            }
        }
        let ring = self.dry[0].len() as u64;
        let data: &[f32] = match (&self.cur_out, usable) {
            (Some(b), true) => &b.data,
            _ => &[],
        };
        for t in 0..len {
            if usable && self.wet < 1.0 {
                self.wet = (self.wet + self.fade_step).min(1.0);
            }
            let wet = self.wet;
            let at = self.pos + t as u64;
            let d = ((at + ring - self.latency % ring) % ring) as usize;
            let mut mix = [0f32; 2];
            for (s, sp) in params.stems.iter().enumerate().take(s_n) {
                let g = sp.gain.smoothed.next();
                for (ch, m) in mix.iter_mut().enumerate() {
                    let v = if usable { data[(s * 2 + ch) * hh + o + t] * g * wet } else { 0.0 };
                    if let Some(port) = aux.get_mut(s).and_then(|p| p.as_mut()) {
                        if let Some(c) = port.get_mut(ch) {
                            c[off + t] = v;
                        }
                    }
                    if kept[s] {
                        *m += v;
                    }
                }
            }
            for (ch, out) in main.iter_mut().enumerate().take(2) {
                let dry = self.dry[ch][d];
                out[off + t] = mix[ch] + (1.0 - wet) * dry;
            }
        }
    }
}
