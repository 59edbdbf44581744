//! The streaming pipeline the CLI and the plugin share: a stereo signal at any rate, in blocks,
//! resampled to the model's rate, cut into chunks that run as soon as their samples are known,
//! overlap-added (or a streaming model's consecutive blocks, its latency removed), the stems
//! resampled back and handed out in order; memory is bounded by the model's chunk whatever the
//! signal's length.
//!
//! Who owns what:
//! * [`AlignedResampler`] (`audio`): resampling in a stream with the filter delay dropped, both
//!   ways; [`OverlapStream`] (`dsp`): the streaming overlap-add (UVR's window with its `C - H`
//!   front zeros, the sums, the final samples divided by K; MSST's scheme), holes, restarts.
//! * [`StreamPipeline`] (here): the three stages in a row and their positions. Per block the
//!   plugin's inference thread calls [`StreamPipeline::push`] (its `Streamer` adds the FIFO with
//!   its prefill, fixed-size host blocks, validity from [`StreamPipeline::take_holes`], and
//!   [`StreamPipeline::restart_at`] on the timeline's grid); the CLI's
//!   [`Separator::separate_streaming`] adds the complement of a single-target model and the
//!   exact ends ([`StreamPipeline::finish`]).
//!
//! The ends are exact: at the end of the signal both resamplers are flushed, so the stems are
//! those of the signal followed by silence, over their whole length (the same signal padded
//! with a second of silence gives the same samples, the padding cut off). At the model's own
//! rate nothing is resampled and the stems are bit for bit those of [`Separator::separate`].

use super::{EngineError, Separator};
use crate::audio::{AlignedResampler, AudioError};
use crate::dsp::overlap::{OverlapParams, Scheme};
use crate::dsp::overlap_stream::{OverlapStream, RunChunks};
use crate::nets::Schedule;
use std::collections::VecDeque;

/// The most frames the CLI hands the forward resampler at once (longer blocks are split).
const MAX_BLOCK: usize = 8192;

/// How a chunked model's chunks are laid out (ignored by streaming models).
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub scheme: Scheme,
    pub overlap: usize,
    pub batch: usize,
}

/// How the model's calls sit in the stream.
#[derive(Debug, Clone, Copy)]
pub enum Chunking {
    /// Chunks overlap-added in `scheme` ([`OverlapStream`]).
    Overlap { scheme: Scheme, params: OverlapParams },
    /// A streaming model's consecutive blocks of `block` samples, `batch` per call, the output
    /// `latency` samples late (removed).
    Blocks { block: usize, latency: usize, batch: usize },
}

/// A streaming model's blocks: consecutive blocks in, `batch` per call, the output `latency`
/// samples late and handed out with that delay removed. The one implementation of a streaming
/// model's block loop: [`StreamPipeline`] runs it in a stream, [`Separator::separate`] over a
/// whole signal.
pub(super) struct BlockStream {
    block: usize,
    latency: usize,
    batch: usize,
    stems: usize,
    /// Input not yet run, [2].
    pending: [Vec<f32>; 2],
    /// Samples run so far (including the padding at the end).
    fed: usize,
    end: Option<usize>,
    inp: Vec<f32>,
    res: Vec<f32>,
    out: Vec<Vec<f32>>,
    /// Output samples `[lo, hi)` of blocks that were not computed (handed out as silence).
    holes: Option<(usize, usize)>,
}

impl BlockStream {
    pub(super) fn new(block: usize, latency: usize, batch: usize, stems: usize) -> Self {
        let batch = batch.max(1);
        BlockStream {
            block,
            latency,
            batch,
            stems,
            pending: [Vec::new(), Vec::new()],
            fed: 0,
            end: None,
            inp: vec![0f32; batch * 2 * block],
            res: vec![0f32; batch * stems * 2 * block],
            out: vec![Vec::new(); stems * 2],
            holes: None,
        }
    }

    /// Take the next `x` ([2][len]), run the batches of blocks it completes and hand their
    /// output (the latency removed) to `emit`, `[stems * 2]` frames in order.
    pub(super) fn push<E>(&mut self, x: [&[f32]; 2], run: &mut RunChunks<'_, E>, emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>) -> Result<(), E> {
        for (p, x) in self.pending.iter_mut().zip(x) {
            p.extend_from_slice(x);
        }
        self.run(run, emit)
    }

    /// The signal has ended at `len` samples: pad the last block, and `latency` samples more to
    /// flush the model, with zeros, run the rest and hand out the output up to `len`.
    pub(super) fn finish<E>(&mut self, len: usize, run: &mut RunChunks<'_, E>, emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>) -> Result<(), E> {
        let received = self.fed + self.pending[0].len();
        let total = (len + self.latency).div_ceil(self.block) * self.block;
        for p in &mut self.pending {
            p.resize(p.len() + total.saturating_sub(received), 0.0);
        }
        self.end = Some(len);
        self.run(run, emit)
    }

    fn run<E>(&mut self, run: &mut RunChunks<'_, E>, emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>) -> Result<(), E> {
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
            if !run(&self.inp[..m * 2 * b], m, &mut self.res[..m * s * 2 * b])? {
                self.res[..m * s * 2 * b].fill(0.0);
                let (lo, hi) = (self.fed.saturating_sub(self.latency), (self.fed + m * b).saturating_sub(self.latency));
                self.holes = Some(self.holes.map_or((lo, hi), |(a, z)| (a.min(lo), z.max(hi))));
            }
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
    fn push<E>(&mut self, x: [&[f32]; 2], run: &mut RunChunks<'_, E>, emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>) -> Result<(), E> {
        match self {
            Chunker::Overlap(st) => st.push(x, run, emit),
            Chunker::Blocks(bs) => bs.push(x, run, emit),
        }
    }

    fn finish<E>(&mut self, len: usize, run: &mut RunChunks<'_, E>, emit: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>) -> Result<(), E> {
        match self {
            Chunker::Overlap(st) => st.finish(len, run, emit),
            Chunker::Blocks(bs) => bs.finish(len, run, emit),
        }
    }
}

/// Resample to the model's rate, run the chunks, overlap-add, resample back: one stream (see
/// the module docs). Positions count frames from the stream's start: input frames pushed,
/// output frames handed to the sink (output frame `k` is input time `k / rate`, the stems'
/// delays all removed).
pub struct StreamPipeline {
    rate: u32,
    model_rate: u32,
    stems: usize,
    /// MSST's chunks: the song is reflected at its end, so it is not padded with silence there.
    reflects: bool,
    /// Signal rate -> model rate, [2].
    fwd: AlignedResampler,
    chunker: Chunker,
    /// Model rate -> signal rate, [stems * 2].
    back: AlignedResampler,
    /// One push's worth of the forward resampler's output, [2].
    fbuf: Vec<Vec<f32>>,
    /// One emission's worth of the back resampler's output, [stems * 2].
    bbuf: Vec<Vec<f32>>,
    /// Model-rate frames passed to the chunker, and from it to the back resampler.
    model_in: u64,
    model_out: u64,
}

impl StreamPipeline {
    /// A stream of a signal at `rate` through a model of `stems` stems at `model_rate`, its
    /// calls laid out by `chunking`. Pushes of up to `max_block` frames (longer ones are split)
    /// of overlap-added chunks allocate nothing: everything is allocated here.
    ///
    /// # Errors
    /// [`AudioError::Resample`] if a resampler cannot be built (a rate of 0).
    pub fn new(rate: u32, model_rate: u32, stems: usize, chunking: Chunking, max_block: usize) -> Result<Self, AudioError> {
        let fwd = AlignedResampler::new(rate, model_rate, 2, max_block)?;
        let (chunker, unit) = match chunking {
            Chunking::Overlap { scheme, params } => {
                assert_eq!(params.stems, stems, "the chunks' stems are the stream's");
                let mut st = OverlapStream::new(scheme, params);
                st.reserve(fwd.max_output_frames());
                (Chunker::Overlap(st), params.batch.max(1) * params.hop())
            }
            Chunking::Blocks { block, latency, batch } => (Chunker::Blocks(BlockStream::new(block, latency, batch, stems)), batch.max(1) * block),
        };
        // The stems come out a batch of hops (or of blocks) at a time.
        let back = AlignedResampler::new(model_rate, rate, 2 * stems, unit)?;
        Ok(StreamPipeline {
            rate,
            model_rate,
            stems,
            reflects: matches!(chunking, Chunking::Overlap { scheme: Scheme::Msst, .. }),
            fbuf: (0..2).map(|_| Vec::with_capacity(fwd.max_output_frames())).collect(),
            bbuf: (0..2 * stems).map(|_| Vec::with_capacity(back.max_output_frames())).collect(),
            fwd,
            chunker,
            back,
            model_in: 0,
            model_out: 0,
        })
    }

    /// The most frames one emission hands the sink (a batch of hops or blocks, resampled).
    pub fn max_output_frames(&self) -> usize {
        self.back.max_output_frames()
    }

    /// Push the next `input` frames ([2][len], any length): resample them, run the chunks they
    /// complete through `run`, and hand the stems that became final to `sink`, in order,
    /// `sink(stems)` with `stems[s * 2 + ch]` at the signal's rate.
    pub fn push<E: From<AudioError>>(
        &mut self,
        input: [&[f32]; 2],
        run: &mut RunChunks<'_, E>,
        sink: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>,
    ) -> Result<(), E> {
        for b in &mut self.fbuf {
            b.clear();
        }
        let n = self.fwd.process(&input, &mut self.fbuf)?;
        if n == 0 {
            return Ok(());
        }
        self.model_in += n as u64;
        let StreamPipeline { fbuf, chunker, back, bbuf, model_out, .. } = self;
        let mut emit = |stems: &[Vec<f32>]| -> Result<(), E> { resample_back(back, bbuf, model_out, stems, sink) };
        chunker.push([&fbuf[0], &fbuf[1]], run, &mut emit)
    }

    /// Start again at input frame `pos`, in exactly the state the stream from frame 0 reaches
    /// after `pos` frames of silence: the chunk grid and both resamplers' chunk grids are the
    /// continuous stream's, so once a chunk's worth of input has come the stems equal its
    /// stems. Input before frame `song_start` (a multiple of the forward resampler's input
    /// chunk; 0 for none) counts as silence, and the stems before it are silence (a host's
    /// pre-roll before the project's start). Returns the output frames the continuous stream
    /// has handed out by `pos`. Counters are computed, nothing is run, nothing allocated.
    /// Overlap-added chunks in UVR's scheme only.
    pub fn restart_at(&mut self, pos: u64, song_start: u64) -> u64 {
        let Chunker::Overlap(st) = &mut self.chunker else { panic!("a streaming model's blocks do not restart mid-stream") };
        self.fwd.restart_at(pos);
        let model = self.fwd.output_after(pos);
        st.restart_at(model as usize, self.fwd.position(song_start) as usize);
        let emitted = st.emitted() as u64;
        self.back.restart_at(emitted);
        self.model_in = model;
        self.model_out = emitted;
        self.back.output_after(emitted)
    }

    /// The output frames `[start, end)` that the chunks not computed since the last call can
    /// reach, if any: the song samples they span, through the back resampler.
    pub fn take_holes(&mut self) -> Option<(u64, u64)> {
        let (lo, hi) = match &mut self.chunker {
            Chunker::Overlap(st) => st.take_holes()?,
            Chunker::Blocks(bs) => bs.holes.take()?,
        };
        Some(self.back.reach(lo as u64, hi as u64))
    }

    /// The input has ended (everything pushed): flush the forward resampler until its output
    /// is silent for good, run the last chunks on the song followed by silence (long enough for
    /// the back resampler's last output frame), and hand out the rest. At least as many output
    /// frames as input frames come out; the caller cuts at the input's length.
    pub fn finish<E: From<AudioError>>(&mut self, run: &mut RunChunks<'_, E>, sink: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>) -> Result<(), E> {
        let n = self.fwd.fed() as usize;
        let resamples = self.rate != self.model_rate;
        // Every input chunk of the forward resampler reaches at most the output chunk after it.
        let (f_in, f_out) = self.fwd.chunk_frames();
        let fwd_total = if resamples { (n.div_ceil(f_in) + 2) * f_out } else { n };
        let zeros = vec![0f32; f_in];
        while (self.fwd.fed() as usize) / f_in * f_out < fwd_total {
            self.push([&zeros, &zeros], run, sink)?;
        }
        // What the back resampler needs for the last output frame.
        let (b_in, b_out) = self.back.chunk_frames();
        let needed = if resamples { (n + self.back.delay_frames()).div_ceil(b_out) * b_in } else { n };
        let model_len = self.model_in as usize;
        // MSST's scheme reflects the song at its end: the song ends where it ends.
        let len = if self.reflects { model_len } else { model_len.max(needed) };
        let StreamPipeline { chunker, back, bbuf, model_out, .. } = self;
        chunker.finish(len, run, &mut |stems: &[Vec<f32>]| resample_back(back, bbuf, model_out, stems, sink))?;
        // (MSST) silence after the song's stems, until the last output frame is out.
        let zeros = vec![vec![0f32; b_in]; 2 * self.stems];
        while self.back.output_after(self.back.fed()) < n as u64 && (self.model_out as usize) < needed + 2 * b_in {
            resample_back(&mut self.back, &mut self.bbuf, &mut self.model_out, &zeros, sink)?;
        }
        Ok(())
    }
}

/// Resample `stems` (model rate) back and hand what comes out to `sink`.
fn resample_back<E: From<AudioError>>(
    back: &mut AlignedResampler,
    bbuf: &mut [Vec<f32>],
    model_out: &mut u64,
    stems: &[Vec<f32>],
    sink: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>,
) -> Result<(), E> {
    *model_out += stems[0].len() as u64;
    for b in bbuf.iter_mut() {
        b.clear();
    }
    if back.process(stems, bbuf)? > 0 { sink(bbuf) } else { Ok(()) }
}

/// The CLI's side of the stream: the stems cut at the input's length, and the complement of a
/// single-target model (the input not yet matched by output, minus the target).
struct Output {
    stems: usize,
    complement: bool,
    /// The input not yet matched by output, [2] (for the complement).
    dry: [VecDeque<f32>; 2],
    /// Input frames received, output frames handed out.
    received: u64,
    written: u64,
    /// The input has ended: output past its length is cut (before, nothing may be).
    ended: bool,
    /// Output block handed to the sink.
    block: Vec<Vec<f32>>,
}

impl Output {
    fn hand<E>(&mut self, stems: &[Vec<f32>], sink: &mut dyn FnMut(&[Vec<f32>]) -> Result<(), E>) -> Result<(), E> {
        let len = stems[0].len();
        let take = (len as u64).min(self.received - self.written) as usize;
        debug_assert!(self.ended || take == len, "the stems got ahead of the input");
        if take == 0 {
            return Ok(());
        }
        for (o, b) in self.block.iter_mut().zip(stems) {
            o.clear();
            o.extend_from_slice(&b[..take]);
        }
        if self.complement {
            let (target, rest) = self.block.split_at_mut(2 * self.stems);
            for ch in 0..2 {
                let c = &mut rest[ch];
                c.clear();
                c.extend(self.dry[ch].drain(..take).zip(&target[ch]).map(|(x, t)| x - t));
            }
        }
        self.written += take as u64;
        sink(&self.block)
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
        let s = self.num_stems();
        let complement = self.info().complement.is_some();
        let batch = settings.batch.max(1);
        let chunking = match self.info().schedule {
            Schedule::Chunks { chunk, .. } => Chunking::Overlap {
                scheme: settings.scheme,
                params: OverlapParams { chunk, overlap: settings.overlap.max(1), stems: s, batch },
            },
            Schedule::Stream { block, latency } => Chunking::Blocks { block, latency, batch },
        };
        let mut pipe = StreamPipeline::new(rate, self.sample_rate(), s, chunking, MAX_BLOCK)?;
        let mut out = Output {
            stems: s,
            complement,
            dry: [VecDeque::new(), VecDeque::new()],
            received: 0,
            written: 0,
            ended: false,
            block: vec![Vec::new(); 2 * s + if complement { 2 } else { 0 }],
        };
        self.reset();
        let mut run = |inp: &[f32], n: usize, o: &mut [f32]| self.process_chunks(inp, n, o).map(|()| true).map_err(E::from);
        let mut block: [Vec<f32>; 2] = [Vec::new(), Vec::new()];
        while source(&mut block)? {
            assert_eq!(block[0].len(), block[1].len(), "the source's channels differ in length");
            out.received += block[0].len() as u64;
            if complement {
                for ch in 0..2 {
                    out.dry[ch].extend(&block[ch]);
                }
            }
            pipe.push([&block[0], &block[1]], &mut run, &mut |stems: &[Vec<f32>]| out.hand(stems, sink))?;
        }
        let n = out.received;
        if n == 0 {
            return Ok(0);
        }
        out.ended = true;
        pipe.finish(&mut run, &mut |stems: &[Vec<f32>]| out.hand(stems, sink))?;
        debug_assert_eq!(out.written, n, "the stream handed out {} of {n} frames", out.written);
        Ok(out.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{fake_separator, positional, signal};
    use crate::nets::ModelInfo;

    /// FNV-1a over the bits of every sample `separate_streaming` hands out, output by output,
    /// for `x` fed in blocks of uneven sizes.
    fn digest(sep: &mut Separator, x: &[Vec<f32>], rate: u32, settings: StreamSettings) -> u64 {
        let out = crate::testing::stream_in_uneven_blocks(sep, x, rate, settings);
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for v in std::iter::once(out.len()).chain(out.iter().map(Vec::len)) {
            for b in (v as u64).to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
        for v in out.iter().flatten() {
            for b in v.to_bits().to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
        h
    }

    fn separator(schedule: Schedule, latency: usize, complement: bool) -> Separator {
        let info = ModelInfo {
            sample_rate: 44100,
            stems: vec!["a".into(), "b".into()],
            complement: complement.then(|| "rest".into()),
            schedule,
        };
        fake_separator(info, positional, latency)
    }

    /// The stems `separate_streaming` hands out, pinned to the bit (values recorded before the
    /// CLI and the plugin shared one streaming pipeline): both schemes, batches of 1 and 3, with
    /// and without a complement, a streaming model, at the model's rate and resampled.
    #[test]
    fn the_stream_is_pinned_to_the_bit() {
        let x = signal(23_456, 5);
        let mut got = vec![];
        for rate in [44100u32, 48000, 22050] {
            let chunks = Schedule::Chunks { chunk: 1000, default_overlap: 4 };
            let mut sep = separator(chunks, 0, false);
            for (scheme, overlap, batch) in [(Scheme::Uvr, 4, 1), (Scheme::Uvr, 2, 3), (Scheme::Msst, 4, 1), (Scheme::Msst, 3, 3)] {
                got.push(digest(&mut sep, &x, rate, StreamSettings { scheme, overlap, batch }));
            }
            let mut sep = separator(chunks, 0, true);
            got.push(digest(&mut sep, &x, rate, StreamSettings { scheme: Scheme::Uvr, overlap: 4, batch: 2 }));
            let mut sep = separator(Schedule::Stream { block: 256, latency: 100 }, 100, false);
            got.push(digest(&mut sep, &x, rate, StreamSettings { scheme: Scheme::Uvr, overlap: 4, batch: 2 }));
        }
        let want: [u64; 18] = [
            0x06d3_4b09_c95a_88f6,
            0x57af_e977_09c4_823c,
            0xa103_24ca_600e_8276,
            0x7d18_c8f8_aa39_e6e0,
            0xf4be_10a3_bf14_1751,
            0x07ef_7d78_8fa8_1901,
            0xf1ad_12e9_2d03_86be,
            0x79b3_0cc3_6100_b7cd,
            0x05f4_ad32_c2a8_771d,
            0x3144_829b_f65a_021f,
            0x2fa8_85dc_b913_a291,
            0x19c7_143d_7d7f_fe72,
            0x47d2_26b6_6608_174d,
            0x9b5a_706e_4e02_78fa,
            0xb5cf_27ea_d3a1_d516,
            0x0852_edc1_10ac_be79,
            0x43eb_2cbf_29c3_5d7a,
            0xd30b_5a6f_cac7_bb0b,
        ];
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "case {i}: {g:#x} != {w:#x}");
        }
    }
}
