//! BS-RoFormer and Mel-Band RoFormer (MSST's `BSRoformer`, `MelBandRoformer`): the config
//! ([`config`]), the band layouts ([`bands`]: contiguous or from a mel filter bank), the
//! expected checkpoint tensors and the strict check ([`checkpoint`]), the network over candle
//! tensors ([`graph`]), and the separation model around it ([`model`]: host STFT, band
//! packing, network, mask multiply, iSTFT; [`Roformer`] builds it). Checkpoints are read by
//! [`crate::nets::tfc_tdf::Checkpoint`]'s pickle-free reader.

pub mod bands;
pub mod checkpoint;
pub mod config;
pub mod graph;
pub mod model;

pub use bands::Bands;
pub use config::{ConfigError, RoformerConfig, Variant};
pub use model::{Roformer, RoformerModel};

impl From<ConfigError> for crate::nets::ModelError {
    fn from(e: ConfigError) -> Self {
        crate::nets::ModelError::Files(Box::new(e))
    }
}
