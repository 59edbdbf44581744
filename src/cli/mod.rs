//! The `mdx-stems` command line: argument parsing and the commands. The engine does the work;
//! this module only reads files, reports progress and writes stems.

pub mod info;
pub mod models;
pub mod separate;
pub mod template;

use crate::device::{DeviceRequest, Precision};
use crate::audio::{BitDepth, Format};
use crate::dsp::overlap::Scheme;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "mdx-stems", version, about = "Separate music into stems with MDX23C (TFC-TDF v3) models, or built-in separators that need no model")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Separate audio files (or folders, or globs) into one file per stem.
    Separate(SeparateArgs),
    /// Describe a model: stems, chunk, size, FLOPs, plugin latency.
    Info(InfoArgs),
    /// List the built-in separators and the models found in the app's, UVR's and
    /// python-audio-separator's folders; list or download public MDX23C and RoFormer models.
    Models(ModelsArgs),
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// List the public MDX23C and RoFormer models that `--download` fetches (size, stems, source, SDR).
    #[arg(long, conflicts_with = "download")]
    pub available: bool,
    /// Download a model of `--available`'s list by name (or a unique prefix or part of the name,
    /// any case) into the app's models folder, with its config; resumes an interrupted download.
    #[arg(long, value_name = "NAME")]
    pub download: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Which model to load.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model weights (.ckpt/.pth PyTorch checkpoint or .safetensors), the name of a model that
    /// `mdx-stems models` lists (or a unique prefix, else a unique part of the name, any case),
    /// or a built-in (`builtin:hpss`, `builtin:center`).
    #[arg(long, short)]
    pub model: String,
    /// Model config (.yaml); default: the .yaml with the same name next to the model.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Time the model on this machine and print which overlap and segment settings run live
    /// in the plugin (as its editor does from the chunks it times).
    #[arg(long)]
    pub live: bool,
    /// Device for `--live`.
    #[arg(long, value_enum, default_value_t = DeviceRequest::Auto)]
    pub device: DeviceRequest,
    /// Precision for `--live`; default: f32 on the CPU, f16 on GPUs.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// CPU threads for `--live` (0: as the plugin, every core but one).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct SeparateArgs {
    /// Audio files (WAV, FLAC, MP3, OGG Vorbis, AIFF), folders (searched recursively for
    /// audio files) and glob patterns (`"music/**/*.flac"`).
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Model weights (.ckpt/.pth/.safetensors), a name that `mdx-stems models` lists (or a
    /// unique prefix, else a unique part of the name, any case), or a built-in (`builtin:hpss`,
    /// `builtin:center`). Default: the best installed model for the stems asked for (`--stems`;
    /// without it, vocals and instrumental): among the ready models that separate a full mix
    /// and have those stems, the highest published SDR for the first of them; else the
    /// built-in that has them, else `builtin:hpss`. The run's first line names the choice.
    #[arg(long, short)]
    pub model: Option<String>,
    /// Model config (.yaml); default: the .yaml with the same name next to the model. (A
    /// built-in has none: given with one, it is ignored with a warning.)
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where to write the stems (created if missing).
    #[arg(long, short, default_value = ".")]
    pub out_dir: PathBuf,
    /// Output file format.
    #[arg(long, value_enum, default_value_t = Format::Wav)]
    pub format: Format,
    /// Sample format: 16 or 24-bit integers, or 32-bit float (WAV only). Default: 32f for
    /// WAV, 24 for FLAC. Integers stop at full scale: a stem louder than that (a loud MP3
    /// decodes above it) is clipped there, never silently: a warning names each clipped file,
    /// the number of clipped samples and the peak. 32f keeps every sample as computed.
    #[arg(long, value_enum)]
    pub bit_depth: Option<BitDepth>,
    /// Write only these stems (comma-separated names, any case; default: all, the complement of
    /// a single-target model included).
    #[arg(long, value_delimiter = ',')]
    pub stems: Vec<String>,
    /// Output file name, without the extension: `{input}` (the input's name without its
    /// extension), `{stem}` (required), `{model}` (the model file's name, or the built-in's),
    /// `{parent}` (the input's folder name); may contain `/` for subfolders of --out-dir (never
    /// `..` or an absolute path: stems stay inside --out-dir). Another `{...}` is an error.
    /// Characters illegal in file names on some OS (`<>:"/\|?*`, control characters, trailing
    /// dots and spaces) become `_`, and reserved names (CON, NUL, COM1, ...) gain a `_`.
    #[arg(long, default_value = "{input}_({stem})")]
    pub name_template: String,
    /// Skip an input whose selected stems all exist already.
    #[arg(long)]
    pub skip_existing: bool,
    /// Chunking and overlap-add of UVR (rectangular) or MSST (faded); default: uvr. Models
    /// only, as --overlap, --segment, --precision and --config: a built-in streams, and warns
    /// (one line naming them) that it ignores those given.
    #[arg(long, value_enum)]
    pub scheme: Option<Scheme>,
    /// Chunks overlapping each sample; default: the config's inference.num_overlap, else 8.
    #[arg(long)]
    pub overlap: Option<usize>,
    /// Chunks per network call.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Segment size in STFT frames (chunk = hop * (segment - 1)); default: the config's chunk_size.
    #[arg(long)]
    pub segment: Option<usize>,
    /// Where the model runs: auto (a GPU when the build has one and it works, else the CPU),
    /// cpu, cuda or metal (builds with that feature). Built-ins always run on the CPU.
    #[arg(long, value_enum, default_value_t = DeviceRequest::Auto)]
    pub device: DeviceRequest,
    /// Arithmetic of the model; default: f32 on the CPU, f16 on GPUs.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// CPU threads for the engine (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bar or messages, only warnings and errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print per-stage timings (device synchronised before each timestamp).
    #[arg(long)]
    pub profile: bool,
}

/// An error and its causes as one text, each cause added only when the text so far does not
/// hold it already (an error that prints its source would otherwise show it twice).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if s.is_empty() {
            s = c;
        } else if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_that_prints_its_source_shows_it_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let e = crate::nets::WeightsError::Io { path: "m.ckpt".into(), source: io };
        let text = super::error_text(&anyhow::Error::new(e));
        assert_eq!(text, "cannot read model m.ckpt: No such file or directory (os error 2)");
        let e = anyhow::Error::new(std::io::Error::other("disk on fire")).context("cannot write x.wav");
        assert_eq!(super::error_text(&e), "cannot write x.wav: disk on fire");
    }
}
