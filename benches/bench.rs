//! Benchmark of the separation engine on any family's network with seeded random weights
//! ([`NetSpec::random`]): by default the full-size MDX23C InstVoc HQ network (the config UVR
//! ships as `model_2_stem_full_band_8k.yaml`), else `--config`'s.
//!
//! ```text
//! cargo run --release --bin bench -- [--device cpu|cuda|metal] [--precision f32|f16|bf16]
//!     [--batch N] [--repeats N] [--warmup N] [--threads N] [--config YAML] [--torch]
//!     [--compile] [--msst DIR]
//! ```
//!
//! Prints one Markdown table row per run: device, precision, batch, milliseconds per chunk
//! (median and best of `--repeats` after `--warmup`), the real-time factor at overlap 2/4/8
//! (seconds of audio separated per second of compute with UVR's scheme, which runs
//! `overlap` chunks per chunk length of audio) and peak memory. With `--torch`, the PyTorch
//! baseline in `benches/torch/` runs the same config, batch, threads and precision in the same
//! invocation, and the ratio of the two medians is printed: `bench_torch.py` (this project's
//! port of TFC-TDF v3) for MDX23C, `bench_msst.py` (MSST's own model code, from `--msst` or
//! `$MDX_STEMS_MSST`) for RoFormers. This is a benchmark, not a test.

use clap::Parser;
use mdx_stems::device::{self, DeviceRequest, Precision};
use mdx_stems::engine::{Separator, StageTimes};
use mdx_stems::memory;
use mdx_stems::nets::checkpoint::SplitMix64;
use mdx_stems::nets::{self, NetSpec, Schedule};
use mdx_stems::options::{EngineOptions, OpProfiler, OpTime};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The full-size InstVoc HQ config (UVR's `model_2_stem_full_band_8k.yaml`).
const FULL_CONFIG: &str = include_str!("../assets/uvr-mdxc/model_2_stem_full_band_8k.yaml");

#[derive(Parser, Debug)]
#[command(about = "Time the engine on a network with random weights (default: full-size MDX23C InstVoc HQ)")]
struct Args {
    #[arg(long, value_enum, default_value_t = DeviceRequest::Cpu)]
    device: DeviceRequest,
    /// Default: f32 on the CPU, f16 on GPUs.
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Chunks per network call.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Untimed runs before timing (after the load-time warm-up).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// CPU threads for the engine (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Another config (any family's) to time instead of the full-size MDX23C one.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also run the PyTorch baseline in this invocation (`benches/torch/bench_torch.py` for
    /// MDX23C, `bench_msst.py` with MSST's model code for other families).
    #[arg(long)]
    torch: bool,
    /// With `--torch`: also time the baseline wrapped in `torch.compile`, as its own row.
    #[arg(long)]
    compile: bool,
    /// With `--torch` on a RoFormer config: a checkout of ZFTurbo's
    /// Music-Source-Separation-Training, whose model code is timed (default: `$MDX_STEMS_MSST`).
    #[arg(long)]
    msst: Option<PathBuf>,
    /// Python interpreter with torch installed (for `--torch`).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Print per-stage timings of the timed runs.
    #[arg(long)]
    profile: bool,
    /// Print per-op timings of the timed runs (wall and CPU time per op kind and shape; each op
    /// synchronises the device; slower, for diagnosis only).
    #[arg(long)]
    ops: bool,
    /// With `--precision f32` on CUDA: let convolutions and matmuls use TF32 tensor cores
    /// (as PyTorch does for convolutions by default). Reported as precision `tf32`.
    #[arg(long)]
    tf32: bool,
}

struct Row {
    engine: String,
    device: String,
    precision: String,
    batch: usize,
    ms_median: f64,
    ms_best: f64,
    peak_rss_mb: Option<f64>,
    gpu_mb: Option<f64>,
    /// Process CPU time (all threads) per chunk, median of the timed runs.
    cpu_ms_median: Option<f64>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    mdx_stems::cli::info::apply_threads(args.threads);
    let net = match &args.config {
        Some(p) => nets::from_yaml_file(p)?,
        None => nets::from_yaml_str(FULL_CONFIG)?,
    };
    let info = net.info();
    let Schedule::Chunks { chunk, .. } = info.schedule else {
        anyhow::bail!("{} is a streaming network: this benchmark times chunked ones", net.family())
    };
    let chunk_secs = chunk as f64 / info.sample_rate as f64;
    let macs = net.macs_per_chunk(chunk);
    eprintln!(
        "config: {}, {} parameters, chunk {chunk} samples ({chunk_secs:.2} s), {:.2} TFLOP per chunk",
        net.family(),
        net.parameter_count(),
        2.0 * macs as f64 / 1e12
    );

    let mut options = EngineOptions { device: args.device, precision: args.precision, warmup: true, threads: args.threads, ..EngineOptions::from_env() };
    if args.tf32 {
        options.cuda.tf32 = true;
    }
    let profiler = args.ops.then(OpProfiler::default);
    options.op_profiler = profiler.clone();
    let t = Instant::now();
    let mut sep = Separator::new(net.random(0)?, &options)?;
    for w in sep.drain_events() {
        eprintln!("warning: {w}");
    }
    eprintln!("loaded and warmed up on {} ({}) in {:.1} s", sep.device_name(), sep.precision().name(), t.elapsed().as_secs_f64());

    let b = args.batch.max(1);
    let mut rng = SplitMix64(1);
    let input: Vec<f32> = (0..b * 2 * chunk).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
    let mut out = vec![0f32; b * sep.num_stems() * 2 * chunk];
    for _ in 0..args.warmup {
        sep.process_chunks(&input, b, &mut out)?;
    }
    if args.profile {
        sep.profile = Some(StageTimes::default());
    }
    if let Some(p) = &profiler {
        p.start();
    }
    memory::reset_gpu_peak_memory(sep.device());
    let mut times = vec![];
    let mut cpu_times = vec![];
    for i in 0..args.repeats.max(1) {
        let (t, c) = (Instant::now(), process_cpu_ms());
        sep.process_chunks(&input, b, &mut out)?;
        device::synchronize(sep.device());
        let ms = t.elapsed().as_secs_f64() * 1e3 / b as f64;
        let cpu = (process_cpu_ms() - c) / b as f64;
        eprintln!("run {}: {ms:.1} ms per chunk ({cpu:.0} ms CPU time)", i + 1);
        times.push(ms);
        cpu_times.push(cpu);
    }
    cpu_times.sort_by(f64::total_cmp);
    anyhow::ensure!(out.iter().all(|v| v.is_finite()), "the engine produced non-finite output");
    times.sort_by(f64::total_cmp);
    let mut rows = vec![Row {
        engine: format!("mdx-stems ({})", sep.backend_name()),
        device: sep.device_name().to_string(),
        precision: if args.tf32 && sep.precision() == Precision::F32 { "tf32".into() } else { sep.precision().name().into() },
        batch: b,
        ms_median: times[times.len() / 2],
        ms_best: times[0],
        peak_rss_mb: memory::peak_rss_bytes().map(|v| v as f64 / 1e6),
        gpu_mb: memory::gpu_peak_memory(sep.device()).or_else(|| memory::gpu_memory_used(sep.device())).map(|v| v as f64 / 1e6),
        cpu_ms_median: Some(cpu_times[cpu_times.len() / 2]),
    }];
    if let Some(p) = sep.profile {
        print_profile(&p);
    }
    if let Some(p) = &profiler {
        let threads = if sep.device().is_cpu() { sep.threads() } else { 1 };
        print_ops(&p.take_all(), args.repeats.max(1) * b, times.iter().sum::<f64>() / times.len() as f64, threads);
    }
    drop(sep);

    if args.torch {
        rows.push(run_torch(&args, net.as_ref(), b, false)?);
        if args.compile {
            rows.push(run_torch(&args, net.as_ref(), b, true)?);
        }
    }

    println!("| engine | device | precision | batch | ms per chunk (median) | best | x real time at overlap 2 / 4 / 8 | peak RSS | GPU memory (peak) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        let rt = |k: f64| chunk_secs / (r.ms_median / 1e3 * k);
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.2} / {:.2} / {:.2} | {} | {} |",
            r.engine,
            r.device,
            r.precision,
            r.batch,
            r.ms_median,
            r.ms_best,
            rt(2.0),
            rt(4.0),
            rt(8.0),
            r.peak_rss_mb.map_or("-".into(), |m| format!("{m:.0} MB")),
            r.gpu_mb.map_or("-".into(), |m| format!("{m:.0} MB")),
        );
    }
    if rows.len() >= 2 {
        println!();
        for r in &rows[1..] {
            println!("mdx-stems / {} time ratio (medians, same run): {:.2}", r.engine, rows[0].ms_median / r.ms_median);
        }
        // On a GPU the host thread mostly waits for the device: CPU time says nothing there.
        if let (true, Some(a), Some(b)) = (rows[0].device == "CPU", rows[0].cpu_ms_median, rows[1].cpu_ms_median) {
            println!(
                "CPU time per chunk (all threads; steadier than wall time on a shared machine): mdx-stems {:.1} s, PyTorch {:.1} s, ratio {:.2}",
                a / 1e3,
                b / 1e3,
                a / b
            );
        }
    }
    Ok(())
}

/// The PyTorch baseline, same config/batch/threads/precision, in a child process; `compile`:
/// wrapped in `torch.compile`. MDX23C runs this project's port (`bench_torch.py`), any other
/// family MSST's own model code (`bench_msst.py`).
fn run_torch(args: &Args, net: &dyn NetSpec, batch: usize, compile: bool) -> anyhow::Result<Row> {
    let msst = !net.family().starts_with("MDX23C");
    let name = if msst { "benches/torch/bench_msst.py" } else { "benches/torch/bench_torch.py" };
    // The source tree this was built from, else the working directory (a binary copied to
    // another machine runs from a checkout there).
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name);
    let script = if built.exists() { built } else { PathBuf::from(name) };
    let device = match args.device {
        DeviceRequest::Cuda => "cuda",
        _ => "cpu",
    };
    let precision = args.precision.unwrap_or(if device == "cpu" { Precision::F32 } else { Precision::F16 });
    let threads = if args.threads > 0 {
        args.threads
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    };
    let mut cmd = Command::new(&args.python);
    cmd.arg(&script);
    if !msst {
        cmd.arg("--full");
    }
    cmd.args(["--device", device, "--dtype", precision.name()])
        .args(["--batch", &batch.to_string(), "--threads", &threads.to_string()])
        .args(["--repeats", &args.repeats.max(1).to_string(), "--warmup", &(args.warmup + 1).to_string()]);
    if let Some(c) = &args.config {
        cmd.arg("--config").arg(c);
    }
    if compile {
        cmd.arg("--compile");
    }
    if msst {
        let dir = args.msst.clone().or_else(|| std::env::var_os("MDX_STEMS_MSST").map(PathBuf::from)).ok_or_else(|| {
            anyhow::anyhow!("--torch on a {} config times MSST's model code: pass --msst DIR (a checkout of Music-Source-Separation-Training) or set MDX_STEMS_MSST", net.family())
        })?;
        cmd.arg("--msst").arg(dir);
    }
    // PyTorch wheels bring their own CUDA libraries; a library path set up for our binary (an
    // older system cuDNN, say) must not replace them.
    if let Some(v) = std::env::var_os("MDX_BENCH_TORCH_LD_LIBRARY_PATH") {
        cmd.env("LD_LIBRARY_PATH", v);
    }
    eprintln!("running the PyTorch baseline: {cmd:?}");
    let out = cmd.stderr(std::process::Stdio::inherit()).output()?;
    anyhow::ensure!(out.status.success(), "the PyTorch baseline failed ({})", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| anyhow::anyhow!("cannot read the baseline's JSON line ({e}): {text}"))?;
    let num = |k: &str| v[k].as_f64();
    Ok(Row {
        engine: format!(
            "{}PyTorch {}{}",
            if msst { "MSST " } else { "" },
            v["torch"].as_str().unwrap_or("?"),
            if compile { " torch.compile" } else if device == "cuda" { " eager" } else { "" }
        ),
        device: if device == "cuda" { "CUDA:0".into() } else { "CPU".into() },
        precision: precision.name().into(),
        batch,
        ms_median: num("ms_per_chunk_median").unwrap_or(f64::NAN),
        ms_best: num("ms_per_chunk_best").unwrap_or(f64::NAN),
        peak_rss_mb: num("peak_rss_mb"),
        gpu_mb: num("gpu_peak_mb"),
        cpu_ms_median: num("cpu_ms_per_chunk_median"),
    })
}

/// CPU time of this process (all threads) in ms ([`memory::process_cpu_time`]; 0 where unknown).
fn process_cpu_ms() -> f64 {
    memory::process_cpu_time().map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// The per-op table of `--ops`: per chunk, heaviest first; "parallel" is CPU time / (wall x
/// threads), 100% when every thread worked for the whole op.
fn print_ops(ops: &[(String, OpTime)], chunks: usize, ms_per_chunk: f64, threads: usize) {
    let mut rows: Vec<_> = ops.iter().collect();
    rows.sort_by(|a, b| b.1.wall.cmp(&a.1.wall));
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e3 / chunks as f64;
    let total: f64 = rows.iter().map(|(_, t)| per(t.wall)).sum();
    eprintln!("| op and input shape | calls per chunk | ms per chunk | share | CPU ms per chunk | parallel |");
    eprintln!("| --- | --- | --- | --- | --- | --- |");
    for (name, t) in rows {
        let (wall, cpu) = (per(t.wall), per(t.cpu));
        let par = if wall > 0.0 && cpu > 0.0 { format!("{:.0}%", 100.0 * cpu / (wall * threads as f64)) } else { "-".into() };
        eprintln!("| {} | {} | {wall:.1} | {:.1}% | {cpu:.1} | {par} |", name.trim_end(), t.calls / chunks, 100.0 * wall / ms_per_chunk);
    }
    eprintln!("ops total {total:.1} ms of {ms_per_chunk:.1} ms per chunk (the rest: STFT, iSTFT, copies between ops)");
}

fn print_profile(p: &StageTimes) {
    let rows = [("STFT", p.stft), ("upload", p.upload), ("network", p.network), ("download", p.download), ("iSTFT", p.istft)];
    eprintln!("stage      ms per chunk   ({} chunks)", p.chunks);
    for (name, d) in rows {
        eprintln!("{name:<10} {:>12.2}", d.as_secs_f64() * 1e3 / p.chunks.max(1) as f64);
    }
}
