//! Recognising RoFormer checkpoints (BS-RoFormer, Mel-Band RoFormer) among users' models.
//!
//! Owns only what the catalog needs to list, rank and explain them: which family a config is
//! for ([`roformer_kind`], a key check), the stems it declares ([`roformer_stems`]), whether a
//! checkpoint's tensors are a RoFormer's ([`roformer_tensors`]), and where its config is
//! ([`find_roformer`]). Reading a RoFormer config into a network is `nets::roformer`'s job:
//! [`roformer_kind`] and [`roformer_stems`] are the two places to point at that parser.

use super::infer::{read_shapes, Shapes};
use super::uvr::{self, uvr_hash, UvrTable};
use super::ConfigOrigin;
use std::path::Path;

/// A RoFormer variant, told apart by its config's `model:` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoformerKind {
    /// Band-split RoFormer: `model.freqs_per_bands` (MSST's `bs_roformer`).
    BandSplit,
    /// Mel-Band RoFormer: `model.num_bands` (MSST's `mel_band_roformer`).
    MelBand,
}

impl RoformerKind {
    /// The name users know it by.
    pub fn name(self) -> &'static str {
        match self {
            RoformerKind::BandSplit => "BS-RoFormer",
            RoformerKind::MelBand => "Mel-Band RoFormer",
        }
    }
}

fn parse(yaml: &str) -> Option<serde_norway::Value> {
    serde_norway::from_str(yaml).ok()
}

/// The RoFormer variant a config is for: `model.freqs_per_bands` -> BS-RoFormer,
/// `model.num_bands` -> Mel-Band RoFormer (the test UVR's `separate.py` makes); `None` for any
/// other config (MDX23C's have neither) or text that is not YAML.
pub fn roformer_kind(yaml: &str) -> Option<RoformerKind> {
    let v = parse(yaml)?;
    let model = v.get("model")?.as_mapping()?;
    if model.contains_key("freqs_per_bands") {
        Some(RoformerKind::BandSplit)
    } else if model.contains_key("num_bands") {
        Some(RoformerKind::MelBand)
    } else {
        None
    }
}

/// The stems a RoFormer config declares, as written: `training.instruments`, else
/// `[training.target_instrument]`; empty when it declares none.
pub fn roformer_stems(yaml: &str) -> Vec<String> {
    let Some(v) = parse(yaml) else { return vec![] };
    let training = v.get("training");
    let listed: Vec<String> = training
        .and_then(|t| t.get("instruments"))
        .and_then(|i| i.as_sequence())
        .map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if !listed.is_empty() {
        return listed;
    }
    training.and_then(|t| t.get("target_instrument")).and_then(|x| x.as_str()).map(|s| vec![s.to_string()]).unwrap_or_default()
}

/// Whether a checkpoint's tensors are a RoFormer's: both variants name their modules
/// `band_split`, `layers` and `mask_estimators` (MSST's `bs_roformer.py`, `mel_band_roformer.py`).
pub fn roformer_tensors(shapes: &Shapes) -> bool {
    ["band_split.", "layers.", "mask_estimators."].iter().all(|p| shapes.keys().any(|k| k.starts_with(p)))
}

/// A RoFormer checkpoint and its config.
#[derive(Debug, Clone)]
pub struct FoundRoformer {
    pub kind: RoformerKind,
    /// The config's stems, as written.
    pub stems: Vec<String>,
    pub origin: ConfigOrigin,
    /// The config's text.
    pub yaml: String,
}

/// The config text for `model`, found in the catalog's order: `explicit`, `<stem>.yaml` beside
/// the model, UVR's hash in `table`, then UVR's or python-audio-separator's data files in the
/// model's folder. Mirrors `catalog::lookup_config`, which parses what it finds as an MDX23C
/// config; when the model interface lands both should share one locator.
fn locate(model: &Path, explicit: Option<&Path>, table: &UvrTable) -> Option<(String, ConfigOrigin)> {
    if let Some(c) = explicit {
        return Some((std::fs::read_to_string(c).ok()?, ConfigOrigin::Explicit(c.to_path_buf())));
    }
    let beside = model.with_extension("yaml");
    if beside.is_file() {
        return Some((std::fs::read_to_string(&beside).ok()?, ConfigOrigin::BesideModel(beside)));
    }
    let hash = uvr_hash(model).ok()?;
    let (yaml, text) = match table.yaml_name(&hash).and_then(|n| Some((n.to_string(), table.yaml_text(n)?.to_string()))) {
        Some(found) => found,
        None => uvr::locate_local(model, &hash, table)?,
    };
    Some((text, ConfigOrigin::UvrHash { hash, yaml }))
}

/// `model` as a RoFormer: `None` when it is not one (its config, if any, is not a RoFormer's and
/// its tensors are not either); `Some(Err(one line))` for a RoFormer that cannot be used (no
/// config, or weights that are not a RoFormer's); `Some(Ok)` with its config otherwise.
pub fn find_roformer(model: &Path, explicit: Option<&Path>, table: &UvrTable) -> Option<Result<FoundRoformer, String>> {
    let located = locate(model, explicit, table);
    let kind = located.as_ref().and_then(|(text, _)| roformer_kind(text));
    let shapes = read_shapes(model);
    let is_roformer_weights = shapes.as_ref().is_ok_and(roformer_tensors);
    match (located, kind) {
        (Some((yaml, origin)), Some(kind)) => Some(match shapes {
            Ok(s) if roformer_tensors(&s) => Ok(FoundRoformer { kind, stems: roformer_stems(&yaml), origin, yaml }),
            Ok(_) => Err(format!("{origin} is a {} config but the weights are not a RoFormer's", kind.name())),
            Err(e) => Err(e),
        }),
        (None, _) if is_roformer_weights => Some(Err(format!(
            "a RoFormer checkpoint with no config (no .yaml beside it{}); pass --config",
            uvr_hash(model).map(|h| format!(", UVR hash {} unknown", &h[..8])).unwrap_or_default()
        ))),
        _ => None,
    }
}
