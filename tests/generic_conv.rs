//! The generic backend (what Metal runs) and its memory, on the CPU: the 3x3 convolution in row
//! bands of an im2col that never covers the whole image, against candle's own conv2d (values;
//! peak memory against the im2col candle's conv2d allocates on Metal), and a whole chunk pass's peak memory in f16 against the estimate `mdx-stems
//! info` prints for Metal. One test in this binary, so that the process's peak memory is this
//! test's alone. Linux with glibc only (the RSS probes read `/proc`, malloc is tuned for them).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use candle_core::{DType, Device, Tensor};
use mdx_stems::backend::Backend;
use mdx_stems::backend::cpu::kernels::rand_vec;
use mdx_stems::backend::generic::{self, Generic, Layout};
use mdx_stems::memory::{current_rss_bytes, peak_rss_bytes, reset_peak_rss};
use mdx_stems::device::{DeviceRequest, Precision};
use mdx_stems::engine::Separator;
use mdx_stems::nets::tfc_tdf::{Checkpoint, ModelConfig, TfcTdf};
use mdx_stems::options::EngineOptions;
use mdx_stems::testing::max_abs_diff;

fn tensor(v: Vec<f32>, shape: (usize, usize, usize, usize)) -> Tensor {
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Peak RSS growth (bytes) while `f` runs, and its result. Large blocks are mapped and unmapped
/// by malloc one by one (a fixed mmap threshold), so that memory freed earlier does not stay
/// resident and hide this step's peak (glibc otherwise raises the threshold to the largest block
/// freed and keeps such blocks in its heap).
fn peak_growth<R>(f: impl FnOnce() -> R) -> (u64, R) {
    // SAFETY: mallopt only changes allocator tuning.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) };
    reset_peak_rss();
    let before = current_rss_bytes().unwrap();
    let r = f();
    (peak_rss_bytes().unwrap().saturating_sub(before), r)
}

#[test]
fn banded_conv3x3_equals_conv2d_with_bounded_memory() {
    let g = Generic::new(Device::Cpu, DType::F32, Layout::ChannelsFirst);
    // Exactness: odd shapes, batch 2, one band and several (ragged last band, bands of one row).
    for (i, &(b, cin, cout, h, w)) in [(1, 1, 1, 1, 1), (2, 3, 5, 7, 13), (1, 8, 4, 16, 9), (2, 6, 7, 11, 33)].iter().enumerate() {
        let x = tensor(rand_vec(b * cin * h * w, 10 + i as u64), (b, cin, h, w));
        let k = tensor(rand_vec(cout * cin * 9, 20 + i as u64), (cout, cin, 3, 3));
        let want: Vec<f32> = x.conv2d(&k, 1, 1, 1, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let prepared = g.prepare_conv3x3(k).unwrap();
        for rows in [h, 4, 3, 1] {
            let got: Vec<f32> = generic::conv3x3_banded(&prepared, &x, rows).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let d = max_abs_diff(&got, &want);
            assert!(d <= 1e-5, "{:?} in bands of {rows} rows: differs from conv2d by {d}", (b, cin, cout, h, w));
        }
    }
    // Memory, on a layer of the full-size network's first scale (64 channels, 256 frames,
    // 512 bins: conv2d's im2col alone is 9 x 32 MiB).
    let (c, h, w) = (64, 256, 512);
    let x = tensor(rand_vec(c * h * w, 1), (1, c, h, w));
    let k = tensor(rand_vec(c * c * 9, 2), (c, c, 3, 3));
    let prepared = g.prepare_conv3x3(k).unwrap();
    let act = (c * h * w * 4) as u64;
    let rows = generic::conv_band_rows(1, c, h, w);
    assert!(rows < h, "the test shape should need several bands ({rows} rows)");
    let (ours, y1) = peak_growth(|| generic::conv3x3_banded(&prepared, &x, rows).unwrap());
    drop(y1);
    // What candle's conv2d allocates on Metal (metal_backend `conv2d`: an im2col buffer of
    // N x H x W x 9C elements, then the output). candle's CPU conv2d is tiled, so it is not the
    // comparison here.
    let metal_conv2d = 9 * act + act;
    let mib = |v: u64| v as f64 / (1 << 20) as f64;
    eprintln!(
        "3x3 conv {c}->{c} on {h}x{w} f32 (activation {:.0} MiB): peak growth {:.0} MiB in bands of {rows} rows; candle's conv2d on Metal allocates {:.0} MiB",
        mib(act),
        mib(ours),
        mib(metal_conv2d)
    );
    // The output (one activation) plus the band temporaries (one im2col band, at most
    // CONV_BAND_ELEMENTS, and the smaller padded input, product and crop).
    let bound = act + 2 * (generic::CONV_BAND_ELEMENTS as u64 * 4);
    assert!(ours <= bound, "banded conv grew the peak by {:.0} MiB (bound {:.0})", mib(ours), mib(bound));
    assert!(ours * 2 < metal_conv2d, "banded {:.0} MiB is not well under conv2d's {:.0} MiB", mib(ours), mib(metal_conv2d));
    drop((x, prepared));

    // A chunk pass of a mid-size network (64 channels on 256 frames x 256 bins) in f16, as
    // Metal would run it: the measured peak against `ModelConfig::generic_memory`.
    let cfg = ModelConfig::from_yaml_str(MID_CONFIG).unwrap();
    let chunk = cfg.audio.chunk_size;
    let options = EngineOptions { device: DeviceRequest::Cpu, precision: Some(Precision::F16), generic_ops: true, threads: 2, ..Default::default() };
    let mut sep = Separator::new(Box::new(TfcTdf::from_checkpoint(cfg.clone(), Checkpoint::random(&cfg, 7), None).unwrap()), &options).unwrap();
    assert_eq!(sep.backend_name(), "candle");
    let input = rand_vec(2 * chunk, 3);
    let mut out = vec![0f32; sep.num_stems() * 2 * chunk];
    sep.process_chunks(&input, 1, &mut out).unwrap(); // first pass: one-off allocations
    let (measured, ()) = peak_growth(|| sep.process_chunks(&input, 1, &mut out).unwrap());
    assert!(out.iter().all(|v| v.is_finite()) && out.iter().any(|v| *v != 0.0));
    let est = cfg.generic_memory(chunk, 1, 2);
    let estimate = est.activations + est.conv_temporaries;
    eprintln!(
        "generic f16 chunk pass (64 channels, 256 x 256): peak growth {:.0} MiB; estimate {:.0} MiB (activations {:.0}, conv temporaries {:.0})",
        mib(measured),
        mib(estimate),
        mib(est.activations),
        mib(est.conv_temporaries)
    );
    assert!(measured <= estimate, "measured {:.0} MiB above the estimate {:.0} MiB", mib(measured), mib(estimate));
    assert!(2 * estimate <= 3 * measured, "the estimate {:.0} MiB is more than 1.5 x the measured {:.0} MiB", mib(estimate), mib(measured));
}

/// 64 channels at full resolution, 256 frames (chunk = 255 hops) x 256 bins per subband.
const MID_CONFIG: &str = "audio:\n  chunk_size: 65280\n  dim_f: 512\n  dim_t: 256\n  hop_length: 256\n  n_fft: 2048\n  num_channels: 2\n  sample_rate: 44100\nmodel:\n  act: gelu\n  bottleneck_factor: 4\n  growth: 32\n  norm: InstanceNorm\n  num_blocks_per_scale: 1\n  num_channels: 64\n  num_scales: 2\n  num_subbands: 2\n  scale: [2, 2]\ntraining:\n  instruments: [vocals, other]\n  target_instrument: null\n";
