//! MDX Stems: stem separation with MDX23C (TFC-TDF v3) models, as a CLI and an audio plugin.
//!
//! Layout, each module using only those above it (docs/architecture.md):
//! - [`events`], [`device`], [`options`]: what the engine reports, the device and precision
//!   choice, every option of a run (environment variables are read only by
//!   [`options::EngineOptions::from_env`], at the program edges).
//! - [`limits`]: the plausibility limits on every value read from a file that sizes work or
//!   memory (one place, documented in docs/cli.md, Limits).
//! - [`dsp`], [`audio`]: STFT/iSTFT and overlap-add schedules; audio files and resampling.
//! - [`backend`]: the operations networks are written over, for the CPU (our kernels), CUDA
//!   and candle's own ops; [`memory`]: RSS and GPU memory probes.
//! - [`nets`]: what a separation model is (the interface) and its architectures
//!   (one folder each, MDX23C's TFC-TDF v3 now), every family seen above `nets` as a
//!   [`nets::NetSpec`] made by the one registry ([`nets::FAMILIES`]); checkpoint reading
//!   ([`nets::checkpoint`]).
//! - [`catalog`]: finding users' models, UVR's hash table, what a checkpoint's shapes say, and
//!   resolving a model (name -> file -> config) before anything is built.
//! - [`engine`]: a model on a device fed chunks (batching, out-of-memory halving, GPU error ->
//!   CPU retry); whole-signal separation.
//! - [`plugin`]: the VST3/CLAP plugin (streaming separation with reported latency); [`cli`]:
//!   the `mdx-stems` commands.

pub mod events;
pub mod device;
pub mod options;
pub mod limits;
pub mod dsp;
pub mod audio;
pub mod backend;
pub mod memory;
pub mod nets;
pub mod catalog;
pub mod sniff;
pub mod download;
pub mod engine;
pub mod detach;
pub mod plugin;
pub mod cli;
#[doc(hidden)]
pub mod testing;
#[doc(hidden)]
pub mod fuzz;
