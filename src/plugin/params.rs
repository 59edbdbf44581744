//! Host-visible parameters and the persisted (non-parameter) settings.
//!
//! Parameter ids never change (hosts store automation and presets by them): `gain_1..gain_6`,
//! `mute_1..mute_6`, `solo_1..solo_6` (from the nested stem array) and `preset`. The persisted
//! fields `model_path`, `overlap`, `precision`, `segment`, `cpu_threads`, `safety` and
//! `watchdog_s` are written by the editor (GUI thread), by state restore (host) and by
//! `activate` (main thread), and read in `activate`: they fix the model and the latency, so
//! they apply on the next activation. Each change bumps [`MdxParams::settings_generation`],
//! which the audio thread compares (one atomic load) with the generation it was activated with,
//! to ask the host for a restart. The audio thread otherwise only reads the parameters'
//! atomics and smoothers.
//!
//! The state also carries what finds the model again when its file has moved: its display name
//! and UVR hash (`model_name`, `model_hash`, written by `activate`; they do not ask for a
//! restart), and its format version (`state_version`, [`STATE_VERSION`]). States saved before
//! versioning (no `state_version`) load unchanged: every field kept its name and JSON form.

use crate::device::Precision;
use nice_plug::params::persist::PersistentField;
use nice_plug::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

/// Most stems any model may have; one auxiliary output port per stem.
pub const MAX_STEMS: usize = 6;

/// Presets: 0 = all stems, 1..=6 = stem k only, 7..=12 = everything but stem k.
pub const PRESET_COUNT: i32 = 1 + 2 * MAX_STEMS as i32;

/// Overlap K the plugin accepts (UVR's scheme: hop = chunk / K).
pub const OVERLAP_RANGE: std::ops::RangeInclusive<u32> = 1..=8;

/// Extra hops of compute headroom the "Safety" setting offers.
pub const SAFETY_RANGE: std::ops::RangeInclusive<u32> = 0..=4;

/// The render watchdog's default: seconds without progress before a render plays dry.
pub const DEFAULT_WATCHDOG_SECONDS: u32 = 60;

/// The state format this build writes (`state_version`). 1: before versioning (no such field).
pub const STATE_VERSION: u32 = 2;

/// The "Precision" setting, stored as `"auto"`, `"f32"`, `"f16"` or `"bf16"` (the strings states
/// have always held).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionSetting {
    /// f32 on the CPU, f16 on a GPU.
    #[default]
    Auto,
    F32,
    F16,
    Bf16,
}

impl PrecisionSetting {
    pub const ALL: [PrecisionSetting; 4] = [PrecisionSetting::Auto, PrecisionSetting::F32, PrecisionSetting::F16, PrecisionSetting::Bf16];

    /// The precision asked of the engine (`None`: the device's default).
    pub fn precision(self) -> Option<Precision> {
        match self {
            PrecisionSetting::Auto => None,
            PrecisionSetting::F32 => Some(Precision::F32),
            PrecisionSetting::F16 => Some(Precision::F16),
            PrecisionSetting::Bf16 => Some(Precision::Bf16),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PrecisionSetting::Auto => "auto",
            PrecisionSetting::F32 => "f32",
            PrecisionSetting::F16 => "f16",
            PrecisionSetting::Bf16 => "bf16",
        }
    }
}

/// Stem names of the loaded model, shared with parameter formatters and the editor (never read
/// on the audio thread). Empty until a model config has been read.
pub type StemNames = Arc<RwLock<Vec<String>>>;

/// A persisted setting (not automatable): a value behind a lock plus a change counter shared by
/// all settings that fix the activation. Never touched by the audio thread (only the counter is).
pub struct Setting<T> {
    value: RwLock<T>,
    /// `None` for bookkeeping fields whose changes need no new activation.
    generation: Option<Arc<AtomicU32>>,
}

impl<T: Clone + PartialEq> Setting<T> {
    fn new(value: T, generation: Arc<AtomicU32>) -> Self {
        Setting { value: RwLock::new(value), generation: Some(generation) }
    }

    /// A field that is saved but whose changes do not ask for a new activation.
    fn bookkeeping(value: T) -> Self {
        Setting { value: RwLock::new(value), generation: None }
    }

    pub fn get(&self) -> T {
        match self.value.read() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Store `v`; counts as a change (next activation needed) only if it differs.
    pub fn put(&self, v: T) {
        let mut guard = match self.value.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if *guard != v {
            *guard = v;
            if let Some(g) = &self.generation {
                g.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

impl<'a, T> PersistentField<'a, T> for Setting<T>
where
    T: serde::Serialize + serde::Deserialize<'a> + Send + Sync + Clone + PartialEq,
{
    fn set(&self, new_value: T) {
        self.put(new_value);
    }
    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&T) -> R,
    {
        match self.value.read() {
            Ok(v) => f(&v),
            Err(p) => f(&p.into_inner()),
        }
    }
}

#[derive(Params)]
pub struct MdxParams {
    /// Checkpoint (`.ckpt` / `.safetensors`) of the model in use; empty: the first ready model in
    /// the models folder is picked (and written here) on activation.
    #[persist = "model_path"]
    pub model_path: Setting<String>,
    /// Overlap K of UVR's scheme, 1..=8; 0: the model config's `num_overlap` (clamped), else 4.
    #[persist = "overlap"]
    pub overlap: Setting<u32>,
    /// `auto` (f32 on the CPU, f16 on a GPU), `f32`, `f16` or `bf16`.
    #[persist = "precision"]
    pub precision: Setting<PrecisionSetting>,
    /// Segment: the chunk length in the network's unit ([`crate::nets::Segments`]; TFC-TDF: STFT
    /// frames, dim_t); 0: the model's default. Smaller = less latency.
    #[persist = "segment"]
    pub segment: Setting<u32>,
    /// CPU threads for the network when it runs on the CPU; 0: every core but one (the host's
    /// audio thread and other plugins keep a core).
    #[persist = "cpu_threads"]
    pub cpu_threads: Setting<u32>,
    /// Extra hops of compute headroom, 0..=4 (each adds a hop to the latency).
    #[persist = "safety"]
    pub safety: Setting<u32>,
    /// Seconds a render may make no progress before the plugin says so and plays dry.
    #[persist = "watchdog_s"]
    pub watchdog_s: Setting<u32>,
    /// Bumped by every change of the settings above.
    pub settings_generation: Arc<AtomicU32>,

    /// The state format ([`STATE_VERSION`]; 0 until a state is saved or loaded).
    #[persist = "state_version"]
    pub state_version: Setting<u32>,
    /// The model's display name and UVR hash (written on activation), to find it again if
    /// `model_path` no longer exists.
    #[persist = "model_name"]
    pub model_name: Setting<String>,
    #[persist = "model_hash"]
    pub model_hash: Setting<String>,

    /// What the main output carries (see [`Preset`]).
    #[id = "preset"]
    pub preset: IntParam,

    /// Per-stem gain, mute and solo; ids `gain_1`, `mute_1`, `solo_1`, ...
    #[nested(array, group = "Stem")]
    pub stems: [StemParams; MAX_STEMS],
}

#[derive(Params)]
pub struct StemParams {
    /// Linear gain (shown in dB), applied to the stem on the main mix and on its own output.
    #[id = "gain"]
    pub gain: FloatParam,
    /// Removes the stem from the main mix (its own output keeps playing).
    #[id = "mute"]
    pub mute: BoolParam,
    /// When any stem is soloed, the main mix is exactly the soloed stems (solo wins over mute
    /// and over the preset).
    #[id = "solo"]
    pub solo: BoolParam,
}

impl StemParams {
    fn new(index: usize) -> Self {
        let n = index + 1;
        StemParams {
            gain: FloatParam::new(
                format!("Stem {n} gain"),
                util::db_to_gain(0.0),
                FloatRange::Skewed {
                    min: util::db_to_gain(-60.0),
                    max: util::db_to_gain(12.0),
                    factor: FloatRange::gain_skew_factor(-60.0, 12.0),
                },
            )
            .with_smoother(SmoothingStyle::Logarithmic(20.0))
            .with_unit(" dB")
            .with_value_to_string(formatters::v2s_f32_gain_to_db(1))
            .with_string_to_value(formatters::s2v_f32_gain_to_db()),
            mute: BoolParam::new(format!("Stem {n} mute"), false),
            solo: BoolParam::new(format!("Stem {n} solo"), false),
        }
    }
}

/// What the main output plays, as chosen by the `preset` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Every stem (the main output then reconstructs the mix).
    All,
    /// Only stem `i` (0-based).
    Only(usize),
    /// Every stem except stem `i` (0-based), e.g. "everything but vocals" = karaoke.
    AllBut(usize),
}

impl Preset {
    pub fn from_index(v: i32) -> Self {
        let m = MAX_STEMS as i32;
        match v {
            v if (1..=m).contains(&v) => Preset::Only((v - 1) as usize),
            v if (m + 1..=2 * m).contains(&v) => Preset::AllBut((v - m - 1) as usize),
            _ => Preset::All,
        }
    }

    pub fn index(self) -> i32 {
        match self {
            Preset::All => 0,
            Preset::Only(i) => 1 + i as i32,
            Preset::AllBut(i) => 1 + MAX_STEMS as i32 + i as i32,
        }
    }

    /// Whether stem `i` is in this preset's selection.
    pub fn keeps(self, i: usize) -> bool {
        match self {
            Preset::All => true,
            Preset::Only(k) => i == k,
            Preset::AllBut(k) => i != k,
        }
    }

    /// Display name with the loaded model's stem names ("vocals only", "Everything but vocals").
    pub fn label(self, names: &[String]) -> String {
        let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| format!("Stem {}", i + 1));
        match self {
            Preset::All => "All stems".to_string(),
            Preset::Only(i) => format!("{} only", name(i)),
            Preset::AllBut(i) => format!("Everything but {}", name(i)),
        }
    }
}

impl MdxParams {
    pub fn new(stem_names: StemNames) -> Self {
        let to_string_names = stem_names.clone();
        let from_string_names = stem_names;
        let generation = Arc::new(AtomicU32::new(0));
        MdxParams {
            model_path: Setting::new(String::new(), generation.clone()),
            overlap: Setting::new(0, generation.clone()),
            precision: Setting::new(PrecisionSetting::Auto, generation.clone()),
            segment: Setting::new(0, generation.clone()),
            cpu_threads: Setting::new(0, generation.clone()),
            safety: Setting::new(0, generation.clone()),
            watchdog_s: Setting::new(DEFAULT_WATCHDOG_SECONDS, generation.clone()),
            settings_generation: generation,
            state_version: Setting::bookkeeping(STATE_VERSION),
            model_name: Setting::bookkeeping(String::new()),
            model_hash: Setting::bookkeeping(String::new()),
            preset: IntParam::new("Preset", 0, IntRange::Linear { min: 0, max: PRESET_COUNT - 1 })
                .with_value_to_string(Arc::new(move |v| {
                    let names = to_string_names.read().map(|n| n.clone()).unwrap_or_default();
                    Preset::from_index(v).label(&names)
                }))
                .with_string_to_value(Arc::new(move |s| {
                    let names = from_string_names.read().map(|n| n.clone()).unwrap_or_default();
                    let s = s.trim();
                    (0..PRESET_COUNT)
                        .find(|&v| Preset::from_index(v).label(&names).eq_ignore_ascii_case(s))
                        .or_else(|| s.parse().ok())
                })),
            stems: std::array::from_fn(StemParams::new),
        }
    }

    /// Changes of the persisted settings so far (one atomic load; audio-thread safe).
    pub fn generation(&self) -> u32 {
        self.settings_generation.load(Ordering::Acquire)
    }
}

/// Which stems the main output keeps, and the preset/mute/solo rule, for `stems` stems.
/// Audio thread: reads atomics only.
pub fn kept_stems(params: &MdxParams, stems: usize) -> [bool; MAX_STEMS] {
    let preset = Preset::from_index(params.preset.value());
    let n = stems.min(MAX_STEMS);
    let any_solo = params.stems[..n].iter().any(|s| s.solo.value());
    let mut keep = [false; MAX_STEMS];
    for (i, k) in keep.iter_mut().enumerate().take(n) {
        let s = &params.stems[i];
        *k = if any_solo { s.solo.value() } else { preset.keeps(i) && !s.mute.value() };
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_indices_round_trip_and_label_with_stem_names() {
        for v in 0..PRESET_COUNT {
            assert_eq!(Preset::from_index(v).index(), v);
        }
        let names = vec!["vocals".to_string(), "instrumental".to_string()];
        assert_eq!(Preset::from_index(0).label(&names), "All stems");
        assert_eq!(Preset::from_index(1).label(&names), "vocals only");
        assert_eq!(Preset::from_index(7).label(&names), "Everything but vocals");
        assert_eq!(Preset::from_index(3).label(&names), "Stem 3 only");
    }

    #[test]
    fn settings_count_changes_but_not_rewrites_of_the_same_value() {
        let p = MdxParams::new(Arc::new(RwLock::new(vec![])));
        let g0 = p.generation();
        p.model_path.put("a.ckpt".into());
        assert_eq!(p.generation(), g0 + 1);
        PersistentField::set(&p.model_path, "a.ckpt".to_string());
        p.overlap.put(0);
        assert_eq!(p.generation(), g0 + 1);
        p.overlap.put(2);
        assert_eq!(p.generation(), g0 + 2);
        assert_eq!(p.model_path.get(), "a.ckpt");
    }

    #[test]
    fn solo_wins_over_mute_and_preset() {
        let p = MdxParams::new(Arc::new(RwLock::new(vec![])));
        // Values set through the parameter's internal setter, as the wrapper does.
        unsafe {
            p.preset.as_ptr()._internal_set_normalized_value(p.preset.preview_normalized(Preset::Only(0).index()));
        }
        assert_eq!(kept_stems(&p, 4), [true, false, false, false, false, false]);
        unsafe {
            p.stems[2].solo.as_ptr()._internal_set_normalized_value(1.0);
            p.stems[2].mute.as_ptr()._internal_set_normalized_value(1.0);
        }
        assert_eq!(kept_stems(&p, 4), [false, false, true, false, false, false]);
    }

    #[test]
    fn by_default_the_main_mix_keeps_every_stem_of_the_model() {
        let p = MdxParams::new(Arc::new(RwLock::new(vec![])));
        assert_eq!(kept_stems(&p, 2), [true, true, false, false, false, false]);
        assert_eq!(kept_stems(&p, 4), [true, true, true, true, false, false]);
    }
}
