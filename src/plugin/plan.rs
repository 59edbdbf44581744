//! The streaming plan: every size and delay of one activation, derived from the model, the
//! settings and the host, and the exact latency that follows from them.
//!
//! Computed once per activation on the main thread ([`StreamPlan::new`]); the audio thread
//! ([`super::realtime`]) and the inference thread ([`super::worker`]) both size their buffers
//! from it, so the delay the plugin reports is the delay it has by construction.
//!
//! # The stream, end to end
//!
//! ```text
//! host rate fs                      model rate fm                         host rate fs
//! audio thread --b-sample blocks--> worker: resample fs->fm (drop d_in) -> UVR chunks of C,
//!   every H = C/K samples -> overlap-add, /K -> resample fm->fs (drop d_out) -> FIFO with
//!   P samples of prefill -> b-sample blocks --> audio thread plays block j at j*b + A
//! ```
//!
//! * UVR pads the song with `C - H` zeros in front and cuts chunks at `0, H, 2H, ...` of the
//!   padded song; in song time chunk `i` covers `[iH - (C - H), iH + H)`. It can run once model
//!   sample `iH + H - 1` has arrived, and after it the overlap-add sum of song samples
//!   `[iH + H - C, iH + 2H - C)` is final (no later chunk touches them).
//! * The audio thread sends blocks of `b` host frames ([`StreamPlan::block`]): one hop `H` when
//!   the rates match (chunks then start exactly on block boundaries), else one input-resampler
//!   chunk (about 1300 frames, at most the host-rate hop). With resampling the chunk grid drifts
//!   against any block grid, so a chunk can complete just after a block boundary; small blocks
//!   keep that waste to one small block instead of a whole hop.
//! * The worker turns every input block into exactly one output block of `b` frames per
//!   output: the FIFO starts with `P` frames of prefill, `P` being the smallest count for which
//!   it never runs dry ([`worker_prefill`], found by running the integer bookkeeping of both
//!   resamplers and the chunk schedule over one full period of the stream).
//! * The audio thread plays the worker's block `j` starting at stream position `j*b + A`
//!   ([`audio_delay`]): one block to collect the input, one hop of time for the worker to
//!   compute a chunk (`Hc`, the hop in host frames: the real-time budget), `S` more hops of
//!   headroom (the "Safety" setting, 0 to 4) and one host buffer of slack because a whole host
//!   buffer arrives (and must be answered) at once.
//!
//! So song sample `t` comes out at `t + P + A`: [`StreamPlan::latency_samples`]. At the model's
//! own rate that is `(C - H) + 2H + S*H + B = C + (1 + S)H + B` (B = the host's maximum buffer
//! size).
//!
//! # Timeline anchoring
//!
//! Every counter of the pipeline above (input resampler chunks, hops, output resampler chunks,
//! blocks) repeats with a period of [`StreamPlan::anchor`] host frames. A stream that starts at
//! project position `p` therefore starts in the state the stream from the project's start would
//! have at `p` had the song been silent before `p` ([`super::stream::Streamer::restart_at`]):
//! its chunk grid is the whole-song render's, so one chunk after the start the output equals
//! the whole-song render.

use crate::audio::StreamResampler;

/// Rates, sizes and delays of one activation. All lengths are in samples (frames).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    /// Host sample rate.
    pub host_rate: u32,
    /// The model's sample rate.
    pub model_rate: u32,
    /// Chunk length C at the model's rate.
    pub chunk: usize,
    /// Overlap K (chunks per sample).
    pub overlap: usize,
    /// Hop H = C / K at the model's rate.
    pub hop: usize,
    /// Stems the model produces.
    pub stems: usize,
    /// The host's largest buffer (B).
    pub max_block: usize,
    /// Host-rate block size b exchanged between the audio thread and the worker.
    pub block: usize,
    /// The hop in host frames, Hc = ceil(H * fs / fm): the worker's time budget per chunk.
    pub compute: usize,
    /// Input resampler (fs -> fm): (chunk in, chunk out, delay in output frames); (1, 1, 0)
    /// when the rates match.
    pub in_rs: (usize, usize, usize),
    /// Output resampler (fm -> fs), as `in_rs`.
    pub out_rs: (usize, usize, usize),
    /// Prefill P of the worker's output FIFO, in host frames.
    pub prefill: usize,
    /// Extra hops of compute headroom (the "Safety" setting), included in `audio_delay`.
    pub safety: usize,
    /// Delay A between an input block's start and the playback of its output block.
    pub audio_delay: usize,
    /// Host frames after which the pipeline's counters (input resampler chunks, hops, output
    /// resampler chunks) repeat: streams start on this grid of the project timeline (their
    /// blocks counted from there). `None` for rate pairs whose period is impractically long
    /// (the stream then runs unanchored).
    pub anchor: Option<u64>,
    /// A streaming model's own delay ([`crate::nets::Schedule::Stream`]), in host frames
    /// (such models run at the host's rate); 0 for chunked models. Its blocks are the chunks
    /// (C = H = its block, overlap 1), consecutive, so it adds exactly this to the latency.
    pub model_latency: usize,
}

/// Everything that can make a plan impossible.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot stream at {host} Hz for a {model} Hz model: {message}")]
    Resampler { host: u32, model: u32, message: String },
    #[error("invalid stream sizes: {0}")]
    Sizes(&'static str),
}

impl StreamPlan {
    /// Plan a stream of a model with chunk `chunk` at `model_rate`, overlap `overlap`, hosted at
    /// `host_rate` with buffers of at most `max_block` frames, with `safety` extra hops of
    /// compute headroom.
    pub fn new(
        host_rate: u32,
        model_rate: u32,
        chunk: usize,
        overlap: usize,
        stems: usize,
        max_block: usize,
        safety: usize,
    ) -> Result<Self, PlanError> {
        if chunk == 0 || overlap == 0 || stems == 0 || host_rate == 0 || model_rate == 0 {
            return Err(PlanError::Sizes("chunk, overlap, stems and rates must be positive"));
        }
        let hop = (chunk / overlap).max(1);
        let max_block = max_block.max(1);
        let compute = (hop as u64 * host_rate as u64).div_ceil(model_rate as u64).max(1) as usize;
        let rs_err = |e: crate::audio::AudioError| PlanError::Resampler {
            host: host_rate,
            model: model_rate,
            message: e.to_string(),
        };
        let block = if host_rate == model_rate {
            hop
        } else {
            // The input resampler's chunk does not depend on the block size it accepts.
            let probe = StreamResampler::new(host_rate, model_rate, 2, 1).map_err(rs_err)?;
            probe.chunk_frames().0.min(compute)
        };
        // The worker builds the same resamplers; their chunking and delay are part of the plan.
        let in_rs = resampler_shape(&StreamResampler::new(host_rate, model_rate, 2, block).map_err(rs_err)?);
        let out_rs = resampler_shape(&StreamResampler::new(model_rate, host_rate, 2 * stems, hop).map_err(rs_err)?);
        let prefill = worker_prefill(block, hop, chunk, in_rs, out_rs);
        let audio_delay = audio_delay(block, compute * (1 + safety), max_block);
        let period = pipeline_period(hop, in_rs, out_rs);
        let anchor = (period <= MAX_ANCHOR).then_some(period as u64);
        Ok(StreamPlan {
            host_rate,
            model_rate,
            chunk,
            overlap,
            hop,
            stems,
            max_block,
            block,
            compute,
            in_rs,
            out_rs,
            prefill,
            safety,
            audio_delay,
            anchor,
            model_latency: 0,
        })
    }

    /// Plan a streaming model ([`crate::nets::Schedule::Stream`]) of `block`-sample blocks
    /// and `latency` samples of delay, built at the host's rate: consecutive blocks are its
    /// chunks (overlap 1).
    pub fn streaming(host_rate: u32, block: usize, latency: usize, stems: usize, max_block: usize, safety: usize) -> Result<Self, PlanError> {
        let mut p = Self::new(host_rate, host_rate, block, 1, stems, max_block, safety)?;
        p.model_latency = latency;
        Ok(p)
    }

    /// Frames after a block a streaming model did not see during which its output is still
    /// wrong once restarted: its output depends on at most `2 * latency + block` frames of
    /// input before it (the built-ins: the STFT window and the median's look-behind). 0 for
    /// chunked models.
    pub fn model_settle(&self) -> usize {
        if self.model_latency == 0 { 0 } else { 2 * self.model_latency + self.block }
    }

    /// The plugin's latency in host samples: song sample `t` (host rate) comes out of the plugin
    /// at `t + latency_samples()`, on the main output and on every stem output.
    ///
    /// `= P + A`, with P = [`worker_prefill`] (UVR's `C - H` look-ahead plus, when resampling,
    /// both resamplers' delays and chunk buffering, in host frames) and A = [`audio_delay`]
    /// (`b + Hc + B`). Without resampling this is exactly `C + H + B`.
    pub fn latency_samples(&self) -> usize {
        self.prefill + self.audio_delay + self.model_latency
    }

    /// Whether host and model rates differ (the worker resamples).
    pub fn resamples(&self) -> bool {
        self.host_rate != self.model_rate
    }

    /// Input blocks that can be in flight at once (the audio thread's pool of input buffers):
    /// everything sent while the worker computes a chunk, plus a host buffer, plus a few, and at
    /// least [`INPUT_POOL_SECONDS`] of audio, so that a worker busy with a chunk far slower than
    /// real time (it then catches up by skipping late chunks) never leaves the audio thread
    /// without a buffer: a block that cannot be sent breaks the stream.
    pub fn input_pool(&self) -> usize {
        let seconds = (INPUT_POOL_SECONDS * self.host_rate as f64) as usize;
        ((self.audio_delay + self.max_block).div_ceil(self.block) + 4).max(seconds.div_ceil(self.block))
    }

    /// Output blocks that can be in flight at once: everything computed ahead of playback
    /// (A + B frames) plus a few.
    pub fn output_pool(&self) -> usize {
        (self.audio_delay + self.max_block).div_ceil(self.block) + 4
    }
}

/// Audio the input pool holds at least (see [`StreamPlan::input_pool`]).
pub const INPUT_POOL_SECONDS: f64 = 12.0;

/// Longest anchor period used ([`StreamPlan::anchor`]): 2^40 frames (about 260 days at 48 kHz).
const MAX_ANCHOR: u128 = 1 << 40;

fn resampler_shape(rs: &StreamResampler) -> (usize, usize, usize) {
    let (i, o) = rs.chunk_frames();
    (i, o, rs.delay_frames())
}

/// The audio thread's delay A, in host frames, between the start of input block `j` (stream
/// position `j * block`) and the playback of the worker's answer to it.
///
/// `block` frames pass before block `j` is complete and sent; then the worker may need to
/// compute a chunk, for which it gets `compute` frames of time (the stream's real-time budget:
/// one hop of audio per hop of compute). A host hands the plugin up to `max_block` frames at
/// once and wants the answer for all of them immediately, so the last frame of a buffer may need
/// a block that was sent at the start of it: `max_block` more frames of slack make the budget
/// hold for every buffer size and alignment. In offline rendering the same delay is kept, so a
/// bounce and real-time playback line up identically.
pub fn audio_delay(block: usize, compute: usize, max_block: usize) -> usize {
    block + compute + max_block
}

/// Smallest prefill P (host frames) of the worker's output FIFO for which the worker can
/// always answer input block `j` with output block `j` right after receiving it.
///
/// After `n` host frames the worker has produced, exactly:
/// - `k = floor(n / ci_in) * co_in - d_in` model frames (the input resampler emits whole
///   chunks; its delay `d_in` is dropped so the model sees the song on UVR's chunk grid),
/// - `floor(k / H)` chunks, hence `floor(k/H)*H + H - C` final (non-negative-time) model frames,
/// - `floor(final / ci_out) * co_out - d_out` host frames for the FIFO.
///
/// P is the largest shortfall `(j + 1) * block - produced` over all `j`. The shortfall is
/// periodic once the pipeline is full, so one period after the start-up transient is
/// enough; the period is computed exactly (and capped for pathological rate pairs, where a
/// safety margin of one resampler chunk is added).
pub fn worker_prefill(
    block: usize,
    hop: usize,
    chunk: usize,
    in_rs: (usize, usize, usize),
    out_rs: (usize, usize, usize),
) -> usize {
    let (ci_in, co_in, d_in) = in_rs;
    let (ci_out, co_out, d_out) = out_rs;
    let produced = |n: u128| -> u128 {
        let k = (n / ci_in as u128 * co_in as u128).saturating_sub(d_in as u128);
        let chunks = k / hop as u128;
        let fin = (chunks * hop as u128 + hop as u128).saturating_sub(chunk as u128);
        (fin / ci_out as u128 * co_out as u128).saturating_sub(d_out as u128)
    };
    let period_blocks = host_period(block, hop, in_rs, out_rs) / block as u128;
    // Start-up: the pipeline fills after the delays and one chunk, in host frames (generous).
    let transient = ((d_in + chunk + hop + ci_in + co_in) as u128 * 4 + (d_out + ci_out + co_out) as u128 * 4)
        / block as u128
        + 4;
    const CAP: u128 = 4_000_000;
    let (blocks, margin) = if period_blocks + transient <= CAP {
        (period_blocks + transient, 0)
    } else {
        (CAP, ci_in.max(co_out) as u128)
    };
    let mut worst = 0u128;
    for j in 0..blocks {
        let n = (j + 1) * block as u128;
        worst = worst.max(n.saturating_sub(produced(n)));
    }
    (worst + margin) as usize
}

/// Host frames after which the pipeline's counters (input resampler chunks, hops, output
/// resampler chunks) repeat: the smallest multiple of the input resampler's chunk whose
/// model-rate length is a multiple of the hop and of the output resampler's chunk.
fn pipeline_period(hop: usize, in_rs: (usize, usize, usize), out_rs: (usize, usize, usize)) -> u128 {
    let (ci_in, co_in, _) = in_rs;
    let ci_out = out_rs.0;
    let lcm_model = lcm(hop as u128, ci_out as u128);
    let m = lcm_model / gcd(co_in as u128, lcm_model);
    ci_in as u128 * m
}

/// [`pipeline_period`] in whole blocks: after it the exchange with the audio thread repeats too.
fn host_period(block: usize, hop: usize, in_rs: (usize, usize, usize), out_rs: (usize, usize, usize)) -> u128 {
    lcm(block as u128, pipeline_period(hop, in_rs, out_rs))
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

fn lcm(a: u128, b: u128) -> u128 {
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_at_the_model_rate_is_chunk_plus_hop_plus_buffer() {
        for (c, k, b) in [(1984usize, 4usize, 512usize), (1984, 2, 64), (261120, 4, 1024), (8064, 8, 8192), (1000, 3, 1)] {
            let p = StreamPlan::new(44100, 44100, c, k, 2, b, 0).unwrap();
            let h = c / k;
            assert_eq!(p.prefill, c - h, "C={c} K={k}");
            assert_eq!(p.latency_samples(), c + h + b, "C={c} K={k} B={b}");
        }
    }

    /// Independent check of the prefill: run the bookkeeping block by block, the way the worker
    /// does (resampler chunk by chunk, chunk by chunk), and verify the FIFO never runs dry with
    /// P and does with P - 1.
    #[test]
    fn prefill_is_the_smallest_that_never_underflows() {
        for (host, model, c, k) in [(48000u32, 44100u32, 1984usize, 4usize), (96000, 44100, 1984, 2), (44100, 48000, 3968, 4), (88200, 44100, 8064, 8)] {
            let p = StreamPlan::new(host, model, c, k, 2, 256, 0).unwrap();
            let (ci_in, co_in, d_in) = p.in_rs;
            let (ci_out, co_out, d_out) = p.out_rs;
            let run = |prefill: usize| -> bool {
                let (mut fed_in, mut model_frames, mut dropped_in) = (0usize, 0usize, 0usize);
                let (mut pending, mut final_frames, mut fed_out, mut host_out, mut dropped_out) = (0usize, 0usize, 0usize, 0usize, 0usize);
                let mut skip_front = c - p.hop;
                let mut fifo = prefill;
                for _ in 0..20_000 {
                    fed_in += p.block;
                    while fed_in >= ci_in {
                        fed_in -= ci_in;
                        let mut got = co_in;
                        let d = got.min(d_in - dropped_in);
                        dropped_in += d;
                        got -= d;
                        model_frames += got;
                    }
                    pending += model_frames;
                    model_frames = 0;
                    while pending >= p.hop {
                        pending -= p.hop;
                        let mut f = p.hop;
                        let s = f.min(skip_front);
                        skip_front -= s;
                        f -= s;
                        final_frames += f;
                    }
                    fed_out += final_frames;
                    final_frames = 0;
                    while fed_out >= ci_out {
                        fed_out -= ci_out;
                        let mut got = co_out;
                        let d = got.min(d_out - dropped_out);
                        dropped_out += d;
                        got -= d;
                        host_out += got;
                    }
                    fifo += host_out;
                    host_out = 0;
                    if fifo < p.block {
                        return false;
                    }
                    fifo -= p.block;
                }
                true
            };
            assert!(run(p.prefill), "{host}->{model}: prefill {} underflows", p.prefill);
            assert!(!run(p.prefill - 1), "{host}->{model}: prefill {} is not minimal", p.prefill);
        }
    }
}

#[cfg(test)]
mod readme_numbers {
    use super::*;

    /// The latency table of docs/realtime.md (Latency), host buffer 512.
    #[test]
    fn readme_latency_examples() {
        let lat = |host: u32, c: usize, k: usize| StreamPlan::new(host, 44100, c, k, 2, 512, 0).unwrap().latency_samples();
        for (c, k) in [(1984, 4), (261120, 2), (261120, 4), (261120, 8), (31744, 4)] {
            eprintln!("C={c} K={k}: 44.1k {} 48k {}", lat(44100, c, k), lat(48000, c, k));
        }
    }
}
