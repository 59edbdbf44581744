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
        if let Some(data) = self.cur_in.take()
            && let Err(e) = self.ends.to_worker.try_send(InBlock { epoch: self.epoch, index, data })
        {
            // The worker is gone or the channel is full (cannot happen: it holds the pool):
            // reuse the buffer for the next block; this one is lost.
            self.cur_in = Some(e.into_inner().data);
            return;
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
                    if let Some(c) = aux.get_mut(s).and_then(|p| p.as_mut()).and_then(|port| port.get_mut(ch)) {
                        c[off + t] = v;
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

#[cfg(test)]
mod tests {
    //! The audio side and the inference thread together, with a stand-in engine (no model,
    //! no host): offline exactness with resampling and random block sizes, and the real-time
    //! dry fallback.
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
    }

    fn fake_chunk(c: usize, stems: usize, input: &[f32], out: &mut [f32]) {
        for s in 0..stems {
            for ch in 0..2 {
                for t in 0..c {
                    out[(s * 2 + ch) * c + t] = (s + 1) as f32 * input[ch * c + t] * (1.0 + t as f32 / c as f32);
                }
            }
        }
    }

    impl ChunkEngine for Fake {
        fn process(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), String> {
            std::thread::sleep(self.delay);
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

    /// Run `x` (then silence) through an activated audio side + worker; returns [port][ch].
    fn run(plan: &StreamPlan, realtime: bool, delay: Duration, x: &[Vec<f32>; 2], seed: u64) -> (Vec<[Vec<f32>; 2]>, Duration) {
        let names = Arc::new(RwLock::new(vec![]));
        let params = MdxParams::new(names.clone());
        for sp in &params.stems {
            // What the host wrapper does on activation.
            sp.gain.smoothed.reset(sp.gain.value());
        }
        let shared = Arc::new(Shared::new(names));
        let (a, w) = link(plan);
        let engine = Box::new(Fake { c: plan.chunk, stems: plan.stems, delay });
        let worker = WorkerHandle::spawn(
            plan.clone(),
            EngineSource::Ready(engine),
            shared.clone(),
            w,
            WorkerOptions { realtime, slow: Duration::ZERO, slow_chunks: None },
        )
        .unwrap();
        let mut side = AudioSide::new(plan, a, shared.clone(), realtime);
        side.reset();
        let total = x[0].len() + plan.latency_samples();
        let mut out: Vec<[Vec<f32>; 2]> = (0..1 + MAX_STEMS).map(|_| [vec![0.0; total], vec![0.0; total]]).collect();
        let mut state = seed;
        let mut pos = 0;
        let mut worst = Duration::ZERO;
        let start = Instant::now();
        while pos < total {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let n = (1 + (state >> 33) as usize % plan.max_block).min(total - pos);
            if realtime {
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
            side.process(&mut main, &mut ports, &params);
            worst = worst.max(t.elapsed());
            pos += n;
        }
        drop(side);
        drop(worker);
        (out, worst)
    }

    #[test]
    fn offline_output_equals_the_whole_signal_pipeline_after_the_latency() {
        for (host, k, max_block) in [(44100u32, 4usize, 700usize), (48000, 2, 4096), (96000, 4, 64)] {
            let (c, stems) = (1984, 3);
            let plan = StreamPlan::new(host, 44100, c, k, stems, max_block).unwrap();
            let lat = plan.latency_samples();
            let x = signal(host as usize / 2);
            let n = x[0].len();
            let (out, _) = run(&plan, false, Duration::ZERO, &x, host as u64);
            // The CLI's path: resample, UVR overlap-add, resample back.
            let mix = crate::audio::resample(&x, host, 44100).unwrap();
            let p = OverlapParams { chunk: c, overlap: k, stems, batch: 1 };
            let mut runner = |i: &[f32], m: usize, o: &mut [f32]| -> Result<(), ()> {
                for j in 0..m {
                    fake_chunk(c, stems, &i[j * 2 * c..(j + 1) * 2 * c], &mut o[j * stems * 2 * c..(j + 1) * stems * 2 * c]);
                }
                Ok(())
            };
            let want = overlap::separate(Scheme::Uvr, &p, &mix, &mut runner, &mut |_, _| {}).unwrap();
            let cmp = n - 3000; // the CLI cuts at the song's end before resampling back
            for s in 0..stems {
                let back = crate::audio::resample(&want[s], 44100, host).unwrap();
                for ch in 0..2 {
                    let got = &out[1 + s][ch][lat..lat + cmp];
                    let e = got.iter().zip(&back[ch][..cmp]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                    let first = got.iter().zip(&back[ch][..cmp]).position(|(a, b)| (a - b).abs() >= 1e-5);
                    assert!(e < 1e-5, "{host} Hz stem {s} ch {ch}: {e}, first at {first:?} of {cmp}");
                }
            }
            for ch in 0..2 {
                let sum: Vec<f32> = (0..cmp).map(|t| (0..stems).map(|s| out[1 + s][ch][lat + t]).sum()).collect();
                let e = out[0][ch][lat..lat + cmp].iter().zip(&sum).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(e < 1e-5, "{host} Hz main ch {ch}: {e}");
                for port in &out[1 + stems..] {
                    assert!(port[ch].iter().all(|v| *v == 0.0));
                }
            }
        }
    }

    #[test]
    fn realtime_with_a_slow_engine_plays_the_delayed_dry_signal_and_never_waits() {
        // 60 ms per chunk; a hop is 496 samples = 11 ms: every answer is late.
        let plan = StreamPlan::new(44100, 44100, 1984, 4, 2, 256).unwrap();
        let lat = plan.latency_samples();
        let x = signal(22050);
        let (out, worst) = run(&plan, true, Duration::from_millis(60), &x, 5);
        assert!(worst < Duration::from_millis(30), "process took {worst:?} (waiting for the engine would take 60 ms)");
        for ch in 0..2 {
            assert_eq!(&out[0][ch][lat..lat + x[0].len()], &x[ch][..]);
            assert!(out[1][ch].iter().chain(&out[2][ch]).all(|v| *v == 0.0));
        }
    }
}
