//! Helpers shared by the unit tests, the integration tests (`tests/common`) and the benchmarks.
//! Not part of the engine's API.

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
