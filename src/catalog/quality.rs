//! What each known model is for and how well it does it ([`KNOWN`]), and the choice of a model
//! when the user names none ([`best_for`]): among the ready models that separate a full mix
//! and have every requested stem, the one with the highest published SDR for the first
//! requested stem; models the table does not know come after those it rates.

use super::{ModelEntry, ModelSource};
use std::path::Path;

/// What a model separates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A full mix into stems (vocals/instrumental, or bass/drums/vocals/other).
    Mix,
    /// A drums stem into the parts of the kit: not for a full mix.
    DrumKit,
}

/// A model the catalog knows, matched by its checkpoint's file stem (any case).
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub file_stem: &'static str,
    pub purpose: Purpose,
    /// Published SDR (dB) per stem, lowercase stem names.
    pub sdr: &'static [(&'static str, f32)],
    /// Where the figures come from, and on which test set.
    pub source: &'static str,
}

/// The known MDX23C models (those `mdx-stems models --available` downloads). Figures:
/// ZFTurbo/Music-Source-Separation-Training, `docs/pretrained_models.md` (MSST): the vocals
/// model `model_vocals_mdx23c_sdr_10.17` at vocals 10.17 / instrumental 16.48 on the
/// Multisong set, the same 8K-FFT full-band network that UVR publishes as
/// `MDX23C-8KFFT-InstVoc_HQ`; the 4-stem `model_mdx23c_ep_168_sdr_7.0207` on the MUSDB18 test
/// set. The DrumSep model reports none (10.81 in its file name).
pub const KNOWN: &[Known] = &[
    Known {
        file_stem: "MDX23C-8KFFT-InstVoc_HQ",
        purpose: Purpose::Mix,
        sdr: &[("vocals", 10.17), ("instrumental", 16.48)],
        source: "MSST pretrained_models.md, Multisong (8K FFT full band)",
    },
    Known {
        file_stem: "model_vocals_mdx23c_sdr_10.17",
        purpose: Purpose::Mix,
        sdr: &[("vocals", 10.17), ("instrumental", 16.48), ("other", 16.48)],
        source: "MSST pretrained_models.md, Multisong",
    },
    Known {
        file_stem: "model_mdx23c_ep_168_sdr_7.0207",
        purpose: Purpose::Mix,
        sdr: &[("vocals", 9.23), ("drums", 7.93), ("bass", 5.77), ("other", 5.68)],
        source: "MSST pretrained_models.md, MUSDB18 test",
    },
    Known {
        file_stem: "aufr33-jarredou_DrumSep_model_mdx23c_ep_141_sdr_10.8059",
        purpose: Purpose::DrumKit,
        sdr: &[],
        source: "jarredou/models release (no figures published)",
    },
];

/// The catalog's entry for a model file, by file stem.
pub fn known(path: &Path) -> Option<&'static Known> {
    let stem = path.file_stem()?.to_string_lossy();
    KNOWN.iter().find(|k| k.file_stem.eq_ignore_ascii_case(&stem))
}

/// Whether a model with `stems` (its outputs, complement included) gives `want`: by name, any
/// case; `instrumental` is also the other stem of a two-stem vocals model (`vocals, other`).
pub fn gives(stems: &[String], want: &str) -> bool {
    let want = want.trim();
    stems.iter().any(|s| s.eq_ignore_ascii_case(want))
        || (want.eq_ignore_ascii_case("instrumental") && stems.len() == 2 && stems.iter().any(|s| s.eq_ignore_ascii_case("vocals")))
}

/// The chosen model and why.
#[derive(Debug, Clone)]
pub struct Choice<'a> {
    pub entry: &'a ModelEntry,
    /// The published SDR for the first requested stem, with its source.
    pub sdr: Option<(f32, &'static str)>,
}

/// The best ready model of `entries` for `wanted` (lowercase stem names, non-empty): see the
/// module docs. `stems_of` gives a model's outputs (complement included).
pub fn best_for<'a>(entries: &'a [ModelEntry], wanted: &[String], stems_of: &dyn Fn(&ModelEntry) -> Vec<String>) -> Option<Choice<'a>> {
    let mut candidates: Vec<Choice<'a>> = entries
        .iter()
        .filter(|e| e.is_ready() && e.source != ModelSource::Builtin)
        .filter(|e| known(&e.path).is_none_or(|k| k.purpose == Purpose::Mix))
        .filter(|e| {
            let stems = stems_of(e);
            wanted.iter().all(|w| gives(&stems, w))
        })
        .map(|e| {
            let sdr = known(&e.path).and_then(|k| {
                k.sdr.iter().find(|(s, _)| s.eq_ignore_ascii_case(&wanted[0])).map(|(_, v)| (*v, k.source))
            });
            Choice { entry: e, sdr }
        })
        .collect();
    // Highest SDR first, unrated after; ties by name.
    candidates.sort_by(|a, b| {
        let key = |c: &Choice| c.sdr.map_or(f32::NEG_INFINITY, |(v, _)| v);
        key(b).total_cmp(&key(a)).then_with(|| a.entry.name.to_lowercase().cmp(&b.entry.name.to_lowercase()))
    });
    candidates.into_iter().next()
}
