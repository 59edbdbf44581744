//! Micro-benchmark of the CPU kernels against candle's own CPU ops, on the layer shapes of the
//! full-size InstVoc HQ network. A benchmark, not a test: it prints GFLOP/s and ms per call.
//!
//! ```text
//! cargo run --release --bin kernel-bench -- [--threads N] [--repeats N] [--only conv|norm|mm] [--candle]
//! ```

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use mdx_stems::backend::cpu::kernels::matmul::{MatmulSplit, Strided, matmul_f32};
use mdx_stems::backend::cpu::kernels::{self, Conv3x3Kernel, ConvShape, norm, pool, rand_vec};
use std::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// Threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Only this group: conv, norm, mm.
    #[arg(long)]
    only: Option<String>,
    /// Also time candle's conv2d / unfused norm (slow).
    #[arg(long)]
    candle: bool,
    /// Only the conv shapes whose index is listed (comma separated).
    #[arg(long)]
    shapes: Option<String>,
    /// Compare Winograd work-unit sizes (tiles, comma separated), interleaved run by run.
    #[arg(long)]
    wino_nt: Option<String>,
}

/// CPU time of this process (all threads), in ms: steadier than wall time on a shared machine.
/// (Unix only; elsewhere `MDX_BENCH_CPU` is not available and wall time is reported.)
#[cfg(unix)]
fn cpu_ms() -> Option<f64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Some(ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6)
}
#[cfg(not(unix))]
fn cpu_ms() -> Option<f64> {
    None
}

/// Best wall time of `repeats` calls after one untimed call, in ms. With `MDX_BENCH_CPU=1` the
/// process CPU time divided by the thread count instead (what wall time would be on an idle
/// machine, when the work is evenly spread).
fn best_ms(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let cpu = std::env::var("MDX_BENCH_CPU").is_ok_and(|v| v == "1");
    let threads = rayon::current_num_threads() as f64;
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let (t, c) = (Instant::now(), cpu_ms());
        f();
        let ms = match (cpu, c, cpu_ms()) {
            (true, Some(c0), Some(c1)) => (c1 - c0) / threads,
            _ => t.elapsed().as_secs_f64() * 1e3,
        };
        best = best.min(ms);
    }
    best
}


fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let p = pool::build(args.threads)?;
    eprintln!(
        "threads: {}, conv kernel at 256x1024: {:?} ({})",
        p.current_num_threads(),
        kernels::conv3x3_kernel(256, 1024),
        if kernels::winograd_avx2_preferred() { "AVX2" } else { "portable" }
    );
    p.install(|| run(&args))
}

fn run(args: &Args) -> anyhow::Result<()> {
    let want = |g: &str| args.only.as_deref().is_none_or(|o| o == g);
    // (cin, cout, T, F): every distinct 3x3 conv of the full-size network.
    let convs = [
        (128, 128, 256, 1024),
        (256, 128, 256, 1024),
        (256, 256, 128, 512),
        (512, 256, 128, 512),
        (384, 384, 64, 256),
        (512, 512, 32, 128),
        (640, 640, 16, 64),
        (768, 768, 8, 32),
        (1280, 640, 16, 64),
    ];
    let only_shapes: Option<Vec<usize>> = args.shapes.as_ref().map(|s| s.split(',').map(|v| v.parse().unwrap()).collect());
    // The conv shapes asked for (`--shapes`, else all), with their inputs and the GFLOP of one
    // direct-equivalent convolution.
    let selected = || {
        convs.iter().enumerate().filter(|(i, _)| only_shapes.as_ref().is_none_or(|o| o.contains(i))).map(|(_, &(cin, cout, h, w))| {
            let x = rand_vec(cin * h * w, 1);
            let k = rand_vec(cout * cin * 9, 2);
            let out = vec![0f32; cout * h * w];
            let gflop = 2.0 * (cin * cout * 9 * h * w) as f64 / 1e9;
            ((cin, cout, h, w), x, k, out, gflop)
        })
    };
    if let Some(list) = &args.wino_nt {
        let nts: Vec<usize> = list.split(',').map(|v| v.parse().unwrap()).collect();
        for ((cin, cout, h, w), x, k, mut out, gflop) in selected() {
            let mut best = vec![f64::INFINITY; nts.len()];
            for _ in 0..args.repeats.max(1) {
                for (j, &nt) in nts.iter().enumerate() {
                    let ms = best_ms(1, || kernels::winograd_nt(&x, &k, &mut out, &ConvShape::conv3x3(1, cin, cout, h, w), nt));
                    best[j] = best[j].min(ms);
                }
            }
            let cells: Vec<String> = nts.iter().zip(&best).map(|(nt, ms)| format!("nt {nt}: {ms:.1} ms ({:.0})", gflop / ms * 1e3)).collect();
            println!("{cin}->{cout} on {h}x{w}: {}", cells.join(", "));
        }
        return Ok(());
    }
    if want("conv") {
        println!("| conv 3x3 | GFLOP | AVX2 winograd ms | GFLOP/s (direct-equivalent) | portable winograd ms | GFLOP/s | gemm ms | GFLOP/s | candle ms | GFLOP/s |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for ((cin, cout, h, w), x, k, mut out, gflop) in selected() {
            let wino = best_ms(args.repeats, || kernels::conv3x3_f32_with(Conv3x3Kernel::WinogradAvx2, &x, &k, &mut out, &ConvShape::conv3x3(1, cin, cout, h, w)));
            let port = best_ms(args.repeats, || kernels::conv3x3_f32_with(Conv3x3Kernel::WinogradPortable, &x, &k, &mut out, &ConvShape::conv3x3(1, cin, cout, h, w)));
            let gm = best_ms(args.repeats.min(1), || kernels::conv3x3_f32_with(Conv3x3Kernel::Gemm, &x, &k, &mut out, &ConvShape::conv3x3(1, cin, cout, h, w)));
            let cand = if args.candle {
                let xt = Tensor::from_slice(&x, (1, cin, h, w), &Device::Cpu)?;
                let kt = Tensor::from_slice(&k, (cout, cin, 3, 3), &Device::Cpu)?;
                Some(best_ms(1, || {
                    xt.conv2d(&kt, 1, 1, 1, 1).unwrap();
                }))
            } else {
                None
            };
            println!(
                "| {cin}->{cout} on {h}x{w} | {gflop:.1} | {wino:.1} | {:.1} | {port:.1} | {:.1} | {gm:.1} | {:.1} | {} | {} |",
                gflop / wino * 1e3,
                gflop / port * 1e3,
                gflop / gm * 1e3,
                cand.map_or("-".into(), |c| format!("{c:.1}")),
                cand.map_or("-".into(), |c| format!("{:.1}", gflop / c * 1e3)),
            );
        }
    }
    if want("norm") {
        let (c, h, w) = (128, 256, 1024);
        let x = rand_vec(c * h * w, 3);
        let wt = rand_vec(c, 4);
        let bs = rand_vec(c, 5);
        let mut out = vec![0f32; x.len()];
        let n = norm::Norm::Stats { groups: c, eps: 1e-5, weight: &wt, bias: &bs };
        let ms = best_ms(args.repeats, || norm::norm_act_f32(&x, &mut out, 1, c, h * w, &n, norm::Activation::Gelu));
        println!("instance norm + gelu on [1, {c}, {h}, {w}]: {ms:.1} ms ({:.1} GB/s of input+output)", 8.0 * x.len() as f64 / ms / 1e6);
        let mut y = x.clone();
        let ms = best_ms(args.repeats, || norm::norm_act_inplace_f32(&mut y, 1, c, h * w, &n, norm::Activation::Gelu));
        println!("  in place: {ms:.1} ms");
        if args.candle {
            let xt = Tensor::from_slice(&x, (1, c, h * w), &Device::Cpu)?;
            let ms = best_ms(1, || {
                let mean = xt.mean_keepdim(2).unwrap();
                let xc = xt.broadcast_sub(&mean).unwrap();
                let var = xc.sqr().unwrap().mean_keepdim(2).unwrap();
                let xn = xc.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap()).unwrap();
                xn.gelu_erf().unwrap();
            });
            println!("  candle ops (no affine): {ms:.1} ms");
        }
    }
    if want("mm") {
        // TDF linears and 1x1 convs at scale 0, as the network runs them (`ops::matmul` ->
        // `matmul_f32`): our split over blocks of rows / columns against the `gemm` crate's own.
        let cases: [(&str, usize, usize, usize); 4] = [
            ("tdf lin1 [128*256, 1024] x [1024, 256]", 128 * 256, 1024, 256),
            ("tdf lin2 [128*256, 256] x [256, 1024]", 128 * 256, 256, 1024),
            ("1x1 [128, 128] x [128, 256*1024]", 128, 128, 256 * 1024),
            ("1x1 [128, 256] x [256, 256*1024]", 128, 256, 256 * 1024),
        ];
        for (name, m, k, n) in cases {
            let a = rand_vec(m * k, 6);
            let b = rand_vec(k * n, 7);
            let mut out = vec![0f32; m * n];
            let gflop = 2.0 * (m * k * n) as f64 / 1e9;
            let mut cells = Vec::new();
            for split in [MatmulSplit::Blocks, MatmulSplit::Gemm] {
                let ms = best_ms(args.repeats, || {
                    matmul_f32(&mut out, false, &a, Strided::row_major(k, 0), &b, Strided::row_major(n, 0), (1, m, k, n), split)
                });
                cells.push(format!("{split:?} {ms:.1} ms ({:.1} GFLOP/s)", gflop / ms * 1e3));
            }
            println!("{name}: {}", cells.join(", "));
        }
    }
    let _ = DType::F32;
    Ok(())
}
