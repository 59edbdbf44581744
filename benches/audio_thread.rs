//! What the plugin costs the host's audio thread: the release CLAP bundle hosted by clack-host,
//! played in real time (each block handed over no earlier than its audio time, as a DAW's audio
//! callback does) with a fixture model separating on the inference thread. Prints one table:
//! CPU time of the calling thread inside `process` as a share of one core, per-call times, and
//! how much of the run had silent stem outputs (a late result: dropout).
//!
//! ```sh
//! cargo xtask bundle mdx-stems --release
//! cargo bench --bench audio_thread            # -- --secs 20 for a longer run
//! ```
//! Zero allocations on the audio thread are checked by `tests/plugin_clap.rs`
//! (`debug_build_never_allocates_on_the_audio_thread`, `assert_process_allocs`), not here.

#[path = "../tests/clap_host/mod.rs"]
mod clap_host;
#[path = "../tests/plugin_common/mod.rs"]
mod plugin_common;

use clap_host::{Plug, outputs, release_clap};
use plugin_common::{FOUR, TempModel, song};
use serde_json::json;
use std::time::{Duration, Instant};

struct Case {
    rate: u32,
    block: usize,
    /// `None`: no model loaded (the plugin passes the input through).
    model: Option<&'static str>,
    overlap: u32,
}

fn main() {
    let mut secs = 10.0f64;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--secs") {
        secs = args.get(i + 1).and_then(|v| v.parse().ok()).expect("--secs <seconds>");
    }
    let cases = [
        Case { rate: 48000, block: 64, model: Some(FOUR), overlap: 2 },
        Case { rate: 44100, block: 64, model: Some(FOUR), overlap: 2 },
        Case { rate: 48000, block: 512, model: Some(FOUR), overlap: 2 },
        Case { rate: 48000, block: 64, model: None, overlap: 2 },
    ];
    println!("release CLAP bundle {}, {secs} s of audio per case after 3 s of warm-up", release_clap().display());
    println!();
    println!("| host rate | block | model | process calls | audio-thread CPU, % of one core | CPU per call (mean) | wall per call p99 / max | block period | stems silent |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for c in &cases {
        run_case(c, secs);
    }
}

fn run_case(c: &Case, secs: f64) {
    let model = c.model.map(|f| TempModel::new(f, &format!("bench-{}-{}", c.rate, c.block)));
    let mut plug = Plug::load(&release_clap());
    let mut fields = vec![("overlap", json!(c.overlap))];
    if let Some(m) = &model {
        fields.push(("model_path", json!(m.ckpt)));
    }
    plug.set_fields(&fields);
    plug.activate(c.rate as f64, c.block as u32);
    let warm = (3.0 * c.rate as f64) as usize;
    let total = warm + (secs * c.rate as f64) as usize;
    let x = song(c.rate, (total as f32 / c.rate as f32) + 1.0, 5);

    let mut out = outputs();
    let (mut l, mut r) = (vec![0f32; c.block], vec![0f32; c.block]);
    let start = Instant::now();
    let mut pos = 0;
    while pos < total {
        if pos >= warm && plug.process_times.per_call.capacity() == 0 {
            plug.record_calls((total - warm) / c.block + 1);
            out = outputs();
        }
        let n = c.block.min(total - pos);
        l[..n].copy_from_slice(&x[0][pos..pos + n]);
        r[..n].copy_from_slice(&x[1][pos..pos + n]);
        let due = start + Duration::from_secs_f64(pos as f64 / c.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        plug.process([&l[..n], &r[..n]], &mut out);
        pos += n;
    }

    let t = plug.process_times.clone();
    let audio = (total - warm) as f64 / c.rate as f64;
    let mut walls = t.per_call.clone();
    walls.sort();
    let p99 = walls[(walls.len() * 99 / 100).min(walls.len() - 1)];
    // Stem outputs in 50 ms windows: all-zero windows are results that came too late.
    let silent = if c.model.is_some() {
        let win = c.rate as usize / 20;
        let stems = &out[1..5];
        let windows = out[1][0].len() / win;
        let quiet = (0..windows)
            .filter(|w| stems.iter().all(|s| s.iter().all(|ch| ch[w * win..(w + 1) * win].iter().all(|v| *v == 0.0))))
            .count();
        format!("{quiet} of {windows} windows")
    } else {
        "- (no model: pass-through)".into()
    };
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    println!(
        "| {} Hz | {} | {} | {} | {:.3} % | {} | {} / {} | {} | {} |",
        c.rate,
        c.block,
        c.model.map_or_else(|| "none".to_string(), |m| format!("{m}, overlap {}", c.overlap)),
        t.calls,
        100.0 * t.cpu.as_secs_f64() / audio,
        us(t.cpu / t.calls.max(1) as u32),
        us(p99),
        us(t.worst_wall),
        us(Duration::from_secs_f64(c.block as f64 / c.rate as f64)),
        silent,
    );
    drop(plug);
}
