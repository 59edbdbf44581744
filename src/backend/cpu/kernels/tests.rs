//! The kernels against plain reference implementations in f64 (odd sizes, one channel, sizes
//! that are not multiples of the tile sizes, batch > 1, several thread counts).

use super::norm::{Activation, Norm, norm_act_f32};
use super::*;
use crate::backend::cpu::ops;
use crate::testing::max_abs_diff;


/// Direct 3x3 convolution (padding 1) in f64; also returns Σ|w x| per output (the scale its
/// rounding error is judged against).
#[allow(clippy::too_many_arguments)]
fn conv_ref(x: &[f32], w: &[f32], b: usize, cin: usize, cout: usize, h: usize, wd: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0f64; b * cout * h * wd];
    let mut mag = vec![0f64; b * cout * h * wd];
    for bi in 0..b {
        for co in 0..cout {
            for y in 0..h {
                for xx in 0..wd {
                    let (mut s, mut m) = (0f64, 0f64);
                    for ci in 0..cin {
                        for dy in 0..3 {
                            for dx in 0..3 {
                                let (iy, ix) = (y as isize + dy as isize - 1, xx as isize + dx as isize - 1);
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let v = x[((bi * cin + ci) * h + iy as usize) * wd + ix as usize] as f64;
                                let k = w[((co * cin + ci) * 3 + dy) * 3 + dx] as f64;
                                s += v * k;
                                m += (v * k).abs();
                            }
                        }
                    }
                    let i = ((bi * cout + co) * h + y) * wd + xx;
                    out[i] = s;
                    mag[i] = m;
                }
            }
        }
    }
    (out, mag)
}

/// (batch, cin, cout, h, w)
const CONV_SHAPES: &[(usize, usize, usize, usize, usize)] = &[
    (1, 1, 1, 1, 1),
    (1, 1, 1, 5, 3),
    (1, 1, 3, 4, 4),
    (2, 3, 5, 7, 13),
    (1, 5, 2, 9, 40),   // two groups of 8 tiles per tile row, ragged right edge
    (3, 4, 6, 16, 64),  // whole tiles, interior blocks take the direct output path
    (1, 2, 40, 6, 33),  // few tiles, many output channels: split over channel blocks
    (2, 17, 9, 13, 71), // odd everything
    (1, 16, 16, 21, 160),
    (1, 300, 12, 9, 37), // input channels in 3 blocks of at most 128, the last one ragged
];

fn check_conv(kernel: Conv3x3Kernel, nt_max: Option<usize>) {
    for (si, &(b, cin, cout, h, wd)) in CONV_SHAPES.iter().enumerate() {
        let x = rand_vec(b * cin * h * wd, 1 + si as u64);
        let w = rand_vec(cout * cin * 9, 100 + si as u64);
        let (want, mag) = conv_ref(&x, &w, b, cin, cout, h, wd);
        let mut out = vec![f32::NAN; b * cout * h * wd];
        let shape = ConvShape::conv3x3(b, cin, cout, h, wd);
        match (kernel, nt_max) {
            (Conv3x3Kernel::WinogradPortable, Some(nt)) => winograd_portable::conv3x3_nt(&x, &w, &mut out, &shape, nt),
            #[cfg(target_arch = "x86_64")]
            (Conv3x3Kernel::WinogradAvx2, Some(nt)) if avx2() => winograd::conv3x3_nt(&x, &w, &mut out, &shape, nt),
            (_, Some(nt)) => winograd_nt(&x, &w, &mut out, &shape, nt),
            (_, None) => conv3x3_f32_with(kernel, &x, &w, &mut out, &shape),
        }
        let mut worst = 0f64;
        for i in 0..out.len() {
            // Winograd F(4x4, 3x3) rounds at about 1e-6 of Σ|w x| in f32.
            let err = (out[i] as f64 - want[i]).abs() / (mag[i] + 1e-3);
            worst = worst.max(err);
            assert!(
                err <= 1e-5,
                "{kernel:?} nt_max {nt_max:?} shape {:?}: out[{i}] = {} want {} (|w x| sum {})",
                (b, cin, cout, h, wd),
                out[i],
                want[i],
                mag[i]
            );
        }
        eprintln!("{kernel:?} {:?}: worst relative error {worst:.2e}", (b, cin, cout, h, wd));
    }
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    pool::build(threads).unwrap().install(f)
}

/// The AVX2 kernel (on x86-64 with AVX2; elsewhere the GEMM kernel stands in).
#[test]
fn winograd_conv3x3_matches_direct_convolution() {
    for threads in [1, 3] {
        in_pool(threads, || check_conv(Conv3x3Kernel::WinogradAvx2, None));
    }
}

#[test]
fn winograd_conv3x3_with_small_work_units_matches() {
    in_pool(2, || check_conv(Conv3x3Kernel::WinogradAvx2, Some(24)));
    in_pool(2, || check_conv(Conv3x3Kernel::Winograd, Some(24)));
}

/// `Winograd` is exactly the kernel [`winograd_avx2_preferred`] names: the AVX2 one on x86-64
/// without AVX-512, the portable one with it and on ARM64.
#[test]
fn winograd_runs_this_machines_preferred_kernel() {
    let (b, cin, cout, h, wd) = (1, 40, 24, 18, 50);
    let x = rand_vec(b * cin * h * wd, 21);
    let w = rand_vec(cout * cin * 9, 22);
    let shape = ConvShape::conv3x3(b, cin, cout, h, wd);
    let run = |kernel| {
        let mut out = vec![f32::NAN; b * cout * h * wd];
        conv3x3_f32_with(kernel, &x, &w, &mut out, &shape);
        out
    };
    let want = if winograd_avx2_preferred() { Conv3x3Kernel::WinogradAvx2 } else { Conv3x3Kernel::WinogradPortable };
    assert!(winograd_available() || cfg!(not(any(target_arch = "x86_64", target_arch = "aarch64"))));
    assert!(run(Conv3x3Kernel::Winograd) == run(want), "Winograd is not {want:?} here");
    assert!(run(Conv3x3Kernel::WinogradAvx2) != run(Conv3x3Kernel::WinogradPortable) || !avx2(),
        "the AVX2 and portable kernels round differently: this test could not tell them apart");
}

#[test]
fn portable_winograd_conv3x3_matches_direct_convolution() {
    for threads in [1, 3] {
        in_pool(threads, || check_conv(Conv3x3Kernel::WinogradPortable, None));
    }
    in_pool(2, || check_conv(Conv3x3Kernel::WinogradPortable, Some(8)));
}

/// The work split changes with the thread count (finer units for more threads), the values do
/// not: every output is summed over the input channels in one order.
#[test]
fn winograd_results_do_not_depend_on_the_thread_count() {
    let (b, cin, cout, h, wd) = (2, 300, 72, 20, 70);
    let x = rand_vec(b * cin * h * wd, 11);
    let w = rand_vec(cout * cin * 9, 12);
    let shape = ConvShape::conv3x3(b, cin, cout, h, wd);
    for kernel in [Conv3x3Kernel::WinogradAvx2, Conv3x3Kernel::WinogradPortable] {
        let run = |threads: usize| {
            let mut out = vec![f32::NAN; b * cout * h * wd];
            in_pool(threads, || conv3x3_f32_with(kernel, &x, &w, &mut out, &shape));
            out
        };
        let one = run(1);
        for threads in [2, 5, 16] {
            assert!(one == run(threads), "{kernel:?}: 1 and {threads} threads differ");
        }
    }
}

/// On the full-size network's 3x3 layers the Winograd work split keeps units within the scratch
/// bound (at most 96 tiles, 128 output channels) and gives 16 threads work even on the deep
/// layers, where one unit per tile chunk would leave most of them idle.
#[test]
fn winograd_split_bounds_units_and_feeds_every_thread() {
    let cost = |groups: usize, nt: usize| (groups as f64 * 4.0 + 6.0) * (nt as f64 + 16.0);
    for (cout, h, wd) in [(128usize, 256usize, 1024usize), (256, 128, 512), (384, 64, 256), (512, 32, 128), (640, 16, 64), (768, 8, 32)] {
        let tiles = h.div_ceil(4) * wd.div_ceil(4).next_multiple_of(8);
        for threads in [1, 2, 8, 16, 32] {
            let s = split_work(1, tiles, 24, 96, cout / 4, 32, 4, threads, cost);
            let units = s.nchunks * s.nblocks;
            assert!(s.nt <= 96 && s.nt % 24 == 0 && s.per_block <= 32, "{:?} at {threads}: {s:?}", (cout, h, wd));
            assert!(s.nchunks * s.nt >= tiles && s.nblocks * s.per_block >= cout / 4, "{s:?} covers everything");
            assert!(units >= threads.min(16), "{:?} at {threads} threads: only {units} units ({s:?})", (cout, h, wd));
        }
    }
}

/// What [`conv3x3_kernel`] picks: Winograd on x86-64 with AVX2 and on every ARM64 for large
/// images, the GEMM kernel for small ones.
#[test]
fn large_images_take_winograd_where_it_runs() {
    let big = conv3x3_kernel(64, 256);
    if cfg!(target_arch = "aarch64") || avx2() {
        assert_eq!(big, Conv3x3Kernel::Winograd);
        assert!(winograd_available());
    } else {
        assert_eq!(big, Conv3x3Kernel::Gemm);
    }
    assert_eq!(conv3x3_kernel(16, 64), Conv3x3Kernel::Gemm);
}

#[test]
fn gemm_conv3x3_matches_direct_convolution() {
    for threads in [1, 3] {
        in_pool(threads, || check_conv(Conv3x3Kernel::Gemm, None));
    }
}

/// erf in f64: Maclaurin series for |x| < 3 (terms peak near 170, so about 1e-14 absolute),
/// else 1 - erfc by its continued fraction (60 levels: converged to f64 for |x| >= 3).
fn erf_ref(x: f64) -> f64 {
    let ax = x.abs();
    if ax < 3.0 {
        let mut term = x;
        let mut sum = x;
        for n in 1..120 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        return sum * 2.0 / std::f64::consts::PI.sqrt();
    }
    let mut t = ax;
    for n in (1..=60).rev() {
        t = ax + (n as f64 / 2.0) / t;
    }
    let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / t;
    (1.0 - erfc).copysign(x)
}

#[test]
fn erf_and_gelu_are_within_a_few_ulps() {
    let mut worst_erf = 0f64;
    let mut worst_gelu = 0f64;
    for i in -120_000..=120_000 {
        let x = i as f32 * 1e-4;
        let e = norm::erf_f32(x) as f64 - erf_ref(x as f64);
        worst_erf = worst_erf.max(e.abs());
        let g = norm::gelu_f32(x) as f64;
        let gr = 0.5 * x as f64 * (1.0 + erf_ref(x as f64 / std::f64::consts::SQRT_2));
        worst_gelu = worst_gelu.max((g - gr).abs() / gr.abs().max(1.0));
    }
    eprintln!("erf max abs error {worst_erf:.2e}, gelu max error {worst_gelu:.2e}");
    assert!(worst_erf <= 2e-7, "erf error {worst_erf}");
    assert!(worst_gelu <= 4e-7, "gelu error {worst_gelu}");
    assert!(norm::gelu_f32(f32::NAN).is_nan());
}

fn act_ref(v: f64, act: Activation) -> f64 {
    match act {
        Activation::Identity => v,
        Activation::Relu => v.max(0.0),
        Activation::Gelu => 0.5 * v * (1.0 + erf_ref(v / std::f64::consts::SQRT_2)),
        Activation::Elu(a) => {
            if v > 0.0 {
                v
            } else {
                a as f64 * (v.exp() - 1.0)
            }
        }
    }
}

/// Reference norm + act in f64 over [b, c, hw].
fn norm_ref(x: &[f32], b: usize, c: usize, hw: usize, norm: &Norm, act: Activation) -> Vec<f64> {
    let mut out = vec![0f64; x.len()];
    for bi in 0..b {
        for ch in 0..c {
            let (sub, mul, add) = match *norm {
                Norm::Identity => (0.0, 1.0, 0.0),
                Norm::Affine { scale, shift } => (0.0, scale[ch] as f64, shift[ch] as f64),
                Norm::Stats { groups, eps, weight, bias } => {
                    let cg = c / groups;
                    let g0 = ch / cg * cg;
                    let vals = &x[(bi * c + g0) * hw..(bi * c + g0 + cg) * hw];
                    let n = vals.len() as f64;
                    let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / n;
                    let var = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                    (mean, weight[ch] as f64 / (var + eps).sqrt(), bias[ch] as f64)
                }
            };
            for i in 0..hw {
                let k = (bi * c + ch) * hw + i;
                out[k] = act_ref((x[k] as f64 - sub) * mul + add, act);
            }
        }
    }
    out
}

#[test]
fn norm_act_matches_reference() {
    // (b, c, hw): one channel, odd sizes, a channel longer than one parallel slice (32768).
    let shapes = [(1, 1, 1), (1, 1, 7), (2, 4, 33), (3, 6, 100), (1, 2, 40_000), (2, 8, 257)];
    let acts = [Activation::Identity, Activation::Gelu, Activation::Relu, Activation::Elu(1.0), Activation::Elu(0.5)];
    for (si, &(b, c, hw)) in shapes.iter().enumerate() {
        // An offset and a spread so that the statistics matter.
        let x: Vec<f32> = rand_vec(b * c * hw, 7 + si as u64).iter().map(|v| 3.0 * v + 1.5).collect();
        let weight = rand_vec(c, 50 + si as u64);
        let bias = rand_vec(c, 60 + si as u64);
        let mut norms = vec![Norm::Identity, Norm::Affine { scale: &weight, shift: &bias }];
        for g in [1, 2, c] {
            if c % g == 0 {
                norms.push(Norm::Stats { groups: g, eps: 1e-5, weight: &weight, bias: &bias });
            }
        }
        for norm in &norms {
            for &act in &acts {
                let want = norm_ref(&x, b, c, hw, norm, act);
                for threads in [1, 2] {
                    let mut out = vec![f32::NAN; x.len()];
                    in_pool(threads, || norm_act_f32(&x, &mut out, b, c, hw, norm, act));
                    let worst = out.iter().zip(&want).map(|(&o, &r)| (o as f64 - r).abs() / r.abs().max(1.0)).fold(0f64, f64::max);
                    assert!(worst <= 2e-6, "{:?} {norm:?} {act:?}: error {worst}", (b, c, hw));
                }
            }
        }
    }
}

#[test]
fn norm_act_in_place_equals_out_of_place() {
    let (b, c, hw) = (2, 4, 1000);
    let x = rand_vec(b * c * hw, 3);
    let weight = rand_vec(c, 4);
    let bias = rand_vec(c, 5);
    let norm = Norm::Stats { groups: 2, eps: 1e-5, weight: &weight, bias: &bias };
    let mut out = vec![0f32; x.len()];
    norm_act_f32(&x, &mut out, b, c, hw, &norm, Activation::Gelu);
    let mut inplace = x.clone();
    norm::norm_act_inplace_f32(&mut inplace, b, c, hw, &norm, Activation::Gelu);
    assert_eq!(out, inplace);
}

fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    let v = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    max_abs_diff(&v(a), &v(b))
}

#[test]
fn matmul_op_matches_candle_for_every_layout() {
    use candle_core::{Device, Tensor};
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, &Device::Cpu).unwrap();
    let (m, k, n) = (13, 17, 29);
    let a = t(rand_vec(m * k, 1), &[m, k]);
    let b = t(rand_vec(k * n, 2), &[k, n]);
    let a3 = t(rand_vec(3 * m * k, 3), &[3, m, k]);
    let b3 = t(rand_vec(3 * k * n, 4), &[3, k, n]);
    let bt = t(rand_vec(n * k, 5), &[n, k]).t().unwrap(); // [k, n], column-major
    let cases: Vec<(Tensor, Tensor)> = vec![
        (a.clone(), b.clone()),
        (a.clone(), bt.clone()),
        (a.broadcast_left(3).unwrap(), b3.clone()), // broadcast weights, as the 1x1 convs
        (a3.clone(), b3.clone()),
        (a3.clone(), b.broadcast_left(3).unwrap()),
        (a3.narrow(2, 1, k - 1).unwrap(), b3.narrow(1, 0, k - 1).unwrap()), // offsets and row strides
    ];
    for threads in [1, 2] {
        for (i, (x, y)) in cases.iter().enumerate() {
            let want = x.contiguous().unwrap().matmul(&y.contiguous().unwrap()).unwrap();
            let got = in_pool(threads, || ops::matmul(x, y).unwrap());
            assert_eq!(got.dims(), want.dims(), "case {i}");
            let d = max_diff(&got, &want);
            assert!(d <= 1e-5, "case {i}: differs by {d}");
            let acc0 = t(rand_vec(want.elem_count(), 9), want.dims());
            let acc = in_pool(threads, || ops::matmul_acc(acc0.copy().unwrap(), x, y).unwrap());
            let d = max_diff(&acc, &(&acc0 + &want).unwrap());
            assert!(d <= 1e-5, "case {i} (accumulate): differs by {d}");
        }
    }
    assert!(ops::matmul(&a, &a).is_err(), "mismatched inner dimensions are an error");
}

#[test]
fn in_place_ops_write_only_their_tensor() {
    use candle_core::{Device, Tensor};
    let x = Tensor::from_vec(rand_vec(2 * 3 * 5, 1), (2, 3, 5), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(rand_vec(2 * 3 * 5, 2), (2, 3, 5), &Device::Cpu).unwrap();
    let sum = ops::add_assign(x.copy().unwrap(), &y).unwrap();
    assert_eq!(max_diff(&sum, &(&x + &y).unwrap()), 0.0);
    let prod = ops::mul_assign(x.copy().unwrap(), &y).unwrap();
    assert_eq!(max_diff(&prod, &(&x * &y).unwrap()), 0.0);
    // A transposed (non-contiguous) operand is read in its logical order.
    let yt = y.transpose(1, 2).unwrap().contiguous().unwrap().transpose(1, 2).unwrap();
    let sum_t = ops::add_assign(x.copy().unwrap(), &yt).unwrap();
    assert_eq!(max_diff(&sum_t, &(&x + &y).unwrap()), 0.0);
    // Conv3x3 through the candle op equals the kernel.
    let (b, cin, cout, h, wd) = (2, 3, 4, 9, 11);
    let xs = rand_vec(b * cin * h * wd, 3);
    let ws = rand_vec(cout * cin * 9, 4);
    let mut want = vec![0f32; b * cout * h * wd];
    conv3x3_f32(&xs, &ws, &mut want, &ConvShape::conv3x3(b, cin, cout, h, wd));
    let xt = Tensor::from_vec(xs, (b, cin, h, wd), &Device::Cpu).unwrap();
    let wt = Tensor::from_vec(ws, (cout, cin, 3, 3), &Device::Cpu).unwrap();
    let got = ops::conv3x3(&xt, &wt).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got, want);
}
