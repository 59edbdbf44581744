//! The plugin live, in a paced CLAP host (clack-host) that plays like an audio device, for each
//! pattern a real host uses: a plain callback (double-buffered device), REAPER's anticipative
//! processing (render-ahead of 200 ms and of 1000 ms, 512-frame calls), a 2048-frame device
//! buffer handed over as four 512-frame calls, and a block size changing on every call. With a
//! model slower than real time (the slow-engine hook, 40 ms per chunk against an 11 ms hop) and
//! with a fast one (the tiny fixture on the CPU):
//! - the simulated device never runs dry: the host always delivers its buffer in time;
//! - the longest `process` call stays within the live bound (docs/realtime.md "Real-time and offline
//!   rendering": a quarter of the host's largest buffer, at most 2 ms) plus room for the
//!   scheduler;
//! - with the fast model the stems after the first chunk are the offline render's (declared):
//!   every sample is that render's or a fade of it towards the dry fallback where a result came
//!   late, and at least 90% are exact (all of them on a quiet machine; the share is printed).
//!
//! Also what a producer does while playing, checked sample by sample: a gain, a mute and a
//! preset changed mid-playback (smoothed, never a step), denormal input on the audio thread
//! (flushed), and Ardour's transport positions (corrected for the plugin's latency, checked
//! against a host of another name that gets no correction).
//!
//! Needs `target/bundled/MDX Stems.clap` (`cargo xtask bundle mdx-stems --release`). Tests that
//! need the slow-engine hook (read from the environment) or another program name run in child
//! processes.

mod clap_host;
mod plugin_common;

use clap_host::{Plug, outputs, release_clap};
use plugin_common::*;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::time::{Duration, Instant};

const RATE: u32 = 44100;
/// Seconds of music per run.
const SECS: f32 = 3.0;
/// Room on top of the plugin's bound for what is not the plugin's waiting: its own work, a
/// sleep's overshoot. Time the host thread spent preempted (waiting on the run queue, as on a
/// loaded 2-core machine) is not the plugin's and is taken out of each call's time.
const SLACK: Duration = Duration::from_millis(5);

/// Time the calling thread has spent runnable but not running (Linux `schedstat`); zero where
/// unknown.
fn runqueue_wait() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// How a host calls the plugin against its device.
struct Pattern {
    name: &'static str,
    /// Frames the device plays per period.
    device: usize,
    /// Seconds the host keeps rendered ahead of the device on top of one device buffer.
    ahead: f64,
    /// The largest call (the host's announced maximum block).
    max_call: usize,
    /// Frames of the next call (random sizes draw from the generator).
    call: fn(&mut rand::rngs::StdRng) -> usize,
}

fn patterns() -> Vec<Pattern> {
    vec![
        Pattern { name: "plain callback, 512 frames", device: 512, ahead: 0.0, max_call: 512, call: |_| 512 },
        Pattern { name: "render-ahead 200 ms, 512-frame calls", device: 512, ahead: 0.2, max_call: 512, call: |_| 512 },
        Pattern { name: "render-ahead 1000 ms, 512-frame calls", device: 512, ahead: 1.0, max_call: 512, call: |_| 512 },
        Pattern { name: "2048-frame device buffer as 512-frame calls", device: 2048, ahead: 0.0, max_call: 512, call: |_| 512 },
        Pattern { name: "block size changing every call", device: 1024, ahead: 0.0, max_call: 1024, call: |r| r.random_range(1..=1024) },
    ]
}

struct LiveRun {
    out: Vec<[Vec<f32>; 2]>,
    /// The slowest `process` call, its time on the clock (preemption included), and the
    /// bound.
    worst: Duration,
    worst_wall: Duration,
    bound: Duration,
    /// Frames the device had to play without audio from the host.
    dry_frames: usize,
}

/// Play `x` (then silence, `total` frames in all) through the device of `p`, in real time.
fn play_device(plug: &mut Plug, x: &[Vec<f32>; 2], total: usize, p: &Pattern) -> LiveRun {
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let period = p.device as f64 / RATE as f64;
    // The device holds one buffer while it plays another (double buffering); the host keeps
    // `ahead` more rendered.
    let target = p.device + (p.ahead * RATE as f64) as usize;
    let get = |c: &Vec<f32>, i: usize| c.get(i).copied().unwrap_or(0.0);
    let (mut l, mut r) = (vec![0f32; p.max_call], vec![0f32; p.max_call]);
    // Room for the whole run: no reallocation inside the timed calls.
    let mut out = outputs();
    for c in out.iter_mut().flatten() {
        c.reserve(total + p.max_call);
    }
    let (mut queued, mut rendered, mut consumed, mut dry_frames) = (0usize, 0usize, 0usize, 0usize);
    let mut ticks = 0u64;
    let (mut worst, mut worst_wall) = (Duration::ZERO, Duration::ZERO);
    let bound = mdx_stems::plugin::pace::live_wait_bound(RATE, p.max_call) + SLACK;
    // The device's clock: the time since the start less the time this thread was preempted (a
    // host's audio thread runs at real-time priority; here compilers may share the 2 cores).
    let (start, rq0) = (Instant::now(), runqueue_wait());
    let clock = || start.elapsed().saturating_sub(runqueue_wait().saturating_sub(rq0));
    // The device plays a period whenever one is due; what is not there is played dry.
    let play_due = |queued: &mut usize, consumed: &mut usize, ticks: &mut u64, dry: &mut usize| {
        let now = clock().as_secs_f64();
        while *consumed < total && (*ticks + 1) as f64 * period <= now {
            let want = p.device.min(total - *consumed);
            if *queued < want {
                *dry += want - *queued;
                *queued = 0;
            } else {
                *queued -= want;
            }
            *consumed += want;
            *ticks += 1;
        }
    };
    while consumed < total {
        play_due(&mut queued, &mut consumed, &mut ticks, &mut dry_frames);
        if rendered < total && queued < target {
            let n = (p.call)(&mut rng).min(total - rendered);
            for i in 0..n {
                l[i] = get(&x[0], rendered + i);
                r[i] = get(&x[1], rendered + i);
            }
            let (t, rq) = (Instant::now(), runqueue_wait());
            plug.process([&l[..n], &r[..n]], &mut out);
            let wall = t.elapsed();
            let own = wall.saturating_sub(runqueue_wait() - rq);
            worst = worst.max(own);
            worst_wall = worst_wall.max(wall);
            // Periods that came due during the call did not have its audio yet.
            play_due(&mut queued, &mut consumed, &mut ticks, &mut dry_frames);
            queued += n;
            rendered += n;
        } else {
            let next = Duration::from_secs_f64((ticks + 1) as f64 * period);
            if let Some(wait) = next.checked_sub(clock()) {
                std::thread::sleep(wait);
            }
        }
    }
    LiveRun { out, worst, worst_wall, bound, dry_frames }
}

/// The bundle: `release_clap()`, or where a copy of this test binary elsewhere is told.
fn bundle() -> std::path::PathBuf {
    std::env::var_os("MDX_STEMS_LIVE_BUNDLE").map(Into::into).unwrap_or_else(release_clap)
}

fn live_plugin(m: &TempModel, max_block: usize, offline: bool) -> Plug {
    let mut plug = Plug::load(&bundle());
    plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(4))]);
    plug.set_offline(offline);
    plug.activate(RATE as f64, max_block as u32);
    plug
}

/// Every pattern with the model as the environment makes it (slow or not); with `fast`, the
/// stems must also equal the declared offline render after the first chunk.
fn child_patterns(fast: bool) {
    let m = TempModel::new(TINY, if fast { "live-fast" } else { "live-slow" });
    let x = song(RATE, SECS, 5);
    let n = x[0].len();
    // The reference: a declared offline render with random blocks up to the same maximum
    // (the latency includes one host buffer).
    let reference = |max_block: usize| {
        let mut plug = live_plugin(&m, max_block, true);
        let lat = plug.latency() as usize;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut out = outputs();
        let mut pos = 0;
        while pos < n + lat {
            let k = rng.random_range(1..=max_block).min(n + lat - pos);
            let get = |c: &Vec<f32>, i: usize| c.get(i).copied().unwrap_or(0.0);
            let l: Vec<f32> = (pos..pos + k).map(|i| get(&x[0], i)).collect();
            let r: Vec<f32> = (pos..pos + k).map(|i| get(&x[1], i)).collect();
            plug.process([&l, &r], &mut out);
            pos += k;
        }
        (out, lat)
    };
    let mut failures = vec![];
    for p in patterns() {
        let mut plug = live_plugin(&m, p.max_call, false);
        let lat = plug.latency() as usize;
        let run = play_device(&mut plug, &x, n + lat, &p);
        drop(plug);
        // After the first chunk (at the model's rate, the same at 44.1 kHz).
        let skip = 1984;
        // With the fast model: every stem sample after the first chunk is the offline render's,
        // or (where a result came late on this shared machine) that sample faded towards the
        // dry fallback's silence; never anything else. The share that is exact is reported
        // and must be at least 90% (100% on a quiet machine).
        let (exact, foreign) = if fast {
            let (want, want_lat) = reference(p.max_call);
            assert_eq!(lat, want_lat, "{}: the latency depends on the block size alone", p.name);
            let (mut exact, mut total, mut foreign) = (0usize, 0usize, 0usize);
            for s in 1..=2 {
                for ch in 0..2 {
                    let got = &run.out[s][ch][lat + skip..lat + n];
                    let want = &want[s][ch][lat + skip..lat + n];
                    for (g, w) in got.iter().zip(want) {
                        total += 1;
                        if (g - w).abs() <= 1e-5 {
                            exact += 1;
                        } else if !(g * w >= 0.0 && g.abs() <= w.abs() + 1e-5) {
                            foreign += 1;
                        }
                    }
                }
            }
            (exact as f64 / total as f64, foreign)
        } else {
            (f64::NAN, 0)
        };
        println!(
            "{:<46} {}: longest call {:.2} ms without preemption, {:.2} ms on the clock (bound {:.2} ms), device dry {:.1} ms, stems equal to the offline render: {:.1}%",
            p.name,
            if fast { "fast model" } else { "slow model" },
            run.worst.as_secs_f64() * 1e3,
            run.worst_wall.as_secs_f64() * 1e3,
            run.bound.as_secs_f64() * 1e3,
            run.dry_frames as f64 * 1e3 / RATE as f64,
            100.0 * exact
        );
        if run.dry_frames > 0 {
            failures.push(format!("{}: the device ran dry for {} frames", p.name, run.dry_frames));
        }
        if run.worst > run.bound {
            failures.push(format!("{}: a process call took {:?} (bound {:?})", p.name, run.worst, run.bound));
        }
        if foreign > 0 {
            failures.push(format!("{}: {foreign} stem samples are neither the offline render's nor a fade of it", p.name));
        }
        if fast && !(exact >= 0.9) {
            failures.push(format!("{}: only {:.1}% of the stems equal the offline render", p.name, 100.0 * exact));
        }
        if !fast {
            // A slow model: the main output is the dry input, delayed by the latency.
            let d = max_diff(&run.out[0][0][lat..lat + n], &x[0]);
            if d > 1e-6 {
                failures.push(format!("{}: with a slow model the main output is not the delayed dry input ({d:e})", p.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const CHILD_ENV: &str = "MDX_STEMS_LIVE_CHILD";

fn run_child(kind: &str, env: &[(&str, &str)]) {
    run_child_exe(&std::env::current_exe().unwrap(), kind, env)
}

/// Run `child_process` of the test binary `exe` (this one, or a copy under another name).
fn run_child_exe(exe: &std::path::Path, kind: &str, env: &[(&str, &str)]) {
    eprintln!("{}", run_child_test(exe, CHILD_ENV, kind, env));
}

/// Both tests measure real time: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn live_hosts_with_a_model_slower_than_real_time_never_stall_the_device() {
    let _serial = serial();
    run_child("slow", &[("MDX_STEMS_TEST_SLOW_MS", "40")]);
}

#[test]
fn live_hosts_with_a_fast_model_get_the_offline_stems_and_never_stall_the_device() {
    let _serial = serial();
    run_child("fast", &[]);
}

/// An offline render of `x` (then the latency's silence) in 512-frame calls, with `at(plug,
/// frame)` called before every call (to queue parameter changes); outputs from the latency on.
fn offline_render(m: &TempModel, x: &[Vec<f32>; 2], mut at: impl FnMut(&mut Plug, usize)) -> Vec<[Vec<f32>; 2]> {
    let mut plug = live_plugin(m, 512, true);
    let lat = plug.latency() as usize;
    let n = x[0].len();
    let mut out = outputs();
    let get = |c: &Vec<f32>, i: usize| c.get(i).copied().unwrap_or(0.0);
    let mut pos = 0;
    while pos < n + lat {
        let k = 512.min(n + lat - pos);
        at(&mut plug, pos);
        let l: Vec<f32> = (pos..pos + k).map(|i| get(&x[0], i)).collect();
        let r: Vec<f32> = (pos..pos + k).map(|i| get(&x[1], i)).collect();
        plug.process([&l, &r], &mut out);
        pos += k;
    }
    out.into_iter().map(|[l, r]| [l[lat..lat + n].to_vec(), r[lat..lat + n].to_vec()]).collect()
}

/// `got / reference` where the reference is loud enough to divide by; `None` elsewhere.
fn gain_curve(got: &[f32], reference: &[f32]) -> Vec<Option<f32>> {
    got.iter().zip(reference).map(|(g, r)| (r.abs() > 0.02).then(|| g / r)).collect()
}

/// The largest change of a gain curve between adjacent samples where both are known.
fn max_gain_step(curve: &[Option<f32>]) -> f32 {
    curve.windows(2).filter_map(|w| Some((w[1]? - w[0]?).abs())).fold(0.0, f32::max)
}

#[test]
fn gain_mute_and_preset_changed_while_playing_ramp_without_a_step() {
    let _serial = serial();
    let m = TempModel::new(TINY, "controls");
    let x = song(RATE, 2.5, 9);
    let reference = offline_render(&m, &x, |_, _| {});
    // While the song plays (the latency has passed): stem 1 muted at 0.6 s, the preset
    // "everything but stem 2" at 1.2 s (nothing is left in the main mix), stem 2's gain to
    // -60 dB at 1.8 s (its own output).
    let lat = live_plugin(&m, 512, true).latency() as usize;
    let at = |secs: f32| (lat + (secs * RATE as f32) as usize) / 512 * 512;
    let (mute_at, preset_at, gain_at) = (at(0.6), at(1.2), at(1.8));
    let changed = offline_render(&m, &x, |plug, pos| {
        for (when, name, value) in [(mute_at, "Stem 1 mute", 1.0), (preset_at, "Preset", 8.0), (gain_at, "Stem 2 gain", 0.0)] {
            if pos == when {
                let id = plug.param_id(name);
                plug.queue_param(id, value);
            }
        }
    });
    // Song positions of the changes (outputs start at the latency).
    let (mute_at, preset_at, gain_at) = (mute_at - lat, preset_at - lat, gain_at - lat);
    let fade = 0.010 * RATE as f32;
    for ch in 0..2 {
        let (voc, inst) = (&reference[1][ch], &reference[2][ch]);
        assert!(max_diff(&changed[0][ch][..mute_at], &reference[0][ch][..mute_at]) == 0.0, "ch {ch}: changed before the mute");
        // The muted stem 1 leaves the main mix (main = w1 * voc + inst) over 10 ms, linearly:
        // a switch would step by 1 at once.
        let w1: Vec<Option<f32>> = (mute_at - 1000..preset_at).map(|t| (voc[t].abs() > 0.02).then(|| (changed[0][ch][t] - inst[t]) / voc[t])).collect();
        let step = max_gain_step(&w1);
        assert!(step <= 1.0 / fade * 1.05 + 1e-3, "ch {ch}: the mute switched with a step of {step} (a 10 ms ramp moves {} a sample)", 1.0 / fade);
        let gone = w1[1000 + 600..].iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
        assert!(gone < 1e-4, "ch {ch}: stem 1 still in the mix after its mute ({gone})");
        // The preset takes stem 2 out as well (main = w2 * inst), over 10 ms.
        let w2: Vec<Option<f32>> = (preset_at - 1000..gain_at).map(|t| (inst[t].abs() > 0.02).then(|| changed[0][ch][t] / inst[t])).collect();
        let step = max_gain_step(&w2);
        assert!(step <= 1.0 / fade * 1.05 + 1e-3, "ch {ch}: the preset switched with a step of {step}");
        assert!(peak(&changed[0][ch][preset_at + 600..]) < 1e-6, "ch {ch}: the main output is not silent with every stem out");
        // Stem 2's own output: its gain glides from 1 to 0.001 in dB over 20 ms (60 dB in 882
        // samples: 0.8% a sample at most); a switch would jump by a factor of 1000.
        let g = gain_curve(&changed[2][ch][gain_at - 1000..], &inst[gain_at - 1000..]);
        assert!(g[..1000].iter().flatten().all(|v| *v == 1.0), "ch {ch}: stem 2 changed before its gain did");
        let log_step = g.windows(2).filter_map(|w| Some((w[1]? / w[0]?).ln().abs())).fold(0.0, f32::max);
        let bound = 60.0 / 20.0 * std::f32::consts::LN_10 / (0.020 * RATE as f32);
        assert!(log_step <= bound * 1.1, "ch {ch}: the gain stepped by {log_step} (log) in one sample; 20 ms in dB is {bound}");
        let end = g[3000..].iter().flatten().fold(0f32, |m, v| m.max((v - 0.001).abs()));
        assert!(end < 1e-5, "ch {ch}: stem 2 did not reach -60 dB ({end})");
        // Stem 1's own output is untouched by its mute.
        assert_eq!(&changed[1][ch], voc, "ch {ch}: the mute changed stem 1's own output");
    }
}

/// Denormal input while a slow model plays the dry fallback: the main output is computed from
/// the input on the host's audio thread (`mix + (1 - wet) * dry`), which flushes denormals, so a
/// subnormal input sample comes out as exactly zero while a normal tiny one comes out as is.
fn child_denormals() {
    let m = TempModel::new(TINY, "denormals");
    let mut plug = live_plugin(&m, 512, false);
    let lat = plug.latency() as usize;
    let n = 22050;
    let tiny_normal = 1e-30f32;
    let subnormal = 1e-39f32;
    assert!(subnormal != 0.0 && subnormal < f32::MIN_POSITIVE);
    let x: Vec<f32> = (0..n).map(|i| if i < n / 2 { tiny_normal } else { subnormal }).collect();
    let x = [x.clone(), x];
    let mut out = outputs();
    let get = |c: &Vec<f32>, i: usize| c.get(i).copied().unwrap_or(0.0);
    for pos in (0..n + lat).step_by(512) {
        let k = 512.min(n + lat - pos);
        let l: Vec<f32> = (pos..pos + k).map(|i| get(&x[0], i)).collect();
        plug.process([&l, &l], &mut out);
    }
    for ch in 0..2 {
        let main = &out[0][ch][lat..lat + n];
        assert!(main[..n / 2].iter().all(|v| *v == tiny_normal), "ch {ch}: the dry path did not play the input");
        assert!(main[n / 2..].iter().all(|v| *v == 0.0), "ch {ch}: a subnormal input came out unflushed");
    }
    println!("denormals: latency {lat}, subnormal input flushed on the audio thread");
}

#[test]
fn denormal_input_is_flushed_on_the_audio_thread() {
    let _serial = serial();
    run_child("denormals", &[("MDX_STEMS_TEST_SLOW_MS", "200")]);
}

/// Ardour reports the position of the plugin's output (the input's position minus the latency).
/// Played from 1.7 s with such positions, a host named like Ardour gets the offline render
/// (anchored at the project start) after one chunk; a host of another name, which takes the
/// positions as they come, gets chunks on a grid shifted by the latency, and differs.
fn child_ardour_positions() {
    let m = TempModel::new(TINY, "ardour-positions");
    let x = song(RATE, 3.0, 21);
    let n = x[0].len();
    let reference = offline_render(&m, &x, |_, _| {});
    let from = (1.7 * RATE as f32) as usize;
    let mut plug = live_plugin(&m, 512, true);
    let lat = plug.latency() as usize;
    plug.transport = Some(from as i64 - lat as i64);
    let mut out = outputs();
    let get = |c: &Vec<f32>, i: usize| c.get(i).copied().unwrap_or(0.0);
    let mut pos = from;
    while pos < n + lat {
        let k = 512.min(n + lat - pos);
        let l: Vec<f32> = (pos..pos + k).map(|i| get(&x[0], i)).collect();
        let r: Vec<f32> = (pos..pos + k).map(|i| get(&x[1], i)).collect();
        plug.process([&l, &r], &mut out);
        pos += k;
    }
    let settle = 2 * 1984 + 1024;
    let d = (1..=2)
        .flat_map(|s| (0..2).map(move |ch| (s, ch)))
        .map(|(s, ch)| max_diff(&out[s][ch][lat + settle..lat + n - from], &reference[s][ch][from + settle..n]))
        .fold(0.0, f32::max);
    let ardour = mdx_stems::plugin::host::reports_output_position(&std::env::current_exe().unwrap().file_name().unwrap().to_string_lossy());
    println!("ardour positions, host named like Ardour: {ardour}: stems vs the offline render {d:.2e}");
    if ardour {
        assert!(d <= 1e-5, "a host named like Ardour: the stems differ from the offline render by {d}");
    } else {
        assert!(d > 1e-3, "without the correction the grid should be off by the latency (difference {d})");
    }
}

#[test]
fn ardour_transport_positions_are_corrected_by_the_latency_for_ardour_alone() {
    let _serial = serial();
    // The same test binary under a name Ardour's Lua session tool has, and under its own.
    let dir = std::env::temp_dir().join(format!("mdx-stems-ardour-name-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ardour_exe = dir.join("luasession-check");
    std::fs::copy(std::env::current_exe().unwrap(), &ardour_exe).unwrap();
    let bundle = release_clap();
    let result = std::panic::catch_unwind(|| {
        run_child_exe(&ardour_exe, "ardour", &[("MDX_STEMS_LIVE_BUNDLE", bundle.to_str().unwrap())]);
        run_child_exe(&std::env::current_exe().unwrap(), "ardour", &[]);
    });
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
#[ignore = "run in a child process by the tests above"]
fn child_process() {
    let Ok(kind) = std::env::var(CHILD_ENV) else { return };
    match kind.as_str() {
        "slow" => child_patterns(false),
        "fast" => child_patterns(true),
        "denormals" => child_denormals(),
        "ardour" => child_ardour_positions(),
        other => panic!("unknown child {other}"),
    }
    println!("CHILD {kind} OK");
}
