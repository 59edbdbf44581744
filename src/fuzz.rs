//! Fuzzing of every file the program reads. Two drivers feed the same entry points ([`run`],
//! through [`run_bytes`] for inputs held in memory):
//! - deterministic mutation fuzzing on stable Rust: seed files (real checkpoints, configs,
//!   audio files, plugin states) mutated by a seeded generator ([`mutate`]); `tests/fuzz.rs`
//!   runs a few dozen mutants per seed in `cargo test`, `MDX_FUZZ_ITERS` and `MDX_FUZZ_SEED`
//!   run more;
//! - coverage-guided libFuzzer targets, one per [`Target`], in `fuzz/` (cargo-fuzz), through
//!   [`libfuzzer`]; their minimized corpora are replayed by `tests/fuzz.rs` in `cargo test`.
//!
//! A target must return (an error is fine) without a panic, an abort, or taking longer than
//! [`SLOW`]. docs/fuzzing.md. Not part of the engine's API.

use std::borrow::Cow;
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

impl Target {
    pub const ALL: [Target; 5] = [Target::Ckpt, Target::Safetensors, Target::Config, Target::Audio, Target::State];

    /// The name of its libFuzzer target (`fuzz/fuzz_targets/<name>.rs`) and corpus folder
    /// (`fuzz/corpus/<name>/`).
    pub fn name(self) -> &'static str {
        match self {
            Target::Ckpt => "checkpoint",
            Target::Safetensors => "safetensors",
            Target::Config => "config",
            Target::Audio => "audio",
            Target::State => "plugin_state",
        }
    }

    /// The extension of the scratch file `data` is written to. Audio files by their first
    /// bytes (the decoder probes the content; the extension is only a hint).
    pub fn extension(self, data: &[u8]) -> &'static str {
        match self {
            Target::Ckpt => "ckpt",
            Target::Safetensors => "safetensors",
            Target::Config => "yaml",
            Target::State => "json",
            Target::Audio if data.starts_with(b"RIFF") => "wav",
            Target::Audio if data.starts_with(b"fLaC") => "flac",
            Target::Audio if data.starts_with(b"OggS") => "ogg",
            Target::Audio if data.starts_with(b"FORM") => "aiff",
            Target::Audio => "mp3",
        }
    }
}

/// What an input becomes before it is read: the pages of an OGG file get valid checksums, so
/// that mutants reach the decoder (else the container drops nearly all of them at the first
/// page). Everything else is read as it is.
pub fn prepare(target: Target, data: &[u8]) -> Cow<'_, [u8]> {
    if target == Target::Audio && data.starts_with(b"OggS") {
        let mut d = data.to_vec();
        fix_ogg_crcs(&mut d);
        Cow::Owned(d)
    } else {
        Cow::Borrowed(data)
    }
}

/// Recompute the CRC of every OGG page that still parses as one.
fn fix_ogg_crcs(d: &mut [u8]) {
    fn crc(data: &[u8]) -> u32 {
        let mut c = 0u32;
        for &b in data {
            c ^= (b as u32) << 24;
            for _ in 0..8 {
                c = if c & 0x8000_0000 != 0 { (c << 1) ^ 0x04c1_1db7 } else { c << 1 };
            }
        }
        c
    }
    let mut pos = 0;
    while pos + 27 <= d.len() && &d[pos..pos + 4] == b"OggS" {
        let segs = d[pos + 26] as usize;
        if pos + 27 + segs > d.len() {
            return;
        }
        let body: usize = d[pos + 27..pos + 27 + segs].iter().map(|&b| b as usize).sum();
        let end = pos + 27 + segs + body;
        if end > d.len() {
            return;
        }
        d[pos + 22..pos + 26].fill(0);
        let c = crc(&d[pos..end]);
        d[pos + 22..pos + 26].copy_from_slice(&c.to_le_bytes());
        pos = end;
    }
}

/// Feed `data`, held in memory, to `target`: [`prepare`]d, written to a scratch file of this
/// thread in the system's temporary folder (the readers read files), [`run`], the file removed.
pub fn run_bytes(target: Target, data: &[u8]) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STEM: String = format!("mdx-stems-fuzz-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    }
    let data = prepare(target, data);
    let scratch = STEM.with(|s| std::env::temp_dir().join(format!("{s}.{}", target.extension(&data))));
    let out = run(target, &data, &scratch);
    let _ = std::fs::remove_file(&scratch);
    out
}

/// One libFuzzer input (`fuzz/fuzz_targets/`): [`run_bytes`], aborting (a crash for libFuzzer)
/// if a panic escapes it. libfuzzer-sys aborts on every panic, even one the readers catch on
/// purpose (a decoder's or the pickle interpreter's, turned into an error): this replaces its
/// hook with one that only remembers the message, printed if the panic escapes.
pub fn libfuzzer(target: Target, data: &[u8]) {
    use std::sync::{Mutex, Once};
    static HOOK: Once = Once::new();
    static LAST: Mutex<String> = Mutex::new(String::new());
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if let Ok(mut last) = LAST.lock() {
                *last = info.to_string();
            }
        }))
    });
    if std::panic::catch_unwind(|| run_bytes(target, data)).is_err() {
        eprintln!("{target:?} panicked: {}", LAST.lock().map(|l| l.clone()).unwrap_or_default());
        std::process::abort();
    }
}

/// Feed `data` to `target`; `scratch` is a file path it may write (with the right extension).
/// Returns what happened, for the log ("ok" or the error's first words); panics propagate.
pub fn run(target: Target, data: &[u8], scratch: &Path) -> String {
    use crate::nets::Checkpoint;
    let short = |e: &dyn std::fmt::Display| e.to_string().chars().take(80).collect::<String>();
    match target {
        Target::Ckpt | Target::Safetensors => {
            std::fs::write(scratch, data).expect("write the scratch file");
            match Checkpoint::read(scratch) {
                Ok(ck) => {
                    let net = crate::nets::from_yaml_str(FIXTURE_CONFIG).expect("the built-in config");
                    match net.check_tensors(&ck) {
                        Ok(()) => "ok".into(),
                        Err(e) => short(&e),
                    }
                }
                Err(e) => short(&e),
            }
        }
        Target::Config => {
            let text = String::from_utf8_lossy(data);
            match crate::nets::from_yaml_str(&text) {
                Ok(net) => {
                    let shapes = net.expected_tensors();
                    let segments = net.segments();
                    let _ = (net.pick_segment(segments.default), segments.choices.iter().map(|&s| net.segment_chunk(s)).sum::<usize>());
                    let _ = (net.info(), net.output_stems(), net.configured_overlap(), net.describe());
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
