//! The audio side and the inference thread together, with a stand-in engine (no model,
//! no host): offline exactness with resampling and random block sizes, the real-time dry
//! fallback and its crossfades, measured renders, and timeline anchoring.
use super::*;
use crate::dsp::overlap::{self, OverlapParams, Scheme};
use crate::plugin::worker::{ChunkEngine, EngineSource, WorkerHandle, WorkerOptions, link};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Output depends on the position in the chunk, so misaligned chunks would show.
struct Fake {
    c: usize,
    stems: usize,
    delay: Duration,
    /// Only the first `slow_chunks` chunks take `delay` (all when `None`)...
    slow_chunks: Option<usize>,
    /// ...and the first `fast_chunks` take no time at all.
    fast_chunks: usize,
    done: usize,
}

fn fake_chunk(c: usize, stems: usize, input: &[f32], out: &mut [f32]) {
    for s in 0..stems {
        for ch in 0..2 {
            for t in 0..c {
                out[(s * 2 + ch) * c + t] = (s + 1) as f32 * input[ch * c + t] * (1.0 + t as f32 / c as f32) / (stems * 2) as f32;
            }
        }
    }
}

impl ChunkEngine for Fake {
    fn process(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), String> {
        if self.done >= self.fast_chunks && self.slow_chunks.is_none_or(|n| self.done < n) {
            std::thread::sleep(self.delay);
        }
        self.done += 1;
        fake_chunk(self.c, self.stems, input, out);
        Ok(())
    }
    fn chunk_len(&self) -> usize {
        self.c
    }
    fn num_stems(&self) -> usize {
        self.stems
    }
    fn describe(&self) -> String {
        "fake".into()
    }
}

fn signal(n: usize) -> [Vec<f32>; 2] {
    let f = |k: f32| (0..n).map(|i| 0.4 * (i as f32 * k).sin() + 0.2 * ((i * 7919 % 1000) as f32 / 1000.0 - 0.5)).collect();
    [f(0.011), f(0.017)]
}

/// How `run` paces the host.
#[derive(Clone, Copy, PartialEq)]
enum Host {
    /// Declares an offline render (`ProcessMode::Offline`).
    Offline,
    /// Real time, each block handed over at its audio time.
    Paced,
    /// Says real time but calls as fast as it can (an undeclared render).
    Fast,
}

struct Run {
    out: Vec<[Vec<f32>; 2]>,
    worst: Duration,
    shared: Arc<Shared>,
}

/// Run `x` (then silence) through an activated audio side + worker; `out` is [port][ch].
fn run(plan: &StreamPlan, host: Host, engine: impl ChunkEngine + 'static, x: &[Vec<f32>; 2], seed: u64, complement: bool) -> Run {
    let names = Arc::new(RwLock::new(vec![]));
    let params = MdxParams::new(names.clone());
    for sp in &params.stems {
        // What the host wrapper does on activation.
        sp.gain.smoothed.reset(sp.gain.value());
    }
    let shared = Arc::new(Shared::new(names));
    let (a, w) = link(plan);
    let worker = WorkerHandle::spawn(
        plan.clone(),
        EngineSource::Ready(Box::new(engine)),
        shared.clone(),
        w,
        WorkerOptions { realtime: host != Host::Offline, slow: Duration::ZERO, slow_chunks: None },
    )
    .unwrap();
    let declared = if host == Host::Offline { Declared::Offline } else { Declared::Realtime };
    let opts = AudioOptions { declared, complement, watchdog: Duration::from_secs(20), position_offset: 0 };
    let mut side = AudioSide::new(plan, a, shared.clone(), opts, worker.waker());
    let total = x[0].len() + plan.latency_samples();
    let mut out: Vec<[Vec<f32>; 2]> = (0..1 + MAX_STEMS).map(|_| [vec![0.0; total], vec![0.0; total]]).collect();
    let mut state = seed;
    let mut pos = 0;
    let mut worst = Duration::ZERO;
    let start = Instant::now();
    while pos < total {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let n = (1 + (state >> 33) as usize % plan.max_block).min(total - pos);
        if host == Host::Paced {
            let due = start + Duration::from_secs_f64(pos as f64 / plan.host_rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let (main_out, aux_out) = out.split_at_mut(1);
        let [l, r] = &mut main_out[0];
        for (i, v) in l[pos..pos + n].iter_mut().enumerate() {
            *v = x[0].get(pos + i).copied().unwrap_or(0.0);
        }
        for (i, v) in r[pos..pos + n].iter_mut().enumerate() {
            *v = x[1].get(pos + i).copied().unwrap_or(0.0);
        }
        let mut main: [&mut [f32]; 2] = [&mut l[pos..pos + n], &mut r[pos..pos + n]];
        let mut chans: Vec<[&mut [f32]; 2]> =
            aux_out.iter_mut().map(|[a, b]| [&mut a[pos..pos + n], &mut b[pos..pos + n]]).collect();
        let mut ports: Vec<Option<&mut [&mut [f32]]>> = chans.iter_mut().map(|c| Some(&mut c[..])).collect();
        let t = Instant::now();
        side.process(&mut main, &mut ports, &params, Position::default());
        worst = worst.max(t.elapsed());
        pos += n;
    }
    drop(side);
    drop(worker);
    Run { out, worst, shared }
}

fn fake(plan: &StreamPlan, delay: Duration) -> Fake {
    Fake { c: plan.chunk, stems: plan.stems, delay, slow_chunks: None, fast_chunks: 0, done: 0 }
}

/// The CLI's path for the fake engine: resample, UVR overlap-add, resample back.
fn whole_signal(plan: &StreamPlan, x: &[Vec<f32>; 2]) -> Vec<Vec<Vec<f32>>> {
    let (c, stems, host) = (plan.chunk, plan.stems, plan.host_rate);
    let mix = crate::audio::resample(x, host, plan.model_rate).unwrap();
    let p = OverlapParams { chunk: c, overlap: plan.overlap, stems, batch: 1 };
    let mut runner = |i: &[f32], m: usize, o: &mut [f32]| -> Result<(), ()> {
        for j in 0..m {
            fake_chunk(c, stems, &i[j * 2 * c..(j + 1) * 2 * c], &mut o[j * stems * 2 * c..(j + 1) * stems * 2 * c]);
        }
        Ok(())
    };
    let want = overlap::separate(Scheme::Uvr, &p, &mix, &mut runner, &mut |_, _| {}).unwrap();
    want.iter().map(|s| crate::audio::resample(s, plan.model_rate, host).unwrap()).collect()
}

fn check_equals_whole_signal(plan: &StreamPlan, r: &Run, x: &[Vec<f32>; 2], what: &str) {
    check_equals_whole_signal_from(plan, r, x, 0, what)
}

/// The stems from song frame `from` on (and the main output) equal the whole-signal pipeline's.
fn check_equals_whole_signal_from(plan: &StreamPlan, r: &Run, x: &[Vec<f32>; 2], from: usize, what: &str) {
    let (lat, n, stems) = (plan.latency_samples(), x[0].len(), plan.stems);
    let want = whole_signal(plan, x);
    let cmp = n - 3000; // the CLI cuts at the song's end before resampling back
    for s in 0..stems {
        for ch in 0..2 {
            let got = &r.out[1 + s][ch][lat + from..lat + cmp];
            let want = &want[s][ch][from..cmp];
            let e = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            let first = got.iter().zip(want).position(|(a, b)| (a - b).abs() >= 1e-5).map(|i| from + i);
            assert!(e < 1e-5, "{what}: stem {s} ch {ch}: {e}, first at {first:?} of {cmp}");
        }
    }
    for ch in 0..2 {
        let sum: Vec<f32> = (from..cmp).map(|t| (0..stems).map(|s| r.out[1 + s][ch][lat + t]).sum()).collect();
        let e = r.out[0][ch][lat + from..lat + cmp].iter().zip(&sum).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(e < 1e-5, "{what}: main ch {ch}: {e}");
        for port in &r.out[1 + stems..] {
            assert!(port[ch].iter().all(|v| *v == 0.0));
        }
    }
}

#[test]
fn offline_output_equals_the_whole_signal_pipeline_after_the_latency() {
    for (host, k, max_block) in [(44100u32, 4usize, 700usize), (48000, 2, 4096), (96000, 4, 64)] {
        let plan = StreamPlan::new(host, 44100, 1984, k, 3, max_block, 0).unwrap();
        let x = signal(host as usize / 2);
        let r = run(&plan, Host::Offline, fake(&plan, Duration::ZERO), &x, host as u64, false);
        check_equals_whole_signal(&plan, &r, &x, &format!("{host} Hz offline"));
    }
}

#[test]
fn an_undeclared_render_with_a_slow_engine_still_equals_the_whole_signal_pipeline() {
    // The host says "real time" but calls as fast as it can. The first 3.2 s of chunks are
    // instant; the render is proven after about 2 s of audio (before that the live rule's
    // short waits keep the results as far as this busy machine's scheduling lets the worker
    // keep up: the plugin tests check it in a quiet process). After that every chunk takes
    // 25 ms, far slower than the 11 ms hop: only waiting for every result gives the stems.
    for host in [44100u32, 48000] {
        let plan = StreamPlan::new(host, 44100, 1984, 4, 2, 512, 0).unwrap();
        let x = signal(host as usize * 9 / 2);
        let engine = Fake { fast_chunks: 290, ..fake(&plan, Duration::from_millis(25)) };
        let r = run(&plan, Host::Fast, engine, &x, 3, false);
        assert!(r.shared.rendering.load(Ordering::Relaxed), "the render was not recognised");
        let proven = (3.3 * host as f64) as usize;
        check_equals_whole_signal_from(&plan, &r, &x, proven, &format!("{host} Hz undeclared render"));
    }
}

#[test]
fn realtime_with_a_slow_engine_plays_the_delayed_dry_signal_and_never_waits() {
    // 60 ms per chunk; a hop is 496 samples = 11 ms: every answer is late.
    let plan = StreamPlan::new(44100, 44100, 1984, 4, 2, 256, 0).unwrap();
    let lat = plan.latency_samples();
    let x = signal(22050);
    let r = run(&plan, Host::Paced, fake(&plan, Duration::from_millis(60)), &x, 5, false);
    // The live bound (at most 2 ms) plus room for the scheduler of a loaded 2-core machine.
    let bound = crate::plugin::pace::live_wait_bound(44100, plan.max_block) + Duration::from_millis(10);
    assert!(r.worst < bound, "process took {:?} (waiting for the engine would take 60 ms)", r.worst);
    for ch in 0..2 {
        assert_eq!(&r.out[0][ch][lat..lat + x[0].len()], &x[ch][..]);
        assert!(r.out[1][ch].iter().chain(&r.out[2][ch]).all(|v| *v == 0.0));
    }
}

/// Largest sample-to-sample step of `a`.
fn max_step(a: &[f32]) -> f32 {
    a.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max)
}

#[test]
fn recovering_from_slow_chunks_never_plays_silence_and_every_switch_is_a_crossfade() {
    // The first 6 chunks take 150 ms (a hop is 11 ms), the rest are instant.
    let plan = StreamPlan::new(44100, 44100, 1984, 4, 2, 128, 0).unwrap();
    let lat = plan.latency_samples();
    let x = signal(44100 * 2);
    let engine = Fake { slow_chunks: Some(6), ..fake(&plan, Duration::from_millis(150)) };
    let r = run(&plan, Host::Paced, engine, &x, 11, false);
    let n = x[0].len();
    let main = &r.out[0];
    // Never exact silence where the (delayed) input plays: 32-sample windows.
    for ch in 0..2 {
        for w in (lat..lat + n - 32).step_by(32) {
            let input_peak = x[ch][w - lat..w - lat + 32].iter().fold(0f32, |m, v| m.max(v.abs()));
            let out_peak = main[ch][w..w + 32].iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(input_peak < 0.01 || out_peak > 0.0, "silence at {w} (ch {ch}) while the input plays");
        }
    }
    // Both the dry input and the separated mix move by at most `s` per sample; a 10 ms
    // crossfade between two signals within `peak` of each other adds at most
    // 2 * peak / fade frames per sample.
    let fade = (FADE_SECONDS * 44100.0) as f32;
    let peak = x.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let wet_sum: Vec<f32> = (0..main[0].len()).map(|t| r.out[1][0][t] + r.out[2][0][t]).collect();
    let bound = max_step(&x[0]).max(max_step(&wet_sum[lat..])) + 2.0 * 2.0 * peak / fade;
    let step = max_step(&main[0][lat..lat + n]);
    assert!(step <= bound, "largest step {step} > bound {bound}");
    assert!(r.shared.dropouts.load(Ordering::Relaxed) > 0, "the slow chunks caused no dry fallback: the test proves nothing");
    // The stems are back by the end.
    let tail = lat + n - 4000..lat + n - 1000;
    assert!(r.out[1][0][tail].iter().any(|v| *v != 0.0), "the stems never came back");
}

/// A two-stem stand-in engine whose chunks a closure computes: `chunk(k, input, out)` writes
/// the stems of the `k`-th chunk computed (from 0) and may return a warning, which the engine
/// then reports as a real one does after a GPU fallback ([`ChunkEngine::take_warnings`]).
struct Scripted<F> {
    c: usize,
    name: &'static str,
    chunk: F,
    done: usize,
    warnings: Vec<String>,
}

fn scripted<F>(plan: &StreamPlan, name: &'static str, chunk: F) -> Scripted<F>
where
    F: FnMut(usize, &[f32], &mut [f32]) -> Option<String> + Send,
{
    assert_eq!(plan.stems, 2, "a scripted engine has two stems");
    Scripted { c: plan.chunk, name, chunk, done: 0, warnings: vec![] }
}

impl<F: FnMut(usize, &[f32], &mut [f32]) -> Option<String> + Send> ChunkEngine for Scripted<F> {
    fn process(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), String> {
        self.warnings.extend((self.chunk)(self.done, input, out));
        self.done += 1;
        Ok(())
    }
    fn chunk_len(&self) -> usize {
        self.c
    }
    fn num_stems(&self) -> usize {
        2
    }
    fn describe(&self) -> String {
        self.name.into()
    }
    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}

#[test]
fn every_switch_between_stems_and_dry_is_a_linear_10_ms_crossfade() {
    // DC 0.5 in: dry plays 0.5 and the stems' mix 1.0. Chunks 40..46 take 150 ms (a hop is
    // 11 ms): stems, then dry, then stems again. A hard switch is a step of 0.5; the fade
    // moves by 0.5 / (10 ms of samples) per sample.
    let plan = StreamPlan::new(44100, 44100, 1984, 4, 2, 128, 0).unwrap();
    let lat = plan.latency_samples();
    let n = 44100 * 2;
    let x = [vec![0.5f32; n], vec![0.5f32; n]];
    // Stems that sum to twice the input, position-independent: on a DC input the wet main
    // output is exactly twice the dry one, so the shape of every switch can be read off.
    let engine = scripted(&plan, "doubling", |k, input, out| {
        if (40..46).contains(&k) {
            std::thread::sleep(Duration::from_millis(150));
        }
        let (a, b) = out.split_at_mut(input.len());
        a.copy_from_slice(input);
        b.copy_from_slice(input);
        None
    });
    let r = run(&plan, Host::Paced, engine, &x, 7, false);
    assert!(r.shared.dropouts.load(Ordering::Relaxed) > 0, "the slow chunks caused no dry fallback: the test proves nothing");
    let fade = FADE_SECONDS * 44100.0;
    let steady = lat + plan.chunk * 2;
    for ch in 0..2 {
        let main = &r.out[0][ch][steady..lat + n];
        let wet_at = main.iter().position(|v| (v - 1.0).abs() < 1e-5).expect("the stems never played");
        let dry_at = main[wet_at..].iter().position(|v| (v - 0.5).abs() < 1e-6).expect("never fell back to dry") + wet_at;
        assert!(main[dry_at..].iter().any(|v| (v - 1.0).abs() < 1e-5), "the stems never came back");
        // Every step at most one fade step (a hard switch would be 0.5).
        let step = max_step(main);
        assert!(step <= 0.5 / fade * 1.01, "largest step {step}, a 10 ms fade moves {} per sample", 0.5 / fade);
        // And the fades are whole: every excursion between the two levels is a straight line
        // of at least a fade's length (a fade reversed midway is allowed, never cut short).
        let mut k = 0;
        while k < main.len() {
            if main[k] > 0.5 + 1e-4 && main[k] < 1.0 - 1e-4 {
                let start = k;
                while k < main.len() && main[k] > 0.5 + 1e-6 && main[k] < 1.0 - 1e-6 {
                    k += 1;
                }
                let (a, b) = (main[start.saturating_sub(1)], main[k.min(main.len() - 1)]);
                if (a - b).abs() > 0.4 {
                    assert!((k - start) as f32 >= 0.95 * fade, "a switch took {} samples at {}", k - start, steady + start);
                }
            }
            k += 1;
        }
        // The stem outputs fade with the same gain (each is the input: 0.5 at full level).
        let stem = &r.out[1][ch][steady..lat + n];
        assert!(max_step(stem) <= 0.5 / fade * 1.01, "stem step {}", max_step(stem));
    }
}

#[test]
fn the_inference_thread_flushes_denormals() {
    let plan = StreamPlan::new(44100, 44100, 1984, 4, 2, 512, 0).unwrap();
    let (flushed, unflushed) = (Arc::new(std::sync::atomic::AtomicU32::new(0)), Arc::new(std::sync::atomic::AtomicU32::new(0)));
    // Records whether arithmetic on a subnormal number flushes to zero inside `process`.
    let (f, u) = (flushed.clone(), unflushed.clone());
    let engine = scripted(&plan, "denormal probe", move |_, _, out| {
        let v = std::hint::black_box(1e-39f32) * std::hint::black_box(1.0f32);
        let counter = if v == 0.0 { &f } else { &u };
        counter.fetch_add(1, Ordering::Relaxed);
        out.fill(0.0);
        None
    });
    run(&plan, Host::Offline, engine, &signal(20000), 1, false);
    assert!(flushed.load(Ordering::Relaxed) > 0, "no chunk ran");
    assert_eq!(unflushed.load(Ordering::Relaxed), 0, "the inference thread computes with denormals");
    // The probe itself: unflushed on this (test) thread.
    assert_ne!(std::hint::black_box(1e-39f32) * std::hint::black_box(1.0f32), 0.0);
}

#[test]
fn an_engine_warning_while_playing_is_shown_in_the_editor_status() {
    let plan = StreamPlan::new(44100, 44100, 1984, 4, 2, 512, 0).unwrap();
    // Warns once, on its third chunk, as an engine does after a GPU fallback.
    let engine = scripted(&plan, "warning", |k, _, out| {
        out.fill(0.0);
        (k == 2).then(|| "CUDA out of memory: batch halved to 1".to_string())
    });
    let r = run(&plan, Host::Offline, engine, &signal(20000), 1, false);
    let lines = crate::plugin::editor::status_lines(&r.shared);
    assert!(lines.iter().any(|(_, l)| l == "Note: CUDA out of memory: batch halved to 1"), "{lines:?}");
    assert_eq!(lines[0], (crate::plugin::editor::Tone::Good, "Ready on warning".to_string()));
}

#[test]
fn the_complement_output_is_the_delayed_input_minus_the_target() {
    let plan = StreamPlan::new(44100, 44100, 1984, 2, 1, 512, 0).unwrap();
    let lat = plan.latency_samples();
    let x = signal(20000);
    let r = run(&plan, Host::Offline, fake(&plan, Duration::ZERO), &x, 2, true);
    for ch in 0..2 {
        for t in lat..lat + x[0].len() - 1000 {
            let want = x[ch][t - lat] - r.out[1][ch][t];
            assert!((r.out[2][ch][t] - want).abs() < 1e-6, "ch {ch} at {t}");
            // Target + complement = the input: the main output is the dry signal.
            assert!((r.out[0][ch][t] - x[ch][t - lat]).abs() < 1e-5);
        }
        assert!(r.out[3][ch].iter().all(|v| *v == 0.0));
    }
}

// The level meters' input from the audio side: in its own file, tests/meters.rs.
mod meters;
