//! The inference thread's signal path, without threads: host-rate blocks in, host-rate stem
//! blocks out, one for one, following [`StreamPlan`] exactly.
//!
//! Owned by the inference thread ([`super::worker`]); the audio thread never touches it. Kept
//! free of channels and of the engine type so that it can be tested block by block against
//! the whole-signal UVR schedule ([`crate::dsp::overlap`]).
//!
//! The signal path itself is the CLI's: [`StreamPipeline`] resamples host -> model rate (the
//! delay dropped, so the model sees the song on UVR's chunk grid), runs UVR's chunks as their
//! samples arrive, overlap-adds them (final samples divided by K) and resamples the stems back.
//! What this adapter adds, per input block of `Hh` host frames ([`Streamer::push_block`]):
//! 1. the chunk runner's side: chunks skipped (late) or failed are holes, and a streaming model
//!    starts a new stream (`fresh`) after a restart or a chunk it did not see;
//! 2. a FIFO of the host-rate stems that starts with `P` frames of silence
//!    ([`StreamPlan::prefill`]);
//! 3. exactly `Hh` frames per channel popped from it: the answer to this input block.
//!
//! So the FIFO's frame `f` is song frame `f - P` (host rate), for every stem.
//!
//! A chunk that is not computed leaves a hole in the overlap-add; every output frame it can
//! reach ([`StreamPipeline::take_holes`]) is *tainted*, and blocks that contain tainted frames
//! are reported as invalid so the audio thread plays its dry fallback there instead.

use super::plan::StreamPlan;
use crate::audio::AudioError;
use crate::dsp::overlap::{OverlapParams, Scheme};
use crate::engine::{Chunking, StreamPipeline};
use std::collections::VecDeque;

/// A chunk runner: `input` is one stereo chunk `[2][C]`, `output` receives `[stems][2][C]`;
/// with `fresh` a streaming model starts a new stream first (its state is reset). Returns
/// `false` when it did not compute the chunk (the output is then ignored).
pub type RunChunk<'a> = dyn FnMut(&[f32], &mut [f32], bool) -> bool + 'a;

/// What became of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockResult {
    /// Every frame of the block comes from fully computed chunks.
    pub valid: bool,
    /// Chunks run (or skipped) while handling this block.
    pub chunks: usize,
}

/// See the module docs.
pub struct Streamer {
    plan: StreamPlan,
    /// Resampling, UVR's chunks and overlap-add, resampling back (batch 1, blocks of `Hh`).
    pipe: StreamPipeline,
    /// Host-rate stems waiting to be sent, [stems * 2].
    fifo: Vec<VecDeque<f32>>,
    /// Frames ever pushed into / popped from the FIFO (prefill included).
    fifo_written: u64,
    fifo_read: u64,
    /// FIFO frames `[start, end)` that depend on a chunk that was not computed.
    taint: Option<(u64, u64)>,
    /// A streaming model must start a new stream at the next chunk it computes (after a
    /// restart, or a chunk it did not see).
    fresh: bool,
}

impl Streamer {
    /// Allocate everything for `plan`. Panics only if the plan's resamplers cannot be built,
    /// which [`StreamPlan::new`] has already checked.
    pub fn new(plan: &StreamPlan) -> Self {
        let (c, h, s) = (plan.chunk, plan.hop, plan.stems);
        let chunking = Chunking::Overlap { scheme: Scheme::Uvr, params: OverlapParams { chunk: c, overlap: plan.overlap, stems: s, batch: 1 } };
        let pipe = StreamPipeline::new(plan.host_rate, plan.model_rate, s, chunking, plan.block).expect("checked by the plan");
        let fifo_cap = plan.prefill + 2 * plan.block + 2 * pipe.max_output_frames() + h * plan.host_rate as usize / plan.model_rate as usize + 16;
        let mut st = Streamer {
            plan: plan.clone(),
            pipe,
            fifo: (0..2 * s).map(|_| VecDeque::with_capacity(fifo_cap)).collect(),
            fifo_written: 0,
            fifo_read: 0,
            taint: None,
            fresh: true,
        };
        st.restart();
        st
    }

    pub fn plan(&self) -> &StreamPlan {
        &self.plan
    }

    /// Start a new stream at position 0: the next block is the song's first (UVR's zero padding
    /// in front, fresh resamplers, the FIFO back to `P` frames of silence).
    pub fn restart(&mut self) {
        self.restart_at(0, true, 0);
    }

    /// Start a new stream whose next block begins at stream position `pos` (a multiple of the
    /// block size), in exactly the state the stream from position 0 reaches after `pos` frames
    /// of silence: the chunk grid, the resamplers' chunk grids and the FIFO's fill level are
    /// those of the continuous stream, so once a chunk's worth of audio has come in, the output
    /// equals the continuous stream's. Counters are computed, nothing is run
    /// ([`StreamPipeline::restart_at`]).
    ///
    /// The FIFO then holds silence standing for the stems of the input before `pos`. It is
    /// correct only if that input was silent: with `history_quiet == false` it is marked
    /// tainted (never computed), so the audio thread plays its dry fallback there instead.
    ///
    /// `song_start` (host frames from the stream's start, a multiple of the plan's anchor) is
    /// where the project starts when the stream starts before it (a host's pre-roll): the song
    /// and the stems before it are silence, as in a render of the whole project.
    pub fn restart_at(&mut self, pos: u64, history_quiet: bool, song_start: u64) {
        let p = &self.plan;
        let written = p.prefill as u64 + self.pipe.restart_at(pos, song_start);
        // The worker has answered every block before `pos`.
        let level = written.saturating_sub(pos) as usize;
        for f in &mut self.fifo {
            f.clear();
            f.resize(level, 0.0);
        }
        self.fifo_written = written;
        self.fifo_read = pos;
        self.fresh = true;
        // A streaming model starts afresh here: unless the input before was silent, its output
        // is also wrong until its state has settled.
        self.taint = (!history_quiet && (level > 0 || p.model_latency > 0)).then_some((pos, written + p.model_settle() as u64));
    }

    /// Handle one input block (`[2][Hh]`, planar) and write the answer to it (`[stems][2][Hh]`).
    /// With `skip` the engine is not called (chunks count as not computed).
    pub fn push_block(&mut self, input: &[f32], skip: bool, run: &mut RunChunk<'_>, out: &mut [f32]) -> BlockResult {
        let hh = self.plan.block;
        let s = self.plan.stems;
        assert_eq!(input.len(), 2 * hh, "input block must be [2][block]");
        assert_eq!(out.len(), s * 2 * hh, "output block must be [stems][2][block]");
        let mut chunks = 0;
        let restarts = self.plan.model_latency > 0;
        let fresh = &mut self.fresh;
        let mut runner = |chunk: &[f32], _n: usize, stems: &mut [f32]| -> Result<bool, AudioError> {
            chunks += 1;
            let computed = !skip && run(chunk, stems, *fresh);
            if computed {
                *fresh = false;
            } else if restarts {
                // A streaming model restarts after a block it did not see.
                *fresh = true;
            }
            Ok(computed)
        };
        let (fifo, written) = (&mut self.fifo, &mut self.fifo_written);
        let mut sink = |stems: &[Vec<f32>]| -> Result<(), AudioError> {
            for (f, b) in fifo.iter_mut().zip(stems) {
                f.extend(b.iter().copied());
            }
            *written += stems[0].len() as u64;
            Ok(())
        };
        self.pipe.push([&input[..hh], &input[hh..]], &mut runner, &mut sink).expect("block sizes are fixed by the plan");
        if let Some((start, end)) = self.pipe.take_holes() {
            self.taint_frames(start, end);
        }
        // Answer: exactly Hh frames per channel.
        let mut valid = true;
        let block_start = self.fifo_read;
        for (k, f) in self.fifo.iter_mut().enumerate() {
            let dst = &mut out[k * hh..(k + 1) * hh];
            let n = f.len().min(hh);
            for (d, v) in dst.iter_mut().zip(f.drain(..n)) {
                *d = v;
            }
            if n < hh {
                // Cannot happen with the plan's prefill; never play what is not there.
                dst[n..].fill(0.0);
                valid = false;
            }
        }
        self.fifo_read += hh as u64;
        if let Some((a, b)) = self.taint {
            if a < block_start + hh as u64 && b > block_start {
                valid = false;
            }
            if b <= self.fifo_read {
                self.taint = None;
            }
        }
        BlockResult { valid, chunks }
    }

    /// Chunks were not computed: mark the stems' frames `[start, end)` they reach (song frames
    /// at the host rate), FIFO frames from `P` on.
    fn taint_frames(&mut self, start: u64, end: u64) {
        let p = &self.plan;
        let start = p.prefill as u64 + start;
        // A streaming model restarts after a block it did not see: its output is wrong until
        // its state holds only audio after the gap (at most twice its latency plus a block).
        let end = p.prefill as u64 + end + p.model_settle() as u64;
        self.taint = Some(match self.taint {
            Some((a, b)) if b > self.fifo_read => (a.min(start), b.max(end)),
            _ => (start, end),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::overlap::{self, OverlapParams, Scheme};
    use crate::engine::testing::{self, positional, signal};

    /// The fake network of the engine's tests ([`positional`]) as a chunk runner.
    fn fake_run(c: usize, stems: usize) -> impl FnMut(&[f32], usize, &mut [f32]) -> Result<(), ()> {
        testing::fake_run(positional, c, stems)
    }

    /// Stream `x` (host rate) block by block, followed by enough silence to flush; returns the
    /// FIFO stream per stem/channel, [stems][2][frames], and the block validity.
    fn stream(plan: &StreamPlan, x: &[Vec<f32>], skip: impl Fn(usize) -> bool) -> (Vec<Vec<Vec<f32>>>, Vec<bool>) {
        let (hh, s, c) = (plan.block, plan.stems, plan.chunk);
        let total = x[0].len() + plan.latency_samples() + 4 * hh;
        let blocks = total.div_ceil(hh);
        let mut st = Streamer::new(plan);
        let mut run = fake_run(c, s);
        let mut out = vec![vec![Vec::new(); 2]; s];
        let mut valid = vec![];
        let mut inp = vec![0f32; 2 * hh];
        let mut ob = vec![0f32; s * 2 * hh];
        for j in 0..blocks {
            for ch in 0..2 {
                for t in 0..hh {
                    inp[ch * hh + t] = x[ch].get(j * hh + t).copied().unwrap_or(0.0);
                }
            }
            let r = st.push_block(&inp, skip(j), &mut |i, o, _| run(i, 1, o).is_ok(), &mut ob);
            valid.push(r.valid);
            for si in 0..s {
                for ch in 0..2 {
                    out[si][ch].extend_from_slice(&ob[(si * 2 + ch) * hh..(si * 2 + ch + 1) * hh]);
                }
            }
        }
        (out, valid)
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn at_the_model_rate_the_stream_equals_uvr_overlap_add_delayed_by_the_prefill() {
        for (c, k, n) in [(1984usize, 4usize, 9000usize), (1984, 2, 5000), (1000, 3, 4321), (512, 1, 3000)] {
            let plan = StreamPlan::new(44100, 44100, c, k, 2, 256, 0).unwrap();
            let x = signal(n, c as u64);
            let p = OverlapParams { chunk: c, overlap: k, stems: 2, batch: 1 };
            let want = overlap::separate(Scheme::Uvr, &p, &x, &mut fake_run(c, 2), &mut |_, _| {}).unwrap();
            let (got, valid) = stream(&plan, &x, |_| false);
            assert!(valid.iter().all(|v| *v));
            for s in 0..2 {
                for ch in 0..2 {
                    let g = &got[s][ch][plan.prefill..plan.prefill + n];
                    let e = max_diff(g, &want[s][ch]);
                    assert!(e < 1e-5, "C={c} K={k} stem {s} ch {ch}: {e}");
                }
            }
        }
    }

    #[test]
    fn with_resampling_the_stream_equals_the_cli_pipeline() {
        // The CLI: resample the whole song to the model rate, UVR overlap-add, resample back.
        for host in [48000u32, 96000, 32000] {
            let (c, k, n) = (1984usize, 4usize, host as usize / 5);
            let plan = StreamPlan::new(host, 44100, c, k, 2, 300, 0).unwrap();
            let mut x = signal(n, host as u64);
            // End the song with silence so that the CLI's cut at the song's end matters less
            // than the tolerance (the stream keeps going into the following silence).
            for ch in &mut x {
                ch[n - 4000..].fill(0.0);
            }
            let mix = crate::audio::resample(&x, host, 44100).unwrap();
            let p = OverlapParams { chunk: c, overlap: k, stems: 2, batch: 1 };
            let stems = overlap::separate(Scheme::Uvr, &p, &mix, &mut fake_run(c, 2), &mut |_, _| {}).unwrap();
            let (got, valid) = stream(&plan, &x, |_| false);
            assert!(valid.iter().all(|v| *v));
            for s in 0..2 {
                let back = crate::audio::resample(&stems[s], 44100, host).unwrap();
                for ch in 0..2 {
                    let g = &got[s][ch][plan.prefill..plan.prefill + n];
                    let e = max_diff(&g[..n - 3000], &back[ch][..n - 3000]);
                    assert!(e < 1e-5, "{host} Hz stem {s} ch {ch}: {e}");
                }
            }
        }
    }

    #[test]
    fn skipped_chunks_taint_exactly_the_blocks_they_reach_and_the_stream_recovers() {
        for host in [44100u32, 48000] {
            let (c, k, n) = (1984usize, 4usize, 30000usize);
            let plan = StreamPlan::new(host, 44100, c, k, 2, 128, 0).unwrap();
            let x = signal(n, 7);
            let hh = plan.block;
            let skipped = 20..23;
            let (clean, _) = stream(&plan, &x, |_| false);
            let (got, valid) = stream(&plan, &x, |j| skipped.contains(&j));
            let mut invalid_blocks = 0;
            for (j, v) in valid.iter().enumerate() {
                let same = (0..2).all(|s| {
                    (0..2).all(|ch| max_diff(&got[s][ch][j * hh..(j + 1) * hh], &clean[s][ch][j * hh..(j + 1) * hh]) < 1e-6)
                });
                if *v {
                    assert!(same, "{host} Hz: block {j} is marked valid but differs from the clean run");
                } else {
                    invalid_blocks += 1;
                }
            }
            // Invalid only around the hole (a few chunks' worth), valid again afterwards.
            assert!(invalid_blocks > 0);
            let reach = (c + plan.out_rs.1 * 3) * host as usize / 44100 / hh + 4;
            assert!(invalid_blocks <= skipped.len() + reach, "{host} Hz: {invalid_blocks} invalid blocks");
            assert!(valid[valid.len() - 10..].iter().all(|v| *v));
        }
    }

    /// Stream `x` from block `first` on (the earlier blocks are not fed), after `restart_at`;
    /// returns the answers to blocks `first..`, [stems][2][frames], and their validity.
    fn stream_from(plan: &StreamPlan, x: &[Vec<f32>], first: usize, blocks: usize, quiet: bool) -> (Vec<Vec<Vec<f32>>>, Vec<bool>) {
        let (hh, s, c) = (plan.block, plan.stems, plan.chunk);
        let mut st = Streamer::new(plan);
        st.restart_at((first * hh) as u64, quiet, 0);
        let mut run = fake_run(c, s);
        let mut out = vec![vec![Vec::new(); 2]; s];
        let mut valid = vec![];
        let mut inp = vec![0f32; 2 * hh];
        let mut ob = vec![0f32; s * 2 * hh];
        for j in first..first + blocks {
            for ch in 0..2 {
                for t in 0..hh {
                    inp[ch * hh + t] = x[ch].get(j * hh + t).copied().unwrap_or(0.0);
                }
            }
            let r = st.push_block(&inp, false, &mut |i, o, _| run(i, 1, o).is_ok(), &mut ob);
            valid.push(r.valid);
            for si in 0..s {
                for ch in 0..2 {
                    out[si][ch].extend_from_slice(&ob[(si * 2 + ch) * hh..(si * 2 + ch + 1) * hh]);
                }
            }
        }
        (out, valid)
    }

    #[test]
    fn restart_at_a_position_equals_the_stream_fed_silence_until_there() {
        for (host, k, first) in [(44100u32, 4usize, 37usize), (48000, 4, 53), (96000, 2, 11), (44100, 1, 5)] {
            let plan = StreamPlan::new(host, 44100, 1984, k, 2, 256, 0).unwrap();
            let hh = plan.block;
            let n = host as usize / 2;
            // Silence for the first `first` blocks, then the signal.
            let mut x = signal(n + first * hh, 21);
            for ch in &mut x {
                ch[..first * hh].fill(0.0);
            }
            let (whole, _) = stream(&plan, &x, |_| false);
            let blocks = whole[0][0].len() / hh - first;
            let (late, valid) = stream_from(&plan, &x, first, blocks, true);
            assert!(valid.iter().all(|v| *v));
            for s in 0..2 {
                for ch in 0..2 {
                    let a = &whole[s][ch][first * hh..];
                    assert_eq!(a.len(), late[s][ch].len());
                    assert_eq!(max_diff(a, &late[s][ch]), 0.0, "{host} Hz K={k}: stem {s} ch {ch}");
                }
            }
        }
    }

    #[test]
    fn a_restart_after_sound_marks_its_initial_silence_invalid() {
        let plan = StreamPlan::new(48000, 44100, 1984, 4, 2, 256, 0).unwrap();
        let x = signal(48000, 3);
        let first = 40;
        let (_, valid) = stream_from(&plan, &x, first, 60, false);
        // The FIFO's silence (at most the prefill) is invalid, the rest valid.
        let invalid = valid.iter().take_while(|v| !**v).count();
        assert!(invalid >= 1 && invalid <= plan.prefill / plan.block + 2, "{invalid} invalid blocks for a prefill of {}", plan.prefill);
        assert!(valid[invalid..].iter().all(|v| *v));
        // With a silent history the same restart is valid throughout.
        let (_, valid) = stream_from(&plan, &x, first, 60, true);
        assert!(valid.iter().all(|v| *v));
    }

    #[test]
    fn streams_started_anywhere_on_the_anchor_grid_agree_with_the_whole_song_after_one_chunk() {
        for host in [44100u32, 48000] {
            let plan = StreamPlan::new(host, 44100, 1984, 4, 2, 256, 0).unwrap();
            let anchor = plan.anchor.expect("an anchor period") as usize;
            let hh = plan.block;
            let x = signal(host as usize * 6, 9);
            let (whole, _) = stream(&plan, &x, |_| false);
            // Playback from `p`: the stream restarts at p's offset in its anchor cell; the
            // input before p is unknown to it (zeros).
            for p in [anchor / 3, anchor + 17, 2 * anchor - 5] {
                let origin = p / anchor * anchor;
                let first = (p - origin) / hh;
                let mut xp: Vec<Vec<f32>> = x.iter().map(|c| c[origin..].to_vec()).collect();
                for ch in &mut xp {
                    ch[..p - origin].fill(0.0);
                }
                let blocks = (whole[0][0].len() - origin) / hh - first;
                let (late, _) = stream_from(&plan, &xp, first, blocks, true);
                // One chunk after p (plus the resamplers' reach), at host rate.
                let settle = p + plan.latency_samples() + 2 * plan.chunk * host as usize / 44100 + 4 * plan.in_rs.0 + 4 * plan.out_rs.1;
                for s in 0..2 {
                    for ch in 0..2 {
                        let a = &whole[s][ch][settle..];
                        let b = &late[s][ch][settle - origin - first * hh..];
                        let len = a.len().min(b.len());
                        let d = max_diff(&a[..len], &b[..len]);
                        assert!(d < 1e-5, "{host} Hz, start {p}: stem {s} ch {ch} differs by {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_stream_that_starts_before_the_project_equals_the_cli_from_the_first_sample() {
        // A host's pre-roll: the stream starts `pre` frames before project time 0, where the
        // song begins; the project's start lies one anchor period after the stream's origin.
        for (host, pre) in [(44100u32, 4096usize), (48000, 348), (48000, 4096)] {
            let plan = StreamPlan::new(host, 44100, 1984, 4, 2, 256, 0).unwrap();
            let (hh, anchor) = (plan.block, plan.anchor.unwrap() as usize);
            let pre = pre.min(anchor);
            let start = anchor - pre; // stream position of the first block with audio
            let first = start / hh;
            let n = host as usize;
            let mut x = signal(n + anchor, 5);
            for ch in &mut x {
                ch[..anchor].fill(0.0);
            }
            let mut st = Streamer::new(&plan);
            st.restart_at((first * hh) as u64, true, anchor as u64);
            let mut run = fake_run(plan.chunk, 2);
            let mut got = vec![vec![Vec::new(); 2]; 2];
            let (mut inp, mut ob) = (vec![0f32; 2 * hh], vec![0f32; 2 * 2 * hh]);
            let blocks = (n + anchor + plan.latency_samples() + 4 * hh) / hh - first;
            for j in first..first + blocks {
                for ch in 0..2 {
                    for t in 0..hh {
                        inp[ch * hh + t] = x[ch].get(j * hh + t).copied().unwrap_or(0.0);
                    }
                }
                st.push_block(&inp, false, &mut |i, o, _| run(i, 1, o).is_ok(), &mut ob);
                for si in 0..2 {
                    for ch in 0..2 {
                        got[si][ch].extend_from_slice(&ob[(si * 2 + ch) * hh..(si * 2 + ch + 1) * hh]);
                    }
                }
            }
            // The CLI: the song alone (from project time 0), resampled, UVR, resampled back.
            let song: Vec<Vec<f32>> = x.iter().map(|c| c[anchor..].to_vec()).collect();
            let mix = crate::audio::resample(&song, host, 44100).unwrap();
            let p = OverlapParams { chunk: plan.chunk, overlap: 4, stems: 2, batch: 1 };
            let want = overlap::separate(Scheme::Uvr, &p, &mix, &mut fake_run(plan.chunk, 2), &mut |_, _| {}).unwrap();
            for s in 0..2 {
                let back = crate::audio::resample(&want[s], 44100, host).unwrap();
                for ch in 0..2 {
                    // FIFO frame f is stream frame f - P; project time 0 is stream frame `anchor`.
                    let from = anchor + plan.prefill - first * hh;
                    let g = &got[s][ch][from..from + n - 2000];
                    let e = max_diff(g, &back[ch][..n - 2000]);
                    assert!(e < 1e-5, "{host} Hz stem {s} ch {ch}: {e}");
                }
            }
        }
    }

    /// FNV-1a, for pinning a stream's output to the last bit.
    struct Digest(u64);

    impl Digest {
        fn new() -> Self {
            Digest(0xcbf2_9ce4_8422_2325)
        }
        fn add(&mut self, v: u64) {
            for b in v.to_le_bytes() {
                self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
    }

    /// Stream `blocks` blocks of `x` from the start, or from block `first` after
    /// `restart_at(first * b, quiet, song_start)`, and digest every output sample's bits, every
    /// block's validity and chunk count, and the `fresh` flag of every chunk run.
    fn digest(plan: &StreamPlan, x: &[Vec<f32>], blocks: usize, restart: Option<(usize, bool, u64)>, skip: impl Fn(usize) -> bool) -> u64 {
        let (hh, s) = (plan.block, plan.stems);
        let mut st = Streamer::new(plan);
        let first = match restart {
            Some((first, quiet, song_start)) => {
                st.restart_at((first * hh) as u64, quiet, song_start);
                first
            }
            None => 0,
        };
        let mut run = fake_run(plan.chunk, s);
        let mut d = Digest::new();
        let (mut inp, mut ob) = (vec![0f32; 2 * hh], vec![0f32; s * 2 * hh]);
        let mut fresh = Vec::new();
        for j in first..first + blocks {
            for ch in 0..2 {
                for t in 0..hh {
                    inp[ch * hh + t] = x[ch].get(j * hh + t).copied().unwrap_or(0.0);
                }
            }
            fresh.clear();
            let r = st.push_block(&inp, skip(j), &mut |i, o, f| {
                fresh.push(f);
                run(i, 1, o).is_ok()
            }, &mut ob);
            for f in &fresh {
                d.add(*f as u64);
            }
            d.add(r.valid as u64);
            d.add(r.chunks as u64);
            for v in &ob {
                d.add(v.to_bits() as u64);
            }
        }
        d.0
    }

    /// The streamer's output, validity and `fresh` flags, pinned to the bit (values recorded from
    /// the streamer as it was before the CLI and the plugin shared one streaming pipeline): at
    /// the model's rate, resampling from 48 and 96 kHz, with skipped chunks, after restarts
    /// (quiet or not, before the project's start) and for a streaming model.
    #[test]
    fn the_stream_is_pinned_to_the_bit() {
        let plan44 = StreamPlan::new(44100, 44100, 1984, 4, 2, 256, 0).unwrap();
        let plan48 = StreamPlan::new(48000, 44100, 1984, 4, 2, 256, 0).unwrap();
        let plan96 = StreamPlan::new(96000, 44100, 1984, 2, 3, 512, 1).unwrap();
        let streaming = StreamPlan::streaming(48000, 512, 300, 2, 256, 0).unwrap();
        let x = signal(60_000, 11);
        // A song that starts at the project's start, one anchor period into the stream.
        let anchor48 = plan48.anchor.unwrap() as usize;
        let mut pre = signal(anchor48 + 40_000, 12);
        for ch in &mut pre {
            ch[..anchor48].fill(0.0);
        }
        let got = [
            digest(&plan44, &x, 260, None, |_| false),
            digest(&plan48, &x, 240, None, |_| false),
            digest(&plan96, &x, 120, None, |_| false),
            digest(&plan44, &x, 260, None, |j| (30..33).contains(&j) || j == 90),
            digest(&plan48, &x, 240, None, |j| (20..23).contains(&j) || j == 100),
            digest(&plan44, &x, 200, Some((37, true, 0)), |_| false),
            digest(&plan48, &x, 200, Some((53, false, 0)), |j| j == 150),
            digest(&plan48, &pre, 200, Some((anchor48 / plan48.block - 9, true, anchor48 as u64)), |_| false),
            digest(&streaming, &x, 150, None, |j| (40..42).contains(&j)),
            digest(&streaming, &x, 120, Some((20, false, 0)), |_| false),
        ];
        let want: [u64; 10] = [
            0x6ca9_96fe_44f9_01f4,
            0x5ffb_c3a7_635b_15d5,
            0x844e_8ed7_4ef7_eaca,
            0x2b95_fc50_e71e_ab3c,
            0x835c_7223_1692_9156,
            0xdefb_cd02_f214_7d1e,
            0x6afb_c78e_2798_5058,
            0xc24e_2afe_9f56_1827,
            0x0fc9_02e9_9e3b_4e56,
            0xb037_a13e_15c7_1a0a,
        ];
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "case {i}: {g:#x} != {w:#x}");
        }
    }
}
