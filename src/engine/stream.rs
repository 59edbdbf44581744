//! Streaming separation of a signal at any sample rate, with memory bounded by the model's
//! chunk whatever the signal's length: blocks in, resampled to the model's rate, chunks run as
//! soon as their samples are known ([`OverlapStream`]), the stems resampled back and handed out
//! in order, the complement of a single-target model computed on the way.
//!
//! The ends are exact: at the end of the signal both resamplers are flushed, so the stems are
//! those of the signal followed by silence, over their whole length (the same signal padded
//! with a second of silence gives the same samples, the padding cut off). At the model's own
//! rate nothing is resampled and the stems are bit for bit those of [`Separator::separate`].

use super::{EngineError, Separator};
use crate::audio::{AudioError, StreamResampler};
use crate::dsp::overlap::{OverlapParams, Scheme};
use crate::dsp::overlap_stream::OverlapStream;
use crate::nets::Schedule;
use std::collections::VecDeque;

/// The most frames handed to a resampler at once (longer blocks are split).
const MAX_BLOCK: usize = 8192;

/// How a chunked model's chunks are laid out (ignored by streaming models).
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub scheme: Scheme,
    pub overlap: usize,
    pub batch: usize,
}

/// A streaming model's blocks: consecutive blocks in, the output `latency` samples late
/// (what [`Separator::separate`] does over a whole signal, block by block).
struct BlockStream {
    block: usize,
    latency: usize,
    batch: usize,
    stems: usize,
    /// Input not yet run, [2].
    pending: [Vec<f32>; 2],
    /// Samples run so far (including the padding at the end).
    fed: usize,
    /// Output samples dropped or handed out so far.
    out_pos: usize,
    end: Option<usize>,
    inp: Vec<f32>,
    res: Vec<f32>,
    out: Vec<Vec<f32>>,
}

impl BlockStream {
    fn run<E>(
        &mut self,
        sep: &mut Separator,
        emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<EngineError>,
    {
        let (b, s) = (self.block, self.stems);
        loop {
            let avail = self.pending[0].len() / b;
            let m = if self.end.is_some() { avail.min(self.batch) } else if avail >= self.batch { self.batch } else { 0 };
            if m == 0 {
                return Ok(());
            }
            for j in 0..m {
                for ch in 0..2 {
                    self.inp[(j * 2 + ch) * b..(j * 2 + ch + 1) * b].copy_from_slice(&self.pending[ch][j * b..(j + 1) * b]);
                }
            }
            for p in &mut self.pending {
                p.drain(..m * b);
            }
            sep.process_chunks(&self.inp[..m * 2 * b], m, &mut self.res[..m * s * 2 * b])?;
            let limit = self.end.map_or(usize::MAX, |n| n + self.latency);
            for j in 0..m {
                let start = self.fed + j * b;
                // Output sample k of this block is signal sample start + k - latency.
                let lo = self.latency.saturating_sub(start).min(b);
                let hi = b.min(limit.saturating_sub(start));
                if hi <= lo {
                    continue;
                }
                for (k, o) in self.out.iter_mut().enumerate() {
                    o.clear();
                    o.extend_from_slice(&self.res[(j * s * 2 + k) * b + lo..(j * s * 2 + k) * b + hi]);
                }
                self.out_pos += hi - lo;
                emit(&self.out)?;
            }
            self.fed += m * b;
        }
    }
}

enum Chunker {
    Overlap(OverlapStream),
    Blocks(BlockStream),
}

impl Chunker {
    fn push<E: From<EngineError>>(
        &mut self,
        sep: &mut Separator,
        x: [&[f32]; 2],
        emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            Chunker::Overlap(st) => {
                let mut run = |inp: &[f32], n: usize, out: &mut [f32]| sep.process_chunks(inp, n, out).map_err(E::from);
                st.push(x, &mut run, emit)
            }
            Chunker::Blocks(bs) => {
                for ch in 0..2 {
                    bs.pending[ch].extend_from_slice(x[ch]);
                }
                bs.run(sep, emit)
            }
        }
    }

    fn finish<E: From<EngineError>>(
        &mut self,
        sep: &mut Separator,
        len: usize,
        emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            Chunker::Overlap(st) => {
                let mut run = |inp: &[f32], n: usize, out: &mut [f32]| sep.process_chunks(inp, n, out).map_err(E::from);
                st.finish(len, &mut run, emit)
            }
            Chunker::Blocks(bs) => {
                let received = bs.fed + bs.pending[0].len();
                let total = (len + bs.latency).div_ceil(bs.block) * bs.block;
                for p in &mut bs.pending {
                    p.resize(p.len() + total.saturating_sub(received), 0.0);
                }
                bs.end = Some(len);
                bs.run(sep, emit)
            }
        }
    }
}

/// Feed `x` ([ch][len], any length) to `rs` in blocks it accepts, appending to `out`.
fn resample_into(rs: &mut StreamResampler, x: &[&[f32]], out: &mut [Vec<f32>]) -> Result<(), AudioError> {
    let len = x.first().map_or(0, |c| c.len());
    let mut pos = 0;
    while pos < len {
        let m = MAX_BLOCK.min(len - pos);
        let block: Vec<&[f32]> = x.iter().map(|c| &c[pos..pos + m]).collect();
        rs.process(&block, out)?;
        pos += m;
    }
    Ok(())
}

/// State of one streaming separation (see [`Separator::separate_streaming`]).
struct Pipeline {
    stems: usize,
    complement: bool,
    fwd: StreamResampler,
    back: StreamResampler,
    /// Forward resampler output not yet passed on ([2]); its first `fwd_skip` frames are the
    /// filter delay.
    fbuf: Vec<Vec<f32>>,
    fwd_skip: usize,
    fwd_raw: usize,
    /// Model-rate samples passed to the chunker.
    model_fed: usize,
    /// Stems at the model's rate not yet resampled back, and the output of that.
    bbuf: Vec<Vec<f32>>,
    back_skip: usize,
    back_in: usize,
    /// The input not yet matched by output (for the complement), [2].
    dry: [VecDeque<f32>; 2],
    /// Input frames received, output frames handed out.
    received: u64,
    written: u64,
    /// Output block handed to the sink.
    out: Vec<Vec<f32>>,
}

impl Pipeline {
    /// Resample the stems back and hand out what is ready (at most `limit` frames in all).
    fn stems_in<E: From<AudioError>>(
        &mut self,
        stems: &[Vec<f32>],
        limit: Option<u64>,
        sink: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>,
    ) -> Result<(), E> {
        let slices: Vec<&[f32]> = stems.iter().map(|v| v.as_slice()).collect();
        self.back_in += slices.first().map_or(0, |s| s.len());
        resample_into(&mut self.back, &slices, &mut self.bbuf)?;
        self.drain_back(limit, sink)
    }

    fn drain_back<E>(&mut self, limit: Option<u64>, sink: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>) -> Result<(), E> {
        let skip = self.back_skip.min(self.bbuf[0].len());
        if skip > 0 {
            for b in &mut self.bbuf {
                b.drain(..skip);
            }
            self.back_skip -= skip;
        }
        let avail = self.bbuf[0].len() as u64;
        let take = match limit {
            Some(n) => avail.min(n.saturating_sub(self.written)),
            None => avail.min(self.received.saturating_sub(self.written)),
        } as usize;
        if take == 0 {
            return Ok(());
        }
        let s = self.stems;
        for (o, b) in self.out.iter_mut().zip(&self.bbuf) {
            o.clear();
            o.extend_from_slice(&b[..take]);
        }
        if self.complement {
            for ch in 0..2 {
                let (target, rest) = self.out.split_at_mut(2 * s);
                let c = &mut rest[ch];
                c.clear();
                c.extend(self.dry[ch].drain(..take).zip(&target[ch]).map(|(x, t)| x - t));
            }
        }
        for b in &mut self.bbuf {
            b.drain(..take);
        }
        self.written += take as u64;
        sink(&self.out)
    }
}

impl Separator {
    /// Separate a stereo signal at `rate` Hz, pulled block by block from `source` (it fills the
    /// two `Vec`s with the next block, of any length, and returns `false` at the end), handing
    /// the stems at `rate` to `sink` in order: `sink(block)` with `block[s * 2 + ch]` for each
    /// of the model's stems, then the complement of a single-target model
    /// ([`crate::nets::ModelInfo::complement`]). Returns the frames handed out (the signal's
    /// length). Memory does not grow with the signal.
    pub fn separate_streaming<E>(
        &mut self,
        rate: u32,
        settings: &StreamSettings,
        source: &mut dyn FnMut(&mut [Vec<f32>; 2]) -> Result<bool, E>,
        sink: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>,
    ) -> Result<u64, E>
    where
        E: From<EngineError> + From<AudioError>,
    {
        let model_rate = self.sample_rate();
        let s = self.num_stems();
        let complement = self.info().complement.is_some();
        let mut chunker = match self.info().schedule {
            Schedule::Chunks { chunk, .. } => Chunker::Overlap(OverlapStream::new(
                settings.scheme,
                OverlapParams { chunk, overlap: settings.overlap.max(1), stems: s, batch: settings.batch.max(1) },
            )),
            Schedule::Stream { block, latency } => {
                let batch = settings.batch.max(1);
                Chunker::Blocks(BlockStream {
                    block,
                    latency,
                    batch,
                    stems: s,
                    pending: [Vec::new(), Vec::new()],
                    fed: 0,
                    out_pos: 0,
                    end: None,
                    inp: vec![0f32; batch * 2 * block],
                    res: vec![0f32; batch * s * 2 * block],
                    out: vec![Vec::new(); s * 2],
                })
            }
        };
        let uvr_like = !matches!((&chunker, settings.scheme), (Chunker::Overlap(_), Scheme::Msst));
        let fwd = StreamResampler::new(rate, model_rate, 2, MAX_BLOCK)?;
        let back = StreamResampler::new(model_rate, rate, 2 * s, MAX_BLOCK)?;
        let mut pl = Pipeline {
            stems: s,
            complement,
            fwd_skip: fwd.delay_frames(),
            back_skip: back.delay_frames(),
            fwd,
            back,
            fbuf: vec![Vec::new(); 2],
            fwd_raw: 0,
            model_fed: 0,
            bbuf: vec![Vec::new(); 2 * s],
            back_in: 0,
            dry: [VecDeque::new(), VecDeque::new()],
            received: 0,
            written: 0,
            out: vec![Vec::new(); 2 * s + if complement { 2 } else { 0 }],
        };
        self.reset();
        let mut block: [Vec<f32>; 2] = [Vec::new(), Vec::new()];

        while source(&mut block)? {
            assert_eq!(block[0].len(), block[1].len(), "the source's channels differ in length");
            pl.received += block[0].len() as u64;
            if complement {
                for ch in 0..2 {
                    pl.dry[ch].extend(&block[ch]);
                }
            }
            let before = pl.fbuf[0].len();
            resample_into(&mut pl.fwd, &[&block[0], &block[1]], &mut pl.fbuf)?;
            pl.fwd_raw += pl.fbuf[0].len() - before;
            self.pass_forward(&mut pl, &mut chunker, None, sink)?;
        }
        let n = pl.received;
        if n == 0 {
            return Ok(0);
        }
        // Flush the forward resampler until its output is silent for good: every input chunk
        // reaches at most the output chunk after it.
        let (f_in, f_out) = pl.fwd.chunk_frames();
        let fwd_total = if rate == model_rate {
            n as usize
        } else {
            ((n as usize).div_ceil(f_in) + 2) * f_out
        };
        let zeros = vec![0f32; f_in.max(1)];
        while pl.fwd_raw < fwd_total {
            let before = pl.fbuf[0].len();
            resample_into(&mut pl.fwd, &[&zeros, &zeros], &mut pl.fbuf)?;
            pl.fwd_raw += pl.fbuf[0].len() - before;
        }
        self.pass_forward(&mut pl, &mut chunker, Some(n), sink)?;
        let model_len = pl.model_fed;
        // What the back resampler needs for the last output frame.
        let (b_in, b_out) = pl.back.chunk_frames();
        let needed = if rate == model_rate {
            n as usize
        } else {
            (n as usize + pl.back.delay_frames()).div_ceil(b_out) * b_in
        };
        let len = if uvr_like { model_len.max(needed) } else { model_len };
        let mut emit = |stems: &[Vec<f32>]| pl.stems_in(stems, Some(n), sink);
        chunker.finish(self, len, &mut emit)?;
        // (MSST) silence after the song's stems, until the last output frame is out.
        if pl.written < n {
            let zeros = vec![vec![0f32; b_in.max(1)]; 2 * s];
            while pl.written < n && pl.back_in < needed + 2 * b_in {
                pl.stems_in(&zeros, Some(n), sink)?;
            }
        }
        debug_assert_eq!(pl.written, n, "the stream handed out {} of {n} frames", pl.written);
        Ok(pl.written)
    }

    /// Pass the forward resampler's output (after its delay) to the chunker.
    fn pass_forward<E: From<EngineError> + From<AudioError>>(
        &mut self,
        pl: &mut Pipeline,
        chunker: &mut Chunker,
        limit: Option<u64>,
        sink: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>,
    ) -> Result<(), E> {
        let skip = pl.fwd_skip.min(pl.fbuf[0].len());
        if skip > 0 {
            for b in &mut pl.fbuf {
                b.drain(..skip);
            }
            pl.fwd_skip -= skip;
        }
        if pl.fbuf[0].is_empty() {
            return Ok(());
        }
        let fb = std::mem::take(&mut pl.fbuf);
        pl.model_fed += fb[0].len();
        let r = chunker.push(self, [&fb[0], &fb[1]], &mut |stems: &[Vec<f32>]| pl.stems_in(stems, limit, sink));
        pl.fbuf = fb;
        for b in &mut pl.fbuf {
            b.clear();
        }
        r
    }
}
