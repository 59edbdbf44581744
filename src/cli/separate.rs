//! `mdx-stems separate`: decode, resample to the model's rate, separate, resample back, write.

use super::SeparateArgs;
use crate::audio::{self, AudioBuffer};
use crate::engine::{LoadOptions, Separator, StageTimes};
use crate::options::EngineOptions;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Output file for one stem: `<out_dir>/<input stem>_(<stem name>).wav`.
pub fn stem_path(out_dir: &Path, input: &Path, stem: &str) -> PathBuf {
    let base = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    out_dir.join(format!("{base}_({stem}).wav"))
}

/// `base`: the options from the environment; the arguments set the rest.
pub fn run(args: &SeparateArgs, base: EngineOptions) -> Result<()> {
    super::info::apply_threads(args.threads);
    let model = match &args.model {
        Some(m) => super::info::resolve_model(m)?,
        None => {
            let (model, line) = default_model();
            if !args.quiet {
                eprintln!("{line}");
            }
            model
        }
    };
    for input in &args.inputs {
        if !input.is_file() {
            bail!("input file {} does not exist", input.display());
        }
    }
    let builtin = crate::nets::builtin::Builtin::is_builtin_name(&model.to_string_lossy());
    let t_load = Instant::now();
    let options = EngineOptions {
        device: args.device,
        precision: args.precision,
        threads: args.threads,
        warmup: false,
        profile: args.profile,
        ..base
    };
    // A built-in runs at the file's own rate (no resampling: its stems add up to the input).
    let first_rate = match builtin {
        true => Some(audio::read_audio(&args.inputs[0])?.sample_rate),
        false => None,
    };
    let mut opts = LoadOptions { model, config: args.config.clone(), segment: args.segment, sample_rate: first_rate, options };
    let mut sep = Separator::load(&opts)?;
    for w in sep.drain_events() {
        eprintln!("warning: {w}");
    }
    let overlap = args.overlap.unwrap_or_else(|| sep.default_overlap());
    if overlap < 1 {
        bail!("--overlap must be at least 1");
    }
    if !args.quiet {
        eprintln!(
            "model: {} stems {:?} on {} ({}), {}, loaded in {:.2} s",
            opts.model.display(),
            sep.stems(),
            sep.device_name(),
            if builtin { "built-in DSP" } else { sep.precision().name() },
            match sep.info().schedule {
                crate::nets::Schedule::Chunks { chunk, .. } => format!("chunk {chunk} samples, {:?} overlap {overlap}", args.scheme),
                crate::nets::Schedule::Stream { block, latency } => format!("stream of {block}-sample blocks, {latency} samples late at {} Hz", sep.sample_rate()),
            },
            t_load.elapsed().as_secs_f64()
        );
    }
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("cannot create output folder {}", args.out_dir.display()))?;
    for input in &args.inputs {
        if builtin {
            let rate = audio::read_audio(input)?.sample_rate;
            if rate != sep.sample_rate() {
                opts.sample_rate = Some(rate);
                sep = Separator::load(&opts)?;
            }
        }
        separate_file(&mut sep, args, input, overlap)?;
    }
    if let Some(p) = sep.profile {
        print_profile(&p);
    }
    if !args.quiet {
        if let Some(peak) = crate::memory::gpu_peak_memory(sep.device()) {
            eprintln!("GPU memory: peak {:.0} MB (model, activations and workspaces)", peak as f64 / 1e6);
        }
    }
    Ok(())
}

/// No `--model`: the first ready model found, else the default built-in; and the one line that
/// says which (with how to get an MDX23C model when none was found).
pub fn default_model() -> (PathBuf, String) {
    if let Some(m) = crate::catalog::discover().into_iter().find(|m| m.is_ready()) {
        let line = format!("model: {} (the first ready model found; --model picks another)", m.name);
        return (m.path, line);
    }
    let line = format!(
        "no MDX23C model found: separating with {} (drums, harmonic, residual; no vocals). For vocals get a model: mdx-stems models --download {}",
        crate::nets::builtin::DEFAULT,
        crate::download::RECOMMENDED
    );
    (PathBuf::from(crate::nets::builtin::DEFAULT), line)
}

fn separate_file(sep: &mut Separator, args: &SeparateArgs, input: &Path, overlap: usize) -> Result<()> {
    let t0 = Instant::now();
    let buf = audio::read_audio(input)?.into_stereo();
    let AudioBuffer { sample_rate, channels } = buf;
    let n = channels[0].len();
    if n == 0 {
        bail!("{} contains no audio samples", input.display());
    }
    let model_rate = sep.sample_rate();
    let mix = audio::resample(&channels, sample_rate, model_rate)?;
    let total = match sep.info().schedule {
        crate::nets::Schedule::Chunks { .. } => crate::dsp::overlap::chunk_count(
            args.scheme,
            &crate::dsp::overlap::OverlapParams { chunk: sep.chunk_len(), overlap, stems: sep.num_stems(), batch: args.batch },
            mix[0].len(),
        ),
        crate::nets::Schedule::Stream { block, latency } => (mix[0].len() + latency).div_ceil(block),
    };
    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} chunks, {elapsed} (eta {eta})")
                .expect("static template")
                .progress_chars("=> "),
        );
        b.set_message(input.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
        b
    };
    let stems = sep.separate(&mix, args.scheme, overlap, args.batch, &mut |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    for w in sep.drain_events() {
        eprintln!("warning: {w}");
    }
    let names = sep.stems();
    let mut written = Vec::with_capacity(names.len() + 1);
    for (name, stem) in names.iter().zip(stems) {
        let mut out = audio::resample(&stem, model_rate, sample_rate)?;
        for ch in &mut out {
            ch.resize(n, 0.0); // same length as the input
        }
        written.push((name.clone(), out));
    }
    // A single-target model: its complement is the input minus the target (as UVR writes it).
    if let Some(name) = sep.info().complement.clone() {
        let target = &written[0].1;
        let rest: Vec<Vec<f32>> = channels.iter().zip(target).map(|(x, t)| x.iter().zip(t).map(|(a, b)| a - b).collect()).collect();
        written.push((name, rest));
    }
    for (name, out) in &written {
        let path = stem_path(&args.out_dir, input, name);
        audio::write_wav_f32(&path, sample_rate, out)?;
        if !args.quiet {
            eprintln!("wrote {}", path.display());
        }
    }
    if !args.quiet {
        let secs = n as f64 / sample_rate as f64;
        let took = t0.elapsed().as_secs_f64();
        eprintln!("{}: {secs:.1} s of audio in {took:.1} s ({:.2}x real time)", input.display(), secs / took);
    }
    Ok(())
}

fn print_profile(p: &StageTimes) {
    let rows = [
        ("STFT", p.stft),
        ("upload", p.upload),
        ("network", p.network),
        ("download", p.download),
        ("iSTFT", p.istft),
        ("overlap-add", p.overlap_add),
    ];
    let total: f64 = rows.iter().map(|(_, d)| d.as_secs_f64()).sum();
    eprintln!("stage          total s   ms/chunk   share   ({} chunks)", p.chunks);
    for (name, d) in rows {
        let s = d.as_secs_f64();
        eprintln!(
            "{name:<12} {s:>9.3} {:>10.2} {:>6.1}%",
            1000.0 * s / p.chunks.max(1) as f64,
            100.0 * s / total.max(1e-12)
        );
    }
}
