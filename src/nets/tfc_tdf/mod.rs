//! TFC-TDF v3 (MDX23C): its config ([`config`]), checkpoint reading and the strict shape check
//! ([`checkpoint`]), the network written once over the backends ([`graph`]), and the separation
//! model around it ([`model`]: STFT, network, iSTFT; [`TfcTdf`] builds it). Nothing here knows
//! about the plugin framework or audio files.

pub mod checkpoint;
pub mod config;
pub mod graph;
pub mod model;

pub use checkpoint::{Checkpoint, SplitMix64, Weights, WeightsError};
pub use config::{ActKind, ConfigError, ModelConfig, NormKind};
pub use model::{Net, Network, TfcTdf, network};

impl From<ConfigError> for crate::nets::ModelError {
    fn from(e: ConfigError) -> Self {
        crate::nets::ModelError::Files(Box::new(e))
    }
}

impl From<WeightsError> for crate::nets::ModelError {
    fn from(e: WeightsError) -> Self {
        crate::nets::ModelError::Files(Box::new(e))
    }
}

impl ModelConfig {
    /// Multiply-adds of one forward pass over a chunk of `chunk` samples (FLOPs = 2x this).
    /// Counts convolutions, transposed convolutions and linears (norms and acts are negligible).
    pub fn macs_per_chunk(&self, chunk: usize) -> u64 {
        let m = &self.model;
        let t0 = (chunk / self.audio.hop_length + 1) as u64;
        let dim_c = self.dim_c() as u64;
        let (g, bn) = (m.growth as u64, m.bottleneck_factor as u64);
        let (st, sf) = (m.scale[0] as u64, m.scale[1] as u64);
        let mut c = m.num_channels as u64;
        let mut f = (self.audio.dim_f / m.num_subbands) as u64;
        let mut t = t0;
        let tfc_tdf = |in_c: u64, c: u64, t: u64, f: u64| -> u64 {
            let mut macs = 0;
            let mut in_c = in_c;
            for _ in 0..m.num_blocks_per_scale {
                let hw = t * f;
                macs += hw * in_c * c * 9 // tfc1
                    + c * t * f * (f / bn) * 2 // tdf linears
                    + hw * c * c * 9 // tfc2
                    + hw * in_c * c; // shortcut
                in_c = c;
            }
            macs
        };
        let mut macs = t0 * f * dim_c * c; // first_conv
        for _ in 0..m.num_scales {
            macs += tfc_tdf(c, c, t, f);
            t /= st;
            f /= sf;
            macs += t * f * c * (c + g) * st * sf; // downscale
            c += g;
        }
        macs += tfc_tdf(c, c, t, f);
        for _ in 0..m.num_scales {
            macs += t * f * c * (c - g) * st * sf; // upscale
            t *= st;
            f *= sf;
            c -= g;
            macs += tfc_tdf(2 * c, c, t, f);
        }
        macs += t0 * f * ((c + dim_c) * c + c * self.num_stems() as u64 * dim_c); // final_conv
        macs
    }

    /// Parameter count of the network this config describes (BatchNorm running stats included).
    pub fn parameter_count(&self) -> usize {
        checkpoint::expected_tensors(self).values().map(|s| s.iter().product::<usize>()).sum()
    }
}
