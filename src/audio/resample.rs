//! Sample-rate conversion with rubato's synchronous FFT resampler.
//!
//! * [`resample`]: whole clips, offline. Output length is `round(frames * to / from)` and the
//!   resampler delay is removed, so output sample `k` sits at input time `k / to` seconds.
//! * [`StreamResampler`]: blocks of arbitrary size (up to a fixed maximum) on a real-time
//!   thread; every buffer is allocated in [`StreamResampler::new`].
//! * [`AlignedResampler`]: a [`StreamResampler`] with its filter delay dropped, so output
//!   sample `k` sits at input time `k / to` as with [`resample`]; it can restart mid-stream in
//!   the state of a stream fed silence until there, and says which output samples an input
//!   range reaches. The one stream resampler of the pipeline the CLI and the plugin share
//!   ([`crate::engine::StreamPipeline`]).
//!
//! [`resample`] is built on [`AlignedResampler`] (whole clip in, zeros to flush), so the CLI's
//! whole-file path and the plugin's streaming path compute the very same samples: the plugin's
//! bounce can equal the CLI's output, not just resemble it.
//!
//! The FFT resampler runs with an *even* number of minimum-size FFT blocks per chunk. That
//! keeps the filter delay a whole number of samples on both sides
//! (`fft_size_in / 2` input samples == `fft_size_out / 2` output samples), so compensating it
//! is exact rather than off by half a sample.

use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use super::AudioError;

/// Block size [`resample`] feeds its [`StreamResampler`] with (any size gives the same output).
const OFFLINE_BLOCK: usize = 8192;

/// Target input chunk for streaming: trades latency (about one chunk) against filter sharpness.
const STREAM_TARGET_CHUNK: usize = 1024;

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn resample_error(from: u32, to: u32, message: impl std::fmt::Display) -> AudioError {
    AudioError::Resample {
        from,
        to,
        message: message.to_string(),
    }
}

/// Build an FFT resampler whose chunk holds an even number of minimum blocks (see module docs).
fn build_fft(
    from: u32,
    to: u32,
    target_chunk: usize,
    channels: usize,
) -> Result<Fft<f32>, AudioError> {
    if from == 0 || to == 0 {
        return Err(resample_error(from, to, "sample rates must be positive"));
    }
    let (from_us, to_us) = (from as usize, to as usize);
    let min_in = from_us / gcd(from_us, to_us);
    let mut blocks = target_chunk.div_ceil(min_in).max(1);
    blocks += blocks % 2;
    // With `FixedSync::Both` the whole chunk is a single FFT block of `blocks * min_in` frames.
    Fft::<f32>::new(from_us, to_us, blocks * min_in, channels, FixedSync::Both)
        .map_err(|e| resample_error(from, to, e))
}

/// Length all channels share, or an error if they differ.
fn common_len<C: AsRef<[f32]>>(channels: &[C]) -> Result<usize, AudioError> {
    let len = channels.first().map_or(0, |c| c.as_ref().len());
    if channels.iter().any(|c| c.as_ref().len() != len) {
        return Err(AudioError::InvalidInput("channels have different lengths"));
    }
    Ok(len)
}

/// Resample planar audio from `from` Hz to `to` Hz (offline, high quality, FFT based).
///
/// The output has exactly `round(frames * to / from)` frames per channel and is delay
/// compensated: output sample `k` corresponds to input time `k / to` (a sine comes out as the
/// same sine, phase aligned). The first and last few hundred output samples see the implicit
/// silence around the clip. `from == to` returns a copy. Zero channels give zero channels.
///
/// # Errors
/// [`AudioError::Resample`] if a rate is 0; [`AudioError::InvalidInput`] if channel lengths differ.
pub fn resample(channels: &[Vec<f32>], from: u32, to: u32) -> Result<Vec<Vec<f32>>, AudioError> {
    if from == 0 || to == 0 {
        return Err(resample_error(from, to, "sample rates must be positive"));
    }
    let frames = common_len(channels)?;
    if from == to || channels.is_empty() {
        return Ok(channels.to_vec());
    }
    let out_len = ((frames as u128 * to as u128 + from as u128 / 2) / from as u128) as usize;
    if frames == 0 {
        return Ok(vec![Vec::new(); channels.len()]);
    }

    let n_ch = channels.len();
    let mut rs = AlignedResampler::new(from, to, n_ch, OFFLINE_BLOCK)?;
    let mut out: Vec<Vec<f32>> = (0..n_ch)
        .map(|_| Vec::with_capacity(out_len + 2 * rs.max_output_frames()))
        .collect();
    rs.process(channels, &mut out)?;
    // Flush with silence until the end of the clip has come out.
    let zeros = vec![0.0f32; OFFLINE_BLOCK];
    let silence: Vec<&[f32]> = (0..n_ch).map(|_| &zeros[..]).collect();
    while out[0].len() < out_len {
        rs.process(&silence, &mut out)?;
    }
    for ch in &mut out {
        ch.truncate(out_len);
        ch.shrink_to_fit();
    }
    Ok(out)
}

/// Block resampler for real-time use (a plugin's inference thread).
///
/// Accepts blocks of any size from 1 to `max_block` frames and appends whatever output is ready
/// to caller-owned buffers. All memory is allocated in [`StreamResampler::new`]; [`process`]
/// and [`reset`] never allocate (as long as the caller's output `Vec`s have the capacity given
/// by [`max_output_frames`]).
///
/// Internally, input is collected into fixed chunks of [`chunk_frames`]`.0` frames, each
/// resampled to exactly [`chunk_frames`]`.1` frames by rubato's [`Fft`] resampler through its
/// real-time `process_into_buffer` API. Two latencies follow:
///
/// * the signal delay, [`delay_frames`]: output sample `k` corresponds to input time
///   `(k - delay_frames) / to`;
/// * the buffering: after `n` input frames in total, `floor(n / chunk_in) * chunk_out` output
///   frames have been produced, so output lags "real time" by less than `chunk_out` frames.
///   A caller that must emit a fixed amount every block should pre-fill its output queue by
///   `chunk_frames().1` frames on top of `delay_frames()`.
///
/// With `from == to` it is a zero-latency pass-through.
///
/// [`process`]: StreamResampler::process
/// [`reset`]: StreamResampler::reset
/// [`max_output_frames`]: StreamResampler::max_output_frames
/// [`chunk_frames`]: StreamResampler::chunk_frames
/// [`delay_frames`]: StreamResampler::delay_frames
pub struct StreamResampler {
    /// `None` when `from == to` (pass-through).
    inner: Option<Fft<f32>>,
    from: u32,
    to: u32,
    channels: usize,
    max_block: usize,
    chunk_in: usize,
    chunk_out: usize,
    /// Pending input, `chunk_in - 1 + max_block` frames per channel.
    fifo: Vec<Vec<f32>>,
    fifo_len: usize,
    /// One output chunk per channel.
    scratch: Vec<Vec<f32>>,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("channels", &self.channels)
            .field("max_block", &self.max_block)
            .field("chunk_in", &self.chunk_in)
            .field("chunk_out", &self.chunk_out)
            .field("delay_frames", &self.delay_frames())
            .field("fifo_len", &self.fifo_len)
            .finish()
    }
}

impl StreamResampler {
    /// Create a resampler from `from` Hz to `to` Hz for `channels` planar channels, accepting
    /// input blocks of at most `max_block` frames. Allocates everything it will ever need.
    ///
    /// For common rate pairs (44.1k/48k/88.2k/96k/...) the chunk is about 1000-1300 frames; for
    /// rates with a tiny common divisor (e.g. 44100 and 44101) a chunk spans two seconds of
    /// audio, and the latency grows accordingly.
    ///
    /// # Errors
    /// [`AudioError::Resample`] if a rate is 0, `channels` is 0 or `max_block` is 0.
    pub fn new(from: u32, to: u32, channels: usize, max_block: usize) -> Result<Self, AudioError> {
        if from == 0 || to == 0 {
            return Err(resample_error(from, to, "sample rates must be positive"));
        }
        if channels == 0 {
            return Err(resample_error(from, to, "channel count must be positive"));
        }
        if max_block == 0 {
            return Err(resample_error(
                from,
                to,
                "maximum block size must be positive",
            ));
        }
        if from == to {
            return Ok(Self {
                inner: None,
                from,
                to,
                channels,
                max_block,
                chunk_in: 1,
                chunk_out: 1,
                fifo: Vec::new(),
                fifo_len: 0,
                scratch: Vec::new(),
            });
        }
        let inner = build_fft(from, to, STREAM_TARGET_CHUNK, channels)?;
        let chunk_in = inner.input_frames_next();
        let chunk_out = inner.output_frames_max();
        Ok(Self {
            inner: Some(inner),
            from,
            to,
            channels,
            max_block,
            chunk_in,
            chunk_out,
            fifo: vec![vec![0.0; chunk_in - 1 + max_block]; channels],
            fifo_len: 0,
            scratch: vec![vec![0.0; chunk_out]; channels],
        })
    }

    /// Latency in output samples that this resampler adds to the signal (report it to the host):
    /// an event at input time `t` appears at output index `t * to + delay_frames()`.
    /// 0 for a pass-through. See the type docs for the additional chunk buffering.
    pub fn delay_frames(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// `(input, output)` chunk sizes in frames: output is produced `output` frames at a time,
    /// once per `input` frames fed. `(1, 1)` for a pass-through.
    pub fn chunk_frames(&self) -> (usize, usize) {
        (self.chunk_in, self.chunk_out)
    }

    /// The most frames a single [`process`](StreamResampler::process) call can append to each
    /// output channel; reserve this much spare capacity to guarantee no reallocation.
    pub fn max_output_frames(&self) -> usize {
        if self.inner.is_none() {
            return self.max_block;
        }
        self.max_block.div_ceil(self.chunk_in) * self.chunk_out
    }

    /// Number of channels this resampler was built for.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Largest input block accepted by [`process`](StreamResampler::process).
    pub fn max_block(&self) -> usize {
        self.max_block
    }

    /// Push `input` (planar, one slice per channel, equal lengths, at most `max_block` frames,
    /// possibly empty) and append the frames that became ready to `out` (one `Vec` per channel).
    /// Returns the number of frames appended to each channel (0 up to
    /// [`max_output_frames`](StreamResampler::max_output_frames)).
    ///
    /// Does not allocate; `out` only reallocates if a `Vec` lacks the spare capacity.
    ///
    /// # Errors
    /// [`AudioError::InvalidInput`] (static message, no allocation) if the channel counts are
    /// wrong, the input slices differ in length, or the block exceeds `max_block`; nothing is
    /// consumed in that case. [`AudioError::Resample`] if rubato fails (not expected).
    pub fn process(&mut self, input: &[&[f32]], out: &mut [Vec<f32>]) -> Result<usize, AudioError> {
        let n = common_len(input)?;
        self.process_range(input, 0..n, out)
    }

    /// [`process`](StreamResampler::process) of frames `range` of `input`.
    fn process_range<C: AsRef<[f32]>>(
        &mut self,
        input: &[C],
        range: std::ops::Range<usize>,
        out: &mut [Vec<f32>],
    ) -> Result<usize, AudioError> {
        if input.len() != self.channels {
            return Err(AudioError::InvalidInput(
                "input channel count does not match the resampler",
            ));
        }
        if out.len() != self.channels {
            return Err(AudioError::InvalidInput(
                "output channel count does not match the resampler",
            ));
        }
        let n = range.len();
        if n > self.max_block {
            return Err(AudioError::InvalidInput(
                "input block is longer than max_block",
            ));
        }

        let Some(inner) = self.inner.as_mut() else {
            for (dst, src) in out.iter_mut().zip(input) {
                dst.extend_from_slice(&src.as_ref()[range.clone()]);
            }
            return Ok(n);
        };

        for (fifo, src) in self.fifo.iter_mut().zip(input) {
            fifo[self.fifo_len..self.fifo_len + n].copy_from_slice(&src.as_ref()[range.clone()]);
        }
        self.fifo_len += n;

        let mut consumed = 0;
        let mut produced = 0;
        let (from, to) = (self.from, self.to);
        let rate_err = |e: &dyn std::fmt::Display| resample_error(from, to, e);
        while self.fifo_len - consumed >= self.chunk_in {
            let in_buf = SequentialSliceOfVecs::new(&self.fifo, self.channels, self.fifo_len)
                .map_err(|e| rate_err(&e))?;
            let mut out_buf =
                SequentialSliceOfVecs::new_mut(&mut self.scratch, self.channels, self.chunk_out)
                    .map_err(|e| rate_err(&e))?;
            let indexing = Indexing::new().input_offset(consumed);
            let (n_in, n_out) = inner
                .process_into_buffer(&in_buf, &mut out_buf, Some(&indexing))
                .map_err(|e| rate_err(&e))?;
            for (dst, src) in out.iter_mut().zip(&self.scratch) {
                dst.extend_from_slice(&src[..n_out]);
            }
            consumed += n_in;
            produced += n_out;
        }
        if consumed > 0 {
            for fifo in &mut self.fifo {
                fifo.copy_within(consumed..self.fifo_len, 0);
            }
            self.fifo_len -= consumed;
        }
        Ok(produced)
    }

    /// Forget all pending input and filter state (e.g. on transport jumps). Does not allocate.
    pub fn reset(&mut self) {
        self.restart_at(0);
    }

    /// The state a fresh resampler reaches after `fed` frames of silence: zero filter state and
    /// `fed % chunk_in` frames of (silent) pending input. Feeding it then gives exactly what the
    /// fresh resampler fed `fed` zeros and then the same input would give after those zeros.
    /// Does not allocate.
    pub fn restart_at(&mut self, fed: u64) {
        if let Some(inner) = self.inner.as_mut() {
            inner.reset();
            self.fifo_len = (fed % self.chunk_in as u64) as usize;
            for f in &mut self.fifo {
                f[..self.fifo_len].fill(0.0);
            }
        }
    }
}

/// A [`StreamResampler`] with its filter delay dropped: output frame `k` sits at input time
/// `k / to`, as with [`resample`]. Input of any length is fed in blocks of at most `max_block`
/// frames; with at most `max_block` frames per call it appends at most
/// [`max_output_frames`](AlignedResampler::max_output_frames) and allocates nothing given that
/// spare capacity.
///
/// Positions count from the stream's start: after `fed` input frames,
/// [`output_after`](AlignedResampler::output_after)`(fed)` output frames have come out.
#[derive(Debug)]
pub struct AlignedResampler {
    rs: StreamResampler,
    /// Output frames of the filter delay still to drop.
    drop: usize,
    /// Input frames fed since the stream's start.
    fed: u64,
}

impl AlignedResampler {
    /// See [`StreamResampler::new`].
    pub fn new(from: u32, to: u32, channels: usize, max_block: usize) -> Result<Self, AudioError> {
        let rs = StreamResampler::new(from, to, channels, max_block)?;
        Ok(AlignedResampler { drop: rs.delay_frames(), rs, fed: 0 })
    }

    /// `(input, output)` chunk sizes ([`StreamResampler::chunk_frames`]).
    pub fn chunk_frames(&self) -> (usize, usize) {
        self.rs.chunk_frames()
    }

    /// The filter delay this resampler drops, in output frames.
    pub fn delay_frames(&self) -> usize {
        self.rs.delay_frames()
    }

    /// The most frames one call with at most `max_block` input frames appends.
    pub fn max_output_frames(&self) -> usize {
        self.rs.max_output_frames()
    }

    /// Input frames fed since the stream's start (or the position of the last restart).
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// Push `input` (planar, equal lengths, any length) and append the output frames that became
    /// ready, the delay dropped, to `out`. Returns the frames appended to each channel.
    ///
    /// # Errors
    /// As [`StreamResampler::process`].
    pub fn process<C: AsRef<[f32]>>(&mut self, input: &[C], out: &mut [Vec<f32>]) -> Result<usize, AudioError> {
        let len = common_len(input)?;
        let (mut pos, mut total) = (0, 0);
        while pos < len {
            let m = self.rs.max_block.min(len - pos);
            let n = self.rs.process_range(input, pos..pos + m, out)?;
            let d = self.drop.min(n);
            if d > 0 {
                for o in out.iter_mut() {
                    let start = o.len() - n;
                    o.drain(start..start + d);
                }
                self.drop -= d;
            }
            total += n - d;
            pos += m;
        }
        self.fed += len as u64;
        Ok(total)
    }

    /// Output frames (the delay dropped) that have come out after `fed` input frames.
    pub fn output_after(&self, fed: u64) -> u64 {
        let (ci, co) = self.rs.chunk_frames();
        (fed / ci as u64 * co as u64).saturating_sub(self.delay_frames() as u64)
    }

    /// The output frame at the time of input frame `x`, a multiple of the input chunk
    /// (`x * to / from`).
    pub fn position(&self, x: u64) -> u64 {
        let (ci, co) = self.rs.chunk_frames();
        x / ci as u64 * co as u64
    }

    /// The output frames `[start, end)` that input frames `[lo, hi)` (`lo < hi`) can reach:
    /// from the first output frame not out yet when input `lo` arrives, to the end of the output
    /// chunk after the one input `hi - 1` falls in (an FFT resampler's output chunk `q` depends
    /// on its input chunks `q - 1` and `q`).
    pub fn reach(&self, lo: u64, hi: u64) -> (u64, u64) {
        if self.rs.inner.is_none() {
            return (lo, hi);
        }
        let (ci, co) = self.rs.chunk_frames();
        let end = ((hi - 1) / ci as u64 + 2) * co as u64;
        (self.output_after(lo), end.saturating_sub(self.delay_frames() as u64))
    }

    /// The state a fresh resampler reaches after `fed` frames of silence
    /// ([`StreamResampler::restart_at`]), the delay still to drop included. Does not allocate.
    pub fn restart_at(&mut self, fed: u64) {
        self.rs.restart_at(fed);
        let (ci, co) = self.rs.chunk_frames();
        self.drop = (self.delay_frames() as u64).saturating_sub(fed / ci as u64 * co as u64) as usize;
        self.fed = fed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::max_abs_diff;
    use std::f64::consts::PI;

    fn sine(freq: f64, rate: u32, frames: usize, phase_samples: f64) -> Vec<f32> {
        (0..frames)
            .map(|k| {
                (2.0 * PI * freq * (k as f64 - phase_samples) / rate as f64).sin() as f32 * 0.8
            })
            .collect()
    }


    /// Tiny deterministic PRNG for block sizes.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
    }

    #[test]
    fn resample_output_length_is_exact() {
        for &(from, to) in &[
            (48000, 44100),
            (44100, 48000),
            (44100, 96000),
            (96000, 44100),
            (44100, 44101),
        ] {
            for &frames in &[1usize, 2, 147, 1000, 12345, 44100] {
                let x = vec![vec![0.25f32; frames], vec![-0.25f32; frames]];
                let y = resample(&x, from, to).expect("resample");
                let expected = ((frames as f64) * to as f64 / from as f64).round() as usize;
                assert_eq!(y.len(), 2);
                assert_eq!(y[0].len(), expected, "{from}->{to}, {frames} frames");
                assert_eq!(y[1].len(), expected, "{from}->{to}, {frames} frames");
            }
        }
    }

    #[test]
    fn resample_keeps_a_sine_phase_aligned() {
        for &(from, to) in &[
            (48000u32, 44100u32),
            (44100, 48000),
            (44100, 96000),
            (32000, 44100),
            (44100, 32000),
        ] {
            let frames = from as usize; // 1 s
            let x = vec![
                sine(1000.0, from, frames, 0.0),
                sine(1000.0, from, frames, 3.0),
            ];
            let y = resample(&x, from, to).expect("resample");
            let n_out = y[0].len();
            let margin = 5000;
            for (c, shift_in) in [(0usize, 0.0f64), (1, 3.0)] {
                // A shift of `shift_in` input samples is `shift_in * to / from` output samples.
                let expected = sine(1000.0, to, n_out, shift_in * to as f64 / from as f64);
                let err = max_abs_diff(
                    &y[c][margin..n_out - margin],
                    &expected[margin..n_out - margin],
                );
                assert!(err < 1e-3, "{from}->{to} ch{c}: max error {err}");
            }
        }
    }

    #[test]
    fn resample_round_trip_is_close_to_the_original() {
        let x = vec![
            sine(1000.0, 44100, 44100, 0.0),
            sine(3333.0, 44100, 44100, 0.0),
        ];
        let up = resample(&x, 44100, 48000).expect("up");
        let back = resample(&up, 48000, 44100).expect("down");
        assert_eq!(back[0].len(), 44100);
        for c in 0..2 {
            let err = max_abs_diff(&back[c][5000..39100], &x[c][5000..39100]);
            assert!(err < 1e-3, "ch{c}: round trip error {err}");
        }
    }

    #[test]
    fn resample_trivial_cases_and_errors() {
        let x = vec![vec![0.1, 0.2, 0.3], vec![0.4, 0.5, 0.6]];
        assert_eq!(resample(&x, 44100, 44100).expect("copy"), x);
        assert_eq!(
            resample(&[], 44100, 48000).expect("no channels"),
            Vec::<Vec<f32>>::new()
        );
        assert_eq!(
            resample(&[vec![], vec![]], 44100, 48000).expect("empty"),
            vec![Vec::<f32>::new(), Vec::new()]
        );
        assert!(matches!(
            resample(&x, 0, 48000),
            Err(AudioError::Resample { .. })
        ));
        assert!(matches!(
            resample(&x, 44100, 0),
            Err(AudioError::Resample { .. })
        ));
        assert!(matches!(
            resample(&[vec![0.0; 3], vec![0.0; 4]], 44100, 48000),
            Err(AudioError::InvalidInput(_))
        ));
    }

    /// Feed `x` through a fresh stream resampler in blocks whose sizes come from `sizes`.
    fn run_stream(
        from: u32,
        to: u32,
        max_block: usize,
        x: &[Vec<f32>],
        mut sizes: impl FnMut() -> usize,
    ) -> (Vec<Vec<f32>>, usize) {
        let mut rs = StreamResampler::new(from, to, x.len(), max_block).expect("new");
        let mut out: Vec<Vec<f32>> = (0..x.len())
            .map(|_| {
                Vec::with_capacity(
                    x[0].len() * to as usize / from as usize + 2 * rs.max_output_frames(),
                )
            })
            .collect();
        let mut pos = 0;
        while pos < x[0].len() {
            let n = sizes().min(x[0].len() - pos);
            let block: Vec<&[f32]> = x.iter().map(|c| &c[pos..pos + n]).collect();
            let produced = rs.process(&block, &mut out).expect("process");
            assert!(produced <= rs.max_output_frames());
            pos += n;
        }
        (out, rs.delay_frames())
    }

    #[test]
    fn stream_block_size_does_not_change_the_output() {
        for &(from, to) in &[(48000u32, 44100u32), (44100, 48000), (44100, 96000)] {
            let x = vec![
                sine(1000.0, from, 30000, 0.0),
                sine(5000.0, from, 30000, 0.0),
            ];
            let max_block = 700;
            let (fixed, _) = run_stream(from, to, max_block, &x, || 512);
            let mut rng = Lcg(from as u64 ^ to as u64);
            let (random, _) = run_stream(from, to, max_block, &x, || 1 + rng.next(max_block));
            let n = fixed[0].len().min(random[0].len());
            assert!(n > 20000, "{from}->{to}: only {n} frames produced");
            for c in 0..2 {
                let err = max_abs_diff(&fixed[c][..n], &random[c][..n]);
                assert!(
                    err <= 1e-6,
                    "{from}->{to} ch{c}: block size changed output by {err}"
                );
            }
        }
    }

    #[test]
    fn stream_sine_is_delayed_by_exactly_delay_frames() {
        for &(from, to) in &[
            (48000u32, 44100u32),
            (44100, 48000),
            (44100, 96000),
            (96000, 44100),
        ] {
            let x = vec![sine(1000.0, from, from as usize, 0.0)];
            let mut rng = Lcg(7);
            let (y, delay) = run_stream(from, to, 256, &x, || 1 + rng.next(256));
            assert!(delay > 0);
            let expected = sine(1000.0, to, y[0].len(), delay as f64);
            let lo = delay + 3000;
            let hi = y[0].len() - 3000;
            let err = max_abs_diff(&y[0][lo..hi], &expected[lo..hi]);
            assert!(
                err < 1e-3,
                "{from}->{to}: delayed sine error {err} (delay {delay})"
            );
            // Off by one sample would be clearly visible (1 kHz at 44.1 kHz: ~0.11 per sample).
            let wrong = sine(1000.0, to, y[0].len(), delay as f64 + 1.0);
            assert!(max_abs_diff(&y[0][lo..hi], &wrong[lo..hi]) > 0.05);
        }
    }

    #[test]
    fn stream_impulse_peaks_at_delay_frames() {
        for &(from, to) in &[(48000u32, 44100u32), (44100, 48000), (44100, 96000)] {
            let g = gcd(from as usize, to as usize);
            let (min_in, min_out) = (from as usize / g, to as usize / g);
            // Impulse at an input index that maps onto an exact output index.
            let at_in = 10 * min_in;
            let at_out = 10 * min_out;
            let mut x = vec![0.0f32; 20000];
            x[at_in] = 1.0;
            let (y, delay) = run_stream(from, to, 333, &[x], || 333);
            let peak = y[0]
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .expect("output");
            assert_eq!(
                peak,
                at_out + delay,
                "{from}->{to}: impulse peak vs delay {delay}"
            );
        }
    }

    #[test]
    fn stream_process_does_not_reallocate_and_reset_restarts() {
        let mut rs = StreamResampler::new(44100, 48000, 2, 512).expect("new");
        let cap = rs.max_output_frames();
        let mut out = vec![Vec::with_capacity(cap), Vec::with_capacity(cap)];
        let ptrs: Vec<*const f32> = out.iter().map(|v| v.as_ptr()).collect();
        let block = vec![0.5f32; 512];
        let mut first_run = Vec::new();
        for _ in 0..20 {
            out.iter_mut().for_each(Vec::clear);
            let n = rs.process(&[&block, &block], &mut out).expect("process");
            assert_eq!(out[0].len(), n);
            assert!(n <= cap);
            first_run.extend_from_slice(&out[0]);
        }
        for (v, p) in out.iter().zip(&ptrs) {
            assert_eq!(v.as_ptr(), *p, "output Vec was reallocated");
        }
        // After reset the same input gives the same output again.
        rs.reset();
        let mut second_run = Vec::new();
        for _ in 0..20 {
            out.iter_mut().for_each(Vec::clear);
            rs.process(&[&block, &block], &mut out).expect("process");
            second_run.extend_from_slice(&out[0]);
        }
        assert_eq!(first_run, second_run);
    }

    /// Feed `x` ([ch][n]) to `rs` in blocks of `block` frames; returns what came out.
    fn run_aligned(rs: &mut AlignedResampler, x: &[Vec<f32>], block: usize) -> Vec<Vec<f32>> {
        let mut out = vec![Vec::new(); x.len()];
        for pos in (0..x[0].len()).step_by(block) {
            let end = (pos + block).min(x[0].len());
            let part: Vec<&[f32]> = x.iter().map(|c| &c[pos..end]).collect();
            rs.process(&part, &mut out).expect("process");
        }
        out
    }

    #[test]
    fn aligned_restart_at_equals_the_stream_fed_silence_until_there() {
        for &(from, to) in &[(48000u32, 44100u32), (44100, 96000), (44100, 44100)] {
            let n = 20000;
            let x = vec![sine(1000.0, from, n, 0.0), sine(3000.0, from, n, 0.0)];
            for pos in [0u64, 777, 5000] {
                let silence_first: Vec<Vec<f32>> = x.iter().map(|c| [vec![0.0; pos as usize], c.clone()].concat()).collect();
                let mut whole = AlignedResampler::new(from, to, 2, 512).expect("new");
                let a = run_aligned(&mut whole, &silence_first, 300);
                let mut late = AlignedResampler::new(from, to, 2, 512).expect("new");
                late.restart_at(pos);
                let b = run_aligned(&mut late, &x, 300);
                let skip = late.output_after(pos) as usize;
                assert_eq!(whole.fed(), late.fed(), "{from}->{to}");
                for c in 0..2 {
                    assert_eq!(a[c].len(), skip + b[c].len(), "{from}->{to} at {pos}");
                    assert!(a[c][skip..].iter().zip(&b[c]).all(|(p, q)| p.to_bits() == q.to_bits()), "{from}->{to} at {pos}: ch{c} differs");
                }
            }
        }
    }

    #[test]
    fn aligned_output_changes_only_where_a_changed_input_range_reaches() {
        for &(from, to) in &[(48000u32, 44100u32), (44100, 48000), (44100, 44100)] {
            let n = 30000;
            let x = vec![sine(500.0, from, n, 0.0)];
            for (lo, hi) in [(0u64, 100u64), (4321, 4322), (10000, 12000)] {
                let mut y = x.clone();
                for v in &mut y[0][lo as usize..hi as usize] {
                    *v += 0.5;
                }
                let mut ra = AlignedResampler::new(from, to, 1, 1000).expect("new");
                let mut rb = AlignedResampler::new(from, to, 1, 1000).expect("new");
                let (a, b) = (run_aligned(&mut ra, &x, 1000), run_aligned(&mut rb, &y, 1000));
                let (start, end) = ra.reach(lo, hi);
                let changed: Vec<usize> = (0..a[0].len()).filter(|&k| a[0][k] != b[0][k]).collect();
                assert!(!changed.is_empty());
                assert!(*changed.first().unwrap() as u64 >= start, "{from}->{to} [{lo}, {hi}): changed from {}, reach from {start}", changed[0]);
                assert!((*changed.last().unwrap() as u64) < end, "{from}->{to} [{lo}, {hi}): changed up to {}, reach to {end}", changed.last().unwrap());
            }
        }
    }

    #[test]
    fn stream_passthrough_and_errors() {
        let mut rs = StreamResampler::new(44100, 44100, 2, 4).expect("new");
        assert_eq!(rs.delay_frames(), 0);
        let mut out = vec![Vec::new(), Vec::new()];
        assert_eq!(
            rs.process(&[&[1.0, 2.0], &[3.0, 4.0]], &mut out)
                .expect("process"),
            2
        );
        assert_eq!(out, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);

        let mut rs = StreamResampler::new(48000, 44100, 2, 4).expect("new");
        let mut out = vec![Vec::new(), Vec::new()];
        assert!(matches!(
            rs.process(&[&[0.0; 5], &[0.0; 5]], &mut out),
            Err(AudioError::InvalidInput(_))
        ));
        assert!(matches!(
            rs.process(&[&[0.0; 2]], &mut out),
            Err(AudioError::InvalidInput(_))
        ));
        assert!(matches!(
            rs.process(&[&[0.0; 2], &[0.0; 3]], &mut out),
            Err(AudioError::InvalidInput(_))
        ));
        assert_eq!(rs.process(&[&[], &[]], &mut out).expect("empty block"), 0);
        assert!(StreamResampler::new(0, 44100, 2, 4).is_err());
        assert!(StreamResampler::new(44100, 48000, 0, 4).is_err());
        assert!(StreamResampler::new(44100, 48000, 2, 0).is_err());
    }
}
