//! Helpers shared by the unit tests, the integration tests (`tests/common`) and the benchmarks.
//! Not part of the engine's API.

use crate::audio::AudioError;
use crate::engine::{EngineError, Separator, StreamSettings};
use std::path::PathBuf;

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A fresh empty folder `<system temp>/mdx-stems-tests-<pid>/<group>/<name>` (tests run in
/// parallel, and in several processes).
pub fn temp_dir(group: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mdx-stems-tests-{}", std::process::id())).join(group).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create a temporary folder");
    d
}

/// The test fixtures (`tests/fixtures/`, described in its README.md): `$MDX_STEMS_FIXTURES` if
/// set (test executables run from a copy of the fixtures on another machine), else the
/// checkout's `tests/fixtures`.
pub fn fixtures_root() -> PathBuf {
    match std::env::var_os("MDX_STEMS_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
    }
}

/// The golden data of fixture model `name`: `<fixtures>/mdx23c/<name>`.
pub fn fixture_dir(name: &str) -> PathBuf {
    fixtures_root().join("mdx23c").join(name)
}

/// The golden data of RoFormer fixture model `name`: `<fixtures>/roformer/<name>`.
pub fn roformer_fixture_dir(name: &str) -> PathBuf {
    fixtures_root().join("roformer").join(name)
}

/// What [`stream_in_uneven_blocks`] can fail with.
#[derive(Debug)]
pub enum StreamFailure {
    Engine(EngineError),
    Audio(AudioError),
}

impl From<EngineError> for StreamFailure {
    fn from(e: EngineError) -> Self {
        StreamFailure::Engine(e)
    }
}

impl From<AudioError> for StreamFailure {
    fn from(e: AudioError) -> Self {
        StreamFailure::Audio(e)
    }
}

/// `mix` ([2][n]) through [`Separator::separate_streaming`] at `rate`, fed in blocks of uneven
/// sizes (1 to 20000 frames): every output the stream hands out, [outputs][n] (`[s * 2 + ch]`).
pub fn stream_in_uneven_blocks(sep: &mut Separator, mix: &[Vec<f32>], rate: u32, settings: StreamSettings) -> Vec<Vec<f32>> {
    let sizes = [1000usize, 4097, 333, 1, 8192, 20000];
    let (mut pos, mut k, n) = (0, 0, mix[0].len());
    let mut source = |b: &mut [Vec<f32>; 2]| -> Result<bool, StreamFailure> {
        if pos >= n {
            return Ok(false);
        }
        let m = sizes[k % sizes.len()].min(n - pos);
        k += 1;
        for ch in 0..2 {
            b[ch].clear();
            b[ch].extend_from_slice(&mix[ch][pos..pos + m]);
        }
        pos += m;
        Ok(true)
    };
    let mut out: Vec<Vec<f32>> = Vec::new();
    let mut sink = |s: &[Vec<f32>]| -> Result<(), StreamFailure> {
        out.resize(s.len(), Vec::new());
        for (o, s) in out.iter_mut().zip(s) {
            o.extend_from_slice(s);
        }
        Ok(())
    };
    let got = sep.separate_streaming(rate, &settings, &mut source, &mut sink).unwrap();
    assert_eq!(got as usize, n, "the stream's length");
    out
}
