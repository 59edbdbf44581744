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
                let mut run = |inp: &[f32], n: usize, out: &mut [f32]| sep.process_chunks(inp, n, out).map(|()| true).map_err(E::from);
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
                let mut run = |inp: &[f32], n: usize, out: &mut [f32]| sep.process_chunks(inp, n, out).map(|()| true).map_err(E::from);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::{Event, ModelBuilder, ModelError, ModelInfo, Pass, SeparationModel, Target};
    use candle_core::Device;

    /// A stand-in network whose output depends on where a sample sits in its chunk and on the
    /// whole chunk: stem s = (s + 1) * x * (1 + t / C + 10 * mean(x)). As a streaming model
    /// (`latency` > 0) it applies the same to its input `latency` samples late, keeping the
    /// last `latency` samples between calls.
    struct Fake {
        info: ModelInfo,
        latency: usize,
        tail: [Vec<f32>; 2],
    }

    impl SeparationModel for Fake {
        fn info(&self) -> &ModelInfo {
            &self.info
        }
        fn device(&self) -> &Device {
            &Device::Cpu
        }
        fn process(&mut self, input: &[f32], n: usize, out: &mut [f32], _pass: &mut Pass<'_>) -> candle_core::Result<()> {
            let (b, s) = (self.info.unit_len(), self.info.stems.len());
            for j in 0..n {
                for ch in 0..2 {
                    let x = &input[(j * 2 + ch) * b..(j * 2 + ch + 1) * b];
                    let mean = x.iter().sum::<f32>() / b as f32;
                    let mut line = std::mem::take(&mut self.tail[ch]);
                    line.extend_from_slice(x);
                    for si in 0..s {
                        for t in 0..b {
                            out[((j * s + si) * 2 + ch) * b + t] = (si + 1) as f32 * line[t] * (1.0 + t as f32 / b as f32 + 10.0 * mean);
                        }
                    }
                    self.tail[ch] = line[b..].to_vec();
                }
            }
            Ok(())
        }
        fn reset(&mut self) {
            self.tail = [vec![0.0; self.latency], vec![0.0; self.latency]];
        }
        fn backend_name(&self) -> &'static str {
            "test"
        }
    }

    struct FakeBuilder(ModelInfo, usize);

    impl ModelBuilder for FakeBuilder {
        fn info(&self) -> ModelInfo {
            self.0.clone()
        }
        fn build(&mut self, _: &Target<'_>, _: &mut Vec<Event>) -> Result<Box<dyn SeparationModel>, ModelError> {
            let mut m = Fake { info: self.0.clone(), latency: self.1, tail: [vec![], vec![]] };
            m.reset();
            Ok(Box::new(m))
        }
    }

    #[derive(Debug)]
    enum E {
        #[allow(dead_code)]
        Engine(EngineError),
        #[allow(dead_code)]
        Audio(AudioError),
    }
    impl From<EngineError> for E {
        fn from(e: EngineError) -> Self {
            E::Engine(e)
        }
    }
    impl From<AudioError> for E {
        fn from(e: AudioError) -> Self {
            E::Audio(e)
        }
    }

    fn signal(n: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        (0..2)
            .map(|ch| {
                (0..n)
                    .map(|i| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let noise = ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
                        0.3 * (i as f32 * 0.013 * (ch + 1) as f32).sin() + 0.2 * noise
                    })
                    .collect()
            })
            .collect()
    }

    /// FNV-1a over the bits of every sample `separate_streaming` hands out, output by output,
    /// for `x` fed in blocks of uneven sizes.
    fn digest(sep: &mut Separator, x: &[Vec<f32>], rate: u32, settings: StreamSettings) -> u64 {
        let sizes = [1000usize, 4097, 333, 1, 8192, 20000];
        let (mut pos, mut k, n) = (0, 0, x[0].len());
        let mut source = |b: &mut [Vec<f32>; 2]| -> Result<bool, E> {
            if pos >= n {
                return Ok(false);
            }
            let m = sizes[k % sizes.len()].min(n - pos);
            k += 1;
            for ch in 0..2 {
                b[ch].clear();
                b[ch].extend_from_slice(&x[ch][pos..pos + m]);
            }
            pos += m;
            Ok(true)
        };
        let mut out: Vec<Vec<f32>> = Vec::new();
        let mut sink = |s: &[Vec<f32>]| -> Result<(), E> {
            out.resize(s.len(), Vec::new());
            for (o, s) in out.iter_mut().zip(s) {
                o.extend_from_slice(s);
            }
            Ok(())
        };
        let got = sep.separate_streaming(rate, &settings, &mut source, &mut sink).unwrap();
        assert_eq!(got as usize, n);
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
        Separator::new(Box::new(FakeBuilder(info, latency)), &Default::default()).unwrap()
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
