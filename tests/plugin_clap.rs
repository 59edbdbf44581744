//! The plugin in a real CLAP host (clack-host), loading the bundle a user installs.
//!
//! Needs `target/bundled/MDX Stems.clap`: build it first with
//! `cargo xtask bundle mdx-stems --release`. The allocation check loads the debug cdylib that
//! `cargo test` builds (`target/debug/libmdx_stems.so`), in a child process, since an
//! allocation on the audio thread aborts the process there. Tests with the slow-engine hook
//! (`MDX_STEMS_TEST_SLOW_MS`, read by the plugin's inference thread) also run in child
//! processes, because the environment is process-wide.
//!
//! Models: the fixture models of `tests/fixtures/mdx23c/`, copied with their config as
//! `<name>.ckpt` + `<name>.yaml` (the plugin finds a config beside the model).

mod clap_host;
mod plugin_common;

use clap_host::{Plug, debug_cdylib, outputs, release_clap};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

use plugin_common::*;

/// Every test here takes this lock: several of them measure real time or race a render, and
/// the plugin's inference threads of parallel tests would compete for the CPU.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Feed `x` then silence, `total` frames in all, in random block sizes from 1 to `max_block`.
fn render(plug: &mut Plug, x: &[Vec<f32>; 2], total: usize, max_block: usize, seed: u64) -> Vec<[Vec<f32>; 2]> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let padded: Vec<Vec<f32>> = x.iter().map(|c| {
        let mut v = c.clone();
        v.resize(total, 0.0);
        v
    }).collect();
    let mut out = outputs();
    let mut pos = 0;
    while pos < total {
        let n = rng.random_range(1..=max_block).min(total - pos);
        plug.process([&padded[0][pos..pos + n], &padded[1][pos..pos + n]], &mut out);
        pos += n;
    }
    out
}

#[test]
fn ports_are_stereo_in_main_out_and_six_named_stem_outputs() {
    let _serial = serial();
    let mut plug = Plug::load(&release_clap());
    let (ins, outs) = plug.ports();
    assert_eq!(ins, vec![("Input".to_string(), 2, true)]);
    let mut want = vec![("Output".to_string(), 2, true)];
    want.extend((1..=6).map(|i| (format!("Stem {i}"), 2, false)));
    assert_eq!(outs, want);
    // The main-output-only plugin of the same bundle.
    let mut stereo = Plug::load_id(&release_clap(), clap_host::STEREO_ID);
    let (ins, outs) = stereo.ports();
    assert_eq!(ins, vec![("Input".to_string(), 2, true)]);
    assert_eq!(outs, vec![("Output".to_string(), 2, true)]);
}

#[test]
fn latency_is_chunk_plus_hop_plus_buffer_and_follows_settings_through_the_restart_cycle() {
    let _serial = serial();
    let m = TempModel::new(TINY, "latency");
    let mut plug = Plug::load(&release_clap());
    plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(4))]);
    plug.activate(44100.0, 512);
    let (c, b) = (1984, 512);
    assert_eq!(plug.latency() as usize, c + c / 4 + b);
    assert!(plug.latency_changed_calls() >= 1, "the host was never told that the latency changed");

    // A project/preset load while playing changes the overlap: the plugin asks for a restart
    // from the audio thread, the host performs it, and the new latency is reported.
    plug.set_fields(&[("overlap", json!(2))]);
    let mut out = outputs();
    let zeros = vec![0f32; 256];
    let mut restarted = false;
    for _ in 0..8 {
        plug.process([&zeros, &zeros], &mut out);
        if plug.service() {
            restarted = true;
            break;
        }
    }
    assert!(restarted, "no restart was requested after the overlap changed");
    assert_eq!(plug.latency() as usize, c + c / 2 + b);

    // Another model with a shorter segment (dim_t 32 instead of 64: chunk 128 * 31 = 3968).
    let four = TempModel::new(FOUR, "latency4");
    plug.set_fields(&[("model_path", json!(four.ckpt)), ("segment", json!(32)), ("overlap", json!(4))]);
    plug.process([&zeros, &zeros], &mut out);
    assert!(plug.service());
    assert_eq!(plug.latency() as usize, 3968 + 992 + b);

    // A different host buffer size changes the latency by the same amount.
    plug.deactivate();
    plug.activate(44100.0, 64);
    assert_eq!(plug.latency() as usize, 3968 + 992 + 64);
}

/// A model that is set but gone (and not found elsewhere): the input passes through, with no
/// latency, and the stems are silent.
#[test]
fn a_missing_model_passes_audio_through_with_no_latency() {
    let _serial = serial();
    let mut plug = Plug::load(&release_clap());
    plug.set_fields(&[("model_path", json!("/nonexistent/model.ckpt"))]);
    plug.activate(48000.0, 256);
    assert_eq!(plug.latency(), 0);
    let x = song(48000, 0.2, 3);
    let out = render(&mut plug, &x, x[0].len(), 256, 1);
    for ch in 0..2 {
        assert_eq!(out[0][ch], x[ch]);
        for port in &out[1..] {
            assert_eq!(peak(&port[ch]), 0.0);
        }
    }
}

/// No model anywhere (empty folders): the plugin separates with `builtin:hpss` instead of
/// passing dry, reports its latency exactly, and its stems equal the engine's.
#[test]
fn without_a_model_the_plugin_separates_with_the_builtin_hpss() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("mdx-stems-no-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display().to_string();
    let text = run_child(
        "builtin",
        &[("MDX_STEMS_MODELS", &d), ("MDX_STEMS_UVR_DIR", &format!("{d}/no-uvr")), ("AUDIO_SEPARATOR_MODEL_DIR", &format!("{d}/no-as"))],
    );
    eprintln!("{text}");
}

fn child_builtin() {
    let (rate, max_block) = (48000u32, 256usize);
    let mut plug = Plug::load(&release_clap());
    plug.set_offline(true);
    plug.activate(rate as f64, max_block as u32);
    let lat = plug.latency() as usize;
    // Blocks of one hop (512) and the median's 15 frames of look-ahead plus the STFT's
    // n_fft - hop: 2 * 512 + 256 + (15 * 512 + 1536).
    assert_eq!(lat, 2 * 512 + max_block + 15 * 512 + 1536, "reported latency");
    let x = song(rate, 1.5, 7);
    let n = x[0].len();
    let out = render(&mut plug, &x, n + lat, max_block, 5);
    let mut opts = mdx_stems::engine::LoadOptions::new("builtin:hpss");
    opts.sample_rate = Some(rate);
    let mut sep = mdx_stems::engine::Separator::load(&opts).unwrap();
    let want = sep.separate(&x.to_vec(), mdx_stems::dsp::overlap::Scheme::Uvr, 1, 1, &mut |_, _| {}).unwrap();
    for ch in 0..2 {
        let main = max_diff(&out[0][ch][lat..lat + n], &x[ch]);
        println!("main ch {ch}: max |out - input delayed by the latency| = {main:.2e}");
        assert!(main < 1e-5, "the stems add up to the input, {lat} samples late: {main}");
        for s in 0..3 {
            let d = max_diff(&out[1 + s][ch][lat..lat + n], &want[s][ch]);
            println!("stem {s} ch {ch}: max |plugin - engine| = {d:.2e}, peak {:.3}", peak(&want[s][ch]));
            assert!(d < 1e-5 && peak(&want[s][ch]) > 1e-3, "stem {s}");
        }
    }
    assert!(plug.state_json()["fields"]["model_path"].as_str().is_none_or(|p| p.trim_matches('"').is_empty()), "the fallback is not saved");
}

/// Offline bounce vs the CLI: after removing the reported latency the main output is the sum
/// of the CLI's stems and each stem output is the CLI's stem (UVR scheme, same overlap).
/// `declared`: the host says it renders offline; else it says "real time" and calls as fast as
/// it can (a render that does not say so, as Ardour's export).
/// `loud_end`: the song is loud to its last sample (cut mid-note, no fade, no silence after it),
/// so that the comparison reaches the resamplers' reach of the end (issue #14).
fn bounce_equals_cli(fixture: &str, stems: &[&str], rate: u32, overlap: usize, max_block: usize, secs: f32, declared: bool) {
    bounce_equals_cli_end(fixture, stems, rate, overlap, max_block, secs, declared, false)
}

#[allow(clippy::too_many_arguments)]
fn bounce_equals_cli_end(fixture: &str, stems: &[&str], rate: u32, overlap: usize, max_block: usize, secs: f32, declared: bool, loud_end: bool) {
    let m = TempModel::new(fixture, &format!("bounce{rate}{declared}"));
    let mut plug = Plug::load(&release_clap());
    plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(overlap))]);
    plug.set_offline(declared);
    plug.activate(rate as f64, max_block as u32);
    let lat = plug.latency() as usize;
    let x = if loud_end {
        // `song` fades out over 0.05 s before a quarter second of silence: cut it where the
        // fade would begin, at full level.
        let mut x = song(rate, secs + 0.3, rate as u64);
        let n = (rate as f32 * secs) as usize;
        for c in &mut x {
            c.truncate(n);
        }
        x
    } else {
        song(rate, secs, rate as u64)
    };
    // A render the host does not declare is exact from the moment it is proven (2 s of audio
    // ahead of the wall clock); before that the plugin waits for results only within the live
    // bound (docs/realtime.md, "Real-time and offline rendering"). Like an export's pre-roll, 2.5 s of
    // silence come first, and the song after them is compared.
    let lead = if declared { 0 } else { (2.5 * rate as f32) as usize };
    let x = x.map(|c| [vec![0.0; lead], c].concat());
    let n = x[0].len();
    let t0 = Instant::now();
    let out = render(&mut plug, &x, n + lat, max_block, 99 + rate as u64);
    eprintln!("{fixture} at {rate} Hz: latency {lat}, bounce of {secs} s in {:.2} s", t0.elapsed().as_secs_f64());
    let cli = cli_stems(&m, &x, rate, overlap, stems);
    // The whole song is compared, its last samples included: the CLI flushes its resamplers at
    // the end of the file, as the plugin's stream does when the host renders the latency's tail
    // of silence after the song.
    let cmp = n - lead;
    if loud_end {
        assert!(peak(&x[0][n - 64..]) > 0.05, "the song must be loud at its end");
    }
    let mut sum = [vec![0f32; cmp], vec![0f32; cmp]];
    for (s, name) in stems.iter().enumerate() {
        for ch in 0..2 {
            let got = &out[1 + s][ch][lat + lead..lat + n];
            assert_eq!(cli[s][ch].len(), n);
            let want = &cli[s][ch][lead..];
            let d = max_diff(&got[..cmp], &want[..cmp]);
            let first = got[..cmp].iter().zip(&want[..cmp]).position(|(a, b)| (a - b).abs() > 1e-4);
            let last = got[..cmp].iter().zip(&want[..cmp]).rposition(|(a, b)| (a - b).abs() > 1e-4);
            eprintln!("  stem {name} ch {ch}: max |plugin - cli| = {d:.2e} (peak {:.3}), differences from {first:?} to {last:?} of {cmp}", peak(want));
            assert!(peak(want) > 0.01, "the CLI's {name} is silent; the comparison would prove nothing");
            if loud_end {
                // The resamplers reach about a thousand samples: the last 2048 are where an
                // unflushed tail differed (by 0.04 to 0.9), so they must carry signal too.
                let end = cmp - 2048;
                let d_end = max_diff(&got[end..cmp], &want[end..cmp]);
                eprintln!("    last 2048 samples: max |plugin - cli| = {d_end:.2e} (peak {:.3})", peak(&want[end..]));
                assert!(peak(&want[end..]) > 0.01, "the CLI's {name} is silent at the end; the comparison would prove nothing");
            }
            assert!(d <= 1e-4, "stem output {} ({name}) ch {ch} differs from the CLI by {d}", s + 1);
            for (a, v) in sum[ch].iter_mut().zip(want) {
                *a += v;
            }
            // Nothing before the latency but the stream's silence.
            assert!(peak(&out[1 + s][ch][..lat.saturating_sub(1)]) < 1e-3);
        }
    }
    for ch in 0..2 {
        let d = max_diff(&out[0][ch][lat + lead..lat + n], &sum[ch][..cmp]);
        eprintln!("  main ch {ch}: max |plugin - sum of cli stems| = {d:.2e}");
        assert!(d <= 1e-4, "main output ch {ch} differs from the sum of the CLI's stems by {d}");
    }
    for port in &out[1 + stems.len()..] {
        assert_eq!(peak(&port[0]) + peak(&port[1]), 0.0, "unused stem ports must be silent");
    }
}

#[test]
fn offline_bounce_at_44k_equals_the_cli_after_removing_the_latency() {
    let _serial = serial();
    bounce_equals_cli(TINY, &["vocals", "instrumental"], 44100, 4, 512, 4.0, true);
}

#[test]
fn offline_bounce_at_48k_with_blocks_up_to_8192_equals_the_cli_after_removing_the_latency() {
    let _serial = serial();
    // 48 kHz host, 44.1 kHz model: both directions resampled on the inference thread.
    bounce_equals_cli(FOUR, &["vocals", "bass", "drums", "other"], 48000, 2, 8192, 3.0, true);
}

#[test]
fn offline_bounce_of_a_song_loud_to_its_last_sample_equals_the_cli_to_the_end_at_48k_and_22k() {
    let _serial = serial();
    // The host renders the latency's tail of silence after the song, which flushes the
    // plugin's resamplers; the CLI flushes its own at the end of the file. Both then equal the
    // separation of the song padded with silence (the CLI's side: tests/streaming.rs).
    bounce_equals_cli_end(FOUR, &["vocals", "bass", "drums", "other"], 48000, 2, 1024, 2.0, true, true);
    bounce_equals_cli_end(TINY, &["vocals", "instrumental"], 22050, 2, 256, 2.0, true, true);
}

#[test]
fn a_host_rendering_as_fast_as_it_can_without_saying_so_gets_the_offline_bounce() {
    let _serial = serial();
    // "Real time" per the host, blocks fed back to back: the plugin sees a render and waits.
    bounce_equals_cli(TINY, &["vocals", "instrumental"], 44100, 4, 1024, 4.0, false);
    bounce_equals_cli(FOUR, &["vocals", "bass", "drums", "other"], 48000, 2, 512, 3.0, false);
}

#[test]
fn a_single_target_model_also_gives_the_complement_as_the_cli_does() {
    let _serial = serial();
    // target vocals; the second output is the input minus the vocals, as the CLI writes it.
    bounce_equals_cli(TARGET, &["vocals", "instrumental"], 48000, 2, 1024, 3.0, true);
}

/// Offline bounce of `x` with parameter changes queued before the first block; outputs with
/// the latency removed.
fn bounce_with(m: &TempModel, x: &[Vec<f32>; 2], params: &[(&str, f64)]) -> Vec<[Vec<f32>; 2]> {
    let mut plug = Plug::load(&release_clap());
    plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(2))]);
    plug.set_offline(true);
    plug.activate(44100.0, 1024);
    let lat = plug.latency() as usize;
    for (name, v) in params {
        let id = plug.param_id(name);
        plug.queue_param(id, *v);
    }
    let n = x[0].len();
    // Gains are smoothed over 20 ms, inside the first (silent) latency period.
    let out = render(&mut plug, x, n + lat, 1024, 7);
    out.into_iter().map(|[l, r]| [l[lat..].to_vec(), r[lat..].to_vec()]).collect()
}

#[test]
fn preset_gain_and_solo_shape_the_main_and_stem_outputs() {
    let _serial = serial();
    let m = TempModel::new(TINY, "mix");
    let x = song(44100, 1.5, 5);
    let reference = bounce_with(&m, &x, &[]);
    // "Everything but vocals" (preset 7) with stem 2 at its minimum gain (normalized 0 = -60 dB).
    let karaoke = bounce_with(&m, &x, &[("Preset", 7.0), ("Stem 2 gain", 0.0)]);
    // Solo on stem 1 wins over the preset.
    let solo = bounce_with(&m, &x, &[("Preset", 7.0), ("Stem 1 solo", 1.0)]);
    for ch in 0..2 {
        let (voc, inst) = (&reference[1][ch], &reference[2][ch]);
        assert!(peak(voc) > 0.01 && peak(inst) > 0.01);
        assert_eq!(&karaoke[1][ch], voc, "stem 1 output is unaffected");
        let scaled: Vec<f32> = inst.iter().map(|v| v * 0.001).collect();
        assert!(max_diff(&karaoke[2][ch], &scaled) < 1e-6, "stem 2 output carries its -60 dB gain");
        assert!(max_diff(&karaoke[0][ch], &karaoke[2][ch]) < 1e-7, "main = the instrumental only");
        assert!(max_diff(&solo[0][ch], voc) < 1e-7, "main = the soloed vocals");
        let sum: Vec<f32> = voc.iter().zip(inst).map(|(a, b)| a + b).collect();
        assert!(max_diff(&reference[0][ch], &sum) < 1e-6, "by default main = every stem");
    }
}

#[test]
fn state_round_trip_restores_model_settings_and_parameters() {
    let _serial = serial();
    let m = TempModel::new(FOUR, "state");
    let mut a = Plug::load(&release_clap());
    a.set_fields(&[
        ("model_path", json!(m.ckpt)),
        ("overlap", json!(3)),
        ("segment", json!(32)),
        ("precision", json!("f32")),
        ("cpu_threads", json!(1)),
    ]);
    a.activate(48000.0, 480);
    let gain = a.param_id("Stem 3 gain");
    let solo = a.param_id("Stem 1 solo");
    a.queue_param(gain, 0.25);
    a.queue_param(solo, 1.0);
    let mut out = outputs();
    let z = vec![0f32; 64];
    a.process([&z, &z], &mut out);
    let saved = a.save_state();
    let latency_a = a.latency();
    let json_a = clap_host::state_to_json(&saved);
    assert_eq!(json_a["fields"]["model_path"], json!(json!(m.ckpt).to_string()));
    assert_eq!(json_a["fields"]["overlap"], json!("3"));
    assert_eq!(json_a["fields"]["segment"], json!("32"));
    assert_eq!(json_a["fields"]["precision"], json!("\"f32\""));
    assert_eq!(json_a["fields"]["cpu_threads"], json!("1"));
    drop(a);

    let mut b = Plug::load(&release_clap());
    b.load_state(&saved);
    b.activate(48000.0, 480);
    let json_b = b.state_json();
    assert_eq!(json_a["fields"], json_b["fields"]);
    assert_eq!(json_a["params"], json_b["params"]);
    assert_eq!(b.latency(), latency_a, "the restored settings give the same latency");
    // segment 32 frames at hop 128 = chunk 3968, overlap 3 -> hop 1322; resampled: more than C + H.
    assert!(latency_a as usize > 3968 + 1322);
}

/// The editor opens, draws its meters while audio plays, is drawn again at 200% and closes
/// without crashing (X11 only; needs a display). The screen is read back, either from the
/// framebuffer file of an `Xvfb -fbdir` server (`MDX_STEMS_XVFB_FB`) or with `xwd -root`, and
/// must show the meters (runs of the meter colour, as wide as a meter's level) at both scales.
/// It loads the debug cdylib that `cargo test` builds.
/// As CI runs it (.ci/run):
/// `mkdir -p target/xvfb && xvfb-run -a -s "-screen 0 1280x1344x24 -fbdir $PWD/target/xvfb"
/// env MDX_STEMS_XVFB_FB=$PWD/target/xvfb/Xvfb_screen0 cargo test --test plugin_clap -- --ignored editor`.
/// With `MDX_STEMS_SCREENSHOT=<file.png>` it also saves the editor at 100% as a PNG (the
/// README's docs/editor.png).
#[test]
#[ignore = "needs an X display (xvfb-run)"]
fn editor_opens_renders_and_closes() {
    let _serial = serial();
    if std::env::var_os("DISPLAY").is_none() {
        panic!("no DISPLAY: run under xvfb-run");
    }
    let root = Command::new("xwininfo").arg("-root").output().expect("xwininfo (x11-utils)");
    let text = String::from_utf8_lossy(&root.stdout);
    let id = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("0x").and_then(|h| u64::from_str_radix(h, 16).ok()))
        .expect("root window id");
    // The debug cdylib that `cargo test` builds: its allocation check (any allocation in
    // `process` aborts) also covers the meters while the editor draws. The built-in separator
    // (drums, harmonic, residual): real stems at real levels, for the screenshot.
    let mut plug = Plug::load(&debug_cdylib());
    plug.set_fields(&[("model_path", json!(mdx_stems::nets::builtin::DEFAULT))]);
    plug.activate(48000.0, 512);
    let x = song(48000, 1.0, 4);
    let _ = render(&mut plug, &x, x[0].len(), 512, 3);
    let (w, h) = plug.open_editor_x11(id as std::ffi::c_ulong);
    assert!(w >= 400 && h >= 400, "editor size {w}x{h}");
    // A 440 Hz sine at -6 dBFS plays in real time while the editor draws.
    let mut out = outputs();
    let mut n = 0usize;
    let mut play = |plug: &mut Plug, secs: f32| {
        let t = Instant::now();
        while t.elapsed().as_secs_f32() < secs {
            // 512 frames (10.7 ms at 48 kHz) per 12 ms: live, never faster than real time.
            let block: Vec<f32> = (n..n + 512).map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 48000.0).sin()).collect();
            n += 512;
            plug.process([&block, &block], &mut out);
            plug.pump();
            std::thread::sleep(Duration::from_millis(12));
        }
    };
    play(&mut plug, 3.0);
    let shot = screen();
    let run = shot.longest_run(meter_green(), (0, 0, w, h));
    eprintln!("100%: editor {w}x{h}, longest run of the meter colour {run} px");
    // The meter bars are 340 px wide from -60 to +6 dB; the green part ends at -12 dB (247 px):
    // the main output at -6 dB (the sine, whose stems add up to it) fills it.
    assert!(run >= 240, "no meter drawn at 100% (longest run of the meter colour: {run} px)");
    assert!(shot.colours((0, 0, w, h)) >= 8, "the editor looks blank");
    if let Some(path) = std::env::var_os("MDX_STEMS_SCREENSHOT") {
        shot.write_png(std::path::Path::new(&path), (0, 0, w, h));
        eprintln!("screenshot {}", std::path::Path::new(&path).display());
    }

    // 200%: the host's scale doubles the window, and the meters are drawn twice as wide.
    plug.set_editor_scale(2.0);
    play(&mut plug, 2.0);
    let (w2, h2) = plug.editor_size();
    assert_eq!((w2, h2), (2 * w, 2 * h), "size at 200%");
    let shot = screen();
    let run2 = shot.longest_run(meter_green(), (0, 0, w2, h2));
    eprintln!("200%: editor {w2}x{h2}, longest run of the meter colour {run2} px");
    assert!(run2 >= 480, "no meter drawn at 200% (longest run of the meter colour: {run2} px)");
    // Closed and unloaded at once, as a host removing the plugin with its window open does:
    // the window's thread may still be closing, and the library stays loaded for it.
    plug.close_editor();
}

/// The meters' green ([`mdx_stems::plugin::editor::METER_GREEN`]), as the screen shows it.
fn meter_green() -> [u8; 3] {
    let c = mdx_stems::plugin::editor::METER_GREEN;
    [c.r(), c.g(), c.b()]
}

/// The X screen, read back: RGB rows.
struct Screen {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

/// The root window now: the `Xvfb -fbdir` framebuffer file when `MDX_STEMS_XVFB_FB` names it,
/// else `xwd -root` (x11-apps). Both are XWD images.
fn screen() -> Screen {
    let bytes = match std::env::var_os("MDX_STEMS_XVFB_FB") {
        Some(path) => std::fs::read(&path).expect("the Xvfb framebuffer file"),
        None => {
            let out = Command::new("xwd").args(["-root", "-silent"]).output().expect("xwd (x11-apps), or set MDX_STEMS_XVFB_FB");
            assert!(out.status.success(), "xwd failed");
            out.stdout
        }
    };
    parse_xwd(&bytes)
}

/// An XWD image (ZPixmap, 24 or 32 bits per pixel, true colour) as RGB.
fn parse_xwd(b: &[u8]) -> Screen {
    let be = |i: usize| u32::from_be_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
    let le = |i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
    // The header is big-endian as xwd writes it; read it either way (its size is small).
    let field: &dyn Fn(usize) -> u32 = if be(0) < 4096 { &be } else { &le };
    let (header, format, width, height) = (field(0) as usize, field(2), field(4), field(5));
    let (byte_order, bpp, stride) = (field(7), field(11) as usize, field(12) as usize);
    let (rmask, gmask, bmask, ncolors) = (field(14), field(15), field(16), field(19) as usize);
    assert_eq!(format, 2, "XWD: not a ZPixmap");
    assert!(bpp == 24 || bpp == 32, "XWD: {bpp} bits per pixel (run the X server at depth 24)");
    let data = &b[header + 12 * ncolors..];
    let shift = |m: u32| m.trailing_zeros();
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height as usize {
        for x in 0..width as usize {
            let p = &data[y * stride + x * bpp / 8..][..bpp / 8];
            let mut v = 0u32;
            for (k, byte) in p.iter().enumerate() {
                v |= (*byte as u32) << if byte_order == 0 { 8 * k } else { 8 * (bpp / 8 - 1 - k) };
            }
            rgb.extend([(v & rmask) >> shift(rmask), (v & gmask) >> shift(gmask), (v & bmask) >> shift(bmask)].map(|c| c as u8));
        }
    }
    Screen { width, height, rgb }
}

impl Screen {
    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = 3 * (y * self.width + x) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// The region (x, y, w, h), clipped to the screen.
    fn clip(&self, (x, y, w, h): (u32, u32, u32, u32)) -> (u32, u32, u32, u32) {
        (x, y, (x + w).min(self.width), (y + h).min(self.height))
    }

    /// The longest horizontal run of `colour` in the region.
    fn longest_run(&self, colour: [u8; 3], region: (u32, u32, u32, u32)) -> u32 {
        let (x0, y0, x1, y1) = self.clip(region);
        let mut best = 0;
        for y in y0..y1 {
            let mut run = 0;
            for x in x0..x1 {
                run = if self.pixel(x, y) == colour { run + 1 } else { 0 };
                best = best.max(run);
            }
        }
        best
    }

    /// How many distinct colours the region has.
    fn colours(&self, region: (u32, u32, u32, u32)) -> usize {
        let (x0, y0, x1, y1) = self.clip(region);
        let mut seen = std::collections::HashSet::new();
        for y in y0..y1 {
            for x in x0..x1 {
                seen.insert(self.pixel(x, y));
            }
        }
        seen.len()
    }

    /// Save the region as an RGB PNG (deflate from flate2, CRCs from crc32fast via flate2).
    fn write_png(&self, path: &std::path::Path, region: (u32, u32, u32, u32)) {
        use std::io::Write;
        let (x0, y0, x1, y1) = self.clip(region);
        let mut raw = Vec::new();
        for y in y0..y1 {
            raw.push(0u8); // filter: none
            for x in x0..x1 {
                raw.extend(self.pixel(x, y));
            }
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&raw).unwrap();
        let idat = z.finish().unwrap();
        let mut ihdr = Vec::new();
        ihdr.extend((x1 - x0).to_be_bytes());
        ihdr.extend((y1 - y0).to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(b"IHDR", &ihdr), (b"IDAT", &idat), (b"IEND", &Vec::new())] {
            png.extend((data.len() as u32).to_be_bytes());
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            png.extend(kind);
            png.extend(data.iter());
            png.extend(crc.sum().to_be_bytes());
        }
        std::fs::write(path, png).expect("write the screenshot");
    }
}

// ---------------------------------------------------------------------------------------------
// Child-process tests: real time with the slow-engine hook, and the allocation check.

const CHILD_ENV: &str = "MDX_STEMS_CLAP_CHILD";

/// Run `child_process` of this test binary with `env`, and return its stderr+stdout.
fn run_child(kind: &str, env: &[(&str, &str)]) -> String {
    run_child_test(&std::env::current_exe().unwrap(), CHILD_ENV, kind, env)
}

#[test]
fn realtime_with_a_too_slow_engine_plays_the_delayed_dry_signal_without_blocking() {
    let _serial = serial();
    let text = run_child("slow", &[("MDX_STEMS_TEST_SLOW_MS", "60")]);
    eprintln!("{text}");
}

#[test]
fn realtime_fades_back_to_the_stems_when_the_engine_catches_up() {
    let _serial = serial();
    // Overlap 1 (a chunk per 45 ms of audio): 150 ms per chunk is far too slow, for 8 chunks.
    let text = run_child("recover", &[("MDX_STEMS_TEST_SLOW_MS", "150"), ("MDX_STEMS_TEST_SLOW_CHUNKS", "8")]);
    eprintln!("{text}");
}

#[test]
fn debug_build_never_allocates_on_the_audio_thread() {
    let _serial = serial();
    let text = run_child("alloc", &[]);
    eprintln!("{text}");
}

#[test]
fn deactivation_never_waits_for_a_model_load_and_the_model_survives_restarts() {
    let _serial = serial();
    let text = run_child("slowload", &[("MDX_STEMS_TEST_SLOW_LOAD_MS", "1500")]);
    eprintln!("{text}");
}

#[test]
fn recovering_from_very_slow_chunks_never_plays_silence_where_the_input_plays() {
    let _serial = serial();
    // As measured before the fix: 600 ms for the first 4 chunks (44.1 kHz), 1500 ms for the
    // first 3 (48 kHz). Every switch between stems and the dry signal must be a crossfade.
    let text = run_child("stall", &[("MDX_STEMS_TEST_SLOW_MS", "600"), ("MDX_STEMS_TEST_SLOW_CHUNKS", "4"), ("STALL_RATE", "44100")]);
    eprintln!("{text}");
    let text = run_child("stall", &[("MDX_STEMS_TEST_SLOW_MS", "1500"), ("MDX_STEMS_TEST_SLOW_CHUNKS", "3"), ("STALL_RATE", "48000")]);
    eprintln!("{text}");
}

#[test]
fn real_time_runs_started_at_different_timeline_positions_agree_after_one_chunk() {
    let _serial = serial();
    let text = run_child("timeline", &[]);
    eprintln!("{text}");
}

#[test]
fn deactivate_returns_within_50_ms_while_the_engine_is_in_the_middle_of_a_chunk() {
    let _serial = serial();
    let text = run_child("deactivate", &[("MDX_STEMS_TEST_SLOW_MS", "3000")]);
    eprintln!("{text}");
}

#[test]
fn removing_the_plugin_returns_within_50_ms_while_the_engine_is_in_the_middle_of_a_chunk() {
    let _serial = serial();
    let text = run_child("destroy", &[("MDX_STEMS_TEST_SLOW_MS", "3000")]);
    eprintln!("{text}");
    assert_detached_and_pinned(&text, "the inference thread");
}

#[test]
fn removing_the_plugin_returns_within_50_ms_while_its_model_is_loading() {
    let _serial = serial();
    let text = run_child("destroyload", &[("MDX_STEMS_TEST_SLOW_LOAD_MS", "3000")]);
    eprintln!("{text}");
    assert_detached_and_pinned(&text, "the model loader");
}

/// The plugin's log in a removal child: `thread` was left to finish on its own, and only after
/// the library was pinned. (On glibc a `dlclose` does not unmap this library even unpinned, so
/// the child's survival alone does not show the pin; Windows' `FreeLibrary` would unload it.)
fn assert_detached_and_pinned(text: &str, thread: &str) {
    let detached = text.find(&format!("{thread} is still busy: it finishes on its own"));
    let pinned = text.find("plugin library pinned until the process ends: true");
    assert!(detached.is_some(), "{thread} was not detached:\n{text}");
    assert!(pinned.is_some_and(|p| p < detached.unwrap()), "the library was not pinned before {thread} was detached:\n{text}");
}

#[test]
fn a_project_whose_model_moved_finds_it_again_by_hash_or_name() {
    let _serial = serial();
    let text = run_child("moved", &[]);
    eprintln!("{text}");
}

/// A state as this plugin wrote it before states were versioned (no `state_version`, no model
/// name or hash), and the current format: both load, with every setting.
#[test]
fn states_of_the_current_and_of_the_older_format_load() {
    let _serial = serial();
    let m = TempModel::new(FOUR, "oldstate");
    let old = json!({
        "version": "0.1.0",
        "params": {"preset": {"i32": 2}, "gain_2": {"f32": 0.5}},
        "fields": {
            "model_path": json!(m.ckpt).to_string(),
            "overlap": "3",
            "precision": "\"f32\"",
            "segment": "32",
            "cpu_threads": "1"
        }
    });
    let mut plug = Plug::load(&release_clap());
    plug.load_state(&clap_host::json_to_state(&old));
    plug.activate(48000.0, 480);
    let now = plug.state_json();
    for k in ["model_path", "overlap", "precision", "segment", "cpu_threads"] {
        assert_eq!(now["fields"][k], old["fields"][k], "{k} did not survive the old state");
    }
    assert_eq!(now["params"]["preset"], json!({"i32": 2}));
    assert_eq!(now["fields"]["state_version"], json!("2"));
    // The model is found, so its name and UVR hash are now saved with the project.
    assert_eq!(now["fields"]["model_name"], json!("\"small_groupnorm_relu_4stem\""));
    assert_eq!(now["fields"]["model_hash"].as_str().unwrap().len(), 34, "a quoted 32-digit hash");
    let latency = plug.latency();
    assert!(latency > 3968, "the old state's model and segment are in use (latency {latency})");
    // The current format round-trips.
    let saved = plug.save_state();
    drop(plug);
    let mut again = Plug::load(&release_clap());
    again.load_state(&saved);
    again.activate(48000.0, 480);
    assert_eq!(again.state_json()["fields"], now["fields"]);
    assert_eq!(again.latency(), latency);
    // A value this build does not know (a future precision) leaves the default, never a crash.
    let mut odd = old.clone();
    odd["fields"]["precision"] = json!("\"fp8\"");
    let mut plug = Plug::load(&release_clap());
    plug.load_state(&clap_host::json_to_state(&odd));
    plug.activate(48000.0, 480);
    assert_eq!(plug.state_json()["fields"]["precision"], json!("\"auto\""));
}

#[test]
#[ignore = "run in a child process by the tests above"]
fn child_process() {
    let Ok(kind) = std::env::var(CHILD_ENV) else { return };
    match kind.as_str() {
        "slow" => child_slow(),
        "recover" => child_recover(),
        "stall" => child_stall(),
        "timeline" => child_timeline(),
        "deactivate" => child_deactivate(),
        "destroy" => child_destroy(),
        "destroyload" => child_destroy_load(),
        "moved" => child_moved(),
        "builtin" => child_builtin(),
        "alloc" => child_alloc(),
        "slowload" => child_slow_load(),
        other => panic!("unknown child {other}"),
    }
    println!("CHILD {kind} OK");
}

/// Process `x` (then silence up to `total`) in real time: blocks of `block` frames, each call
/// no earlier than its audio time. Returns the outputs and the slowest `process` call.
fn play_realtime(plug: &mut Plug, x: &[Vec<f32>; 2], total: usize, block: usize, rate: u32) -> (Vec<[Vec<f32>; 2]>, Duration) {
    let mut out = outputs();
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut pos = 0;
    let get = |c: &Vec<f32>, i: usize| c.get(i).copied().unwrap_or(0.0);
    let mut l = vec![0f32; block];
    let mut r = vec![0f32; block];
    while pos < total {
        let n = block.min(total - pos);
        for i in 0..n {
            l[i] = get(&x[0], pos + i);
            r[i] = get(&x[1], pos + i);
        }
        let due = start + Duration::from_secs_f64(pos as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t = Instant::now();
        plug.process([&l[..n], &r[..n]], &mut out);
        worst = worst.max(t.elapsed());
        pos += n;
    }
    (out, worst)
}

/// Every block is late (40 ms per chunk, a hop is 11 ms): main = input delayed by exactly the
/// reported latency, stems silent, and `process` never waits for the engine.
fn child_slow() {
    let m = TempModel::new(TINY, "slow");
    let mut plug = Plug::load(&release_clap());
    plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(4))]);
    plug.activate(44100.0, 512);
    let lat = plug.latency() as usize;
    let mut x = song(44100, 1.5, 11);
    // An impulse on top, for the alignment check.
    let at = 20000;
    x[0][at] = 2.0;
    x[1][at] = 2.0;
    let n = x[0].len();
    let (out, worst) = play_realtime(&mut plug, &x, n + lat, 512, 44100);
    println!("latency {lat}, slowest process call {:.2} ms", worst.as_secs_f64() * 1e3);
    assert!(worst < Duration::from_millis(30), "process blocked for {worst:?} (the engine takes 60 ms per chunk)");
    for ch in 0..2 {
        let d = max_diff(&out[0][ch][lat..lat + n], &x[ch]);
        assert!(d == 0.0, "main output must be the dry input delayed by the latency (differs by {d})");
        assert!(out[0][ch][..lat].iter().all(|v| *v == 0.0));
        let argmax = out[0][ch].iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap().0;
        assert_eq!(argmax, at + lat, "impulse must come out exactly `latency` samples later");
        for port in &out[1..] {
            assert_eq!(peak(&port[ch]), 0.0, "stem outputs must be silent while results are late");
        }
    }
}

/// The first chunks are slow, then the engine is fast: dry first, then the stems fade in and
/// the main output is their sum.
fn child_recover() {
    let m = TempModel::new(TINY, "recover");
    let mut plug = Plug::load(&release_clap());
    // Overlap 1: one chunk per 45 ms of audio, so a loaded 2-core CI machine keeps up easily.
    plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(1))]);
    plug.activate(44100.0, 256);
    let lat = plug.latency() as usize;
    let x = song(44100, 3.0, 12);
    let n = x[0].len();
    let (out, worst) = play_realtime(&mut plug, &x, n + lat, 256, 44100);
    println!("latency {lat}, slowest process call {:.2} ms", worst.as_secs_f64() * 1e3);
    assert!(worst < Duration::from_millis(30), "process blocked for {worst:?}");
    // Early: the dry signal, exactly.
    let early = lat..lat + 4096;
    for ch in 0..2 {
        let d = max_diff(&out[0][ch][early.clone()], &x[ch][..4096]);
        assert!(d == 0.0, "the start must be the dry signal (differs by {d})");
    }
    // The last second: separated; main = vocals + instrumental (both kept, 0 dB).
    let late = lat + n - 44100..lat + n - 4410;
    let [main, voc, inst] = [&out[0], &out[1], &out[2]];
    for (((m, v), i), dry) in main.iter().zip(voc).zip(inst).zip(&x) {
        let (v, i) = (&v[late.clone()], &i[late.clone()]);
        assert!(peak(v) > 0.01 && peak(i) > 0.01, "stems must play once the engine keeps up");
        let sum: Vec<f32> = v.iter().zip(i).map(|(a, b)| a + b).collect();
        assert!(max_diff(&m[late.clone()], &sum) < 1e-5, "main must be the sum of the stems once recovered");
        assert!(max_diff(&m[late.clone()], &dry[late.start - lat..late.end - lat]) > 0.01, "and not the dry signal");
    }
}

/// Loading takes 1.5 s more than usual: the restart cycle right after activation and a later
/// deactivation return at once, and an offline bounce started meanwhile waits for the model and
/// is complete.
#[allow(clippy::needless_range_loop)]
fn child_slow_load() {
    let m = TempModel::new(TINY, "slowload");
    let mut plug = Plug::load(&release_clap());
    plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(4))]);
    plug.set_offline(true);
    let t = Instant::now();
    plug.activate(44100.0, 256); // includes the host's restart cycle
    let activation = t.elapsed();
    let t = Instant::now();
    plug.restart();
    let restart = t.elapsed();
    println!("activation {activation:?}, restart {restart:?}");
    assert!(activation < Duration::from_millis(700) && restart < Duration::from_millis(700), "waited for the load");
    let lat = plug.latency() as usize;
    let x = song(44100, 1.0, 8);
    let n = x[0].len();
    let t = Instant::now();
    let out = render(&mut plug, &x, n + lat, 256, 9);
    println!("bounce {:?}", t.elapsed());
    for ch in 0..2 {
        let sum: Vec<f32> = (0..n).map(|i| out[1][ch][lat + i] + out[2][ch][lat + i]).collect();
        assert!(peak(&out[1][ch][lat..]) > 0.01, "the bounce must contain the separated stems");
        assert!(max_diff(&out[0][ch][lat..lat + n], &sum) < 1e-6);
    }
    // Once loaded, restarts reuse the model: the next bounce starts at once.
    plug.restart();
    let t = Instant::now();
    let _ = render(&mut plug, &x, 4096, 256, 10);
    assert!(t.elapsed() < Duration::from_millis(1000), "the model was reloaded");
}

/// The first chunks take far longer than a hop plus a buffer (the slow-engine hook), then the
/// engine keeps up: while the input plays, the main output is never exact silence, and every
/// switch between the stems and the dry signal is a crossfade: the largest sample-to-sample step
/// of the output stays within what the input and the separated mix make themselves, plus what a
/// 10 ms crossfade between them can add.
fn child_stall() {
    let rate: u32 = std::env::var("STALL_RATE").unwrap().parse().unwrap();
    let m = TempModel::new(TINY, &format!("stall{rate}"));
    let mut plug = Plug::load(&release_clap());
    plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(4))]);
    plug.activate(rate as f64, 256);
    let lat = plug.latency() as usize;
    let x = song(rate, 6.0, 13);
    let n = x[0].len();
    let (out, worst) = play_realtime(&mut plug, &x, n + lat, 256, rate);
    println!("{rate} Hz: latency {lat}, slowest process call {:.2} ms", worst.as_secs_f64() * 1e3);
    assert!(worst < Duration::from_millis(30), "process blocked for {worst:?}");
    let peak_in = x.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let fade = 0.010 * rate as f32;
    for ch in 0..2 {
        let main = &out[0][ch][lat..lat + n];
        let runs = silent_runs(main, &x[ch], 16);
        assert!(runs.is_empty(), "{rate} Hz ch {ch}: exact silence where the input plays at {runs:?}");
        let wet: Vec<f32> = (lat..lat + n).map(|t| out[1][ch][t] + out[2][ch][t]).collect();
        let bound = max_step(&x[ch]).max(max_step(&wet)) + 2.0 * 2.0 * peak_in / fade;
        let step = max_step(main);
        println!("{rate} Hz ch {ch}: largest step {step:.4} (bound {bound:.4}; input alone {:.4})", max_step(&x[ch]));
        assert!(step <= bound, "{rate} Hz ch {ch}: a step of {step} is a click (bound {bound})");
        // The stems came back after the slow chunks.
        assert!(peak(&out[1][ch][lat + n - rate as usize..lat + n - rate as usize / 2]) > 0.01, "the stems never came back");
    }
}

/// Real time with a transport: the song played from the start and from 1.7 s in (a position on
/// no chunk boundary), at the model's rate and at 48 kHz. After one chunk (plus the resamplers'
/// reach) both give the same output at the same project position.
fn child_timeline() {
    for rate in [44100u32, 48000] {
        let m = TempModel::new(TINY, &format!("timeline{rate}"));
        let x = song(rate, 4.0, 17);
        let n = x[0].len();
        let run = |from: usize| -> (Vec<[Vec<f32>; 2]>, usize) {
            let mut plug = Plug::load(&release_clap());
            plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(2)), ("safety", json!(2))]);
            plug.activate(rate as f64, 256);
            plug.transport = Some(from as i64);
            let lat = plug.latency() as usize;
            let part = [x[0][from..].to_vec(), x[1][from..].to_vec()];
            let (out, _) = play_realtime(&mut plug, &part, n - from + lat, 256, rate);
            (out, lat)
        };
        let (a, lat) = run(0);
        let from = (1.7 * rate as f32) as usize;
        let (b, _) = run(from);
        let settle = from + 2 * 1984 * rate as usize / 44100 + 4096;
        let mut compared = 0;
        for port in 0..3 {
            for ch in 0..2 {
                let wa = &a[port][ch][settle + lat..n + lat];
                let wb = &b[port][ch][settle + lat - from..n + lat - from];
                let d = max_diff(wa, wb);
                println!("{rate} Hz port {port} ch {ch}: max difference after one chunk {d:.2e} (peak {:.3})", peak(wa));
                assert!(peak(wa) > 0.01, "nothing to compare");
                assert!(d <= 1e-5, "{rate} Hz port {port} ch {ch}: runs from 0 and from {from} differ by {d}");
                compared += wa.len();
            }
        }
        println!("{rate} Hz: compared {compared} samples from {settle} on");
    }
}

/// The engine sleeps 3 s before its chunk (the slow-engine hook); `deactivate` meanwhile must
/// not wait for it.
fn child_deactivate() {
    let m = TempModel::new(TINY, "deactivate");
    let mut plug = Plug::load(&release_clap());
    plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(4))]);
    plug.activate(44100.0, 512);
    let x = song(44100, 0.2, 3);
    let mut out = outputs();
    for i in (0..4096).step_by(512) {
        plug.process([&x[0][i..i + 512], &x[1][i..i + 512]], &mut out);
    }
    // The inference thread has had a block and is now inside its 3 s chunk.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    plug.deactivate();
    let took = t.elapsed();
    println!("deactivate took {:.1} ms", took.as_secs_f64() * 1e3);
    assert!(took < Duration::from_millis(50), "deactivate waited {took:?} for the chunk");
    // A new activation right away works too (the old thread is still finishing its chunk).
    let t = Instant::now();
    plug.activate(44100.0, 512);
    assert!(t.elapsed() < Duration::from_millis(200), "activate waited {:?}", t.elapsed());
    plug.process([&x[0][..512], &x[1][..512]], &mut out);
}

/// Whether the plugin's library is mapped in this process (Linux: `/proc/self/maps`; `None`
/// where that cannot be read).
fn library_mapped() -> Option<bool> {
    let lib = release_clap().canonicalize().ok()?;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    Some(maps.lines().any(|l| l.ends_with(lib.to_str().unwrap_or("?"))))
}

/// After a removal that left a thread of the plugin running: the host has released the bundle
/// (the removed `Plug` held the last reference, so clack-host `dlclose`s it). The thread still
/// runs the plugin's code for a few seconds: the process must survive it, the library staying
/// mapped (pinned; glibc also keeps it once a thread has registered a thread-local destructor of
/// it, so here this cannot fail without the pin: [`assert_detached_and_pinned`] checks the pin).
fn outlive_detached_thread(secs: f32) {
    println!("library mapped after the bundle was released: {:?}", library_mapped());
    std::thread::sleep(Duration::from_secs_f32(secs));
    assert_ne!(library_mapped(), Some(false), "the library was unloaded under a running thread");
    println!("the detached thread has finished; still alive");
}

/// The engine sleeps 3 s before its chunk (the slow-engine hook); removing the plugin
/// (deactivate + destroy, as a host does) meanwhile must not wait for it.
fn child_destroy() {
    let m = TempModel::new(TINY, "destroy");
    let mut plug = Plug::load(&release_clap());
    plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(4))]);
    plug.activate(44100.0, 512);
    let x = song(44100, 0.2, 3);
    let mut out = outputs();
    for i in (0..4096).step_by(512) {
        plug.process([&x[0][i..i + 512], &x[1][i..i + 512]], &mut out);
    }
    // The inference thread has had a block and is now inside its 3 s chunk.
    std::thread::sleep(Duration::from_millis(300));
    let took = plug.destroy();
    println!("removing the plugin took {:.1} ms", took.as_secs_f64() * 1e3);
    assert!(took < Duration::from_millis(50), "removing the plugin waited {took:?} for the chunk");
    outlive_detached_thread(3.5);
}

/// Every model load takes 3 s longer (the slow-load hook); removing the plugin right after its
/// activation, while the model loads, must not wait for the load.
fn child_destroy_load() {
    let m = TempModel::new(TINY, "destroyload");
    let mut plug = Plug::load(&release_clap());
    plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(4))]);
    plug.activate(44100.0, 512);
    let x = song(44100, 0.2, 3);
    let mut out = outputs();
    for i in (0..2048).step_by(512) {
        plug.process([&x[0][i..i + 512], &x[1][i..i + 512]], &mut out);
    }
    std::thread::sleep(Duration::from_millis(200));
    let took = plug.destroy();
    println!("removing the plugin took {:.1} ms", took.as_secs_f64() * 1e3);
    assert!(took < Duration::from_millis(50), "removing the plugin waited {took:?} for the model load");
    outlive_detached_thread(3.5);
}

/// A project saved on another machine: the model's path is gone; the same model sits, under
/// another file name, in the models folder. Found by its UVR hash; with no hash saved, by name;
/// otherwise the plugin passes the input through and says why.
fn child_moved() {
    let shipped = TempModel::new(TINY, "moved-src");
    let folder = shipped.dir.join("models");
    std::fs::create_dir_all(&folder).unwrap();
    let renamed = folder.join("My vocal model.ckpt");
    std::fs::copy(&shipped.ckpt, &renamed).unwrap();
    std::fs::copy(&shipped.yaml, folder.join("My vocal model.yaml")).unwrap();
    // SAFETY: this child process is single-threaded here (no plugin loaded yet).
    unsafe { std::env::set_var("MDX_STEMS_MODELS", &folder) };
    let hash = mdx_stems::catalog::uvr_hash(&shipped.ckpt).unwrap();
    let gone = "/nonexistent/studio/models/tiny_instnorm_gelu.ckpt";
    for (name, hash, found) in [("", hash.as_str(), true), ("My vocal model", "", true), ("Someone else's model", "0123", false)] {
        let mut plug = Plug::load(&release_clap());
        plug.set_fields(&[("model_path", json!(gone)), ("model_name", json!(name)), ("model_hash", json!(hash))]);
        plug.activate(44100.0, 512);
        let fields = plug.state_json()["fields"].clone();
        println!("name {name:?}, hash {hash:?}: latency {}, model_path {}", plug.latency(), fields["model_path"]);
        if found {
            assert!(plug.latency() > 0, "the moved model was not found");
            assert_eq!(fields["model_path"], json!(json!(renamed).to_string()));
        } else {
            assert_eq!(plug.latency(), 0, "an unknown model must not be replaced by another");
            assert_eq!(fields["model_path"], json!(json!(gone).to_string()));
        }
    }
}

/// The debug cdylib (`assert_process_allocs`: any allocation or free inside `process` aborts)
/// through real-time and offline streams, random block sizes, resets, parameter changes, a
/// settings change that makes the audio thread request a restart, and late results.
fn child_alloc() {
    let m = TempModel::new(TINY, "alloc");
    let lib = debug_cdylib();
    for (rate, offline, slow_every) in [(44100u32, false, false), (48000, false, true), (48000, true, false)] {
        let mut plug = Plug::load(&lib);
        plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(2))]);
        plug.set_offline(offline);
        plug.activate(rate as f64, 1024);
        // With a transport (anchored streams, and a jump below) in the slow case.
        if slow_every {
            plug.transport = Some(12345);
        }
        let lat = plug.latency() as usize;
        let x = song(rate, 1.0, 21);
        let mut rng = rand::rngs::StdRng::seed_from_u64(rate as u64);
        let mut out = outputs();
        let total = x[0].len() + lat;
        let mut pos = 0;
        let gain = plug.param_id("Stem 1 gain");
        let mut calls = 0;
        while pos < total {
            let n = rng.random_range(1..=1024usize).min(total - pos);
            let l: Vec<f32> = (pos..pos + n).map(|i| x[0].get(i).copied().unwrap_or(0.0)).collect();
            let r: Vec<f32> = (pos..pos + n).map(|i| x[1].get(i).copied().unwrap_or(0.0)).collect();
            if calls % 7 == 3 {
                plug.queue_param(gain, rng.random_range(0.1..2.0));
            }
            plug.process([&l, &r], &mut out);
            if slow_every && calls % 5 == 0 {
                // Starve the audio thread of results now and then (late blocks, dropouts).
                std::thread::sleep(Duration::from_millis(30));
            }
            if calls == 40 {
                plug.reset();
            }
            if calls == 60 && plug.transport.is_some() {
                plug.transport = Some(777_777); // a locate: a new stream on the timeline grid
            }
            calls += 1;
            pos += n;
        }
        // A settings change: the audio thread asks for a restart from `process`.
        plug.set_fields(&[("overlap", json!(4))]);
        let z = vec![0f32; 128];
        plug.process([&z, &z], &mut out);
        assert!(plug.service(), "restart request expected");
        plug.process([&z, &z], &mut out);
        println!("{rate} Hz offline={offline}: {calls} process calls without allocating on the audio thread");
    }
}

/// An export as Ardour runs one: the host says "real time", runs three seconds of stopped
/// transport (silence) as fast as it can, then plays from before the song (a negative project
/// position, the latency's worth of pre-roll) as fast as it can. The render is proven during
/// the silence (2 s ahead of the clock), the stream anchors at the negative position, and the
/// result is the CLI's.
#[test]
fn an_export_with_a_silent_stopped_pre_roll_and_a_negative_start_equals_the_cli() {
    let _serial = serial();
    // At the model's rate, and at 48 kHz where the resamplers' first samples would also see
    // the stems of what comes before the project's start (they must not).
    for (rate, pre) in [(44100u32, 4096usize), (48000, 348)] {
        let m = TempModel::new(TINY, &format!("preroll{rate}"));
        let mut plug = Plug::load(&release_clap());
        plug.set_fields(&[("model_path", json!(m.ckpt)), ("overlap", json!(4))]);
        plug.activate(rate as f64, 1024);
        let lat = plug.latency() as usize;
        let x = song(rate, 3.0, 41);
        let n = x[0].len();
        let mut out = outputs();
        let z = vec![0f32; 1024];
        for _ in 0..3 * rate as usize / 1024 {
            plug.process([&z, &z], &mut out);
        }
        let mut out = outputs();
        plug.transport = Some(-(pre as i64));
        let total = pre + n + lat;
        let get = |c: &Vec<f32>, i: usize| if i >= pre { c.get(i - pre).copied().unwrap_or(0.0) } else { 0.0 };
        let mut pos = 0;
        while pos < total {
            let k = 1024.min(total - pos);
            let l: Vec<f32> = (pos..pos + k).map(|i| get(&x[0], i)).collect();
            let r: Vec<f32> = (pos..pos + k).map(|i| get(&x[1], i)).collect();
            plug.process([&l, &r], &mut out);
            pos += k;
        }
        let cli = cli_stems(&m, &x, rate, 4, &["vocals", "instrumental"]);
        for ch in 0..2 {
            let got = &out[0][ch][pre + lat..pre + lat + n];
            let want: Vec<f32> = cli[0][ch].iter().zip(&cli[1][ch]).map(|(a, b)| a + b).collect();
            let d = max_diff(got, &want);
            let first = got.iter().zip(&want).position(|(a, b)| (a - b).abs() > 1e-4);
            eprintln!("{rate} Hz ch {ch}: max |plugin - sum of cli stems| = {d:.2e}, first above 1e-4 at {first:?}");
            assert!(d <= 1e-4, "{rate} Hz ch {ch}: differs from the CLI by {d}");
        }
    }
}
