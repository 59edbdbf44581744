//! MDX Stems: stem separation with MDX23C (TFC-TDF v3) models, as a CLI and an audio plugin.
//!
//! Layout:
//! - [`model`]: config, checkpoint reading, the network (no plugin, no audio I/O).
//! - [`dsp`]: STFT/iSTFT and the overlap-add schedules.
//! - [`audio`]: audio files and resampling.
//! - [`device`]: the one place that picks device and precision.
//! - [`engine`]: model + STFT = chunks in, stems out; whole-signal separation.
//! - [`models`]: finding users' models (app folder, UVR, python-audio-separator), UVR's hash
//!   table, and what a checkpoint's shapes say about its config.
//! - [`plugin`]: the VST3/CLAP plugin (streaming separation with reported latency).

pub mod audio;
pub mod cli;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod dsp;
pub mod engine;
pub mod kernels;
pub mod model;
pub mod models;
pub mod plugin;
