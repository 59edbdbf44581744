//! Deterministic mutation fuzzing on stable Rust (no libFuzzer): seed files (real checkpoints,
//! configs, audio files, plugin states) mutated by a seeded generator, each mutant fed to the
//! parser that reads that kind of file. A target must return (an error is fine) without a
//! panic, an abort, or taking longer than [`SLOW`]. `tests/fuzz.rs` runs a few hundred
//! mutants per target in `cargo test`; `MDX_FUZZ_ITERS` and `MDX_FUZZ_SEED` run more (README:
//! "Fuzzing"). Not part of the engine's API.

use std::path::Path;
use std::time::Duration;

/// A mutant taking longer than this counts as a hang.
pub const SLOW: Duration = Duration::from_secs(10);

/// xorshift64*: the same mutants for the same seed on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// Values that break size arithmetic.
const INTERESTING: [u64; 12] = [0, 1, 2, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0x1_0000_0000, i64::MAX as u64, u64::MAX];

/// One mutant of `seed`: a few random edits (bit flips, interesting integers written over the
/// bytes, truncation, a slice repeated or removed); text seeds also get numbers replaced.
pub fn mutate(seed: &[u8], rng: &mut Rng, text: bool) -> Vec<u8> {
    let mut d = seed.to_vec();
    let edits = 1 + rng.below(4);
    for _ in 0..edits {
        if d.is_empty() {
            d.push(rng.next() as u8);
        }
        match rng.below(if text { 8 } else { 7 }) {
            0 => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(d.len());
                d[i] = rng.next() as u8;
            }
            2 | 3 => {
                // An interesting little- or big-endian integer of 2, 4 or 8 bytes.
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let w = [2usize, 4, 8][rng.below(3)];
                let bytes = if rng.below(2) == 0 { v.to_le_bytes() } else { v.to_be_bytes() };
                let i = rng.below(d.len());
                for k in 0..w.min(d.len() - i) {
                    d[i + k] = if rng.below(2) == 0 { bytes[k] } else { bytes[8 - w + k] };
                }
            }
            4 => {
                let n = rng.below(d.len() + 1);
                d.truncate(n);
            }
            5 => {
                // Repeat a slice (lengths, nesting).
                let a = rng.below(d.len());
                let n = rng.below((d.len() - a).min(4096) + 1);
                let slice = d[a..a + n].to_vec();
                let at = rng.below(d.len() + 1);
                d.splice(at..at, slice);
            }
            6 => {
                let a = rng.below(d.len());
                let n = rng.below((d.len() - a).min(4096) + 1);
                d.drain(a..a + n);
            }
            _ => replace_number(&mut d, rng),
        }
    }
    d
}

/// Replace one decimal number of a text with an extreme one.
fn replace_number(d: &mut Vec<u8>, rng: &mut Rng) {
    let starts: Vec<usize> = (0..d.len()).filter(|&i| d[i].is_ascii_digit() && (i == 0 || !d[i - 1].is_ascii_digit())).collect();
    if starts.is_empty() {
        return;
    }
    let a = starts[rng.below(starts.len())];
    let b = (a..d.len()).find(|&i| !d[i].is_ascii_digit()).unwrap_or(d.len());
    let choices = ["0", "1", "3", "-1", "65536", "4294967295", "18446744073709551615", "99999999999999999999999", "1e308", "2147483648", "1000000"];
    let with = choices[rng.below(choices.len())];
    d.splice(a..b, with.bytes());
}

/// What kind of file a target reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A PyTorch zip checkpoint (`Checkpoint::read`, then the shape check against its config).
    Ckpt,
    /// A safetensors file.
    Safetensors,
    /// A model config (YAML), then the sizes it implies.
    Config,
    /// An audio file, decoded block by block (the extension is the seed's).
    Audio,
    /// A plugin state (JSON, nice-plug's format), its persisted fields read as the plugin reads them.
    State,
}

/// Feed `data` to `target`; `scratch` is a file path it may write (with the right extension).
/// Returns what happened, for the log ("ok" or the error's first words); panics propagate.
pub fn run(target: Target, data: &[u8], scratch: &Path) -> String {
    use crate::nets::tfc_tdf::checkpoint::{Checkpoint, check_tensors, expected_tensors};
    use crate::nets::tfc_tdf::config::ModelConfig;
    let short = |e: &dyn std::fmt::Display| e.to_string().chars().take(80).collect::<String>();
    match target {
        Target::Ckpt | Target::Safetensors => {
            std::fs::write(scratch, data).expect("write the scratch file");
            match Checkpoint::read(scratch) {
                Ok(ck) => {
                    let cfg = ModelConfig::from_yaml_str(FIXTURE_CONFIG).expect("the built-in config");
                    match check_tensors(&ck, &cfg) {
                        Ok(()) => "ok".into(),
                        Err(e) => short(&e),
                    }
                }
                Err(e) => short(&e),
            }
        }
        Target::Config => {
            let text = String::from_utf8_lossy(data);
            match ModelConfig::from_yaml_str(&text) {
                Ok(cfg) => {
                    let shapes = expected_tensors(&cfg);
                    let _ = cfg.check_chunk(cfg.chunk_for_dim_t(cfg.audio.dim_t));
                    let _ = (cfg.stems(), cfg.output_stems(), cfg.default_overlap(), cfg.channel_counts());
                    format!("ok ({} tensors)", shapes.len())
                }
                Err(e) => short(&e),
            }
        }
        Target::Audio => {
            std::fs::write(scratch, data).expect("write the scratch file");
            match crate::audio::AudioReader::open(scratch) {
                Ok(mut r) => {
                    let mut block = Vec::new();
                    let mut frames = 0u64;
                    loop {
                        match r.next_block(&mut block) {
                            Ok(true) => {
                                frames += block.first().map_or(0, |c| c.len()) as u64;
                                assert_eq!(block.len(), r.channels(), "a block has the announced channel count");
                            }
                            Ok(false) => break format!("ok ({frames} frames)"),
                            Err(e) => break short(&e),
                        }
                    }
                }
                Err(e) => short(&e),
            }
        }
        Target::State => state(data),
    }
}

/// A config the checkpoint targets check their tensors against (the tiny fixture's).
const FIXTURE_CONFIG: &str = "audio: {chunk_size: 1984, dim_f: 128, dim_t: 32, hop_length: 64, n_fft: 256, num_channels: 2, sample_rate: 44100}
model: {act: gelu, bottleneck_factor: 2, growth: 4, norm: InstanceNorm, num_blocks_per_scale: 1, num_channels: 8, num_scales: 2, num_subbands: 2, scale: [2, 2]}
training: {instruments: [vocals, instrumental], target_instrument: null}
";

/// A plugin state: nice-plug's JSON (`fields`: name -> JSON text of the value), each persisted
/// field decoded as the plugin's params do, then the values the plugin derives sizes from.
fn state(data: &[u8]) -> String {
    if data.len() > crate::limits::MAX_STATE_BYTES {
        return "too large".into();
    }
    let v: serde_json::Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(e) => return format!("json: {e}"),
    };
    let Some(fields) = v.get("fields").and_then(|f| f.as_object()) else { return "no fields".into() };
    let num = |k: &str| fields.get(k).and_then(|t| t.as_str()).and_then(|t| serde_json::from_str::<u32>(t).ok());
    let threads = num("cpu_threads").map(crate::plugin::plugin_threads);
    if let Some(t) = threads {
        assert!(t <= crate::limits::MAX_THREADS, "cpu_threads from a state gives {t} threads");
    }
    let path = fields.get("model_path").and_then(|t| t.as_str()).and_then(|t| serde_json::from_str::<String>(t).ok());
    format!("ok (threads {threads:?}, overlap {:?}, model {})", num("overlap"), path.is_some())
}
