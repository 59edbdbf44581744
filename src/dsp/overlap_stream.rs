//! The overlap-add schedules of [`super::overlap`] as a stream: the song arrives in blocks of
//! any size, chunks run as soon as their samples are known, and each stem sample is handed out
//! once every chunk over it has been added. Memory is about two chunks per stem, whatever the
//! song's length; the samples are bit for bit those of [`super::overlap::separate`] on the
//! whole song (same chunks, same batches, same order of additions).
//!
//! This is the one streaming overlap-add: the CLI's streaming separation and the plugin's
//! inference thread both run it, through [`crate::engine::StreamPipeline`]. What the plugin
//! needs on top is here too, for UVR's scheme: chunks the runner leaves out (holes, reported by
//! [`OverlapStream::take_holes`]), a restart mid-stream in the state of a stream fed silence
//! until there ([`OverlapStream::restart_at`]), silence before a given sample in and out (a
//! host's pre-roll before the project's start), and no allocation after
//! [`OverlapStream::reserve`].

use super::overlap::{OverlapParams, Scheme, chunk_count, msst_window, reflect};

/// A batch runner for the stream: `input` holds `n` chunks laid out [n][2][chunk]; it fills
/// `output`, laid out [n][stems][2][chunk], and returns `Ok(true)`, or returns `Ok(false)` when
/// it did not compute the batch (its output is then ignored: a hole in the overlap-add).
pub type RunChunks<'a, E> = dyn FnMut(&[f32], usize, &mut [f32]) -> Result<bool, E> + 'a;

/// A streaming [`super::overlap::separate`]: [`push`](OverlapStream::push) the song, then
/// [`finish`](OverlapStream::finish) with its length; the stems come out through `emit` in
/// order, `emit(stems)` with `stems[s * 2 + ch]` one slice per stem and channel.
pub struct OverlapStream {
    scheme: Scheme,
    p: OverlapParams,
    /// Padding before the song in the padded signal: UVR C - H zeros, MSST `border` reflected
    /// samples (0 for a song too short to be padded, decided once enough has arrived).
    front: usize,
    /// MSST: whether the song is reflect-padded (known once more than 2 * border samples came,
    /// or at the end).
    msst_padded: Option<bool>,
    /// Song samples received so far.
    received: usize,
    /// The song's length, once [`finish`](OverlapStream::finish) says it.
    end: Option<usize>,
    /// song[win_start .. win_start + win[ch].len()].
    win: [Vec<f32>; 2],
    win_start: usize,
    /// song[..=border] (MSST's front reflection reads it).
    head: [Vec<f32>; 2],
    /// Next chunk to run.
    next: usize,
    /// Sums of chunk outputs for padded positions acc_start.. ([stems * 2]).
    acc: Vec<Vec<f32>>,
    /// MSST: summed window over the same positions.
    counter: Vec<f32>,
    acc_start: usize,
    /// Song samples handed out so far.
    emitted: usize,
    input: Vec<f32>,
    output: Vec<f32>,
    /// Chunks gathered for the next batch.
    pending: usize,
    window: Vec<f32>,
    out: Vec<Vec<f32>>,
    /// Song samples before this one are silence, in and out ([`OverlapStream::restart_at`]).
    silent_until: usize,
    /// Song samples `[lo, hi)` covered by chunks that were not computed, since the last
    /// [`OverlapStream::take_holes`].
    holes: Option<(usize, usize)>,
}

impl OverlapStream {
    pub fn new(scheme: Scheme, p: OverlapParams) -> Self {
        let p = OverlapParams { overlap: p.overlap.max(1), batch: p.batch.max(1), ..p };
        let (c, h) = (p.chunk, p.hop());
        let border = c - h;
        let (front, msst_padded) = match scheme {
            Scheme::Uvr => (c - h, Some(true)),
            Scheme::Msst if border == 0 => (0, Some(false)),
            Scheme::Msst => (border, None),
        };
        OverlapStream {
            scheme,
            p,
            front,
            msst_padded,
            received: 0,
            end: None,
            win: [Vec::new(), Vec::new()],
            win_start: 0,
            head: [Vec::new(), Vec::new()],
            next: 0,
            acc: vec![Vec::new(); p.stems * 2],
            counter: Vec::new(),
            acc_start: 0,
            emitted: 0,
            input: vec![0f32; p.batch * 2 * c],
            output: vec![0f32; p.batch * p.stems * 2 * c],
            pending: 0,
            window: msst_window(c, c / 10),
            out: vec![Vec::new(); p.stems * 2],
            silent_until: 0,
            holes: None,
        }
    }

    /// Reserve what pushes of at most `max_push` samples need, so that from then on they
    /// allocate nothing (UVR; MSST's end reflection may still). Call it before the first push.
    pub fn reserve(&mut self, max_push: usize) {
        let (c, h, b) = (self.p.chunk, self.p.hop(), self.p.batch);
        for ch in 0..2 {
            self.win[ch].reserve(c + max_push);
            self.head[ch].reserve(c - h + 1);
        }
        // The sums reach at most UVR's front padding plus a batch of chunks past their start.
        for a in &mut self.acc {
            a.reserve(2 * c + b * h);
        }
        self.counter.reserve(2 * c + b * h);
        for o in &mut self.out {
            o.reserve((b + 1) * h);
        }
    }

    /// Start again in exactly the state the stream from sample 0 reaches after `pos` samples of
    /// silence, with song samples before `silent_until` taken as silence, in and out, whatever
    /// is pushed there (a host's pre-roll before the project's start). Counters are computed,
    /// nothing is run. UVR's scheme only (MSST reflects the song's first samples). Does not
    /// allocate after [`reserve`](OverlapStream::reserve).
    ///
    /// The chunk grid stays that of the stream from 0, and the sums restart from zero (what a
    /// model that maps silence to silence has added by then), so once a chunk's worth has
    /// been pushed the stems equal the continuous stream's.
    pub fn restart_at(&mut self, pos: usize, silent_until: usize) {
        assert_eq!(self.scheme, Scheme::Uvr, "only UVR's stream restarts mid-song");
        let (c, h) = (self.p.chunk, self.p.hop());
        self.received = pos;
        self.end = None;
        // Chunk i has run once its last sample, padded position i * H + C, has arrived.
        self.next = pos / h;
        self.pending = 0;
        self.emitted = (self.next * h).saturating_sub(self.front);
        self.win_start = self.emitted;
        for w in &mut self.win {
            w.clear();
            w.resize(pos - self.win_start, 0.0);
        }
        for hd in &mut self.head {
            hd.clear();
            hd.resize(pos.min(c - h + 1), 0.0);
        }
        self.acc_start = self.next * h;
        for a in &mut self.acc {
            a.clear();
        }
        self.counter.clear();
        self.holes = None;
        self.silent_until = silent_until;
    }

    /// The song samples `[lo, hi)` that chunks not computed since the last call cover (the
    /// union of their spans), if any.
    pub fn take_holes(&mut self) -> Option<(usize, usize)> {
        self.holes.take()
    }

    /// Song samples handed out so far.
    pub fn emitted(&self) -> usize {
        self.emitted
    }

    /// Chunks run so far.
    pub fn chunks_done(&self) -> usize {
        self.next - self.pending
    }

    /// Add `block` ([2][len]) to the song, run the chunks it completes and emit what is final.
    pub fn push<E>(
        &mut self,
        block: [&[f32]; 2],
        run: &mut RunChunks<'_, E>,
        emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>,
    ) -> Result<(), E> {
        assert!(self.end.is_none(), "push after finish");
        assert_eq!(block[0].len(), block[1].len(), "channels of a block differ in length");
        let border = self.p.chunk - self.p.hop();
        // Before `silent_until` the song is silence, whatever arrives.
        let silent = self.silent_until.saturating_sub(self.received).min(block[0].len());
        for ch in 0..2 {
            let need = (border + 1).saturating_sub(self.head[ch].len()).min(block[ch].len());
            let from = self.head[ch].len();
            self.head[ch].extend_from_slice(&block[ch][..need]);
            self.head[ch][from..from + silent.min(need)].fill(0.0);
            let from = self.win[ch].len();
            self.win[ch].extend_from_slice(block[ch]);
            self.win[ch][from..from + silent].fill(0.0);
        }
        self.received += block[0].len();
        if self.msst_padded.is_none() && self.received > 2 * border {
            self.msst_padded = Some(true);
        }
        self.advance(run, emit)
    }

    /// The song is `len` samples long (at least what was pushed; more means zeros follow): run
    /// the remaining chunks and emit the song's stems up to `len`.
    pub fn finish<E>(
        &mut self,
        len: usize,
        run: &mut RunChunks<'_, E>,
        emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>,
    ) -> Result<(), E> {
        assert!(len >= self.received, "finish: the song is longer than {len}");
        if len > self.received {
            let extra = len - self.received;
            for ch in 0..2 {
                self.win[ch].resize(self.win[ch].len() + extra, 0.0);
                let need = (self.p.chunk - self.p.hop() + 1).saturating_sub(self.head[ch].len()).min(extra);
                self.head[ch].resize(self.head[ch].len() + need, 0.0);
            }
            self.received = len;
        }
        self.end = Some(len);
        if self.msst_padded.is_none() {
            let border = self.p.chunk - self.p.hop();
            let padded = len > 2 * border;
            self.msst_padded = Some(padded);
            if !padded {
                self.front = 0;
            }
        }
        self.advance(run, emit)?;
        self.flush_batch(run, emit)
    }

    /// Length of the padded signal once the end is known.
    fn padded_len(&self, n: usize) -> usize {
        let (c, h) = (self.p.chunk, self.p.hop());
        match self.scheme {
            Scheme::Uvr => {
                let m = (n as i64 - c as i64).rem_euclid(h as i64) as usize;
                (c - h) + n + (h - m) + (c - h)
            }
            Scheme::Msst => n + 2 * self.front,
        }
    }

    /// MSST's padded sample `p` of channel `ch`, the song reflected at both ends (only called
    /// where it is known; UVR's chunks are copied from the song directly, [`Self::fill`]).
    fn padded(&self, ch: usize, p: usize) -> f32 {
        let song = |t: usize| self.win[ch][t - self.win_start];
        if self.front == 0 {
            return song(p);
        }
        let n = self.end.unwrap_or(usize::MAX / 4);
        if p < self.front { self.head[ch][self.front - p] } else { song(reflect(p as i64 - self.front as i64, n)) }
    }

    /// Run every chunk whose samples are known.
    fn advance<E>(&mut self, run: &mut RunChunks<'_, E>, emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>) -> Result<(), E> {
        let Some(_) = self.msst_padded else { return Ok(()) };
        let (c, h) = (self.p.chunk, self.p.hop());
        loop {
            let i = self.next;
            let ready = match self.end {
                Some(n) => i < chunk_count(self.scheme, &self.p, n),
                // All of the chunk inside the received song (so it is not the last chunk).
                None => i * h + c <= self.received + self.front,
            };
            if !ready {
                return Ok(());
            }
            self.fill(i);
            self.next += 1;
            self.pending += 1;
            if self.pending == self.p.batch {
                self.flush_batch(run, emit)?;
            }
        }
    }

    /// Copy chunk `i`'s input into the batch.
    fn fill(&mut self, i: usize) {
        let (c, h) = (self.p.chunk, self.p.hop());
        let j = self.pending;
        let start = i * h;
        let mut dst = std::mem::take(&mut self.input);
        for ch in 0..2 {
            let d = &mut dst[(j * 2 + ch) * c..(j * 2 + ch + 1) * c];
            match self.scheme {
                Scheme::Uvr => {
                    // UVR's zeros in front, the song as far as it has arrived, zeros after.
                    let a = self.front.saturating_sub(start).min(c);
                    let t = start + a - self.front;
                    let b = a + self.received.saturating_sub(t).min(c - a);
                    let w = &self.win[ch][t.min(self.received) - self.win_start..];
                    d[..a].fill(0.0);
                    d[a..b].copy_from_slice(&w[..b - a]);
                    d[b..].fill(0.0);
                }
                Scheme::Msst => {
                    let plen = self.end.map_or(usize::MAX, |n| self.padded_len(n));
                    let l = c.min(plen - start);
                    for (k, v) in d[..l].iter_mut().enumerate() {
                        *v = self.padded(ch, start + k);
                    }
                    if l > c / 2 {
                        for k in l..c {
                            d[k] = d[reflect(k as i64, l)];
                        }
                    } else {
                        d[l..].fill(0.0);
                    }
                }
            }
        }
        self.input = dst;
    }

    /// Run the gathered chunks, add them up, emit what is final, forget what is no longer read.
    fn flush_batch<E>(&mut self, run: &mut RunChunks<'_, E>, emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>) -> Result<(), E> {
        let m = self.pending;
        if m == 0 {
            return Ok(());
        }
        let (c, h, s) = (self.p.chunk, self.p.hop(), self.p.stems);
        let computed = run(&self.input[..m * 2 * c], m, &mut self.output[..m * s * 2 * c])?;
        self.pending = 0;
        let first = self.next - m;
        let count = self.end.map(|n| chunk_count(self.scheme, &self.p, n));
        for j in 0..m {
            let i = first + j;
            let start = i * h;
            let plen = self.end.map_or(usize::MAX, |n| self.padded_len(n));
            let l = c.min(plen - start);
            let need = start + l - self.acc_start;
            for a in &mut self.acc {
                if a.len() < need {
                    a.resize(need, 0.0);
                }
            }
            if self.scheme == Scheme::Msst && self.counter.len() < need {
                self.counter.resize(need, 0.0);
            }
            if !computed {
                // A hole: nothing added; the song samples the chunk spans are reported.
                let (lo, hi) = (start.saturating_sub(self.front), (start + l).saturating_sub(self.front));
                self.holes = Some(self.holes.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
                continue;
            }
            let o = &self.output[j * s * 2 * c..(j + 1) * s * 2 * c];
            let off = start - self.acc_start;
            match self.scheme {
                Scheme::Uvr => {
                    for (k, a) in self.acc.iter_mut().enumerate() {
                        for (d, v) in a[off..off + l].iter_mut().zip(&o[k * c..k * c + l]) {
                            *d += v;
                        }
                    }
                }
                Scheme::Msst => {
                    // The window, its fade-in (first chunk) or fade-out (last chunk) left out.
                    let fade = c / 10;
                    let ones = if i == 0 {
                        0..fade
                    } else if Some(i + 1) == count {
                        c - fade..c
                    } else {
                        0..0
                    };
                    let window = &self.window;
                    let w = |k: usize| if ones.contains(&k) { 1.0 } else { window[k] };
                    for (k, a) in self.acc.iter_mut().enumerate() {
                        for (t, (d, v)) in a[off..off + l].iter_mut().zip(&o[k * c..k * c + l]).enumerate() {
                            *d += v * w(t);
                        }
                    }
                    for (t, d) in self.counter[off..off + l].iter_mut().enumerate() {
                        *d += w(t);
                    }
                }
            }
        }
        // Final: padded positions before the next chunk's start (everything after the last).
        let last = count.is_some_and(|k| self.next >= k);
        let final_end = if last { usize::MAX } else { self.next * h };
        self.emit_until(final_end, emit)?;
        // The song before the next chunk's start is no longer read (MSST keeps its last
        // border + 1 samples for the end's reflection).
        let keep_from = (self.next * h).saturating_sub(self.front).min(self.received.saturating_sub(c - h + 1));
        if keep_from > self.win_start {
            let k = (keep_from - self.win_start).min(self.win[0].len());
            for w in &mut self.win {
                w.drain(..k);
            }
            self.win_start += k;
        }
        Ok(())
    }

    /// Hand out the song's stems at padded positions below `final_end`.
    fn emit_until<E>(&mut self, final_end: usize, emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>) -> Result<(), E> {
        let song_end = self.end.unwrap_or(usize::MAX);
        let avail = self.acc_start + self.acc[0].len();
        let hi_padded = final_end.min(avail);
        // Song positions [emitted, t_end).
        let t_end = hi_padded.saturating_sub(self.front).min(song_end);
        if t_end <= self.emitted {
            return Ok(());
        }
        let lo = self.emitted + self.front - self.acc_start;
        let hi = t_end + self.front - self.acc_start;
        let inv_k = 1.0 / self.p.overlap as f32;
        for (o, a) in self.out.iter_mut().zip(&self.acc) {
            o.clear();
            match self.scheme {
                Scheme::Uvr => o.extend(a[lo..hi].iter().map(|v| v * inv_k)),
                Scheme::Msst => o.extend(a[lo..hi].iter().zip(&self.counter[lo..hi]).map(|(v, k)| {
                    let y = v / k;
                    if y.is_finite() { y } else { 0.0 }
                })),
            }
            // Silence before `silent_until`.
            o[..self.silent_until.saturating_sub(self.emitted).min(hi - lo)].fill(0.0);
        }
        emit(&self.out)?;
        self.emitted = t_end;
        // Drop the sums before the emitted samples.
        let drop = hi;
        for a in &mut self.acc {
            a.drain(..drop.min(a.len()));
        }
        if self.scheme == Scheme::Msst {
            self.counter.drain(..drop.min(self.counter.len()));
        }
        self.acc_start += drop;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::overlap::separate;
    use crate::engine::testing::fake_run;

    /// A deterministic "model" whose output depends on the whole chunk and its position in the
    /// batch-independent way a network does: stem s = (s + 1) * x + 0.01 * (mean of the chunk).
    fn model(chunk: usize, stems: usize) -> impl FnMut(&[f32], usize, &mut [f32]) -> Result<(), ()> {
        fake_run(|s, v, pos, mean| (s + 1) as f32 * v + 0.01 * mean + 1e-3 * pos, chunk, stems)
    }

    /// `f` as a stream runner that computes every batch.
    fn computed(mut f: impl FnMut(&[f32], usize, &mut [f32]) -> Result<(), ()>) -> impl FnMut(&[f32], usize, &mut [f32]) -> Result<bool, ()> {
        move |inp: &[f32], n: usize, out: &mut [f32]| f(inp, n, out).map(|()| true)
    }

    fn song(n: usize) -> Vec<Vec<f32>> {
        (0..2).map(|ch| (0..n).map(|i| (((i * 7919 + ch * 31) % 1000) as f32 / 500.0 - 1.0) * 0.7).collect()).collect()
    }

    #[test]
    fn streaming_equals_the_whole_signal_bit_for_bit() {
        let (chunk, stems) = (96, 2);
        for scheme in [Scheme::Uvr, Scheme::Msst] {
            for overlap in [1usize, 2, 4, 5] {
                if scheme == Scheme::Msst && overlap < 2 {
                    continue;
                }
                for n in [1usize, 50, 95, 96, 97, 150, 191, 400, 1003] {
                    for batch in [1usize, 3] {
                        let p = OverlapParams { chunk, overlap, stems, batch };
                        let mix = song(n);
                        let want = separate(scheme, &p, &mix, &mut model(chunk, stems), &mut |_, _| {}).unwrap();
                        for block in [1usize, 7, 64, 1000] {
                            let mut st = OverlapStream::new(scheme, p);
                            let mut got = vec![Vec::new(); stems * 2];
                            let mut emit = |o: &[Vec<f32>]| -> Result<(), ()> {
                                for (g, o) in got.iter_mut().zip(o) {
                                    g.extend_from_slice(o);
                                }
                                Ok(())
                            };
                            let mut run = computed(model(chunk, stems));
                            let mut pos = 0;
                            while pos < n {
                                let m = block.min(n - pos);
                                st.push([&mix[0][pos..pos + m], &mix[1][pos..pos + m]], &mut run, &mut emit).unwrap();
                                pos += m;
                            }
                            st.finish(n, &mut run, &mut emit).unwrap();
                            assert_eq!(st.chunks_done(), chunk_count(scheme, &p, n));
                            for s in 0..stems {
                                for ch in 0..2 {
                                    let g = &got[s * 2 + ch];
                                    assert_eq!(g.len(), n);
                                    let same = g.iter().zip(&want[s][ch]).all(|(a, b)| a.to_bits() == b.to_bits());
                                    assert!(same, "{scheme:?} overlap {overlap} n {n} batch {batch} block {block}: stem {s} ch {ch} differs");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn memory_stays_bounded_on_a_long_song() {
        let (chunk, stems) = (64, 2);
        let p = OverlapParams { chunk, overlap: 4, stems, batch: 2 };
        for scheme in [Scheme::Uvr, Scheme::Msst] {
            let mut st = OverlapStream::new(scheme, p);
            let mut run = computed(model(chunk, stems));
            let block = vec![0.25f32; 333];
            let mut total = 0;
            let mut emit = |o: &[Vec<f32>]| -> Result<(), ()> {
                total += o[0].len();
                Ok(())
            };
            for _ in 0..300 {
                st.push([&block, &block], &mut run, &mut emit).unwrap();
                assert!(st.win[0].len() <= 333 + 2 * chunk, "{scheme:?}: window {}", st.win[0].len());
                assert!(st.acc[0].len() <= 2 * chunk, "{scheme:?}: sums {}", st.acc[0].len());
            }
            st.finish(300 * 333, &mut run, &mut emit).unwrap();
            assert_eq!(total, 300 * 333);
        }
    }

    /// A "model" that maps silence to silence, as the networks do: stem s = (s + 1) * x * (1 + mean).
    fn quiet_model(chunk: usize, stems: usize) -> impl FnMut(&[f32], usize, &mut [f32]) -> Result<bool, ()> {
        computed(fake_run(|s, v, _, mean| (s + 1) as f32 * v * (1.0 + mean), chunk, stems))
    }

    /// Push `mix` in blocks of `block`, without finishing; returns what came out, [stems * 2].
    fn push_all(st: &mut OverlapStream, mix: &[Vec<f32>], block: usize, run: &mut RunChunks<'_, ()>) -> Vec<Vec<f32>> {
        let mut got = vec![Vec::new(); st.p.stems * 2];
        let mut emit = |o: &[Vec<f32>]| -> Result<(), ()> {
            for (g, o) in got.iter_mut().zip(o) {
                g.extend_from_slice(o);
            }
            Ok(())
        };
        for pos in (0..mix[0].len()).step_by(block) {
            let end = (pos + block).min(mix[0].len());
            st.push([&mix[0][pos..end], &mix[1][pos..end]], run, &mut emit).unwrap();
        }
        got
    }

    #[test]
    fn a_restart_equals_the_stream_fed_silence_until_there() {
        let (chunk, stems) = (96, 2);
        for overlap in [1usize, 2, 4, 5] {
            let p = OverlapParams { chunk, overlap, stems, batch: 1 };
            for pos in [0usize, 1, 50, 95, 96, 97, 300, 1001] {
                let tail = song(700);
                let mix: Vec<Vec<f32>> = tail.iter().map(|c| [vec![0.0; pos], c.clone()].concat()).collect();
                let mut whole = OverlapStream::new(Scheme::Uvr, p);
                let a = push_all(&mut whole, &mix, 37, &mut quiet_model(chunk, stems));
                let mut late = OverlapStream::new(Scheme::Uvr, p);
                late.reserve(37);
                late.restart_at(pos, 0);
                let skip = late.emitted();
                let b = push_all(&mut late, &tail, 37, &mut quiet_model(chunk, stems));
                assert_eq!(whole.chunks_done(), late.chunks_done(), "overlap {overlap} pos {pos}");
                for (a, b) in a.iter().zip(&b) {
                    assert_eq!(a.len(), skip + b.len(), "overlap {overlap} pos {pos}");
                    assert!(a[skip..].iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "overlap {overlap} pos {pos}: differs");
                }
            }
        }
    }

    #[test]
    fn silence_before_a_sample_in_and_out() {
        let (chunk, stems) = (96, 2);
        let p = OverlapParams { chunk, overlap: 4, stems, batch: 1 };
        let mix = song(1000);
        let start = 250;
        // What comes in before `start` counts as silence...
        let mut muted = mix.clone();
        for c in &mut muted {
            c[..start].fill(0.0);
        }
        let mut st = OverlapStream::new(Scheme::Uvr, p);
        st.restart_at(0, start);
        let a = push_all(&mut st, &mix, 64, &mut quiet_model(chunk, stems));
        let mut plain = OverlapStream::new(Scheme::Uvr, p);
        let b = push_all(&mut plain, &muted, 64, &mut computed(model(chunk, stems)));
        for (a, b) in a.iter().zip(&b) {
            // ...and what goes out there is silence too (this model does not map silence to it).
            assert!(a[..start].iter().all(|v| *v == 0.0));
            assert!(b[..start].iter().any(|v| *v != 0.0));
            assert!(a[start..].iter().any(|v| *v != 0.0));
        }
        let mut plain = OverlapStream::new(Scheme::Uvr, p);
        let b = push_all(&mut plain, &muted, 64, &mut quiet_model(chunk, stems));
        for (a, b) in a.iter().zip(&b) {
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    #[test]
    fn chunks_left_out_are_holes_reported_by_the_song_samples_they_span() {
        let (chunk, stems) = (96, 2);
        for scheme in [Scheme::Uvr, Scheme::Msst] {
            let p = OverlapParams { chunk, overlap: 4, stems, batch: 2 };
            let (h, front) = (p.hop(), chunk - p.hop());
            let mix = song(2000);
            let full = push_all(&mut OverlapStream::new(scheme, p), &mix, 50, &mut computed(model(chunk, stems)));
            // Batch 3 (chunks 6 and 7) is left out.
            let mut st = OverlapStream::new(scheme, p);
            let mut m = model(chunk, stems);
            let mut batches = 0;
            let mut run = |i: &[f32], n: usize, o: &mut [f32]| -> Result<bool, ()> {
                batches += 1;
                if batches == 4 {
                    return Ok(false);
                }
                m(i, n, o).map(|()| true)
            };
            let got = push_all(&mut st, &mix, 50, &mut run);
            let (lo, hi) = st.take_holes().expect("a hole");
            assert_eq!((lo, hi), (6 * h - front, 7 * h + chunk - front), "{scheme:?}");
            assert_eq!(st.take_holes(), None);
            for (g, f) in got.iter().zip(&full) {
                assert_eq!(g.len(), f.len());
                let differ: Vec<usize> = (0..g.len()).filter(|&t| g[t] != f[t]).collect();
                assert!(!differ.is_empty(), "{scheme:?}");
                assert!(differ.iter().all(|&t| t >= lo && t < hi), "{scheme:?}: differs outside the hole");
            }
        }
    }
}
