//! Stand-ins the unit tests of the streaming path share (the engine's and the plugin's): a test
//! signal, and a fake network as a chunk runner and as a [`SeparationModel`].

use super::Separator;
use crate::nets::{Event, ModelBuilder, ModelError, ModelInfo, Pass, SeparationModel, Target};
use candle_core::Device;

/// A stereo test signal, [2][n]: a sine per channel plus noise from a fixed generator.
pub(crate) fn signal(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    (0..2)
        .map(|ch| {
            (0..n)
                .map(|i| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let noise = ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
                    0.3 * (i as f32 * 0.013 * (ch + 1) as f32).sin() + 0.2 * noise
                })
                .collect()
        })
        .collect()
}

/// What a fake network makes of one sample: `f(stem, x, t / C, mean of the chunk's channel)`.
pub(crate) type Formula = fn(usize, f32, f32, f32) -> f32;

/// Depends on where a sample sits in its chunk and on the whole chunk, so any misalignment of
/// the chunk grid or any difference in a chunk's content shows: stem s = (s + 1) * x *
/// (1 + t / C + 10 * mean(x)). Like the real network (whose output is multiplied by its first
/// convolution of the input), it maps silence to silence.
pub(crate) fn positional(s: usize, x: f32, pos: f32, mean: f32) -> f32 {
    (s + 1) as f32 * x * (1.0 + pos + 10.0 * mean)
}

/// `n` chunks of `c` samples (`input` [n][2][c]) through `f` into `output` ([n][stems][2][c]),
/// each channel's output `tail.len()` samples late: `tail` keeps the last input samples of each
/// channel between calls (empty: no latency). The mean is the current chunk's.
pub(crate) fn run_chunks(f: Formula, c: usize, stems: usize, tail: &mut [Vec<f32>; 2], input: &[f32], n: usize, output: &mut [f32]) {
    for j in 0..n {
        for (ch, tail) in tail.iter_mut().enumerate() {
            let x = &input[(j * 2 + ch) * c..(j * 2 + ch + 1) * c];
            let mean = x.iter().sum::<f32>() / c as f32;
            let mut line = std::mem::take(tail);
            line.extend_from_slice(x);
            for s in 0..stems {
                for t in 0..c {
                    output[((j * stems + s) * 2 + ch) * c + t] = f(s, line[t], t as f32 / c as f32, mean);
                }
            }
            *tail = line[c..].to_vec();
        }
    }
}

/// [`run_chunks`] without latency, as the runner of [`crate::dsp::overlap::separate`].
pub(crate) fn fake_run(f: Formula, c: usize, stems: usize) -> impl FnMut(&[f32], usize, &mut [f32]) -> Result<(), ()> {
    move |input: &[f32], n: usize, out: &mut [f32]| {
        run_chunks(f, c, stems, &mut [vec![], vec![]], input, n, out);
        Ok(())
    }
}

/// [`run_chunks`] as a model: chunked, or (`latency` > 0) a streaming model whose output is
/// `latency` samples late, its last input samples kept between calls.
struct Fake {
    info: ModelInfo,
    f: Formula,
    latency: usize,
    tail: [Vec<f32>; 2],
}

impl SeparationModel for Fake {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn device(&self) -> &Device {
        &Device::Cpu
    }
    fn process(&mut self, input: &[f32], n: usize, out: &mut [f32], _pass: &mut Pass<'_>) -> candle_core::Result<()> {
        run_chunks(self.f, self.info.unit_len(), self.info.stems.len(), &mut self.tail, input, n, out);
        Ok(())
    }
    fn reset(&mut self) {
        self.tail = [vec![0.0; self.latency], vec![0.0; self.latency]];
    }
    fn backend_name(&self) -> &'static str {
        "test"
    }
}

struct FakeBuilder(ModelInfo, Formula, usize);

impl ModelBuilder for FakeBuilder {
    fn info(&self) -> ModelInfo {
        self.0.clone()
    }
    fn build(&mut self, _: &Target<'_>, _: &mut Vec<Event>) -> Result<Box<dyn SeparationModel>, ModelError> {
        let mut m = Fake { info: self.0.clone(), f: self.1, latency: self.2, tail: [vec![], vec![]] };
        m.reset();
        Ok(Box::new(m))
    }
}

/// A separator over the fake network `f` described by `info` (its output `latency` samples
/// late: a streaming model's).
pub(crate) fn fake_separator(info: ModelInfo, f: Formula, latency: usize) -> Separator {
    Separator::new(Box::new(FakeBuilder(info, f, latency)), &Default::default()).unwrap()
}
