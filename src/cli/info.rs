//! `mdx-stems info`: what a model is and what it costs.

use super::InfoArgs;
use crate::nets::{Checkpoint, NetSpec};
use anyhow::Result;
use std::path::PathBuf;

/// `--model` as given: an existing path, a built-in, else a model name (or a unique prefix or
/// part of one) from the list `mdx-stems models` prints.
pub fn resolve_model(arg: &str) -> Result<PathBuf> {
    crate::catalog::resolve_model_arg(arg).map_err(anyhow::Error::msg)
}

/// Limit the engine's CPU threads (0 = all cores).
pub fn apply_threads(n: usize) {
    if n > 0 {
        // Read by rayon and gemm when their pools start; set before any compute.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
}

pub fn run(info: &InfoArgs) -> Result<()> {
    let args = &info.model;
    let model = resolve_model(&args.model)?;
    if let Some(b) = crate::nets::builtin::Builtin::by_name(&model.to_string_lossy()) {
        return builtin(b, info);
    }
    crate::catalog::check_is_checkpoint(&model)?;
    let (net, origin) = crate::catalog::find_config(&model, args.config.as_deref(), crate::catalog::UvrTable::builtin())?;
    let ckpt = Checkpoint::read(&model)?;
    net.check_tensors(&ckpt)?;
    let model_info = net.info();
    let rate = model_info.sample_rate;
    let chunk = model_info.unit_len();
    let macs = net.macs_per_chunk(chunk);
    println!("model        {}", model.display());
    if let Some(name) = model.file_name().and_then(|f| crate::catalog::UvrTable::builtin().display_name(&f.to_string_lossy())) {
        println!("UVR name     {name}");
    }
    println!("config       {origin}");
    println!("stems        {}", model_info.stems.join(", "));
    println!("sample rate  {rate} Hz");
    // The network's own lines (chunk, structure), from its family.
    for (label, text) in net.describe() {
        println!("{label:<13}{text}");
    }
    println!(
        "parameters   {} ({:.1} MB as f32)",
        ckpt.parameter_count(),
        ckpt.parameter_count() as f64 * 4.0 / 1e6
    );
    if let Some(k) = crate::catalog::quality::known(&model) {
        println!("for          {}", k.about);
        let sdr: Vec<String> = k.sdr.iter().map(|(stem, v)| format!("{stem} {v:.2}")).collect();
        let sdr = if sdr.is_empty() { "none".to_string() } else { format!("{} dB", sdr.join(", ")) };
        println!("published    SDR {sdr} ({})", k.source);
    }
    println!("FLOPs/chunk  {} ({} multiply-adds)", si(2.0 * macs as f64, "FLOP"), si(macs as f64, ""));
    println!("default overlap {}", model_info.default_overlap());
    println!("plugin latency with a 512-frame host buffer (C + C/K + 512 at the model's rate), by overlap:");
    for k in [2usize, 4, 8] {
        let needs = si(2.0 * macs as f64 * k as f64 / (chunk as f64 / rate as f64), "FLOP");
        let at = |host: u32| crate::plugin::latency_for(rate, chunk, k, model_info.stems.len(), host, 512).unwrap_or(0);
        let (l44, l48) = (at(rate), at(48000));
        println!(
            "  overlap {k}: {l44} samples = {:.1} ms at {} Hz, {l48} samples = {:.1} ms at 48000 Hz; needs {} per second of audio",
            1000.0 * l44 as f64 / rate as f64,
            rate,
            1000.0 * l48 as f64 / 48000.0,
            needs
        );
    }
    // Metal runs the generic backend (candle's own ops) in f16: what that holds on the GPU.
    let mb = |b: u64| b as f64 / 1e6;
    for batch in [1usize, 4] {
        let Some(g) = net.generic_memory(chunk, batch, 2) else { break };
        println!(
            "Metal, f16, batch {batch}: expected at most {:.0} MB of GPU memory (weights {:.0} MB, activations at the peak {:.0} MB, 3x3 convolution temporaries {:.0} MB; untested on a Mac)",
            mb(g.total()),
            mb(g.weights),
            mb(g.activations),
            mb(g.conv_temporaries)
        );
    }
    if let Some(rss) = crate::memory::peak_rss_bytes() {
        println!("peak RSS     {:.0} MB (reading and checking the model)", rss as f64 / 1e6);
    }
    if info.live {
        live(info, &model, &*net)?;
    }
    Ok(())
}

/// `info` of a built-in separator: what it does, its stems, its block and latency.
fn builtin(b: crate::nets::builtin::Builtin, info: &InfoArgs) -> Result<()> {
    if info.model.config.is_some() {
        eprintln!("warning: {} has no config: --config is ignored", b.name());
    }
    let (block, latency) = b.block_and_latency();
    println!("model        {} (built in, no file)", b.name());
    println!("does         {}", b.summary());
    println!("stems        {} (they add up to the input)", b.stems().join(", "));
    println!("sample rate  any: runs at the input's own rate (no resampling)");
    println!("processing   streamed in blocks of {block} samples on the CPU; no chunks, overlap or precision to set");
    println!(
        "plugin latency {latency} samples = {:.1} ms at 44100 Hz, {:.1} ms at 48000 Hz (the CLI's stems are aligned with the input)",
        1000.0 * latency as f64 / 44100.0,
        1000.0 * latency as f64 / 48000.0
    );
    if info.live {
        println!("live         --live times networks; a built-in streams block by block (tests/builtins.rs measures its cost)");
    }
    Ok(())
}

/// `--live`: time the model's own chunk here, with the plugin's thread count, and print the
/// plugin's live table ([`crate::plugin::budget`]).
fn live(info: &InfoArgs, model: &std::path::Path, net: &dyn NetSpec) -> Result<()> {
    use crate::engine::{LoadOptions, Separator};
    use crate::options::EngineOptions;
    use crate::plugin::budget::{self, Measured, SegmentCost};
    let threads = crate::plugin::plugin_threads(info.threads as u32);
    let options = EngineOptions {
        device: info.device,
        precision: info.precision,
        threads,
        warmup: true,
        ..EngineOptions::from_env()
    };
    let load = LoadOptions { model: model.to_path_buf(), config: info.model.config.clone(), segment: None, sample_rate: None, options };
    let mut sep = Separator::load(&load)?;
    let c = sep.chunk_len();
    // Any music-like signal: the time does not depend on the values (denormals aside).
    let input: Vec<f32> = (0..2 * c).map(|i| 0.3 * ((i as f32 * 0.0137).sin() + (i as f32 * 0.00071).cos())).collect();
    let mut out = vec![0f32; sep.num_stems() * 2 * c];
    let mut times = vec![];
    for _ in 0..2 {
        let t0 = std::time::Instant::now();
        sep.process_chunks(&input, 1, &mut out)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let secs = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let model_info = net.info();
    let default = net.segments().default;
    let mut costs = SegmentCost::table(net, default, c);
    // Printed from the largest segment down, the measured one first.
    let at = costs.remove(costs.iter().position(|s| s.segment == default).expect("the running segment is in the table"));
    costs.push(at.clone());
    let m = Measured { secs, at: &at, rate: model_info.sample_rate };
    println!(
        "live         {} per chunk of {:.2} s on {}, {}, CPU threads: {threads} (as the plugin); percent of real time per setting (live: at most {:.0}%, marked *):",
        budget::secs_text(secs),
        c as f64 / model_info.sample_rate as f64,
        sep.device_name(),
        sep.precision().name(),
        100.0 * budget::LIVE_LOAD
    );
    print!("  segment ");
    for k in budget::OVERLAPS {
        print!("{:>12}", format!("overlap {k}"));
    }
    println!();
    for s in costs.iter().rev() {
        print!("  {:>7} ", s.segment);
        for k in budget::OVERLAPS {
            let load = m.load(s, k);
            let mark = if load <= budget::LIVE_LOAD { "*" } else { " " };
            print!("{:>12}", format!("{:.0}%{mark}", 100.0 * load));
        }
        println!();
    }
    println!("  {}", budget::summary(&m, model_info.default_overlap(), &costs));
    Ok(())
}

/// `1.23 G<unit>` style: the largest of T, G, M, k that keeps the number at least 1.
fn si(v: f64, unit: &str) -> String {
    for (scale, prefix) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if v >= scale {
            return format!("{:.2} {prefix}{unit}", v / scale);
        }
    }
    format!("{v:.0} {unit}").trim_end().to_string()
}
