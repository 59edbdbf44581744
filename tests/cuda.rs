//! GPU-only tests (feature `cuda`; need an NVIDIA GPU): our kernels against candle's reference
//! ops, and the engine behaviours on a GPU (device choice, CPU retry, OOM, memory, warm-up).
//! Run them one at a time (they measure and exhaust device memory):
//!   cargo test --release --features cudnn --test cuda -- --test-threads=1
//! `full_size_*` are #[ignore]d timings of the full-size network (random weights).
#![cfg(feature = "cuda")]

mod common;
use common::*;

use candle_core::{DType, Device, Tensor};
use mdx_stems::backend::cuda::kernels;
use mdx_stems::backend::generic::{Generic, Layout};
use mdx_stems::backend::{Act, Backend, NormSpec, NormWeights};
use mdx_stems::device::{self, DeviceRequest, Precision};
use mdx_stems::engine::{LoadOptions, Separator};
use mdx_stems::memory;
use mdx_stems::nets::tfc_tdf::{self, ActKind, Checkpoint, ModelConfig, Net, Network, NormKind, TfcTdf};
use mdx_stems::options::{EngineOptions, OpProfiler};
use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

fn gpu() -> Device {
    Device::new_cuda(0).expect("a CUDA GPU")
}

/// ||a - b|| / ||b||
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let a = to_f64(a);
    let b = to_f64(b);
    let (mut d, mut n) = (0f64, 0f64);
    for (x, y) in a.iter().zip(&b) {
        assert!(x.is_finite(), "non-finite output");
        d += (x - y) * (x - y);
        n += y * y;
    }
    (d / n.max(1e-300)).sqrt()
}

fn randn(shape: &[usize], mean: f64, std: f64) -> Tensor {
    Tensor::randn(mean as f32, std as f32, shape, &Device::Cpu).unwrap()
}

/// The norm `kind` + `act` over `c` channels with the parameters `n.*` of `map`.
fn norm_spec(kind: NormKind, act: ActKind, c: usize, map: &HashMap<String, Tensor>) -> NormSpec {
    let t = |k: &str| map[&format!("n.{k}")].clone();
    let weights = match kind {
        NormKind::Identity => NormWeights::Identity,
        NormKind::Instance => NormWeights::Instance { weight: t("weight"), bias: t("bias") },
        NormKind::Group(groups) => NormWeights::Group { groups, weight: t("weight"), bias: t("bias") },
        NormKind::Batch => NormWeights::Batch { weight: t("weight"), bias: t("bias"), mean: t("running_mean"), var: t("running_var") },
    };
    let act = match act {
        ActKind::Gelu => Act::Gelu,
        ActKind::Relu => Act::Relu,
        ActKind::Elu(a) => Act::Elu(a),
    };
    NormSpec { weights, act, channels: c }
}

#[test]
fn norm_act_kernel_matches_reference() {
    let dev = gpu();
    let cases: &[(NormKind, ActKind, [usize; 4])] = &[
        (NormKind::Instance, ActKind::Gelu, [1, 64, 96, 128]),
        (NormKind::Instance, ActKind::Gelu, [2, 160, 128, 128]),
        (NormKind::Instance, ActKind::Relu, [1, 256, 96, 256]),
        (NormKind::Instance, ActKind::Gelu, [2, 16, 40, 12]),
        (NormKind::Instance, ActKind::Relu, [1, 8, 16, 640]),
        (NormKind::Instance, ActKind::Gelu, [3, 5, 7, 1280]),
        (NormKind::Group(4), ActKind::Relu, [2, 16, 32, 12]),
        (NormKind::Group(4), ActKind::Gelu, [1, 32, 32, 128]),
        (NormKind::Batch, ActKind::Elu(1.0), [2, 16, 32, 24]),
        (NormKind::Identity, ActKind::Gelu, [2, 16, 32, 16]),
        (NormKind::Identity, ActKind::Elu(0.5), [1, 3, 5, 7]),
    ];
    for &(kind, act, [b, h, w, c]) in cases {
        let mut map = HashMap::new();
        map.insert("n.weight".to_string(), randn(&[c], 1.0, 0.3));
        map.insert("n.bias".to_string(), randn(&[c], 0.0, 0.3));
        map.insert("n.running_mean".to_string(), randn(&[c], 0.5, 0.3));
        map.insert("n.running_var".to_string(), randn(&[c], 0.0, 1.0).abs().unwrap().affine(1.0, 0.1).unwrap());
        let spec = norm_spec(kind, act, c, &map);
        // The reference: candle's ops in NCHW, through transposes.
        let reference = Generic::new(Device::Cpu, DType::F32, Layout::ChannelsLast);
        let norm = reference.prepare_norm(spec.clone()).unwrap();
        // Offset mean and large spread: the statistics must not cancel.
        let x = randn(&[b, h, w, c], 3.0, 2.0);
        let want = reference.norm_act(&norm, Cow::Borrowed(&x)).unwrap();
        let params = kernels::NormParams::new(&norm, c, &dev).unwrap();
        for (dt, tol) in [(DType::F32, 2e-6), (DType::F16, 2e-3), (DType::BF16, 1.5e-2)] {
            let xg = x.to_dtype(dt).unwrap().to_device(&dev).unwrap();
            let got = kernels::norm_act(&xg, &params, spec.act, false).unwrap().to_device(&Device::Cpu).unwrap();
            let e = rel_err(&got, &want);
            eprintln!("norm_act {kind:?} {act:?} {:?} {dt:?}: rel err {e:.2e}", [b, h, w, c]);
            assert!(e < tol, "norm_act {kind:?} {act:?} {:?} {dt:?}: rel err {e:.2e} >= {tol:.0e}", [b, h, w, c]);
        }
    }
}

#[cfg(feature = "cudnn")]
#[test]
fn cudnn_conv_matches_reference() {
    let dev = gpu();
    let search = EngineOptions::default().cuda.cudnn_search;
    let convs = mdx_stems::backend::cuda::cudnn::Convs::new(
        match &dev {
            Device::Cuda(d) => d,
            _ => unreachable!(),
        },
        search,
    )
    .unwrap();
    for &(n, h, w, c, k, r, pad, stride) in &[
        (2usize, 20usize, 36usize, 12usize, 12usize, 3usize, 1usize, 1usize),
        (1, 32, 64, 128, 128, 3, 1, 1),
        (2, 8, 16, 256, 128, 3, 1, 1),
        (1, 16, 32, 64, 96, 2, 0, 2),
    ] {
        let x = randn(&[n, c, h, w], 0.0, 1.0);
        let wt = randn(&[k, c, r, r], 0.0, 1.0 / ((c * r * r) as f64).sqrt());
        let want = x.conv2d(&wt, pad, stride, 1, 1).unwrap().permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
        let xn = x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
        let wk = wt.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
        for (dt, tf32, tol) in [(DType::F32, false, 1e-6), (DType::F32, true, 3e-3), (DType::F16, false, 2e-3), (DType::BF16, false, 1.5e-2)] {
            let got = convs
                .conv(&xn.to_dtype(dt).unwrap().to_device(&dev).unwrap(), &wk.to_dtype(dt).unwrap().to_device(&dev).unwrap(), pad, stride, tf32)
                .unwrap()
                .to_device(&Device::Cpu)
                .unwrap();
            let e = rel_err(&got, &want);
            eprintln!("conv n{n} {h}x{w} {c}->{k} k{r} {dt:?}{}: rel err {e:.2e}", if tf32 { "/tf32" } else { "" });
            assert!(e < tol, "conv {c}->{k} {dt:?} tf32={tf32}: rel err {e:.2e} >= {tol:.0e}");
        }
    }
    for p in convs.plans() {
        eprintln!("  plan {}: {} ({} B)", p.shape, p.algo, p.workspace);
    }
}

#[test]
fn gpu_stft_matches_cpu_stft() {
    let dev = gpu();
    let Device::Cuda(cd) = &dev else { unreachable!() };
    // (n_fft, hop, dim_f, len): a fixture's and the full-size config.
    for &(n_fft, hop, dim_f, len) in &[(512usize, 128usize, 256usize, 3968usize), (8192, 1024, 4096, 261120)] {
        let n = 2;
        let g = mdx_stems::backend::cuda::stft::GpuStft::new(cd, n_fft, hop, dim_f, len).unwrap();
        let mut cpu = mdx_stems::dsp::stft::Stft::new(n_fft, hop, dim_f, len);
        let audio: Vec<f32> = to_f32(&randn(&[n * 2 * len], 0.0, 0.3));
        let per = cpu.spec_len();
        let mut want = vec![0f32; n * 2 * per];
        for (i, x) in audio.chunks_exact(len).enumerate() {
            cpu.forward(x, &mut want[i * per..(i + 1) * per]);
        }
        let a = Tensor::from_slice(&audio, (n, 2, len), &Device::Cpu).unwrap().to_device(&dev).unwrap();
        let got = to_f32(&g.forward(&a, DType::F32).unwrap());
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&got, &want);
        eprintln!("GPU STFT n_fft {n_fft}: max abs diff {d:.3e} (max |spec| {scale:.1})");
        assert!(d <= 2e-5 * scale, "GPU STFT differs by {d}");
        // Inverse of two "stems" (the spectrogram and its half) against the CPU iSTFT.
        let spec = Tensor::from_slice(&want, (n, 1, 4, dim_f, cpu.frames()), &Device::Cpu).unwrap();
        let spec2 = Tensor::cat(&[&spec, &(&spec * 0.5).unwrap()], 1).unwrap();
        let mut want_y = vec![0f32; n * 2 * 2 * len];
        let s2 = to_f32(&spec2);
        // Signal j (= (chunk*stems + stem)*2 + channel) is planes 2j (re) and 2j+1 (im).
        for (j, y) in want_y.chunks_exact_mut(len).enumerate() {
            cpu.inverse(&s2[j * per..(j + 1) * per], y);
        }
        let got_y = to_f32(&g.inverse(&spec2.to_device(&dev).unwrap()).unwrap());
        let d = max_abs_diff(&got_y, &want_y);
        eprintln!("GPU iSTFT n_fft {n_fft}: max abs diff {d:.3e}");
        assert!(d <= 1e-5, "GPU iSTFT differs by {d}");
    }
}

/// The network alone (spectrogram in, spectrogram out) on the GPU against the NCHW reference
/// in float64 on the CPU: f32 within 3e-6 of the output's range (max abs; the f32 CPU path is
/// at 1.05e-6 on the BatchNorm/ELU fixture, see `tests/nhwc.rs`), f16/bf16 by SNR.
#[test]
fn gpu_network_matches_cpu_reference() {
    let dev = gpu();
    for name in FIXTURES {
        let cfg = ModelConfig::from_yaml_file(&fixture_dir(name).join("config.yaml")).unwrap();
        let ckpt = Checkpoint::read(&fixture_dir(name).join("model.ckpt")).unwrap();
        let spec = load_st(name, "forward.safetensors")["spec"].to_dtype(DType::F32).unwrap();
        // The reference in float64 with candle's own CPU ops (the f32 CPU path runs Winograd
        // convolutions, whose rounding differs from a direct convolution's by ~1e-6 relative).
        let reference = Net::from_checkpoint(Generic::new(Device::Cpu, DType::F64, Layout::ChannelsFirst), &cfg, &ckpt.tensors).unwrap();
        let want = reference.forward_spec(&spec.to_dtype(DType::F64).unwrap()).unwrap();
        let want64 = to_f64(&want);
        let want = want.to_dtype(DType::F32).unwrap();
        for dt in [DType::F32, DType::F16, DType::BF16] {
            let net = tfc_tdf::network(&cfg, &ckpt.tensors, &dev, dt, &EngineOptions::default()).unwrap();
            let got = net.forward_spec(&spec.to_dtype(dt).unwrap().to_device(&dev).unwrap()).unwrap();
            let got = to_f32(&got);
            let d = max_abs_diff(&got, &to_f32(&want));
            let snr = snr_db(&got, &want64);
            eprintln!("{name} {dt:?}: network max abs diff {d:.3e}, SNR {snr:.1} dB");
            // Spectrogram-domain outputs reach ~4000.
            let scale = to_f32(&want).iter().fold(1f32, |m, v| m.max(v.abs()));
            match dt {
                DType::F32 => assert!(d <= 3e-6 * scale, "{name}: f32 network differs by {d} (max {scale})"),
                DType::F16 => assert!(snr >= 50.0, "{name}: f16 SNR {snr:.1}"),
                _ => assert!(snr >= 30.0, "{name}: bf16 SNR {snr:.1}"),
            }
        }
    }
}

#[test]
fn auto_device_picks_cuda() {
    let s = device::select(DeviceRequest::Auto).unwrap();
    assert!(s.is_gpu() && s.name.starts_with("CUDA"), "auto picked {}", s.name);
    assert!(s.warning.is_none(), "{:?}", s.warning);
    assert_eq!(s.default_precision(), Precision::F16);
}

fn fixture_opts(name: &str, precision: Precision) -> LoadOptions {
    fixture_load_options(name, "model.ckpt", DeviceRequest::Cuda, precision)
}

#[test]
fn gpu_error_retries_the_chunk_on_cpu() {
    let name = "small_groupnorm_relu_4stem";
    let mut sep = Separator::load(&fixture_opts(name, Precision::F32)).unwrap();
    assert!(sep.device().is_cuda());
    sep.options().faults.fail_next_gpu_pass();
    let out = fixture_forward(&mut sep, name);
    let w = warnings(&sep);
    eprintln!("warnings: {w}");
    assert!(w.contains("computed on the CPU"), "no CPU retry reported: {w}");
    let d = max_abs_diff(&out, &to_f32(&load_st(name, "forward.safetensors")["out"]));
    assert!(d <= 1e-4, "CPU retry differs from the reference by {d}");
    // The GPU keeps working after the retry.
    sep.drain_events();
    let out2 = fixture_forward(&mut sep, name);
    assert!(sep.events().is_empty(), "{:?}", sep.events());
    assert!(max_abs_diff(&out2, &out) <= 1e-4);
}

/// The chunk pass replayed as a CUDA graph gives exactly what the same pass launched op by op
/// gives, for new input each call and for two batch sizes; a GPU error is still caught.
#[test]
fn cuda_graph_replay_matches_op_by_op() {
    for (name, precision) in [("small_groupnorm_relu_4stem", Precision::F32), ("tiny_instnorm_gelu", Precision::F16)] {
        let mut sep = Separator::load(&fixture_opts(name, precision)).unwrap();
        let (c, s) = (sep.chunk_len(), sep.num_stems());
        for m in [2usize, 1] {
            let mix = |seed: usize| -> Vec<f32> { (0..m * 2 * c).map(|i| (((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0) * 0.5).collect() };
            let mut graph = vec![0f32; m * s * 2 * c];
            let mut eager = vec![0f32; m * s * 2 * c];
            // Call 1 records (its result comes from the eager pass before recording).
            sep.process_chunks(&mix(1), m, &mut graph).unwrap();
            assert!(sep.cuda_graph_batches().contains(&m), "{name}: batch {m} not recorded: {:?}", sep.events());
            for seed in [2, 3] {
                sep.process_chunks(&mix(seed), m, &mut graph).unwrap();
                // Per-stage profiling runs op by op.
                sep.profile = Some(Default::default());
                sep.process_chunks(&mix(seed), m, &mut eager).unwrap();
                sep.profile = None;
                assert!(graph.iter().any(|v| *v != 0.0), "{name}: silent output");
                assert_eq!(max_abs_diff(&graph, &eager), 0.0, "{name} {precision:?} batch {m} seed {seed}: replay differs");
            }
        }
        assert!(sep.events().is_empty(), "{name}: {:?}", sep.events());
        sep.options().faults.fail_next_gpu_pass();
        let mut out = vec![0f32; s * 2 * c];
        sep.process_chunks(&vec![0.1f32; 2 * c], 1, &mut out).unwrap();
        assert!(warnings(&sep).contains("computed on the CPU"), "{name}: injected fault not seen: {:?}", sep.events());
    }
}

/// The full-size InstVoc HQ config (2.43 TFLOP per chunk).
fn full_config() -> ModelConfig {
    ModelConfig::from_yaml_str(include_str!("../assets/uvr-mdxc/model_2_stem_full_band_8k.yaml")).unwrap()
}

fn random_checkpoint(cfg: &ModelConfig) -> Checkpoint {
    Checkpoint::random(cfg, 0)
}

fn full_opts(precision: Precision, warmup: bool) -> EngineOptions {
    EngineOptions { device: DeviceRequest::Cuda, precision: Some(precision), warmup, ..Default::default() }
}

/// The engine on `ckpt` (random weights: its CPU fallback could not read them again).
fn full_separator(cfg: &ModelConfig, ckpt: Checkpoint, opts: &EngineOptions) -> Separator {
    Separator::new(Box::new(TfcTdf::from_checkpoint(cfg.clone(), ckpt, None).unwrap()), opts).unwrap()
}

fn used_mb(dev: &Device) -> f64 {
    dev.synchronize().unwrap();
    memory::gpu_memory_used(dev).expect("GPU memory is reported") as f64 / 1048576.0
}

#[test]
fn memory_is_reported_and_freed_on_unload_and_warmup_runs_at_load() {
    let cfg = full_config();
    let dev = gpu();
    let before = used_mb(&dev);
    let t = Instant::now();
    let mut sep = full_separator(&cfg, random_checkpoint(&cfg), &full_opts(Precision::F16, true));
    let load = t.elapsed();
    let loaded = used_mb(sep.device());
    let input: Vec<f32> = (0..2 * sep.chunk_len()).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let mut out = vec![0f32; sep.num_stems() * 2 * sep.chunk_len()];
    let t = Instant::now();
    sep.process_chunks(&input, 1, &mut out).unwrap();
    let first = t.elapsed();
    let t = Instant::now();
    sep.process_chunks(&input, 1, &mut out).unwrap();
    let second = t.elapsed();
    assert!(out.iter().all(|v| v.is_finite()));
    drop(sep);
    let after = used_mb(&dev);
    eprintln!(
        "GPU memory: {before:.0} MB before load, {loaded:.0} MB loaded (after warm-up), {after:.0} MB after unload; \
         load+warm-up {:.0} ms, first chunk {:.1} ms, second {:.1} ms",
        load.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        second.as_secs_f64() * 1e3
    );
    assert!(loaded > before + 200.0, "weights (224 MB in f16) not visible in the reported memory");
    assert!(after < loaded - 200.0, "memory not freed on unload: {loaded:.0} MB -> {after:.0} MB");
    // Warm-up at load took the one-time costs (module loads, cuDNN algorithm search).
    assert!(first.as_secs_f64() < 3.0 * second.as_secs_f64() + 0.05, "first chunk after warm-up is slow: {first:?} vs {second:?}");
}

#[test]
fn out_of_memory_halves_the_batch() {
    let cfg = full_config();
    let mut sep = full_separator(&cfg, random_checkpoint(&cfg), &full_opts(Precision::F16, true));
    let Device::Cuda(cd) = sep.device().clone() else { unreachable!() };
    // Leave about 3 GB free: 8 chunks need more (about 0.8 GB each at f16), 2 fit.
    sep.device().synchronize().unwrap();
    let (free, _) = candle_core::cuda::cudarc::driver::result::mem_get_info().unwrap();
    let hog = unsafe { cd.alloc::<u8>(free.saturating_sub(3 << 30)) }.unwrap();
    let n = 8;
    let c = sep.chunk_len();
    let one: Vec<f32> = (0..2 * c).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let input: Vec<f32> = (0..n).flat_map(|_| one.iter().copied()).collect();
    let mut out = vec![0f32; n * sep.num_stems() * 2 * c];
    let t = Instant::now();
    let r = sep.process_chunks(&input, n, &mut out);
    eprintln!("{n} chunks with {} GB free: {:?} in {:.2} s; warnings: {:?}", 3, r.as_ref().err(), t.elapsed().as_secs_f64(), sep.events());
    drop(hog);
    r.unwrap();
    assert!(sep.events().iter().any(|w| w.to_string().contains("halving the batch")), "no OOM at batch {n}?");
    assert!(!sep.events().iter().any(|w| w.to_string().contains("computed on the CPU")), "fell back to the CPU");
    // Every chunk got the same answer, whatever batch it ran in.
    let per = sep.num_stems() * 2 * c;
    let first = &out[..per];
    for (i, o) in out.chunks_exact(per).enumerate() {
        let d = max_abs_diff(o, first);
        assert!(d < 1e-2, "chunk {i} differs by {d}");
    }
    // The smaller batch is kept: the next call does not run out of memory again.
    sep.drain_events();
    sep.process_chunks(&input, n, &mut out).unwrap();
    assert!(sep.events().is_empty(), "{:?}", sep.events());
}

/// Median of `reps` timings of `f` (device synchronised by `f`).
fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Network-only and end-to-end times of the full-size network; per-op profile for f16 b1.
/// MDX_BENCH_CASES="f16:1,f16:4,f32:1,tf32:1,bf16:1" (default) picks the cases.
#[test]
#[ignore]
fn full_size_speed() {
    let cfg = full_config();
    let ckpt = random_checkpoint(&cfg);
    let cases = std::env::var("MDX_BENCH_CASES").unwrap_or_else(|_| "f16:1,f16:4,f32:1,tf32:1,bf16:1".into());
    let mut rows = vec![];
    for case in cases.split(',') {
        let (p, b) = case.split_once(':').unwrap();
        let batch: usize = b.parse().unwrap();
        let (prec, tf32) = match p {
            "f16" => (Precision::F16, false),
            "bf16" => (Precision::Bf16, false),
            "f32" => (Precision::F32, false),
            "tf32" => (Precision::F32, true),
            _ => panic!("case {case}"),
        };
        let mut opts = full_opts(prec, true);
        opts.cuda.tf32 = tf32;
        let profiler = OpProfiler::default();
        opts.op_profiler = Some(profiler.clone());
        let ck = Checkpoint { path: ckpt.path.clone(), tensors: ckpt.tensors.clone() };
        let mut sep = full_separator(&cfg, ck, &opts);
        let dev = sep.device().clone();
        let c = sep.chunk_len();
        let input: Vec<f32> = (0..batch * 2 * c).map(|i| (((i * 7919) % 1000) as f32 / 500.0 - 1.0) * 0.5).collect();
        let mut out = vec![0f32; batch * sep.num_stems() * 2 * c];
        sep.process_chunks(&input, batch, &mut out).unwrap(); // plans for this batch size
        let e2e = median_ms(10, || sep.process_chunks(&input, batch, &mut out).unwrap());
        // Network alone on a device-resident spectrogram.
        let net = tfc_tdf::network(&cfg, &ckpt.tensors, &dev, prec.dtype(), &opts).unwrap();
        let spec = Tensor::randn(0f32, 1f32, (batch, 4, cfg.audio.dim_f, cfg.audio.dim_t), &dev).unwrap().to_dtype(prec.dtype()).unwrap();
        net.forward_spec(&spec).unwrap();
        dev.synchronize().unwrap();
        let netms = median_ms(20, || {
            net.forward_spec(&spec).unwrap();
            dev.synchronize().unwrap();
        });
        // Host time to enqueue one forward pass (launch overhead): if it is close to the
        // synchronised time, the GPU waits for the CPU.
        let mut enq = vec![];
        for _ in 0..10 {
            let t = Instant::now();
            let y = net.forward_spec(&spec).unwrap();
            enq.push(t.elapsed().as_secs_f64() * 1e3);
            dev.synchronize().unwrap();
            drop(y);
        }
        enq.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let enqms = enq[enq.len() / 2];
        rows.push(format!(
            "| {p} | {batch} | {:.2} | {:.2} | {:.2} | {:.0} |",
            netms / batch as f64,
            enqms / batch as f64,
            e2e / batch as f64,
            used_mb(&dev)
        ));
        if batch == 1 {
            profiler.start();
            net.forward_spec(&spec).unwrap();
            let prof = profiler.take();
            let total: f64 = prof.iter().map(|(_, d, _)| d.as_secs_f64() * 1e3).sum();
            eprintln!("per-op profile ({p}, batch 1, synchronised per op; sum {total:.2} ms):");
            for (k, d, n) in prof {
                eprintln!("  {k:44} {:8.3} ms  {n:4} calls", d.as_secs_f64() * 1e3);
            }
        }
        if p == "f16" && batch == 1 {
            // The full-size network in f16/bf16 (cuDNN graph engines or legacy algorithms only)
            // against exact f32 on the same spectrogram.
            let net32 = tfc_tdf::network(&cfg, &ckpt.tensors, &dev, DType::F32, &EngineOptions::default()).unwrap();
            let spec32 = spec.to_dtype(DType::F32).unwrap();
            let want = to_f64(&net32.forward_spec(&spec32).unwrap());
            drop(net32);
            for (dt, no_graph) in [(DType::F16, false), (DType::F16, true), (DType::BF16, false)] {
                let mut o = EngineOptions::default();
                o.cuda.cudnn_search.graph_api = !no_graph;
                let n2 = tfc_tdf::network(&cfg, &ckpt.tensors, &dev, dt, &o).unwrap();
                let got = to_f32(&n2.forward_spec(&spec32.to_dtype(dt).unwrap()).unwrap());
                eprintln!("full-size {dt:?} network (cuDNN {}) vs f32: SNR {:.1} dB", if no_graph { "legacy" } else { "graph+legacy" }, snr_db(&got, &want));
            }
            // End to end (audio out), as the PyTorch baseline is compared: f16 vs exact f32.
            let ck = Checkpoint { path: ckpt.path.clone(), tensors: ckpt.tensors.clone() };
            let mut sep32 = full_separator(&cfg, ck, &full_opts(Precision::F32, false));
            let mut out32 = vec![0f32; out.len()];
            sep32.process_chunks(&input, batch, &mut out32).unwrap();
            let o64: Vec<f64> = out32.iter().map(|&v| v as f64).collect();
            eprintln!("full-size f16 separation (audio) vs f32: SNR {:.1} dB", snr_db(&out, &o64));
        }
        drop(net);
        drop(sep);
    }
    eprintln!("| precision | batch | network ms/chunk | host enqueue ms/chunk | process_chunks ms/chunk | GPU MB after |");
    eprintln!("| --- | --- | --- | --- | --- | --- |");
    for r in rows {
        eprintln!("{r}");
    }
}

/// One f16 forward pass (batch 1, or `MDX_PROFILE_BATCH`) of the full-size network between cuProfilerStart/Stop, for
/// `ncu --profile-from-start off` (kernel durations without host overhead).
#[test]
#[ignore]
fn one_forward_for_profiler() {
    let cfg = full_config();
    let ckpt = random_checkpoint(&cfg);
    let dev = gpu();
    let net = tfc_tdf::network(&cfg, &ckpt.tensors, &dev, DType::F16, &EngineOptions::default()).unwrap();
    // MDX_PROFILE_BATCH=4 profiles a batch of four chunks.
    let b: usize = std::env::var("MDX_PROFILE_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let spec = Tensor::randn(0f32, 1f32, (b, 4, cfg.audio.dim_f, cfg.audio.dim_t), &dev).unwrap().to_dtype(DType::F16).unwrap();
    for _ in 0..2 {
        net.forward_spec(&spec).unwrap();
    }
    dev.synchronize().unwrap();
    unsafe { candle_core::cuda::cudarc::driver::sys::cuProfilerStart() };
    net.forward_spec(&spec).unwrap();
    dev.synchronize().unwrap();
    unsafe { candle_core::cuda::cudarc::driver::sys::cuProfilerStop() };
}
