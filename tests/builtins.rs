//! The built-in separators (no model file): equal to librosa's HPSS on real music, stems that
//! add up to the mix, each one doing what it is for, and the names the catalog resolves.

use mdx_stems::audio::read_audio;
use mdx_stems::dsp::overlap::Scheme;
use mdx_stems::engine::{LoadOptions, Separator};
use mdx_stems::nets::builtin::center::CenterParams;
use mdx_stems::nets::builtin::hpss::HpssParams;
use mdx_stems::nets::builtin::{Builtin, BuiltinBuilder};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/hpss").join(name)
}

fn separate(b: Builtin, rate: u32, mix: &[Vec<f32>]) -> Vec<Vec<Vec<f32>>> {
    let mut sep = Separator::new(Box::new(BuiltinBuilder::new(b, rate)), &Default::default()).unwrap();
    sep.separate(mix, Scheme::Uvr, 1, 4, &mut |_, _| {}).unwrap()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `builtin:hpss` against `librosa.effects.hpss` with the same parameters, on 2 s of real
/// music (benches/librosa/make_hpss_golden.py). Both compute the same STFT, the same medians
/// (exact selections of the same magnitudes), the same soft masks and the same iSTFT; what
/// differs is float rounding: numpy's pocketfft and realfft in f32 give magnitudes a few ulp
/// apart, which moves the masks by about 1e-6 and, in the rare bin where two magnitudes in a
/// median window are within those ulp, selects the other one. Measured (librosa 0.11, numpy
/// 2.4, scipy 1.17): max |error| 1.2e-7 harmonic, 3.4e-8 percussive (2e-7 of the peak of 0.52,
/// a few ulp of the samples); the bound 2e-6 leaves 16x room for other numpy/FFT builds and is
/// 10,000x below any real mistake (a frame or a bin off, a margin swapped: errors of 1e-2).
/// A stream cannot mirror frames at an end it has not seen: the last `kernel/2` frames'
/// worth of output (0.4 s here) is compared separately, with a looser bound.
#[test]
fn hpss_equals_librosa_on_real_music() {
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(data("params.json")).unwrap()).unwrap();
    let u = |k: &str| meta[k].as_u64().unwrap() as usize;
    let f = |k: &str| meta[k].as_f64().unwrap() as f32;
    let p = HpssParams {
        n_fft: u("n_fft"),
        hop: u("hop"),
        kernel_harm: u("kernel_harm"),
        kernel_perc: u("kernel_perc"),
        power: f("power"),
        margin_harm: f("margin_harm"),
        margin_perc: f("margin_perc"),
    };
    let mix = read_audio(&data("mix.wav")).unwrap();
    let rate = mix.sample_rate;
    let mix = mix.channels;
    let harm = read_audio(&data("harmonic.wav")).unwrap().channels;
    let perc = read_audio(&data("percussive.wav")).unwrap().channels;
    let out = separate(Builtin::Hpss(p), rate, &mix);
    assert_eq!(out.len(), 3);
    let n = mix[0].len();
    let frames = n / p.hop + 1;
    // Output samples that only frames with a full median window inside the signal reach.
    let exact = (frames - p.lookahead()) * p.hop - p.n_fft / 2;
    let peak = mix.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let mut worst = [0f32; 2];
    let mut tail = [0f32; 2];
    for ch in 0..2 {
        for (k, (got, want)) in [(&out[0][ch], &perc[ch]), (&out[1][ch], &harm[ch])].into_iter().enumerate() {
            worst[k] = worst[k].max(max_abs(&got[..exact], &want[..exact]));
            tail[k] = tail[k].max(max_abs(&got[exact..], &want[exact..]));
        }
        // The residual is what neither mask keeps: mix - harmonic - percussive.
        let resid: Vec<f32> = (0..n).map(|i| mix[ch][i] - harm[ch][i] - perc[ch][i]).collect();
        assert!(max_abs(&out[2][ch][..exact], &resid[..exact]) < 4e-5);
    }
    eprintln!("max |error| vs librosa over {exact} of {n} samples (peak {peak}): percussive {:.2e}, harmonic {:.2e}; last {} samples: {:.2e}, {:.2e}", worst[0], worst[1], n - exact, tail[0], tail[1]);
    assert!(worst[0] < 2e-6 && worst[1] < 2e-6, "{worst:?}");
    // Near the end the stream sees zeros where librosa mirrors frames: close, not equal
    // (measured 3.2e-2, 6 % of the peak, in the last 0.37 s).
    assert!(tail[0] < 0.1 * peak && tail[1] < 0.1 * peak, "{tail:?}");
    // And the comparison is not vacuous: both stems carry signal there.
    let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    assert!(rms(&perc[0][..exact]) > 1e-3 && rms(&harm[0][..exact]) > 1e-2);
}

#[test]
fn stems_of_every_builtin_add_up_to_the_mix() {
    let mix = read_audio(&data("mix.wav")).unwrap();
    for name in mdx_stems::nets::builtin::ALL {
        let b = Builtin::by_name(name).unwrap();
        for rate in [mix.sample_rate, 48000] {
            let out = separate(b, rate, &mix.channels);
            assert_eq!(out.len(), b.stems().len());
            for ch in 0..2 {
                let err = (0..mix.channels[ch].len())
                    .map(|i| (out.iter().map(|s| s[ch][i]).sum::<f32>() - mix.channels[ch][i]).abs())
                    .fold(0f32, f32::max);
                assert!(err < 1e-5, "{name} at {rate} Hz, channel {ch}: {err}");
            }
        }
    }
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

#[test]
fn hpss_puts_clicks_in_drums_and_a_held_tone_in_harmonic() {
    let rate = 44100;
    let n = rate as usize * 3;
    let tone: Vec<f32> = (0..n).map(|i| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin()).collect();
    let clicks: Vec<f32> = (0..n).map(|i| if i % 11025 == 100 { 0.9 } else { 0.0 }).collect();
    let mix: Vec<Vec<f32>> = (0..2).map(|_| tone.iter().zip(&clicks).map(|(a, b)| a + b).collect()).collect();
    let out = separate(Builtin::by_name("builtin:hpss").unwrap(), rate, &mix);
    // Correlation of each stem with each source, away from the edges.
    let r = 22050..n - 22050;
    let dot = |a: &[f32], b: &[f32]| a[r.clone()].iter().zip(&b[r.clone()]).map(|(x, y)| x * y).sum::<f32>();
    let share = |stem: &[f32], src: &[f32]| dot(stem, src) / dot(src, src);
    assert!(share(&out[1][0], &tone) > 0.9, "harmonic keeps the tone: {}", share(&out[1][0], &tone));
    assert!(share(&out[0][0], &tone) < 0.05, "drums do not: {}", share(&out[0][0], &tone));
    assert!(share(&out[0][0], &clicks) > 0.5, "drums keep the clicks: {}", share(&out[0][0], &clicks));
    assert!(share(&out[1][0], &clicks) < 0.2, "harmonic does not: {}", share(&out[1][0], &clicks));
}

#[test]
fn center_keeps_the_centred_source_and_sides_the_panned_one() {
    let rate = 44100;
    let n = rate as usize * 2;
    let voice: Vec<f32> = (0..n).map(|i| 0.3 * (2.0 * std::f32::consts::PI * 330.0 * i as f32 / rate as f32).sin()).collect();
    let mut seed = 1u32;
    let guitar: Vec<f32> = (0..n)
        .map(|_| {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            0.2 * ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
        })
        .collect();
    // Voice in the middle, noise hard left.
    let mix = vec![voice.iter().zip(&guitar).map(|(v, g)| v + g).collect::<Vec<f32>>(), voice.clone()];
    let out = separate(Builtin::Center(CenterParams::default()), rate, &mix);
    let r = 8192..n - 8192;
    let err_c = rms(&out[0][1][r.clone()].iter().zip(&voice[r.clone()]).map(|(a, b)| a - b).collect::<Vec<_>>());
    let sides_left_minus_guitar: Vec<f32> = out[1][0][r.clone()].iter().zip(&guitar[r.clone()]).map(|(a, b)| a - b).collect();
    eprintln!("center R vs voice: rms err {err_c}; sides L vs noise: rms err {}", rms(&sides_left_minus_guitar));
    assert!(err_c < 0.2 * rms(&voice), "center R ~ voice: {err_c}");
    assert!(rms(&sides_left_minus_guitar) < 0.5 * rms(&guitar), "sides L ~ the panned noise");
    assert!(rms(&out[1][1][r.clone()]) < 0.2 * rms(&voice), "nothing of the voice in the right side: {}", rms(&out[1][1][r]));
}

#[test]
fn builtins_load_by_name_and_report_their_latency() {
    for (name, latency) in [("builtin:hpss", 15 * 512 + 2048 - 512), ("builtin:center", 2048 - 512)] {
        let mut opts = LoadOptions::new(name);
        opts.sample_rate = Some(48000);
        let sep = Separator::load(&opts).unwrap();
        assert_eq!(sep.sample_rate(), 48000);
        assert_eq!(sep.info().schedule, mdx_stems::nets::Schedule::Stream { block: 512, latency }, "{name}");
        assert_eq!(sep.device_name(), "CPU");
    }
    let err = Separator::load(&LoadOptions::new("builtin:nope")).err().unwrap().to_string();
    assert!(err.contains("builtin:hpss") && err.contains("builtin:center"), "{err}");
    assert_eq!(mdx_stems::catalog::resolve_model_arg("BUILTIN:HPSS").unwrap(), PathBuf::from("builtin:hpss"));
}

/// Cost of the separation thread, as the plugin's worker runs it (one 512-sample block per
/// call, one thread): CPU time per second of 48 kHz stereo audio. The figures of docs/benchmarks.md come
/// from this test (`cargo test --release --test builtins cost -- --nocapture`); the assertion
/// is loose because CI machines are shared.
#[test]
fn cost_of_the_builtins_per_second_of_48k_stereo() {
    let rate = 48000u32;
    let secs = 10.0;
    let n = (rate as f32 * secs) as usize;
    let mut seed = 7u32;
    let mix: Vec<Vec<f32>> = (0..2)
        .map(|_| {
            (0..n)
                .map(|i| {
                    seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                    0.3 * (i as f32 * 0.05).sin() + 0.1 * ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
                })
                .collect()
        })
        .collect();
    for name in mdx_stems::nets::builtin::ALL {
        let mut sep = Separator::new(Box::new(BuiltinBuilder::new(Builtin::by_name(name).unwrap(), rate)), &Default::default()).unwrap();
        let t = std::time::Instant::now();
        sep.separate(&mix, Scheme::Uvr, 1, 1, &mut |_, _| {}).unwrap();
        let share = t.elapsed().as_secs_f64() / secs as f64;
        eprintln!("{name}: {:.2} % of one core at 48 kHz stereo ({:.1} ms per second of audio)", 100.0 * share, 1000.0 * share);
        assert!(share < 0.2, "{name}: {share}");
    }
}
