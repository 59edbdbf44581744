//! Signal processing around the network: STFT/iSTFT ([`stft`]), the whole-signal overlap-add
//! schedules ([`overlap`]) and the same as a stream ([`overlap_stream`], which the CLI and the
//! plugin share). Resampling lives in [`crate::audio`].

pub mod overlap;
pub mod overlap_stream;
pub mod stft;
