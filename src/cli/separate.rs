//! `mdx-stems separate`: files, folders and globs in; each file decoded, resampled to the
//! model's rate, separated, resampled back and written as a stream (memory does not grow with
//! the file); the model loaded once. A bad file is reported and skipped, every failure listed
//! at the end (exit code 1). Stems are written under a temporary name and renamed when
//! complete, so an interrupted run (Ctrl-C) never leaves a truncated stem that looks finished.

use super::SeparateArgs;
use crate::audio::{AudioReader, AudioWriter, BitDepth, Format};
use crate::engine::{LoadOptions, Separator, StageTimes, StreamSettings};
use crate::options::EngineOptions;
use super::template::{NameTemplate, Values};
use crate::dsp::overlap::Scheme;
use std::cell::RefCell;
use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeSet, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// File extensions a folder is searched for.
pub const AUDIO_EXTENSIONS: [&str; 7] = ["wav", "flac", "mp3", "ogg", "oga", "aif", "aiff"];

/// The run was stopped by Ctrl-C (or SIGTERM).
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}
impl std::error::Error for Interrupted {}

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// The input files `args` name: files as given, folders searched recursively for audio files
/// (sorted), glob patterns expanded (sorted); each file once, in the order first named.
pub fn expand_inputs(args: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |p: PathBuf, out: &mut Vec<PathBuf>| {
        let key = p.canonicalize().unwrap_or_else(|_| p.clone());
        if seen.insert(key) {
            out.push(p);
        }
    };
    for arg in args {
        let path = PathBuf::from(arg);
        if path.is_file() {
            add(path, &mut out);
        } else if path.is_dir() {
            let mut found = Vec::new();
            walk(&path, &mut found).with_context(|| format!("cannot read folder {}", path.display()))?;
            if found.is_empty() {
                bail!("folder {} holds no audio files ({})", path.display(), AUDIO_EXTENSIONS.join(", "));
            }
            found.sort();
            for f in found {
                add(f, &mut out);
            }
        } else if arg.contains(['*', '?', '[']) {
            let paths = glob::glob(arg).with_context(|| format!("bad glob pattern {arg}"))?;
            let mut found: Vec<PathBuf> = paths.filter_map(|p| p.ok()).filter(|p| p.is_file()).collect();
            if found.is_empty() {
                bail!("no file matches {arg}");
            }
            found.sort();
            for f in found {
                add(f, &mut out);
            }
        } else {
            bail!("input file {} does not exist", path.display());
        }
    }
    Ok(out)
}

fn is_audio(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(e)))
}

/// Audio files under `dir`, recursively (symbolic links to folders are not followed).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let p = entry.path();
        if ty.is_dir() {
            walk(&p, out)?;
        } else if is_audio(&p) && p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// The name `{parent}` stands for: the input's folder name.
fn parent_name(input: &Path) -> String {
    input
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .as_deref()
        .and_then(Path::file_name)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into())
}

/// The output file of one stem: the template filled in, under `out_dir`, with the format's
/// extension.
pub fn stem_path(out_dir: &Path, template: &NameTemplate, input: &Path, model: &str, stem: &str, format: Format) -> PathBuf {
    let input_name = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    let parent = parent_name(input);
    template.path(out_dir, &Values { input: &input_name, stem, model, parent: &parent }, format.extension())
}

/// The marker of the temporary name a stem is written under, followed by the writer's process id.
const PARTIAL: &str = ".partial-";

/// The temporary name a stem is written under (hidden, beside the final file).
fn partial_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}{PARTIAL}{}", std::process::id()))
}

/// A partial file older than this is stale even if a process with its id is alive (ids are reused).
pub const STALE_PARTIAL_AGE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Whether process `pid` exists (on other systems than Unix: assumed, so only age counts).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = i32::try_from(pid) else { return false };
        // Signal 0 checks existence; EPERM: it exists but belongs to another user.
        unsafe { libc::kill(pid, 0) == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Remove the partial stems in `dir` that an earlier run left (killed before it could): those of
/// processes that no longer exist, and those older than [`STALE_PARTIAL_AGE`]. Returns the
/// files removed.
pub fn remove_stale_partials(dir: &Path) -> Vec<PathBuf> {
    let own = std::process::id();
    let mut removed = vec![];
    let Ok(rd) = std::fs::read_dir(dir) else { return removed };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(PARTIAL))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > STALE_PARTIAL_AGE);
        if (old || !process_alive(pid)) && std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// `n file` or `n files`.
fn files(n: usize) -> String {
    format!("{n} file{}", if n == 1 { "" } else { "s" })
}

fn scheme_name(s: Scheme) -> &'static str {
    match s {
        Scheme::Uvr => "UVR",
        Scheme::Msst => "MSST",
    }
}

/// `base`: the options from the environment; the arguments set the rest.
pub fn run(args: &SeparateArgs, base: EngineOptions) -> Result<()> {
    super::info::apply_threads(args.threads);
    let depth = args.bit_depth.unwrap_or(match args.format {
        Format::Wav => BitDepth::F32,
        Format::Flac => BitDepth::I24,
    });
    if args.format == Format::Flac && depth == BitDepth::F32 {
        bail!("FLAC stores integers: use --bit-depth 16 or 24, or --format wav for 32-bit float");
    }
    let template = NameTemplate::parse(&args.name_template).map_err(anyhow::Error::msg)?;
    crate::limits::check_batch(args.batch).map_err(anyhow::Error::msg)?;
    crate::limits::check_threads(args.threads).map_err(anyhow::Error::msg)?;
    let inputs = expand_inputs(&args.inputs)?;
    let wanted: Vec<String> = args.stems.iter().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect();
    let model = match &args.model {
        Some(m) => super::info::resolve_model(m)?,
        None => {
            let (model, line) = default_model(&wanted);
            if !args.quiet {
                eprintln!("{line}");
            }
            model
        }
    };
    let builtin = crate::nets::builtin::Builtin::is_builtin_name(&model.to_string_lossy());
    if builtin {
        let given = [
            (args.overlap.is_some(), "--overlap"),
            (args.segment.is_some(), "--segment"),
            (args.precision.is_some(), "--precision"),
            (args.scheme.is_some(), "--scheme"),
            (args.config.is_some(), "--config"),
            (args.batch != 1, "--batch"),
        ];
        let ignored: Vec<&str> = given.iter().filter(|(g, _)| *g).map(|(_, n)| *n).collect();
        if !ignored.is_empty() {
            eprintln!("warning: {} streams without chunks or a config: it ignores {}", model.display(), ignored.join(", "));
        }
    }
    let scheme = args.scheme.unwrap_or(Scheme::Uvr);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install the Ctrl-C handler")?;
    }
    let t_load = Instant::now();
    let options = EngineOptions {
        device: args.device,
        precision: if builtin { None } else { args.precision },
        threads: args.threads,
        warmup: false,
        profile: args.profile,
        ..base
    };
    // A built-in runs at the file's own rate (no resampling: its stems add up to the input);
    // built at the first readable file's (an unreadable one fails in its turn, below).
    let file_rate = |input: &Path| -> Result<u32> { Ok(AudioReader::open(input)?.sample_rate()) };
    let first_rate = builtin.then(|| inputs.iter().find_map(|i| file_rate(i).ok()).unwrap_or(44100));
    let mut opts = LoadOptions {
        model,
        config: if builtin { None } else { args.config.clone() },
        segment: if builtin { None } else { args.segment },
        sample_rate: first_rate,
        options,
    };
    let mut sep = Separator::load(&opts)?;
    for w in sep.drain_events() {
        eprintln!("warning: {w}");
    }
    let overlap = match args.overlap {
        Some(k) if !builtin => k,
        _ => sep.default_overlap(),
    };
    if overlap < 1 {
        bail!("--overlap must be at least 1");
    }
    crate::limits::check_overlap(overlap).map_err(anyhow::Error::msg)?;
    // Every stem the model writes, and those asked for.
    let mut all: Vec<String> = sep.stems();
    all.extend(sep.info().complement.clone());
    let selected: Vec<usize> = if args.stems.is_empty() {
        (0..all.len()).collect()
    } else {
        let mut sel = Vec::new();
        for want in &args.stems {
            let i = all.iter().position(|s| s.eq_ignore_ascii_case(want.trim())).or_else(|| {
                // `instrumental` of a two-stem vocals model is its other stem.
                (crate::catalog::quality::gives(&all, want) && want.trim().eq_ignore_ascii_case("instrumental"))
                    .then(|| all.iter().position(|s| !s.eq_ignore_ascii_case("vocals")))
                    .flatten()
            });
            match i {
                Some(i) if !sel.contains(&i) => sel.push(i),
                Some(_) => {}
                None => bail!("--stems: the model has no stem `{want}` (it has {})", all.join(", ")),
            }
        }
        sel.sort_unstable();
        sel
    };
    let model_name = opts.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    // Two inputs must not write the same files.
    let mut owner: HashMap<PathBuf, &Path> = HashMap::new();
    for input in &inputs {
        for &i in &selected {
            let p = stem_path(&args.out_dir, &template, input, &model_name, &all[i], args.format);
            if let Some(other) = owner.insert(p.clone(), input) {
                bail!(
                    "{} and {} would both write {} (use --name-template with {{parent}}, or separate them apart)",
                    other.display(),
                    input.display(),
                    p.display()
                );
            }
        }
    }
    if !args.quiet {
        let how = match sep.info().schedule {
            crate::nets::Schedule::Chunks { chunk, .. } => {
                format!("{} ({}), chunks of {chunk} samples, {} overlap {overlap}", sep.device_name(), sep.precision().name(), scheme_name(scheme))
            }
            crate::nets::Schedule::Stream { .. } => format!("{}, built-in DSP at each file's own sample rate", sep.device_name()),
        };
        eprintln!("loaded {} (stems: {}) on {how}, in {:.2} s", opts.model.display(), all.join(", "), t_load.elapsed().as_secs_f64());
    }
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("cannot create output folder {}", args.out_dir.display()))?;

    let show = !args.quiet && std::io::stderr().is_terminal();
    let bars = MultiProgress::with_draw_target(if show { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    let overall = if inputs.len() > 1 {
        let b = bars.add(ProgressBar::new(inputs.len() as u64));
        b.set_style(ProgressStyle::with_template("files [{bar:30}] {pos}/{len}, {elapsed} (eta {eta})").expect("static template").progress_chars("=> "));
        Some(b)
    } else {
        None
    };
    let job = Job {
        args,
        depth,
        template: &template,
        scheme,
        selected: &selected,
        all: &all,
        model_name: &model_name,
        overlap,
        stop: &stop,
        bars: &bars,
        show,
        cleaned: RefCell::new(BTreeSet::new()),
    };
    let mut failures: Vec<String> = Vec::new();
    let (mut done, mut skipped) = (0usize, 0usize);
    for input in &inputs {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut one = || -> Result<bool> {
            if builtin {
                // Built at the previous file's rate: build it again at this one's.
                let rate = file_rate(input)?;
                if rate != sep.sample_rate() {
                    opts.sample_rate = Some(rate);
                    sep = Separator::load(&opts)?;
                }
            }
            job.file(&mut sep, input)
        };
        match one() {
            Ok(true) => done += 1,
            Ok(false) => skipped += 1,
            Err(e) if e.downcast_ref::<Interrupted>().is_some() => break,
            Err(e) => {
                if inputs.len() == 1 {
                    return Err(e);
                }
                let line = super::error_text(&e).replace('\n', " ");
                job.say(format!("failed: {line}"));
                failures.push(line);
            }
        }
        if let Some(b) = &overall {
            b.inc(1);
        }
    }
    if let Some(b) = &overall {
        b.finish_and_clear();
    }
    if stop.load(Ordering::Relaxed) {
        eprintln!("interrupted: the partial stems were removed ({} done)", files(done));
        std::process::exit(EXIT_INTERRUPTED);
    }
    if let Some(p) = sep.profile {
        print_profile(&p);
    }
    if !args.quiet {
        if let Some(peak) = crate::memory::gpu_peak_memory(sep.device()) {
            eprintln!("GPU memory: peak {:.0} MB (model, activations and workspaces)", peak as f64 / 1e6);
        }
        if inputs.len() > 1 {
            eprintln!("{} separated, {skipped} skipped (stems exist), {} failed", files(done), failures.len());
        }
        if let Some(peak) = crate::memory::peak_rss_bytes() {
            eprintln!("peak RSS {:.1} MB", peak as f64 / 1e6);
        }
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("error: {f}");
        }
        bail!("{} of {} failed", failures.len(), files(inputs.len()));
    }
    Ok(())
}

/// No `--model`: the best installed model for the stems asked for (`wanted`, lowercase; none:
/// vocals and instrumental), see [`crate::catalog::quality`]; else a built-in that has them;
/// else the default built-in. And the run's first line, which says which and why.
pub fn default_model(wanted: &[String]) -> (PathBuf, String) {
    use crate::catalog::quality::{best_for, gives};
    use crate::nets::builtin::{self, Builtin};
    let entries = crate::catalog::discover();
    let asked: Vec<String> = if wanted.is_empty() { vec!["vocals".into(), "instrumental".into()] } else { wanted.to_vec() };
    let for_what = if wanted.is_empty() { "vocals".to_string() } else { wanted.join(", ") };
    let stems_of = |e: &crate::catalog::ModelEntry| {
        crate::catalog::resolve_config(&e.path, None).map(|c| c.output_stems()).unwrap_or_else(|_| e.stems.clone())
    };
    if let Some(c) = best_for(&entries, &asked, &stems_of) {
        let sdr = c.sdr.map(|(v, source)| format!(", SDR {v:.2} dB for {} in {source}", asked[0])).unwrap_or_default();
        let line = format!("model: {} (best installed for {for_what}{sdr}; pass --model to choose)", c.entry.name);
        return (c.entry.path.clone(), line);
    }
    if !wanted.is_empty() {
        if let Some(b) = builtin::ALL.iter().filter_map(|n| Builtin::by_name(n)).find(|b| wanted.iter().all(|w| gives(&b.stems(), w))) {
            let line = format!("model: {} (no installed model gives {for_what}, this built-in does; pass --model to choose)", b.name());
            return (PathBuf::from(b.name()), line);
        }
    }
    let any_ready = entries.iter().any(|e| e.is_ready());
    let line = if any_ready {
        format!(
            "no installed model separates {for_what} from a mix: separating with {} (drums, harmonic, residual; no vocals). For vocals get a model: mdx-stems models --download {}",
            builtin::DEFAULT,
            crate::download::RECOMMENDED
        )
    } else {
        format!(
            "no MDX23C model found: separating with {} (drums, harmonic, residual; no vocals). For vocals get a model: mdx-stems models --download {}",
            builtin::DEFAULT,
            crate::download::RECOMMENDED
        )
    };
    (PathBuf::from(builtin::DEFAULT), line)
}

/// What every file of a run shares.
struct Job<'a> {
    args: &'a SeparateArgs,
    depth: BitDepth,
    template: &'a NameTemplate,
    scheme: Scheme,
    selected: &'a [usize],
    all: &'a [String],
    model_name: &'a str,
    overlap: usize,
    stop: &'a AtomicBool,
    bars: &'a MultiProgress,
    /// Progress bars are drawn (a terminal, not --quiet).
    show: bool,
    /// The output folders already rid of stale partial files.
    cleaned: RefCell<BTreeSet<PathBuf>>,
}

impl Job<'_> {
    /// A message line (not with --quiet): above the progress bars on a terminal, else on stderr
    /// (a log names every file written).
    fn say(&self, line: String) {
        if self.args.quiet {
        } else if self.show {
            let _ = self.bars.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// A warning: printed even with --quiet.
    fn warn(&self, line: String) {
        if self.show {
            let _ = self.bars.println(format!("warning: {line}"));
        } else {
            eprintln!("warning: {line}");
        }
    }

    /// Separate one file; `Ok(false)` when skipped because its stems exist.
    fn file(&self, sep: &mut Separator, input: &Path) -> Result<bool> {
        let args = self.args;
        let t0 = Instant::now();
        let paths: Vec<PathBuf> = self
            .selected
            .iter()
            .map(|&i| stem_path(&args.out_dir, self.template, input, self.model_name, &self.all[i], args.format))
            .collect();
        if args.skip_existing && paths.iter().all(|p| p.is_file()) {
            self.say(format!("skipped {} (stems exist)", input.display()));
            return Ok(false);
        }
        let mut reader = AudioReader::open(input)?;
        let rate = reader.sample_rate();
        crate::limits::check_sample_rate(rate).map_err(|m| anyhow::anyhow!("{}: {m}", input.display()))?;
        let bar = self.bars.add(match reader.frames_hint() {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::no_length(),
        });
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {percent}%, {elapsed} (eta {eta})").expect("static template").progress_chars("=> "),
        );
        bar.set_message(input.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
        let mut partial = Partial(Vec::new());
        let mut writers = Vec::with_capacity(paths.len());
        for p in &paths {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create output folder {}", dir.display()))?;
                if self.cleaned.borrow_mut().insert(dir.to_path_buf()) {
                    let removed = remove_stale_partials(dir);
                    if !removed.is_empty() {
                        self.say(format!("removed {} left by interrupted runs in {}", files(removed.len()), dir.display()));
                    }
                }
            }
            let tmp = partial_path(p);
            partial.0.push(tmp.clone());
            writers.push(AudioWriter::create(&tmp, args.format, self.depth, rate, 2)?);
        }
        let mut packet: Vec<Vec<f32>> = Vec::new();
        let stop = self.stop;
        let mut source = |block: &mut [Vec<f32>; 2]| -> Result<bool> {
            if stop.load(Ordering::Relaxed) {
                return Err(Interrupted.into());
            }
            if !reader.next_block(&mut packet)? {
                return Ok(false);
            }
            // Mono is duplicated; more than two channels: the first two (front left, right).
            block[0].clear();
            block[0].extend_from_slice(&packet[0]);
            block[1].clear();
            block[1].extend_from_slice(packet.get(1).unwrap_or(&packet[0]));
            bar.inc(block[0].len() as u64);
            Ok(true)
        };
        let selected = self.selected;
        let mut sink = |stems: &[Vec<f32>]| -> Result<()> {
            for (w, &i) in writers.iter_mut().zip(selected) {
                w.write(&[&stems[2 * i], &stems[2 * i + 1]])?;
            }
            Ok(())
        };
        let settings = StreamSettings { scheme: self.scheme, overlap: self.overlap, batch: args.batch };
        let n = sep.separate_streaming(rate, &settings, &mut source, &mut sink)?;
        bar.finish_and_clear();
        self.bars.remove(&bar);
        for w in sep.drain_events() {
            self.warn(w.to_string());
        }
        if n == 0 {
            bail!("{} contains no audio samples", input.display());
        }
        let mut clipped = vec![];
        for w in writers {
            clipped.push(w.clipped());
            w.finish()?;
        }
        for (tmp, p) in partial.0.iter().zip(&paths) {
            std::fs::rename(tmp, p).with_context(|| format!("cannot move {} to {}", tmp.display(), p.display()))?;
        }
        partial.0.clear();
        for p in &paths {
            self.say(format!("wrote {}", p.display()));
        }
        for (c, p) in clipped.iter().zip(&paths) {
            if c.samples > 0 {
                self.warn(format!(
                    "{}: {} sample{} clipped at full scale (peak {:.3}, {:+.1} dBFS); --bit-depth 32f keeps them",
                    p.display(),
                    c.samples,
                    if c.samples == 1 { "" } else { "s" },
                    c.peak,
                    20.0 * c.peak.log10()
                ));
            }
        }
        let secs = n as f64 / rate as f64;
        let took = t0.elapsed().as_secs_f64();
        self.say(format!("{}: {secs:.1} s of audio in {took:.1} s ({:.2}x real time)", input.display(), secs / took));
        Ok(true)
    }
}

/// Temporary files removed on drop (a failure or Ctrl-C), unless renamed into place.
struct Partial(Vec<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
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
