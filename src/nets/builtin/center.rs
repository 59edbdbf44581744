//! Center / sides ("karaoke") separation of a stereo mix by inter-channel similarity per
//! time-frequency bin (Avendano and Jot, "A frequency-domain approach to multichannel upmix",
//! JAES 52(7/8), 2004; Avendano, "Frequency-domain source identification and manipulation in
//! stereo mixes for enhancement, suppression and re-panning applications", WASPAA 2003).
//!
//! Per bin, the auto and cross spectra are smoothed over time with a one-pole filter
//! (`Φ_ij(t) = λ Φ_ij(t-1) + (1 - λ) X_i X_j*`) and the similarity
//! `ψ = 2 |Φ_LR| / (Φ_LL + Φ_RR)` is 1 exactly where both channels carry the same signal at
//! the same level (a source panned to the center), and falls with panning and with
//! decorrelation (stereo reverb, wide synths). The center mask is the paper's Gaussian window
//! on the panning index around 0, `exp(-(1 - ψ)^2 / (2 ξ))`; it is applied to each channel,
//! so the center stem keeps the mix's own left and right. Sides = the input minus the center:
//! the two stems add up to the mix. Causal in the spectra: the only delay is the STFT's
//! `n_fft - hop`.

use super::stft::{Analysis, Delay, Synthesis};
use realfft::num_complex::Complex;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CenterParams {
    pub n_fft: usize,
    pub hop: usize,
    /// Forgetting factor λ of the spectra's smoothing, per frame.
    pub smoothing: f32,
    /// Width ξ of the window on the panning index: `1 - ψ = sqrt(2 ξ ln 2)` gets half the
    /// center mask.
    pub width: f32,
}

impl Default for CenterParams {
    /// 2048/512 (46 ms frames at 44.1 kHz), λ = 0.7 (a time constant of about 3 frames,
    /// 33 ms), ξ = 0.01: a coherent source 3 dB off center keeps 80 % of its level in the
    /// center stem, 6 dB off 14 %.
    fn default() -> Self {
        CenterParams { n_fft: 2048, hop: 512, smoothing: 0.7, width: 0.01 }
    }
}

impl CenterParams {
    /// Output delay in samples: the STFT's `n_fft - hop`.
    pub fn latency(&self) -> usize {
        self.n_fft - self.hop
    }
}

/// The center/sides stream of a stereo signal.
pub struct Center {
    p: CenterParams,
    ana: [Analysis; 2],
    syn: [Synthesis; 2],
    delay: [Delay; 2],
    /// Smoothed Φ_LL, Φ_RR, Φ_LR per bin.
    pll: Vec<f32>,
    prr: Vec<f32>,
    plr: Vec<Complex<f32>>,
    mask: Vec<f32>,
    /// Frames analysed since the reset.
    frames: usize,
}

impl Center {
    pub fn new(p: CenterParams) -> Self {
        let bins = p.n_fft / 2 + 1;
        Center {
            p,
            ana: [Analysis::new(p.n_fft, p.hop), Analysis::new(p.n_fft, p.hop)],
            syn: [Synthesis::new(p.n_fft, p.hop), Synthesis::new(p.n_fft, p.hop)],
            delay: [Delay::new(p.latency(), p.hop), Delay::new(p.latency(), p.hop)],
            pll: vec![0.0; bins],
            prr: vec![0.0; bins],
            plr: vec![Complex::default(); bins],
            mask: vec![0.0; bins],
            frames: 0,
        }
    }

    pub fn reset(&mut self) {
        for i in 0..2 {
            self.ana[i].reset();
            self.syn[i].reset();
            self.delay[i].reset();
        }
        self.pll.fill(0.0);
        self.prr.fill(0.0);
        self.plr.fill(Complex::default());
        self.frames = 0;
    }

    /// The center mask from the smoothed spectra.
    pub fn mask_for(similarity: f32, width: f32) -> f32 {
        let d = 1.0 - similarity;
        (-(d * d) / (2.0 * width)).exp()
    }

    /// One hop of both channels (`x[ch]`) in; center and sides of the samples `latency` earlier out.
    pub fn push_hop(&mut self, x: [&[f32]; 2], center: [&mut [f32]; 2], sides: [&mut [f32]; 2]) {
        let p = self.p;
        let [c0, c1] = center;
        let [s0, s1] = sides;
        self.delay[0].process(x[0], s0);
        self.delay[1].process(x[1], s1);
        c0.fill(0.0);
        c1.fill(0.0);
        let a = self.ana[0].push(x[0]);
        let b = self.ana[1].push(x[1]);
        debug_assert_eq!(a, b);
        if a {
            let t = self.frames;
            self.frames += 1;
            let (l, r) = (&self.ana[0].spectrum, &self.ana[1].spectrum);
            let (lam, one) = (p.smoothing, 1.0 - p.smoothing);
            for k in 0..self.mask.len() {
                let (xl, xr) = (l[k], r[k]);
                self.pll[k] = lam * self.pll[k] + one * xl.norm_sqr();
                self.prr[k] = lam * self.prr[k] + one * xr.norm_sqr();
                self.plr[k] = self.plr[k] * lam + xl * xr.conj() * one;
                let den = self.pll[k] + self.prr[k];
                let psi = if den > f32::MIN_POSITIVE { (2.0 * self.plr[k].norm() / den).min(1.0) } else { 1.0 };
                self.mask[k] = Self::mask_for(psi, p.width);
            }
            self.syn[0].add(&self.ana[0].spectrum, &self.mask, c0);
            self.syn[1].add(&self.ana[1].spectrum, &self.mask, c1);
            if t * p.hop < p.n_fft / 2 {
                c0.fill(0.0);
                c1.fill(0.0);
            }
        }
        for (s, c) in s0.iter_mut().zip(c0.iter()) {
            *s -= c;
        }
        for (s, c) in s1.iter_mut().zip(c1.iter()) {
            *s -= c;
        }
    }
}
