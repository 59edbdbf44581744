//! Signal processing around the network: STFT/iSTFT ([`stft`]) and the whole-signal
//! overlap-add schedules ([`overlap`]). Resampling lives in [`crate::audio`].

pub mod overlap;
pub mod overlap_stream;
pub mod stft;
