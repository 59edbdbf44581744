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
    /// What it is and what it is for, one line (`models --available` and `info` print it).
    pub about: &'static str,
}

/// The known models (those `mdx-stems models --available` downloads), every figure on MSST's
/// Multisong set so that they compare. Figures:
/// ZFTurbo/Music-Source-Separation-Training, `docs/pretrained_models.md` (MSST): the vocals
/// model `model_vocals_mdx23c_sdr_10.17` at vocals 10.17 / instrumental 16.48 on the
/// Multisong set, the same 8K-FFT full-band network that UVR publishes as
/// `MDX23C-8KFFT-InstVoc_HQ`; the 4-stem `model_mdx23c_ep_168_sdr_7.0207` at bass 8.40, drums
/// 7.73, vocals 7.36, other 4.57 (MSST also gives its MUSDB18 test figures, another set). The
/// DrumSep model reports none (10.81 in its file name).
///
/// RoFormers (the same document's vocal table, Multisong): viperx's BS-RoFormer
/// `model_bs_roformer_ep_317_sdr_12.9755` at vocals 10.87, his Mel-Band RoFormer
/// `model_mel_band_roformer_ep_3005_sdr_11.4360` at 9.67, Kimberley Jensen's Mel-Band RoFormer
/// (`MelBandRoformer.ckpt`; python-audio-separator names it `vocals_mel_band_roformer.ckpt`) at
/// 10.98; the 4-stem BS-RoFormer `model_bs_roformer_ep_17_sdr_9.6568` (MUSDB18HQ only) at
/// Multisong bass 11.08, drums 11.29, vocals 9.19, other 5.96. MSST does not list viperx's
/// `model_bs_roformer_ep_368_sdr_12.9628` (12.96 in its name is its trainer's validation
/// figure, another test set): it is known but unrated.
pub const KNOWN: &[Known] = &[
    Known {
        file_stem: "MDX23C-8KFFT-InstVoc_HQ",
        purpose: Purpose::Mix,
        sdr: &[("vocals", 10.17), ("instrumental", 16.48)],
        source: "MSST pretrained_models.md, Multisong (8K FFT full band)",
        about: "MDX23C: vocals and instrumental from a full mix",
    },
    Known {
        file_stem: "model_vocals_mdx23c_sdr_10.17",
        purpose: Purpose::Mix,
        sdr: &[("vocals", 10.17), ("instrumental", 16.48), ("other", 16.48)],
        source: "MSST pretrained_models.md, Multisong",
        about: "MDX23C: vocals and the rest from a full mix",
    },
    Known {
        file_stem: "model_mdx23c_ep_168_sdr_7.0207",
        purpose: Purpose::Mix,
        sdr: &[("vocals", 7.36), ("drums", 7.73), ("bass", 8.40), ("other", 4.57)],
        source: "MSST pretrained_models.md, Multisong",
        about: "MDX23C: bass, drums, vocals and other from a full mix (trained on MUSDB18 only)",
    },
    Known {
        file_stem: "aufr33-jarredou_DrumSep_model_mdx23c_ep_141_sdr_10.8059",
        purpose: Purpose::DrumKit,
        sdr: &[],
        source: "jarredou/models release (no figures published)",
        about: "MDX23C: the parts of a drum kit, from a drums stem (not from a full mix)",
    },
    Known {
        file_stem: "model_bs_roformer_ep_317_sdr_12.9755",
        purpose: Purpose::Mix,
        sdr: &[("vocals", 10.87)],
        source: "MSST pretrained_models.md, Multisong",
        about: "BS-RoFormer (viperx): vocals and instrumental from a full mix",
    },
    Known {
        file_stem: "model_bs_roformer_ep_368_sdr_12.9628",
        purpose: Purpose::Mix,
        sdr: &[],
        source: "not on MSST's list (12.96 in the file name, its trainer's validation set)",
        about: "BS-RoFormer (viperx): vocals and instrumental, a later epoch of ep_317",
    },
    Known {
        file_stem: "model_mel_band_roformer_ep_3005_sdr_11.4360",
        purpose: Purpose::Mix,
        sdr: &[("vocals", 9.67)],
        source: "MSST pretrained_models.md, Multisong",
        about: "Mel-Band RoFormer (viperx): vocals and instrumental from a full mix",
    },
    Known {
        file_stem: "MelBandRoformer",
        purpose: Purpose::Mix,
        sdr: &[("vocals", 10.98)],
        source: "MSST pretrained_models.md, Multisong",
        about: "Mel-Band RoFormer (Kimberley Jensen): vocals and the rest from a full mix",
    },
    Known {
        file_stem: "vocals_mel_band_roformer",
        purpose: Purpose::Mix,
        sdr: &[("vocals", 10.98)],
        source: "MSST pretrained_models.md, Multisong",
        about: "Mel-Band RoFormer (Kimberley Jensen): vocals and the rest from a full mix",
    },
    Known {
        file_stem: "model_bs_roformer_ep_17_sdr_9.6568",
        purpose: Purpose::Mix,
        sdr: &[("vocals", 9.19), ("drums", 11.29), ("bass", 11.08), ("other", 5.96)],
        source: "MSST pretrained_models.md, Multisong",
        about: "BS-RoFormer: bass, drums, vocals and other from a full mix (trained on MUSDB18 only)",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ConfigOrigin;
    use std::path::PathBuf;

    fn ready(file: &str, stems: &[&str]) -> ModelEntry {
        ModelEntry {
            path: PathBuf::from("models").join(file),
            name: file.rsplit_once('.').map_or(file, |(s, _)| s).to_string(),
            stems: stems.iter().map(|s| s.to_string()).collect(),
            source: ModelSource::Uvr,
            config: Ok(ConfigOrigin::UvrHash { hash: "0".repeat(32), yaml: "x.yaml".into() }),
        }
    }

    fn pick(entries: &[ModelEntry], wanted: &[&str]) -> Option<(String, Option<f32>)> {
        let wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
        best_for(entries, &wanted, &|e: &ModelEntry| e.stems.clone()).map(|c| (c.entry.name.clone(), c.sdr.map(|(v, _)| v)))
    }

    /// A RoFormer beside InstVoc HQ: the best published vocal SDR wins the default (vocals and
    /// instrumental); one rated below InstVoc HQ does not; an unrated one comes after both.
    #[test]
    fn a_roformer_with_the_best_vocal_sdr_becomes_the_default() {
        let vi = ["Vocals", "Instrumental"];
        let instvoc = ready("MDX23C-8KFFT-InstVoc_HQ.ckpt", &vi);
        let kim = ready("MelBandRoformer.ckpt", &vi);
        let bs = ready("model_bs_roformer_ep_317_sdr_12.9755.ckpt", &vi);
        let mel = ready("model_mel_band_roformer_ep_3005_sdr_11.4360.ckpt", &vi);
        let bs368 = ready("model_bs_roformer_ep_368_sdr_12.9628.ckpt", &vi);
        let want = ["vocals", "instrumental"];
        let all = [instvoc.clone(), bs.clone(), kim.clone(), mel.clone(), bs368.clone()];
        assert_eq!(pick(&all, &want), Some(("MelBandRoformer".into(), Some(10.98))));
        assert_eq!(pick(&[instvoc.clone(), bs.clone(), mel.clone()], &want), Some(("model_bs_roformer_ep_317_sdr_12.9755".into(), Some(10.87))));
        assert_eq!(pick(&[mel.clone(), instvoc.clone()], &want), Some(("MDX23C-8KFFT-InstVoc_HQ".into(), Some(10.17))));
        assert_eq!(pick(&[bs368.clone(), mel.clone()], &want), Some(("model_mel_band_roformer_ep_3005_sdr_11.4360".into(), Some(9.67))));
        // python-audio-separator's name for Kimberley Jensen's model ranks as UVR's does.
        let kim_as = ready("vocals_mel_band_roformer.ckpt", &["vocals", "other"]);
        assert_eq!(pick(&[instvoc.clone(), bs.clone(), kim_as], &want), Some(("vocals_mel_band_roformer".into(), Some(10.98))));
        // Not ready: not chosen.
        let mut broken = kim.clone();
        broken.config = Err("no config".into());
        assert_eq!(pick(&[instvoc.clone(), broken], &want).map(|p| p.0), Some("MDX23C-8KFFT-InstVoc_HQ".into()));
    }

    /// Four stems: the 4-stem BS-RoFormer beats the 4-stem MDX23C on every stem (Multisong).
    #[test]
    fn the_four_stem_roformer_ranks_above_the_four_stem_mdx23c() {
        let four = ["bass", "drums", "vocals", "other"];
        let mdx = ready("model_mdx23c_ep_168_sdr_7.0207.ckpt", &four);
        let bs = ready("model_bs_roformer_ep_17_sdr_9.6568.ckpt", &four);
        for first in four {
            let want = [first, "bass", "drums", "vocals", "other"];
            assert_eq!(pick(&[mdx.clone(), bs.clone()], &want).map(|p| p.0), Some("model_bs_roformer_ep_17_sdr_9.6568".into()), "{first}");
        }
    }

    /// Every model `--available` offers is known here, with a purpose line and figures on one
    /// test set (its source names it).
    #[test]
    fn every_downloadable_model_is_known() {
        for a in crate::download::AVAILABLE {
            let k = known(std::path::Path::new(a.file_name())).unwrap_or_else(|| panic!("{} not in KNOWN", a.name));
            assert!(!k.about.is_empty() && k.about.len() <= 90, "{}: {}", a.name, k.about);
            if !k.sdr.is_empty() {
                assert!(k.source.contains("Multisong"), "{}: {}", a.name, k.source);
            }
        }
    }
}
