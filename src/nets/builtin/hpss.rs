//! Harmonic / percussive / residual separation by median filtering (Fitzgerald, "Harmonic/
//! percussive separation using median filtering", DAFx 2010; with a margin, Driedger, Müller and
//! Disch, "Extending harmonic-percussive separation of audio signals", ISMIR 2014), computed
//! as `librosa.effects.hpss` / `librosa.decompose.hpss` compute it, as a stream.
//!
//! Per channel: the STFT magnitude `S` ([`super::stft`]); `H` = its median across time
//! (`kernel_harm` frames per bin), `P` = its median across frequency (`kernel_perc` bins per
//! frame), both with scipy's `reflect` edges ([`super::median`]); soft masks
//! `M_h = H^p / (H^p + (margin_h P)^p)` and `M_p = P^p / (P^p + (margin_p H)^p)` (librosa's
//! `util.softmask`, with its handling of all-zero bins); harmonic = iSTFT(`M_h X`), percussive
//! = iSTFT(`M_p X`), residual = the input minus both (what neither mask keeps once a margin
//! above 1 makes the masks sum to less than 1). The three stems add up to the input.
//!
//! As a stream, the median across time needs `kernel_harm - 1 - kernel_harm/2` frames of
//! look-ahead; with the STFT's own `n_fft - hop` the output is
//! `(kernel_harm - 1 - kernel_harm/2) * hop + n_fft - hop` samples late ([`HpssParams::latency`]).
//! The stream's start is the signal's start (frames before it mirrored, as librosa does); its
//! end is not known, so the last `kernel_harm/2` frames of a finished signal see the zeros
//! after it instead of librosa's mirrored frames (the only difference from librosa).

use super::median::{self, TimeMedian};
use super::stft::{Analysis, Delay, Synthesis};
use realfft::num_complex::Complex;

/// librosa's parameters (`kernel_size`, `power`, `margin`, `n_fft`, `hop_length`; the window is
/// always Hann and `center=True`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HpssParams {
    pub n_fft: usize,
    pub hop: usize,
    /// Frames of the median across time (the harmonic one).
    pub kernel_harm: usize,
    /// Bins of the median across frequency (the percussive one).
    pub kernel_perc: usize,
    pub power: f32,
    pub margin_harm: f32,
    pub margin_perc: f32,
}

impl Default for HpssParams {
    /// librosa's defaults (n_fft 2048, hop 512, kernel 31, power 2) with a margin of 2, so that
    /// the residual stem holds what is clearly neither harmonic nor percussive.
    fn default() -> Self {
        HpssParams { n_fft: 2048, hop: 512, kernel_harm: 31, kernel_perc: 31, power: 2.0, margin_harm: 2.0, margin_perc: 2.0 }
    }
}

impl HpssParams {
    /// Frames the median across time looks ahead.
    pub fn lookahead(&self) -> usize {
        self.kernel_harm - 1 - self.kernel_harm / 2
    }
    /// Output delay in samples: the median's look-ahead plus the STFT's `n_fft - hop`.
    pub fn latency(&self) -> usize {
        self.lookahead() * self.hop + self.n_fft - self.hop
    }
}

/// librosa's `util.softmask(x, x_ref, power, split_zeros)` for one bin.
#[inline]
pub fn softmask(x: f32, x_ref: f32, power: f32, split_zeros: bool) -> f32 {
    let z = x.max(x_ref);
    if z < f32::MIN_POSITIVE {
        return if split_zeros { 0.5 } else { 0.0 };
    }
    let pow = |v: f32| if power == 2.0 { v * v } else if power == 1.0 { v } else { v.powf(power) };
    let (a, b) = (pow(x / z), pow(x_ref / z));
    a / (a + b)
}

/// One channel's stream.
struct Channel {
    ana: Analysis,
    syn_h: Synthesis,
    syn_p: Synthesis,
    delay: Delay,
    /// Magnitudes of the last `kernel_harm + 1` frames (ring, by frame index).
    mags: Vec<Vec<f32>>,
    /// Spectra and percussive medians of the last `lookahead + 1` frames (ring).
    specs: Vec<Vec<Complex<f32>>>,
    percs: Vec<Vec<f32>>,
    time: TimeMedian,
    /// Frames analysed since the reset.
    frames: usize,
    harm: Vec<f32>,
    mask_h: Vec<f32>,
    mask_p: Vec<f32>,
    row: Vec<f32>,
}

/// The harmonic/percussive/residual stream of a stereo signal (channels independent).
pub struct Hpss {
    p: HpssParams,
    ch: [Channel; 2],
}

impl Hpss {
    pub fn new(p: HpssParams) -> Self {
        assert!(p.kernel_harm >= 1 && p.kernel_perc >= 1, "kernel sizes must be at least 1");
        let bins = p.n_fft / 2 + 1;
        let la = p.lookahead();
        let channel = || Channel {
            ana: Analysis::new(p.n_fft, p.hop),
            syn_h: Synthesis::new(p.n_fft, p.hop),
            syn_p: Synthesis::new(p.n_fft, p.hop),
            delay: Delay::new(p.latency(), p.hop),
            mags: vec![vec![0.0; bins]; p.kernel_harm + 1],
            specs: vec![vec![Complex::default(); bins]; la + 1],
            percs: vec![vec![0.0; bins]; la + 1],
            time: TimeMedian::new(p.kernel_harm, bins),
            frames: 0,
            harm: vec![0.0; bins],
            mask_h: vec![0.0; bins],
            mask_p: vec![0.0; bins],
            row: vec![0.0; p.kernel_perc + 1],
        };
        Hpss { p, ch: [channel(), channel()] }
    }

    pub fn params(&self) -> &HpssParams {
        &self.p
    }

    pub fn reset(&mut self) {
        for c in &mut self.ch {
            c.ana.reset();
            c.syn_h.reset();
            c.syn_p.reset();
            c.delay.reset();
            c.frames = 0;
        }
    }

    /// One hop of one channel: `x` in, the stems of the samples `latency` earlier out
    /// (percussive, harmonic, residual).
    pub fn push_hop(&mut self, channel: usize, x: &[f32], perc: &mut [f32], harm: &mut [f32], resid: &mut [f32]) {
        let p = self.p;
        let c = &mut self.ch[channel];
        c.delay.process(x, resid);
        perc.fill(0.0);
        harm.fill(0.0);
        if c.ana.push(x) {
            let u = c.frames;
            c.frames += 1;
            let (wh, la) = (p.kernel_harm, p.lookahead());
            let (nm, ns) = (c.mags.len(), c.specs.len());
            {
                let mag = &mut c.mags[u % nm];
                for (m, s) in mag.iter_mut().zip(&c.ana.spectrum) {
                    *m = s.norm();
                }
                c.specs[u % ns].copy_from_slice(&c.ana.spectrum);
                median::filter_row(&c.mags[u % nm], p.kernel_perc, &mut c.row, &mut c.percs[u % ns]);
            }
            // Frames before the start mirror the first ones: frame -j is frame j - 1.
            let mirror = |i: isize| if i < 0 { (-i - 1) as usize } else { i as usize };
            let lo = -((wh / 2) as isize);
            if u >= la {
                let t = u - la;
                if t == 0 {
                    let frames: Vec<&[f32]> = (lo..=la as isize).map(|i| &c.mags[mirror(i) % nm][..]).collect();
                    c.time.fill(&frames);
                } else {
                    let old = mirror(t as isize - 1 + lo);
                    let (o, n) = (&c.mags[old % nm], &c.mags[u % nm]);
                    c.time.slide(o, n);
                }
                c.time.medians(&mut c.harm);
                let split = p.margin_harm == 1.0 && p.margin_perc == 1.0;
                let pc = &c.percs[t % ns];
                for (((mh, mp), h), pv) in c.mask_h.iter_mut().zip(&mut c.mask_p).zip(&c.harm).zip(pc) {
                    *mh = softmask(*h, pv * p.margin_harm, p.power, split);
                    *mp = softmask(*pv, h * p.margin_perc, p.power, split);
                }
                let spec = &c.specs[t % ns];
                c.syn_h.add(spec, &c.mask_h, harm);
                c.syn_p.add(spec, &c.mask_p, perc);
                if (t * p.hop) < p.n_fft / 2 {
                    // Samples before the signal's start: nothing (as the delayed input there).
                    let before = (p.n_fft / 2 - t * p.hop).min(p.hop);
                    harm[..before].fill(0.0);
                    perc[..before].fill(0.0);
                }
            }
        }
        for ((r, h), q) in resid.iter_mut().zip(harm.iter()).zip(perc.iter()) {
            *r -= h + q;
        }
    }
}
