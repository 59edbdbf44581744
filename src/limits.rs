//! What the tool accepts: plausibility limits on every value read from a file (or given on the
//! command line) that sizes work or memory. Each check runs before the work it would size and
//! fails with a one-line message naming the value and the accepted range. docs/cli.md's
//! "Limits" section lists the same numbers.

/// Audio sample rates: 1 kHz to 768 kHz.
pub const SAMPLE_RATE: (u32, u32) = (1_000, 768_000);
/// Audio channels in a file: 1 to 32 (only the first two are separated).
pub const MAX_CHANNELS: usize = 32;
/// A file longer than this many hours at its own rate is not plausible (a header's frame count
/// is only trusted below it; the stream itself may run longer).
pub const MAX_HOURS: u64 = 24;
/// A model's own sample rate: 8 kHz to 192 kHz.
pub const MODEL_SAMPLE_RATE: (u32, u32) = (8_000, 192_000);
/// STFT size of a model.
pub const MAX_N_FFT: usize = 65_536;
/// Samples per chunk of a model (about 95 s at 44.1 kHz; real models use 2 to 12 s).
pub const MAX_CHUNK: usize = 1 << 22;
/// Network width: channels at the first scale, and their growth per scale.
pub const MAX_NET_CHANNELS: usize = 4_096;
/// Subbands, blocks per scale, bottleneck factor, scale factors.
pub const MAX_SUBBANDS: usize = 64;
pub const MAX_BLOCKS_PER_SCALE: usize = 64;
pub const MAX_BOTTLENECK: usize = 1_024;
pub const MAX_SCALE_FACTOR: usize = 16;
pub const MAX_SCALES: usize = 12;
/// Stems a model may produce.
pub const MAX_STEMS: usize = 64;
/// Parameters a model may hold (2^31 floats: 8 GB in f32).
pub const MAX_PARAMETERS: u64 = 1 << 31;
/// Size of a checkpoint: the file, and the uncompressed entries of a zip checkpoint in total.
pub const MAX_CHECKPOINT_BYTES: u64 = 8 << 30;
/// Entries in a zip checkpoint, tensors in a checkpoint, dimensions of one tensor.
pub const MAX_ZIP_ENTRIES: usize = 100_000;
pub const MAX_TENSORS: usize = 100_000;
pub const MAX_TENSOR_RANK: usize = 8;
/// Values the pickle of a zip checkpoint builds (each string byte counts as one): real ones
/// build a few thousand (a few per tensor and name).
pub const MAX_PICKLE_VALUES: u64 = 1 << 24;
/// A model config (YAML) and a plugin state (JSON) are small text files.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
pub const MAX_STATE_BYTES: usize = 1 << 20;
/// Overlap (chunks over each sample) and chunks per network call.
pub const MAX_OVERLAP: usize = 64;
pub const MAX_BATCH: usize = 1_024;
/// CPU threads (`--threads`, the plugin's "CPU threads" in a saved state).
pub const MAX_THREADS: usize = 256;

fn range<T: PartialOrd + std::fmt::Display>(what: &str, v: T, lo: T, hi: T) -> Result<(), String> {
    if v < lo || v > hi {
        Err(format!("{what} {v} is outside the accepted range {lo} to {hi}"))
    } else {
        Ok(())
    }
}

/// An audio file's sample rate.
pub fn check_sample_rate(rate: u32) -> Result<(), String> {
    range("sample rate (Hz)", rate, SAMPLE_RATE.0, SAMPLE_RATE.1)
}

/// An audio file's channel count.
pub fn check_channels(channels: usize) -> Result<(), String> {
    range("channel count", channels, 1, MAX_CHANNELS)
}

/// A frame count a header announces, at `rate`.
pub fn check_frames(frames: u64, rate: u32) -> Result<(), String> {
    let max = MAX_HOURS * 3600 * rate as u64;
    range("frame count", frames, 0, max)
}

/// A model's sample rate.
pub fn check_model_sample_rate(rate: u32) -> Result<(), String> {
    range("audio.sample_rate", rate, MODEL_SAMPLE_RATE.0, MODEL_SAMPLE_RATE.1)
}

/// Any bounded size value, with its name.
pub fn check_at_most(what: &str, v: usize, max: usize) -> Result<(), String> {
    range(what, v, 0, max)
}

/// A tensor shape read from a checkpoint.
pub fn check_tensor_shape(name: &str, shape: &[usize]) -> Result<(), String> {
    if shape.len() > MAX_TENSOR_RANK {
        return Err(format!("tensor {name} has {} dimensions (at most {MAX_TENSOR_RANK})", shape.len()));
    }
    let elems = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    match elems {
        Some(e) if e <= MAX_PARAMETERS => Ok(()),
        _ => Err(format!("tensor {name} of shape {shape:?} is larger than {MAX_PARAMETERS} values")),
    }
}

/// `--overlap` / the config's `num_overlap`, and `--batch`.
pub fn check_overlap(overlap: usize) -> Result<(), String> {
    range("overlap", overlap, 1, MAX_OVERLAP)
}
pub fn check_batch(batch: usize) -> Result<(), String> {
    range("batch", batch, 1, MAX_BATCH)
}
pub fn check_threads(threads: usize) -> Result<(), String> {
    range("thread count", threads, 0, MAX_THREADS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_accept_real_values_and_refuse_absurd_ones_in_one_line() {
        for r in [8_000, 22_050, 44_100, 48_000, 96_000, 192_000, 384_000] {
            check_sample_rate(r).unwrap();
        }
        for r in [0, 1, 999, 768_001, u32::MAX] {
            let e = check_sample_rate(r).unwrap_err();
            assert!(e.contains(&r.to_string()) && e.contains("1000 to 768000") && !e.contains('\n'), "{e}");
        }
        check_channels(2).unwrap();
        assert!(check_channels(0).is_err() && check_channels(33).is_err());
        check_frames(44_100 * 3600 * 2, 44_100).unwrap();
        assert!(check_frames(u64::MAX, 44_100).is_err());
        check_tensor_shape("w", &[256, 128, 3, 3]).unwrap();
        assert!(check_tensor_shape("w", &[1 << 20, 1 << 20]).is_err());
        assert!(check_tensor_shape("w", &[usize::MAX, 2]).is_err(), "overflowing products are refused");
        assert!(check_tensor_shape("w", &[1; 9]).is_err());
        assert!(check_overlap(0).is_err() && check_overlap(65).is_err() && check_overlap(8).is_ok());
    }
}
