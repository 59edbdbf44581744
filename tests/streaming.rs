//! Streaming separation (`Separator::separate_streaming`): bit for bit the whole-signal path at
//! the model's rate, and exact ends at other rates (the stems of a file equal those of the same
//! file padded with a second of silence, over the whole length).

mod common;
use common::*;

use mdx_stems::audio::resample;
use mdx_stems::device::{DeviceRequest, Precision};
use mdx_stems::dsp::overlap::Scheme;
use mdx_stems::engine::{Separator, StreamSettings};
use mdx_stems::testing::stream_in_uneven_blocks;

fn load(name: &str) -> Separator {
    Separator::load(&fixture_load_options(name, "model.ckpt", DeviceRequest::Cpu, Precision::F32)).unwrap()
}

/// `mix` through the streaming path at `rate`, fed in blocks of uneven sizes: [outputs][2][n].
fn stream(sep: &mut Separator, mix: &[Vec<f32>], rate: u32, settings: StreamSettings) -> Vec<Vec<Vec<f32>>> {
    stream_in_uneven_blocks(sep, mix, rate, settings).chunks(2).map(|c| c.to_vec()).collect()
}

fn bits_equal(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn streaming_at_the_model_rate_is_bit_for_bit_the_whole_signal_path() {
    for (name, scheme, overlap, batch) in [
        ("small_groupnorm_relu_4stem", Scheme::Uvr, 4, 1),
        ("tiny_instnorm_gelu", Scheme::Msst, 4, 3),
        ("small_batchnorm_elu_target", Scheme::Uvr, 2, 2),
    ] {
        let mut sep = load(name);
        let mix = planar(&load_st(name, "demix.safetensors")["mix"]);
        let whole = sep.separate(&mix, scheme, overlap, batch, &mut |_, _| {}).unwrap();
        let got = stream(&mut sep, &mix, 44100, StreamSettings { scheme, overlap, batch });
        assert_eq!(got.len(), whole.len() + usize::from(sep.info().complement.is_some()), "{name}");
        for (s, w) in whole.iter().enumerate() {
            for ch in 0..2 {
                assert!(bits_equal(&got[s][ch], &w[ch]), "{name} {scheme:?}: stem {s} ch {ch} differs from the whole-signal path");
            }
        }
        if sep.info().complement.is_some() {
            for ch in 0..2 {
                let rest: Vec<f32> = mix[ch].iter().zip(&whole[0][ch]).map(|(x, t)| x - t).collect();
                assert!(bits_equal(&got[1][ch], &rest), "{name}: the complement is not mix - target");
            }
        }
    }
}

#[test]
fn the_stems_end_as_those_of_the_same_signal_padded_with_silence_at_every_rate() {
    let name = "tiny_instnorm_gelu";
    let mut sep = load(name);
    // A fixture's mix (about 27000 samples), loud to its last sample.
    let mix = planar(&load_st("small_groupnorm_relu_4stem", "demix.safetensors")["mix"]);
    let n = mix[0].len();
    assert!(peak(&mix[0][n - 200..]) > 0.05, "the signal must not end in silence");
    let settings = StreamSettings { scheme: Scheme::Uvr, overlap: 4, batch: 1 };
    for rate in [48000u32, 96000, 22050] {
        let got = stream(&mut sep, &mix, rate, settings);
        let padded: Vec<Vec<f32>> = mix.iter().map(|c| {
            let mut v = c.clone();
            v.resize(n + rate as usize, 0.0);
            v
        }).collect();
        let want = stream(&mut sep, &padded, rate, settings);
        for (s, stem) in got.iter().enumerate() {
            for ch in 0..2 {
                assert_eq!(stem[ch].len(), n);
                let d = max_abs_diff(&stem[ch], &want[s][ch][..n]);
                assert!(d == 0.0, "{rate} Hz stem {s} ch {ch}: differs from the padded signal's by {d}");
                assert!(peak(&stem[ch][n - 500..]) > 1e-3, "{rate} Hz: the end is silent, the test would prove nothing");
            }
        }
        // Cutting the model-rate signal at the end, as the whole-signal path does, changes the
        // last samples (what this test guards against), and nothing away from the end.
        let at_model = resample(&mix, rate, 44100).unwrap();
        let stems = sep.separate(&at_model, Scheme::Uvr, 4, 1, &mut |_, _| {}).unwrap();
        let cut = resample(&stems[0], 44100, rate).unwrap();
        let mut cut0 = cut[0].clone();
        cut0.resize(n, 0.0);
        let end = max_abs_diff(&cut0[n - 1000..], &got[0][0][n - 1000..]);
        let middle = max_abs_diff(&cut0[2000..n / 2], &got[0][0][2000..n / 2]);
        eprintln!("{rate} Hz: the cut path differs by {end:.2e} in the last 1000 samples, {middle:.2e} in the middle");
        assert!(end > 1e-4, "{rate} Hz: the cut path should differ at the end");
        assert!(middle < 1e-4, "{rate} Hz: both paths agree away from the ends");
    }
}

/// The plugin's streaming path, from a block in to its answer out, allocates and frees nothing
/// once the pipeline is full: through skipped chunks, a restart and plain blocks. The check is
/// nice-plug's allocation guard (debug builds: an allocation aborts the test binary).
#[test]
fn the_plugin_stream_does_not_allocate_per_block() {
    use mdx_stems::plugin::plan::StreamPlan;
    use mdx_stems::plugin::stream::Streamer;
    let plans = [
        StreamPlan::new(44100, 44100, 1984, 4, 2, 512, 0).unwrap(),
        StreamPlan::new(48000, 44100, 1984, 4, 4, 512, 1).unwrap(),
        StreamPlan::new(96000, 44100, 3968, 2, 2, 64, 0).unwrap(),
        StreamPlan::streaming(48000, 512, 300, 2, 256, 0).unwrap(),
    ];
    for plan in &plans {
        let (b, s, c) = (plan.block, plan.stems, plan.chunk);
        let mut st = Streamer::new(plan);
        let input: Vec<f32> = (0..2 * b).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
        let mut out = vec![0f32; s * 2 * b];
        // The chunk runner: a copy of the input per stem (allocation free).
        let mut run = |i: &[f32], o: &mut [f32], _fresh: bool| {
            for (k, o) in o.chunks_mut(2 * c).enumerate() {
                for (d, v) in o.iter_mut().zip(i) {
                    *d = v * (k + 1) as f32;
                }
            }
            true
        };
        // Fill the pipeline first (the first chunks, the resamplers' first outputs).
        let warm = (plan.latency_samples() + 4 * c) / b + 4;
        for _ in 0..warm {
            st.push_block(&input, false, &mut run, &mut out);
        }
        let mut valid = 0;
        nice_assert_no_alloc::assert_no_alloc(|| {
            for j in 0..warm + 400 {
                // Skipped chunks (taint), a restart on the grid, plain blocks.
                if j == warm {
                    st.restart_at((7 * warm * b) as u64, false, 0);
                }
                valid += st.push_block(&input, (40..45).contains(&j), &mut run, &mut out).valid as usize;
            }
        });
        assert!(valid > 100 && valid < warm + 400, "{} Hz: {valid} valid blocks", plan.host_rate);
    }
}

fn peak(a: &[f32]) -> f32 {
    a.iter().fold(0f32, |m, v| m.max(v.abs()))
}
