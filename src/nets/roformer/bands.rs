//! Which STFT bins each band sees: contiguous runs for BS-RoFormer (`freqs_per_bands`), the
//! non-zero support of librosa's mel filter bank for Mel-Band RoFormer (bands overlap, and the
//! masks of a bin are averaged over the bands that hold it).

use super::config::{RoformerConfig, Variant};

/// The band layout of one config.
#[derive(Debug, Clone, PartialEq)]
pub struct Bands {
    /// STFT bins of each band, ascending.
    pub bins: Vec<Vec<usize>>,
    /// How many bands hold each bin (the mask average's divisor; all 1 for BS-RoFormer).
    pub bands_per_freq: Vec<usize>,
}

impl Bands {
    pub fn new(cfg: &RoformerConfig) -> Self {
        let freqs = cfg.freqs();
        let bins: Vec<Vec<usize>> = match &cfg.model.variant {
            Variant::BandSplit { freqs_per_bands } => {
                let mut start = 0;
                freqs_per_bands
                    .iter()
                    .map(|&n| {
                        let b = (start..start + n).collect();
                        start += n;
                        b
                    })
                    .collect()
            }
            Variant::MelBand { num_bands, sample_rate } => mel_band_support(*sample_rate, cfg.model.stft_n_fft, *num_bands)
                .iter()
                .map(|row| row.iter().enumerate().filter(|(_, on)| **on).map(|(f, _)| f).collect())
                .collect(),
        };
        let mut bands_per_freq = vec![0; freqs];
        for b in &bins {
            for &f in b {
                bands_per_freq[f] += 1;
            }
        }
        Bands { bins, bands_per_freq }
    }

    /// Input (and mask) features of each band: bins x 2 channels x (re, im).
    pub fn dims(&self) -> Vec<usize> {
        self.bins.iter().map(|b| 4 * b.len()).collect()
    }

    /// Bins no band holds (a Mel-Band config with too many bands for its FFT).
    pub fn uncovered(&self) -> usize {
        self.bands_per_freq.iter().filter(|&&n| n == 0).count()
    }
}

/// Slaney's mel scale (librosa's default, `htk=False`): linear below 1 kHz, logarithmic above.
fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_mel = 1000.0 / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= 1000.0 { min_log_mel + (f / 1000.0).ln() / logstep } else { f / f_sp }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_mel = 1000.0 / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel { 1000.0 * (logstep * (m - min_log_mel)).exp() } else { f_sp * m }
}

/// `librosa.filters.mel(sr, n_fft, n_mels) > 0` (fmin 0, fmax sr/2, Slaney scale and norm),
/// with MSST's two fixes (bin 0 in the first band, the last bin in the last band): [band][bin].
/// Computed in f64 in librosa's order of operations, each weight rounded to f32 as librosa
/// stores it (a weight positive in f64 but zero in f32 is not in the band).
pub fn mel_band_support(sr: u32, n_fft: usize, n_mels: usize) -> Vec<Vec<bool>> {
    let freqs = n_fft / 2 + 1;
    let bin_hz = 1.0 / (n_fft as f64 * (1.0 / sr as f64));
    let fft_hz: Vec<f64> = (0..freqs).map(|k| k as f64 * bin_hz).collect();
    // np.linspace(min_mel, max_mel, n_mels + 2), the last point exactly max_mel.
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr as f64 / 2.0));
    let n = n_mels + 2;
    let step = (hi - lo) / (n - 1) as f64;
    let mel_hz: Vec<f64> = (0..n).map(|i| mel_to_hz(if i == n - 1 { hi } else { i as f64 * step + lo })).collect();
    let fdiff: Vec<f64> = mel_hz.windows(2).map(|w| w[1] - w[0]).collect();
    let mut out = vec![vec![false; freqs]; n_mels];
    for (i, row) in out.iter_mut().enumerate() {
        let enorm = 2.0 / (mel_hz[i + 2] - mel_hz[i]);
        for (k, on) in row.iter_mut().enumerate() {
            let lower = -(mel_hz[i] - fft_hz[k]) / fdiff[i];
            let upper = (mel_hz[i + 2] - fft_hz[k]) / fdiff[i + 1];
            let w = 0f64.max(lower.min(upper)) as f32;
            *on = (w as f64 * enorm) as f32 > 0.0;
        }
    }
    out[0][0] = true;
    out[n_mels - 1][freqs - 1] = true;
    out
}
