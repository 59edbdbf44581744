//! STFT and iSTFT as `torch.stft`/`torch.istft` compute them for the model: periodic Hann
//! window, `center=True` with reflect padding, no normalisation, one-sided spectrum.
//!
//! [`Stft`] owns its FFT plans and scratch buffers (allocated in `new`), so `forward` and
//! `inverse` allocate nothing and can run per chunk on any thread.

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// Periodic Hann window of `n` points (`torch.hann_window(n)`), computed in f64.
pub fn hann_window(n: usize) -> Vec<f32> {
    (0..n).map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()) as f32).collect()
}

/// What the iSTFT divides its overlap-add by: for each of the `len` output samples (after the
/// centre padding of `window.len() / 2` is removed), 1 / the sum of the squared window over the
/// `len / hop + 1` frames `hop` apart, or 0 where that sum vanishes.
pub fn inverse_envelope(window: &[f32], hop: usize, len: usize) -> Vec<f32> {
    let n_fft = window.len();
    let frames = len / hop + 1;
    let mut env = vec![0f64; n_fft + hop * (frames - 1)];
    for t in 0..frames {
        for (n, w) in window.iter().enumerate() {
            env[t * hop + n] += (*w as f64) * (*w as f64);
        }
    }
    let half = n_fft / 2;
    env[half..half + len].iter().map(|&e| if e > 1e-11 { (1.0 / e) as f32 } else { 0.0 }).collect()
}

/// Planned STFT/iSTFT for one (n_fft, hop, dim_f) and one chunk length.
pub struct Stft {
    n_fft: usize,
    hop: usize,
    /// Bins kept on the way in / filled on the way out (the rest are zero).
    dim_f: usize,
    /// Samples per chunk.
    len: usize,
    /// Frames per chunk: len / hop + 1.
    frames: usize,
    window: Vec<f32>,
    /// 1 / (sum over frames of window^2), per output sample (after the center trim).
    inv_envelope: Vec<f32>,
    fwd: Arc<dyn RealToComplex<f32>>,
    inv: Arc<dyn ComplexToReal<f32>>,
    padded: Vec<f32>,
    frame: Vec<f32>,
    bins: Vec<Complex<f32>>,
    scratch_fwd: Vec<Complex<f32>>,
    scratch_inv: Vec<Complex<f32>>,
    acc: Vec<f32>,
}

impl Stft {
    /// `len` must be larger than `n_fft / 2` (reflect padding). Frames: `len / hop + 1`, as
    /// torch counts them; when `len` is not a multiple of `hop`, the iSTFT still returns `len`
    /// samples (torch's `length=`), which the frames must cover (`hop <= n_fft / 2` does).
    pub fn new(n_fft: usize, hop: usize, dim_f: usize, len: usize) -> Self {
        assert!(n_fft >= 2 && n_fft % 2 == 0 && hop > 0 && dim_f <= n_fft / 2 + 1);
        assert!(len > n_fft / 2, "chunk of {len} samples is too short for n_fft {n_fft}");
        assert!(len % hop == 0 || n_fft / 2 + hop * (len / hop) >= len, "hop {hop} too long for n_fft {n_fft}");
        let frames = len / hop + 1;
        let full = n_fft + hop * (frames - 1);
        let window = hann_window(n_fft);
        let inv_envelope = inverse_envelope(&window, hop, len);
        let mut planner = RealFftPlanner::<f32>::new();
        let fwd = planner.plan_fft_forward(n_fft);
        let inv = planner.plan_fft_inverse(n_fft);
        Stft {
            n_fft,
            hop,
            dim_f,
            len,
            frames,
            window,
            inv_envelope,
            padded: vec![0.0; len + n_fft],
            frame: fwd.make_input_vec(),
            bins: fwd.make_output_vec(),
            scratch_fwd: fwd.make_scratch_vec(),
            scratch_inv: inv.make_scratch_vec(),
            acc: vec![0.0; full],
            fwd,
            inv,
        }
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn dim_f(&self) -> usize {
        self.dim_f
    }

    /// Values per channel in the spectrogram layout: 2 (re, im) * dim_f * frames.
    pub fn spec_len(&self) -> usize {
        2 * self.dim_f * self.frames
    }

    /// One channel of `len` samples -> `out` = [re | im] planes, each [dim_f][frames].
    pub fn forward(&mut self, x: &[f32], out: &mut [f32]) {
        let (n_fft, half, len, hop, frames, dim_f) = (self.n_fft, self.n_fft / 2, self.len, self.hop, self.frames, self.dim_f);
        assert_eq!(x.len(), len);
        assert_eq!(out.len(), self.spec_len());
        // Reflect padding (edge not repeated), as torch's `center=True`.
        self.padded[half..half + len].copy_from_slice(x);
        for i in 0..half {
            self.padded[half - 1 - i] = x[i + 1];
            self.padded[half + len + i] = x[len - 2 - i];
        }
        let (re, im) = out.split_at_mut(dim_f * frames);
        for t in 0..frames {
            let seg = &self.padded[t * hop..t * hop + n_fft];
            for ((f, s), w) in self.frame.iter_mut().zip(seg).zip(&self.window) {
                *f = s * w;
            }
            self.fwd
                .process_with_scratch(&mut self.frame, &mut self.bins, &mut self.scratch_fwd)
                .expect("buffer sizes are planned");
            for (k, b) in self.bins[..dim_f].iter().enumerate() {
                re[k * frames + t] = b.re;
                im[k * frames + t] = b.im;
            }
        }
    }

    /// [re | im] planes of [dim_f][frames] (bins above dim_f are zero) -> `len` samples into `y`.
    pub fn inverse(&mut self, spec: &[f32], y: &mut [f32]) {
        let (n_fft, half, len, hop, frames, dim_f) = (self.n_fft, self.n_fft / 2, self.len, self.hop, self.frames, self.dim_f);
        assert_eq!(spec.len(), self.spec_len());
        assert_eq!(y.len(), len);
        let (re, im) = spec.split_at(dim_f * frames);
        self.acc.fill(0.0);
        let scale = 1.0 / n_fft as f32;
        for t in 0..frames {
            for (k, b) in self.bins.iter_mut().enumerate() {
                *b = if k < dim_f { Complex::new(re[k * frames + t], im[k * frames + t]) } else { Complex::new(0.0, 0.0) };
            }
            // A one-sided inverse ignores the imaginary parts of DC and Nyquist, as torch does.
            self.bins[0].im = 0.0;
            self.bins[half].im = 0.0;
            self.inv
                .process_with_scratch(&mut self.bins, &mut self.frame, &mut self.scratch_inv)
                .expect("buffer sizes are planned");
            let acc = &mut self.acc[t * hop..t * hop + n_fft];
            for ((a, s), w) in acc.iter_mut().zip(&self.frame).zip(&self.window) {
                *a += s * scale * w;
            }
        }
        for ((o, a), e) in y.iter_mut().zip(&self.acc[half..half + len]).zip(&self.inv_envelope) {
            *o = a * e;
        }
    }
}
