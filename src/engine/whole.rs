//! Whole-signal separation: a song in, its stems out, cut and put back together as the model's
//! [`Schedule`] says: overlap-added chunks (UVR's or MSST's scheme, [`crate::dsp::overlap`]), or
//! a stream of consecutive blocks with its latency removed.

use super::{EngineError, Separator};
use crate::dsp::overlap::{self, OverlapParams, Scheme};
use crate::nets::Schedule;
use std::time::Instant;

impl Separator {
    /// Separate a whole stereo signal ([2][n] at the model's rate) into [stems][2][n].
    /// `scheme` and `overlap` apply to chunked models; `batch` is chunks (or blocks) per call.
    /// `progress(done, total)` is called after each batch.
    pub fn separate(
        &mut self,
        mix: &[Vec<f32>],
        scheme: Scheme,
        overlap: usize,
        batch: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<Vec<f32>>>, EngineError> {
        let start = Instant::now();
        let result = match self.info().schedule {
            Schedule::Chunks { chunk, .. } => {
                let p = OverlapParams { chunk, overlap: overlap.max(1), stems: self.num_stems(), batch: batch.max(1) };
                let mut run = |inp: &[f32], n: usize, out: &mut [f32]| self.process_chunks(inp, n, out);
                overlap::separate(scheme, &p, mix, &mut run, progress)?
            }
            Schedule::Stream { block, latency } => self.separate_stream(mix, block, latency, batch.max(1), progress)?,
        };
        if let Some(prof) = self.profile.as_mut() {
            let inside = prof.stft + prof.upload + prof.network + prof.download + prof.istft;
            prof.overlap_add = start.elapsed().saturating_sub(inside);
        }
        Ok(result)
    }

    /// A streaming model over the whole signal: consecutive blocks (the last one, and `latency`
    /// samples more to flush the model, padded with zeros), the first `latency` output samples
    /// dropped.
    fn separate_stream(
        &mut self,
        mix: &[Vec<f32>],
        block: usize,
        latency: usize,
        batch: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<Vec<f32>>>, EngineError> {
        assert_eq!(mix.len(), 2, "stereo input expected");
        let n = mix[0].len();
        let s = self.num_stems();
        let blocks = (n + latency).div_ceil(block);
        let mut out = vec![vec![vec![0f32; n]; 2]; s];
        let mut inp = vec![0f32; batch * 2 * block];
        let mut res = vec![0f32; batch * s * 2 * block];
        self.reset();
        let mut i = 0;
        while i < blocks {
            let m = batch.min(blocks - i);
            for j in 0..m {
                let start = (i + j) * block;
                for (ch, x) in mix.iter().enumerate() {
                    let dst = &mut inp[(j * 2 + ch) * block..(j * 2 + ch + 1) * block];
                    let l = n.saturating_sub(start).min(block);
                    dst[..l].copy_from_slice(&x[start.min(n)..start.min(n) + l]);
                    dst[l..].fill(0.0);
                }
            }
            self.process_chunks(&inp[..m * 2 * block], m, &mut res[..m * s * 2 * block])?;
            for j in 0..m {
                let start = (i + j) * block;
                for (stem, o) in out.iter_mut().enumerate() {
                    for (ch, o) in o.iter_mut().enumerate() {
                        let src = &res[((j * s + stem) * 2 + ch) * block..][..block];
                        for (k, v) in src.iter().enumerate() {
                            if let Some(t) = (start + k).checked_sub(latency).filter(|&t| t < n) {
                                o[t] = *v;
                            }
                        }
                    }
                }
            }
            i += m;
            progress(i, blocks);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::Separator;
    use crate::nets::{Event, ModelBuilder, ModelError, ModelInfo, Pass, Schedule, SeparationModel, Target};
    use candle_core::Device;

    /// A streaming "model": stem 0 is the input `latency` samples late, stem 1 its negative.
    struct Delay {
        info: ModelInfo,
        latency: usize,
        /// The last `latency` input samples of each channel.
        tail: [Vec<f32>; 2],
    }

    impl SeparationModel for Delay {
        fn info(&self) -> &ModelInfo {
            &self.info
        }
        fn device(&self) -> &Device {
            &Device::Cpu
        }
        fn process(&mut self, input: &[f32], n: usize, out: &mut [f32], _pass: &mut Pass<'_>) -> candle_core::Result<()> {
            let b = self.info.unit_len();
            for j in 0..n {
                for ch in 0..2 {
                    let x = &input[(j * 2 + ch) * b..(j * 2 + ch + 1) * b];
                    let mut line = std::mem::take(&mut self.tail[ch]);
                    line.extend_from_slice(x);
                    for (k, v) in line[..b].iter().enumerate() {
                        out[((j * 2) * 2 + ch) * b + k] = *v;
                        out[((j * 2 + 1) * 2 + ch) * b + k] = -*v;
                    }
                    self.tail[ch] = line[b..].to_vec();
                }
            }
            Ok(())
        }
        fn reset(&mut self) {
            self.tail = [vec![0.0; self.latency], vec![0.0; self.latency]];
        }
        fn backend_name(&self) -> &'static str {
            "test"
        }
    }

    struct DelayBuilder(ModelInfo, usize);

    impl ModelBuilder for DelayBuilder {
        fn info(&self) -> ModelInfo {
            self.0.clone()
        }
        fn build(&mut self, _: &Target<'_>, _: &mut Vec<Event>) -> Result<Box<dyn SeparationModel>, ModelError> {
            let mut d = Delay { info: self.0.clone(), latency: self.1, tail: [vec![], vec![]] };
            d.reset();
            Ok(Box::new(d))
        }
    }

    #[test]
    fn a_streaming_model_separates_a_whole_signal_with_its_latency_removed() {
        for (block, latency, n, batch) in [(64usize, 100usize, 1000usize, 1usize), (64, 0, 999, 3), (50, 7, 20, 2)] {
            let info = ModelInfo { sample_rate: 44100, stems: vec!["a".into(), "b".into()], complement: None, schedule: Schedule::Stream { block, latency } };
            let mut sep = Separator::new(Box::new(DelayBuilder(info, latency)), &Default::default()).unwrap();
            let mix: Vec<Vec<f32>> = (0..2).map(|ch| (0..n).map(|i| (i * 7 + ch * 3) as f32).collect()).collect();
            for _ in 0..2 {
                let out = sep.separate(&mix, crate::dsp::overlap::Scheme::Uvr, 4, batch, &mut |_, _| {}).unwrap();
                assert_eq!(out[0], mix, "block {block} latency {latency}");
                let neg: Vec<Vec<f32>> = mix.iter().map(|c| c.iter().map(|v| -v).collect()).collect();
                assert_eq!(out[1], neg);
            }
        }
    }
}
