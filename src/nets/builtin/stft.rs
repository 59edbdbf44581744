//! Streaming STFT and iSTFT, one channel, as `librosa.stft`/`librosa.istft` compute them with
//! `center=True` and `pad_mode="constant"`: periodic Hann window, frame `t` centred on sample
//! `t * hop` (the signal is zero before its first sample), overlap-add divided by the sum of
//! the squared windows of the frames that exist.
//!
//! Samples come in `hop` at a time. Frame `t` covers `[t*hop - n/2, t*hop + n/2)` and is
//! analysed once that whole span has arrived; after frame `t` is added to the synthesis, the
//! samples `[t*hop - n/2, t*hop - n/2 + hop)` are final (no later frame reaches them). Plans
//! and buffers are allocated in `new`; nothing allocates afterwards.

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// The analysis side: the last `n` input samples and the forward FFT.
pub struct Analysis {
    n_fft: usize,
    hop: usize,
    window: Vec<f32>,
    /// Input samples `[m - n, m)`, `m` = samples pushed since the reset (zeros before 0).
    buf: Vec<f32>,
    pushed: u64,
    fft: Arc<dyn RealToComplex<f32>>,
    frame: Vec<f32>,
    scratch: Vec<Complex<f32>>,
    /// The last analysed frame's spectrum (`n/2 + 1` bins).
    pub spectrum: Vec<Complex<f32>>,
}

impl Analysis {
    /// `n_fft / 2` must be a multiple of `hop` (frames then complete on hop boundaries).
    pub fn new(n_fft: usize, hop: usize) -> Self {
        assert!(hop > 0 && n_fft % 2 == 0 && (n_fft / 2) % hop == 0, "n_fft/2 must be a multiple of hop");
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n_fft);
        let scratch = fft.make_scratch_vec();
        let spectrum = fft.make_output_vec();
        Analysis { n_fft, hop, window: crate::dsp::stft::hann_window(n_fft), buf: vec![0.0; n_fft], pushed: 0, fft, frame: vec![0.0; n_fft], scratch, spectrum }
    }

    pub fn reset(&mut self) {
        self.buf.fill(0.0);
        self.pushed = 0;
    }

    /// Push `hop` samples; `true` when a new frame's spectrum is in [`Analysis::spectrum`].
    pub fn push(&mut self, x: &[f32]) -> bool {
        debug_assert_eq!(x.len(), self.hop);
        let (n, h) = (self.n_fft, self.hop);
        self.buf.copy_within(h.., 0);
        self.buf[n - h..].copy_from_slice(x);
        self.pushed += h as u64;
        if self.pushed < (n / 2) as u64 {
            return false;
        }
        for ((f, b), w) in self.frame.iter_mut().zip(&self.buf).zip(&self.window) {
            *f = b * w;
        }
        self.fft.process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch).expect("sizes fixed in new");
        true
    }
}

/// The synthesis side: overlap-add of windowed inverse frames, divided by the window's
/// squared sum over the frames added since the reset (librosa's `window_sumsquare`).
pub struct Synthesis {
    n_fft: usize,
    hop: usize,
    window: Vec<f32>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    spec: Vec<Complex<f32>>,
    frame: Vec<f32>,
    scratch: Vec<Complex<f32>>,
    /// Sums for samples `[t*hop - n/2, t*hop + n/2)` after frame `t`.
    acc: Vec<f32>,
    wss: Vec<f32>,
}

impl Synthesis {
    pub fn new(n_fft: usize, hop: usize) -> Self {
        let ifft = RealFftPlanner::<f32>::new().plan_fft_inverse(n_fft);
        let scratch = ifft.make_scratch_vec();
        let spec = ifft.make_input_vec();
        Synthesis { n_fft, hop, window: crate::dsp::stft::hann_window(n_fft), ifft, spec, frame: vec![0.0; n_fft], scratch, acc: vec![0.0; n_fft], wss: vec![0.0; n_fft] }
    }

    pub fn reset(&mut self) {
        self.acc.fill(0.0);
        self.wss.fill(0.0);
    }

    /// Add the next frame (its spectrum times `gain` per bin) and write the `hop` samples that
    /// are now final into `out`.
    pub fn add(&mut self, spectrum: &[Complex<f32>], gain: &[f32], out: &mut [f32]) {
        let (n, h) = (self.n_fft, self.hop);
        for ((d, s), g) in self.spec.iter_mut().zip(spectrum).zip(gain) {
            *d = s * *g;
        }
        // A real signal's DC and Nyquist bins are real (numpy's irfft ignores their imaginary parts).
        self.spec[0].im = 0.0;
        self.spec[n / 2].im = 0.0;
        self.ifft.process_with_scratch(&mut self.spec, &mut self.frame, &mut self.scratch).expect("sizes fixed in new");
        let inv_n = 1.0 / n as f32;
        for (((a, s), f), w) in self.acc.iter_mut().zip(&mut self.wss).zip(&self.frame).zip(&self.window) {
            *a += f * inv_n * w;
            *s += w * w;
        }
        for ((o, a), s) in out.iter_mut().zip(&self.acc[..h]).zip(&self.wss[..h]) {
            *o = if *s > f32::MIN_POSITIVE { a / s } else { *a };
        }
        self.acc.copy_within(h.., 0);
        self.acc[n - h..].fill(0.0);
        self.wss.copy_within(h.., 0);
        self.wss[n - h..].fill(0.0);
    }
}

/// A fixed delay line of `len` samples for blocks of any size up to `len`... (allocated once).
pub struct Delay {
    buf: Vec<f32>,
    len: usize,
}

impl Delay {
    /// A delay of `len` samples for blocks of at most `block` samples.
    pub fn new(len: usize, block: usize) -> Self {
        Delay { buf: vec![0.0; len + block], len }
    }
    pub fn reset(&mut self) {
        self.buf.fill(0.0);
    }
    /// Push `x`, write the samples from `len` earlier into `out` (same length).
    pub fn process(&mut self, x: &[f32], out: &mut [f32]) {
        let (l, b) = (self.len, x.len());
        self.buf[l..l + b].copy_from_slice(x);
        out.copy_from_slice(&self.buf[..b]);
        self.buf.copy_within(b..l + b, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_then_synthesis_reconstructs_the_input_n_fft_minus_hop_late() {
        for (n, h) in [(2048usize, 512usize), (1024, 256), (512, 256)] {
            let mut a = Analysis::new(n, h);
            let mut s = Synthesis::new(n, h);
            let x: Vec<f32> = (0..20 * n).map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * (1.0 + (i as f32 * 0.001).sin())).collect();
            let ones = vec![1f32; n / 2 + 1];
            let mut y = vec![0f32; x.len()];
            let mut t = 0i64;
            for (k, blk) in x.chunks(h).enumerate() {
                if a.push(blk) {
                    // Frame t's final samples start at t*h - n/2.
                    let start = t * h as i64 - (n / 2) as i64;
                    let mut out = vec![0f32; h];
                    s.add(&a.spectrum, &ones, &mut out);
                    if start >= 0 {
                        y[start as usize..start as usize + h].copy_from_slice(&out);
                    }
                    assert_eq!(start + (n - h) as i64, (k * h) as i64, "latency n - hop");
                    t += 1;
                }
            }
            let done = x.len() - (n - h);
            let err = x[..done].iter().zip(&y[..done]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err < 1e-5, "n {n} hop {h}: {err}");
        }
    }
}
