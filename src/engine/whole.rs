//! Whole-signal separation: a song in, its stems out, cut and put back together as the model's
//! [`Schedule`] says: overlap-added chunks (UVR's or MSST's scheme, [`crate::dsp::overlap`]), or
//! a stream of consecutive blocks with its latency removed.

use super::stream::BlockStream;
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

    /// A streaming model over the whole signal ([`BlockStream`]): consecutive blocks (the last
    /// one, and `latency` samples more to flush the model, padded with zeros), the first
    /// `latency` output samples dropped.
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
        let mut out = vec![vec![Vec::with_capacity(n); 2]; s];
        let mut stream = BlockStream::new(block, latency, batch, s);
        self.reset();
        let mut done = 0;
        let mut run = |inp: &[f32], m: usize, res: &mut [f32]| -> Result<bool, EngineError> {
            self.process_chunks(inp, m, res)?;
            done += m;
            progress(done, blocks);
            Ok(true)
        };
        let mut emit = |stems: &[Vec<f32>]| -> Result<(), EngineError> {
            for (k, o) in stems.iter().enumerate() {
                out[k / 2][k % 2].extend_from_slice(o);
            }
            Ok(())
        };
        // A batch of blocks at a time: the stream keeps no more than that.
        let step = batch * block;
        for start in (0..n).step_by(step) {
            let end = (start + step).min(n);
            stream.push([&mix[0][start..end], &mix[1][start..end]], &mut run, &mut emit)?;
        }
        stream.finish(n, &mut run, &mut emit)?;
        debug_assert!(out.iter().flatten().all(|o| o.len() == n), "the block stream handed out the whole signal");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::testing::fake_separator;
    use crate::nets::{ModelInfo, Schedule};

    /// A streaming "model": stem 0 is the input (`latency` samples late), stem 1 its negative.
    fn delay(s: usize, x: f32, _pos: f32, _mean: f32) -> f32 {
        if s == 0 { x } else { -x }
    }

    #[test]
    fn a_streaming_model_separates_a_whole_signal_with_its_latency_removed() {
        for (block, latency, n, batch) in [(64usize, 100usize, 1000usize, 1usize), (64, 0, 999, 3), (50, 7, 20, 2)] {
            let info = ModelInfo { sample_rate: 44100, stems: vec!["a".into(), "b".into()], complement: None, schedule: Schedule::Stream { block, latency } };
            let mut sep = fake_separator(info, delay, latency);
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
