//! Which overlap and segment settings run live on this machine, from one measured chunk time.
//!
//! The worker times every chunk it computes ([`super::shared::Shared::chunk_secs`]); the editor
//! and `mdx-stems info --live` turn that one figure into a table of settings. A chunk's cost
//! scales with the network's multiply-adds ([`crate::nets::NetSpec::macs_per_chunk`], about
//! linear in the segment), and with overlap `K` a chunk must be computed every hop, `C / K`
//! samples of audio. So a setting's load, its compute time per second of audio, is
//!
//! ```text
//! load(segment, K) = t_measured * macs(segment) / macs(measured) * K / (C(segment) / rate)
//! ```
//!
//! and it runs live when the load stays at most [`LIVE_LOAD`]: the rest is what the host, other
//! plugins and the chunk-to-chunk jitter need (the "Safety" setting absorbs the jitter, not a
//! load above 1).

/// Highest load (compute time per second of audio) that counts as running live.
pub const LIVE_LOAD: f64 = 0.8;

/// The overlaps the table lists (the plugin accepts 1 to 8).
pub const OVERLAPS: [usize; 4] = [1, 2, 4, 8];

/// One segment of a chunked model and what its chunk costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCost {
    /// The segment, in the network's unit ([`crate::nets::Segments`]).
    pub segment: usize,
    /// Chunk length at the model's rate.
    pub chunk: usize,
    /// Multiply-adds of one chunk.
    pub macs: u64,
}

impl SegmentCost {
    /// The costs of `segments` of the network `net`.
    pub fn for_segments(net: &dyn crate::nets::NetSpec, segments: &[usize]) -> Vec<SegmentCost> {
        segments
            .iter()
            .map(|&segment| {
                let chunk = net.segment_chunk(segment);
                SegmentCost { segment, chunk, macs: net.macs_per_chunk(chunk) }
            })
            .collect()
    }

    /// The costs of every segment `net` offers with `running` (the segment running, chunks of
    /// `chunk` samples exactly: the config's own chunk need not be a whole number of hops) in
    /// place of its entry, ascending.
    pub fn table(net: &dyn crate::nets::NetSpec, running: usize, chunk: usize) -> Vec<SegmentCost> {
        let mut costs = Self::for_segments(net, &net.segments().choices);
        costs.retain(|c| c.segment != running);
        costs.push(SegmentCost { segment: running, chunk, macs: net.macs_per_chunk(chunk) });
        costs.sort_by_key(|c| c.segment);
        costs
    }
}

/// A measured chunk time and the segment it was measured at.
#[derive(Debug, Clone, Copy)]
pub struct Measured<'a> {
    /// Seconds per chunk, as the worker (or `info --live`) timed it.
    pub secs: f64,
    pub at: &'a SegmentCost,
    /// The model's sample rate.
    pub rate: u32,
}

impl Measured<'_> {
    /// Estimated seconds per chunk at segment `s`.
    pub fn chunk_secs(&self, s: &SegmentCost) -> f64 {
        self.secs * s.macs as f64 / self.at.macs.max(1) as f64
    }

    /// Load (compute seconds per second of audio) of segment `s` at overlap `k`.
    pub fn load(&self, s: &SegmentCost, k: usize) -> f64 {
        let audio = s.chunk.max(1) as f64 / self.rate.max(1) as f64;
        self.chunk_secs(s) * k as f64 / audio
    }

    /// Largest overlap (1 to 8) at which segment `s` runs live; `None` when not even overlap 1 does.
    pub fn max_live_overlap(&self, s: &SegmentCost) -> Option<usize> {
        (1..=8).rev().find(|&k| self.load(s, k) <= LIVE_LOAD)
    }
}

/// One line: whether the current setting runs live and, if not, what does.
pub fn summary(m: &Measured, current_overlap: usize, segments: &[SegmentCost]) -> String {
    let load = m.load(m.at, current_overlap);
    let here = match m.max_live_overlap(m.at) {
        Some(k) => format!("runs live at this segment up to overlap {k}"),
        None => "too slow to run live at this segment at any overlap".to_string(),
    };
    let mut s = format!(
        "Measured {} per chunk: overlap {current_overlap} needs {:.0}% of real time; {here}",
        secs_text(m.secs),
        100.0 * load
    );
    if m.max_live_overlap(m.at).is_none() {
        // The largest segment that does run live at overlap 1 (lower latency, same per-second cost
        // give or take: only as an indication when the cost is not linear).
        if let Some(best) = segments.iter().filter(|c| m.max_live_overlap(c).is_some()).max_by_key(|c| c.segment) {
            s.push_str(&format!("; segment {} does", best.segment));
        } else {
            s.push_str("; no segment does: bounce offline or use a GPU");
        }
    }
    s
}

/// "2.31 s", or "18 ms" under a second.
pub fn secs_text(secs: f64) -> String {
    if secs >= 1.0 { format!("{secs:.2} s") } else { format!("{:.0} ms", secs * 1e3) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(dim_t: usize, macs: u64) -> SegmentCost {
        SegmentCost { segment: dim_t, chunk: 1024 * (dim_t - 1), macs }
    }

    #[test]
    fn load_scales_with_overlap_and_the_segments_multiply_adds() {
        let at = seg(257, 1000);
        let half = seg(129, 500);
        // 262144 samples at 44100 Hz = 5.94 s of audio per chunk.
        let m = Measured { secs: 2.0, at: &at, rate: 44100 };
        let audio = 262144.0 / 44100.0;
        assert!((m.load(&at, 1) - 2.0 / audio).abs() < 1e-12);
        assert!((m.load(&at, 4) - 8.0 / audio).abs() < 1e-12);
        assert!((m.chunk_secs(&half) - 1.0).abs() < 1e-12);
        // 2 s per 5.94 s chunk: overlap 2 is 67% (live), overlap 3 is 101% (not).
        assert_eq!(m.max_live_overlap(&at), Some(2));
        let slow = Measured { secs: 6.0, ..m };
        assert_eq!(slow.max_live_overlap(&at), None);
        let s = summary(&slow, 2, &[at.clone(), half.clone()]);
        assert!(s.contains("too slow") && s.contains("no segment does"), "{s}");
    }

    #[test]
    fn the_full_size_configs_segments_cost_in_proportion_to_their_frames() {
        // InstVoc HQ's config (UVR's table, compiled in).
        let cfg = crate::nets::from_yaml_str(include_str!("../../assets/uvr-mdxc/model_2_stem_full_band_8k.yaml")).unwrap();
        let costs = SegmentCost::for_segments(&*cfg, &[64, 128, 256]);
        assert_eq!(costs[2].chunk, 261120);
        let r = costs[2].macs as f64 / costs[1].macs as f64;
        assert!((r - 2.0).abs() < 0.1, "256 vs 128 frames: {r}");
        // So at a measured 2.3 s per full chunk (16 threads), overlap 2 runs live at every segment.
        let m = Measured { secs: 2.3, at: &costs[2], rate: 44100 };
        assert!(costs.iter().all(|c| m.max_live_overlap(c) == Some(2)));
    }
}
