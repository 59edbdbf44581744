//! Where users' models are, and what each one is.
//!
//! # Folders searched
//!
//! 1. **The app's own folder**: `MDX_STEMS_MODELS` if set, else `<data dir>/MDX Stems/models`
//!    (`dirs::data_dir()`: `~/.local/share` on Linux, `~/Library/Application Support` on macOS,
//!    `%APPDATA%` on Windows). Files may sit in it or in one level of sub-folders.
//! 2. **Ultimate Vocal Remover** keeps MDX-Net/MDX-C checkpoints in `<base>/models/MDX_Net_Models`
//!    and its configs in `<base>/models/MDX_Net_Models/model_data/` (`model_data.json`, the
//!    per-model `<hash>.json` it writes when a user picks a config, and `mdx_c_configs/*.yaml`).
//!    `<base>` is the folder `UVR.py` runs from (`BASE_PATH`: the script's folder, or
//!    PyInstaller's `sys._MEIPASS` in the packaged app) — `MODELS_DIR`, `MDX_MODELS_DIR`,
//!    `MDX_HASH_DIR`, `MDX_C_CONFIG_PATH` in UVR.py (Anjok07/ultimatevocalremovergui @5517e0c,
//!    lines 70-80 and 220-235). Per platform:
//!    - Windows (the `UVR_v5.6.0_setup.exe` installer; the README says to install on `C:`):
//!      `%LOCALAPPDATA%\Programs\Ultimate Vocal Remover` for a per-user install — the path users
//!      and tools report for UVR's models (`C:\Users\<user>\AppData\Local\Programs\Ultimate
//!      Vocal Remover\models\MDX_Net_Models\…` in many public scripts and READMEs that read
//!      UVR's models) — and `%ProgramFiles%\Ultimate Vocal Remover` for an all-users install
//!      (`C:\Program Files\Ultimate Vocal Remover\…` in users' scripts).
//!    - macOS (the `.dmg` app; the README's `xattr … /Applications/Ultimate\ Vocal\ Remover.app`):
//!      `/Applications/Ultimate Vocal Remover.app/Contents/Resources` — UVR's author, in UVR
//!      issue #368, tells users to back up `models` from "Ultimate Vocal Remover.app/Contents/
//!      Resources" — and `…/Contents/MacOS` (`sys._MEIPASS` in PyInstaller 5 bundles, which
//!      links the data there); the same under `~/Applications`.
//!    - Linux: UVR has no installer; the README says to download the repository's zip (it
//!      extracts to `ultimatevocalremovergui-master`) or clone it (`ultimatevocalremovergui`),
//!      anywhere, and run `python UVR.py` there. Those two folder names are tried in `$HOME`.
//!
//!    UVR 5.6 keeps its RoFormer checkpoints (BS-RoFormer, Mel-Band RoFormer) in the same
//!    folder and their configs in `mdx_c_configs` too, found by hash through `model_data.json`
//!    (UVR's `model_data_new.json`, entries with `is_roformer`; UVR.py's `MDX_MODELS_DIR` and
//!    `MDX_C_CONFIG_PATH` on the `v5.6.0_roformer_add+directml` branch).
//!
//!    On every platform `MDX_STEMS_UVR_DIR` may name a UVR folder (the one holding `models`,
//!    or `models/MDX_Net_Models` itself) anywhere else.
//! 3. **python-audio-separator**: `model_file_dir`, default `/tmp/audio-separator-models/`
//!    (`Separator.__init__` in `audio_separator/separator/separator.py` and `--model_file_dir`
//!    in `audio_separator/utils/cli.py`, nomadkaraoke/python-audio-separator @0a644db), which
//!    its `AUDIO_SEPARATOR_MODEL_DIR` environment variable overrides. It keeps the MDX-C
//!    `.yaml` configs (by UVR's config name) and UVR's hash table (`mdx_model_data.json`) in
//!    the same folder. Its RoFormers sit there too, each with the `.yaml` its model list names
//!    (`audio_separator/models.json`): for the public ones that is `<checkpoint stem>.yaml`
//!    (`model_bs_roformer_ep_317_sdr_12.9755.yaml`, `vocals_mel_band_roformer.yaml`), found as
//!    the config beside the model.
//!
//! Folders that do not exist are skipped silently. In UVR's and audio-separator's folders only
//! `.ckpt` and `.safetensors` files are listed (their `.onnx` and `.pth` files are other
//! architectures); in the app's folder `.pth`/`.pt` too.

use super::uvr::{self, UvrTable};
use crate::nets::{Inferred, NetSpec};
use super::{ConfigOrigin, ModelEntry, ModelSource};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The app's own models folder: `MDX_STEMS_MODELS`, else `<data dir>/MDX Stems/models`.
pub fn app_models_dir() -> PathBuf {
    match std::env::var_os("MDX_STEMS_MODELS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("MDX Stems").join("models"),
    }
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// UVR's `MDX_Net_Models` folders for this platform (existing or not); see the module docs.
pub fn uvr_model_dirs() -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = vec![];
    #[cfg(target_os = "windows")]
    {
        if let Some(local) = dirs::data_local_dir() {
            bases.push(local.join("Programs").join("Ultimate Vocal Remover"));
        }
        if let Some(pf) = env_dir("ProgramFiles") {
            bases.push(pf.join("Ultimate Vocal Remover"));
        }
    }
    #[cfg(target_os = "macos")]
    {
        let mut apps = vec![PathBuf::from("/Applications")];
        if let Some(home) = dirs::home_dir() {
            apps.push(home.join("Applications"));
        }
        for a in apps {
            let contents = a.join("Ultimate Vocal Remover.app").join("Contents");
            bases.push(contents.join("Resources"));
            bases.push(contents.join("MacOS"));
        }
    }
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        if let Some(home) = dirs::home_dir() {
            bases.push(home.join("ultimatevocalremovergui"));
            bases.push(home.join("ultimatevocalremovergui-master"));
        }
    }
    let mut out: Vec<PathBuf> = bases.into_iter().map(|b| b.join("models").join("MDX_Net_Models")).collect();
    if let Some(d) = env_dir("MDX_STEMS_UVR_DIR") {
        let mdx = [d.join("models").join("MDX_Net_Models"), d.join("MDX_Net_Models")]
            .into_iter()
            .find(|p| p.is_dir())
            .unwrap_or(d);
        out.insert(0, mdx);
    }
    out
}

/// python-audio-separator's model folders: `AUDIO_SEPARATOR_MODEL_DIR` if set, and its default.
pub fn audio_separator_dirs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = env_dir("AUDIO_SEPARATOR_MODEL_DIR").into_iter().collect();
    out.push(PathBuf::from("/tmp/audio-separator-models"));
    out
}

/// Every folder [`discover`] searches, with its source, in search order.
pub fn default_dirs() -> Vec<(PathBuf, ModelSource)> {
    let mut v = vec![(app_models_dir(), ModelSource::App)];
    v.extend(uvr_model_dirs().into_iter().map(|d| (d, ModelSource::Uvr)));
    v.extend(audio_separator_dirs().into_iter().map(|d| (d, ModelSource::AudioSeparator)));
    v
}

/// Every model in the app's, UVR's and python-audio-separator's folders, recognised with the
/// built-in UVR table; deduplicated by canonical path, sorted by source then name.
pub fn discover() -> Vec<ModelEntry> {
    discover_in(&default_dirs(), UvrTable::builtin())
}

fn extensions(source: ModelSource) -> &'static [&'static str] {
    match source {
        ModelSource::App | ModelSource::Path => &["ckpt", "safetensors", "pth", "pt"],
        ModelSource::Builtin => &[],
        ModelSource::Uvr | ModelSource::AudioSeparator => &["ckpt", "safetensors"],
    }
}

fn has_ext(path: &Path, exts: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Model files directly in `dir` and in its sub-folders (one level; `model_data` and hidden
/// folders skipped), sorted. Unreadable folders give nothing.
fn model_files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    let mut subdirs = vec![];
    for e in rd.flatten() {
        let p = e.path();
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if p.is_dir() {
            if !hidden && e.file_name() != "model_data" {
                subdirs.push(p);
            }
        } else if p.is_file() && !hidden && has_ext(&p, exts) {
            out.push(p);
        }
    }
    for s in subdirs {
        let Ok(rd) = std::fs::read_dir(&s) else { continue };
        out.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file() && has_ext(p, exts)));
    }
    out.sort();
    out
}

/// List the models in `dirs` (folders that do not exist are skipped), recognising checkpoints
/// without a `.yaml` through `table`. Never fails: a file that cannot be used is listed as not
/// ready, with the reason.
pub fn discover_in(dirs: &[(PathBuf, ModelSource)], table: &UvrTable) -> Vec<ModelEntry> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for (dir, source) in dirs {
        if !dir.is_dir() {
            continue;
        }
        for path in model_files(dir, extensions(*source)) {
            let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if !seen.insert(key) {
                continue;
            }
            let mut entry = inspect(&path, *source, table);
            // A file in a sub-folder is named after it when its own name says nothing.
            if let Some(parent) = path.parent().filter(|p| *p != dir.as_path()) {
                let file_name = path.file_name().and_then(|f| f.to_str()).unwrap_or_default();
                if table.display_name(file_name).is_none() {
                    entry.name = format!("{}/{}", parent.file_name().unwrap_or_default().to_string_lossy(), entry.name);
                }
            }
            out.push(entry);
        }
    }
    out.sort_by(|a, b| {
        (a.source, a.name.to_lowercase(), &a.path).cmp(&(b.source, b.name.to_lowercase(), &b.path))
    });
    out
}

/// Describe one model file: its display name, stems, and whether a config was found (and
/// matches the weights) or why it cannot be used, whatever its network family. Reads the
/// checkpoint's tensor shapes and, when there is no `.yaml` beside it, its UVR hash; never loads
/// the weights.
pub fn inspect(path: &Path, source: ModelSource, table: &UvrTable) -> ModelEntry {
    let file_name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = path.file_stem().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| file_name.clone());
    let name = table.display_name(&file_name).unwrap_or_else(|| stem.clone());
    let mut stems = vec![];
    let config = check(path, table).map(|(net, origin)| {
        stems = net.info().stems;
        origin
    });
    ModelEntry { path: path.to_path_buf(), name, stems, source, config }
}

fn check(path: &Path, table: &UvrTable) -> Result<(Arc<dyn NetSpec>, ConfigOrigin), String> {
    let shapes = crate::nets::read_shapes(path)?;
    let inferred = crate::nets::infer(&shapes)?;
    match super::lookup_config(path, None, table) {
        Err(e) => Err(first_line(&e.to_string())),
        Ok(Some((net, origin))) => {
            let diffs = inferred.differences(&*net);
            if diffs.is_empty() {
                Ok((net, origin))
            } else {
                Err(format!("{origin} does not match the weights: {}", diffs.join("; ")))
            }
        }
        Ok(None) => Err(no_config_reason(path, &*inferred)),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// One line for a table: no config, what is missing.
fn no_config_reason(path: &Path, inferred: &dyn Inferred) -> String {
    let hash = uvr::uvr_hash(path).map(|h| format!(", UVR hash {} unknown", &h[..8])).unwrap_or_default();
    let stems = inferred.num_stems();
    format!(
        "no config (no .yaml beside it{hash}); needs {}, stem names ({stems} stem{}): pass --config",
        inferred.missing_short().join(", "),
        if stems == 1 { "" } else { "s" }
    )
}
