//! The MDX Stems audio plugin (CLAP + VST3, nice-plug): streaming stem separation with
//! reported latency. A thin layer over [`crate::engine::Separator`].
//!
//! Who owns what (audio-thread code in [`realtime`] and [`pace`]; everything else runs on the
//! main, loader, inference or GUI threads):
//! - [`plan`]: sizes and the exact latency of one activation (pure arithmetic).
//! - [`realtime`]: the audio thread's state ([`realtime::AudioSide`]): input blocks, dry
//!   delay line, playback, crossfades and mixing of the stems. Built in `activate`, used in
//!   `process`. [`pace`]: how long `process` may wait for a result (live bound, or a declared
//!   or proven render).
//! - [`worker`]: the inference thread (started in `activate`, asked to stop in `deactivate`,
//!   joined once it has finished its chunk), the channels and buffer pools between it and the
//!   audio thread.
//! - [`loader`]: the model loader thread (one per instance).
//! - [`cache`]: [`cache::ChunkEngine`] (what the inference thread runs) and the cache that keeps
//!   the loaded model across activations (used by the loader and the worker; neither uses the
//!   other).
//! - [`detach`]: removing the plugin never waits for its threads: a chunk or a model load in
//!   progress finishes on its own, detached, with the plugin's library pinned.
//! - [`stream`]: the worker's signal path (resample, UVR chunks, overlap-add, resample back).
//! - [`params`]: parameters (per-stem gain/mute/solo, preset) and persisted settings.
//! - [`shared`]: atomics, status and notices read by the editor.
//! - [`editor`]: the egui editor; [`meter`]: its level meters' hold and decay (GUI thread)
//!   from the peaks [`realtime::meter`] publishes (audio thread).
//! - [`fetch`]: model downloads started from the editor, owned by the plugin instance so that
//!   closing the editor never waits for one.
//! - [`host`]: the host's name and the one quirk the plugin adapts to (which position the
//!   host's transport reports).
//! - `vst3_guard`: the VST3 export: nice-plug's VST3 wrapper behind a guard that hands it every
//!   output bus, connected by the host or not.
//!
//! Two plugins share this code and the bundles:
//! - **MDX Stems** ([`MdxStemsMulti`]): stereo in; main stereo out = the kept stems mixed; one
//!   stereo aux output per stem ("Stem 1" ... "Stem 6", in the model's stem order, the
//!   complement of a single-target model after its target; unused ones are silent).
//! - **MDX Stems (Stereo)** ([`MdxStemsStereo`]): the same with the main output only.
//!
//! Until a model is ready, the main output plays the input delayed by the reported latency and
//! the stem outputs are silent.

pub mod budget;
pub mod cache;
pub use crate::detach;
pub mod editor;
pub mod fetch;
pub mod host;
pub mod ids;
pub mod loader;
pub mod meter;
pub mod pace;
pub mod params;
pub mod plan;
pub mod realtime;
pub mod shared;
pub mod stream;
mod vst3_guard;
pub mod worker;

use crate::device::DeviceRequest;
use crate::engine::LoadOptions;
use crate::options::EngineOptions;
use cache::LoadKey;
use loader::Loader;
use nice_plug::prelude::*;
use params::{MAX_STEMS, MdxParams, OVERLAP_RANGE, SAFETY_RANGE};
use plan::StreamPlan;
use pace::Declared;
use realtime::{AudioOptions, AudioSide, Position};
use shared::{ActiveInfo, Problem, Shared};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use worker::{EngineSource, WorkerHandle, WorkerOptions};

/// Names of the stem output ports, in the model's stem order.
pub const STEM_PORT_NAMES: [&str; MAX_STEMS] = ["Stem 1", "Stem 2", "Stem 3", "Stem 4", "Stem 5", "Stem 6"];

const STEREO: NonZeroU32 = new_nonzero_u32(2);

/// Stereo in, stereo main out, a stereo output per stem.
const MULTI_LAYOUT: AudioIOLayout = AudioIOLayout {
    main_input_channels: Some(STEREO),
    main_output_channels: Some(STEREO),
    aux_input_ports: &[],
    aux_output_ports: &[STEREO; MAX_STEMS],
    names: PortNames {
        layout: Some("Stereo, 6 stem outputs"),
        main_input: None,
        main_output: None,
        aux_inputs: &[],
        aux_outputs: &STEM_PORT_NAMES,
    },
};

/// Stereo in, stereo main out.
const STEREO_LAYOUT: AudioIOLayout = AudioIOLayout {
    main_input_channels: Some(STEREO),
    main_output_channels: Some(STEREO),
    aux_input_ports: &[],
    aux_output_ports: &[],
    names: PortNames::const_default(),
};

/// The plugin with a stereo output per stem ("MDX Stems").
pub type MdxStemsMulti = MdxStems<true>;
/// The plugin with the main output only ("MDX Stems (Stereo)").
pub type MdxStemsStereo = MdxStems<false>;

/// Overlap when neither the setting nor the model's config names one.
const DEFAULT_OVERLAP: usize = 4;

/// The plugin; `STEM_OUTPUTS` adds the per-stem outputs. Fields are owned by the main thread
/// unless noted.
pub struct MdxStems<const STEM_OUTPUTS: bool> {
    /// Parameters and persisted settings (shared with the host wrapper and the editor).
    params: Arc<MdxParams>,
    /// Status, meters and stem names (shared with the worker and the editor).
    shared: Arc<Shared>,
    editor_state: Arc<nice_plug_egui::EguiEditorState>,
    /// Audio-thread state; built in `activate`, `None` when no model can run (pass-through).
    audio: Option<AudioSide>,
    /// The inference thread; started in `activate`, asked to stop in `deactivate`.
    worker: Option<WorkerHandle>,
    /// Inference threads of earlier activations that may still be finishing a chunk: joined
    /// once finished (checked on every activation and deactivation). When the plugin is
    /// removed, those still busy after [`detach::GRACE`] finish detached.
    retired: Vec<WorkerHandle>,
    /// Loads models in the background and keeps the last one across activations.
    loader: Loader,
    /// A model download started from the editor (outlives the editor).
    downloads: Arc<fetch::Downloads>,
    /// Settings generation this activation was planned with (audio thread compares).
    generation: u32,
    /// The audio thread has asked the host for a restart since the last activation.
    restart_requested: bool,
    /// Reported latency in samples.
    latency: u32,
}

impl<const STEM_OUTPUTS: bool> Default for MdxStems<STEM_OUTPUTS> {
    fn default() -> Self {
        let names = Arc::new(RwLock::new(Vec::new()));
        let shared = Arc::new(Shared::new(names.clone()));
        MdxStems {
            params: Arc::new(MdxParams::new(names)),
            shared: shared.clone(),
            editor_state: editor::default_state(),
            audio: None,
            worker: None,
            retired: Vec::new(),
            loader: Loader::new(shared.clone()),
            downloads: Arc::new(fetch::Downloads::default()),
            generation: 0,
            restart_requested: false,
            latency: 0,
        }
    }
}

/// A planned activation.
struct Setup {
    plan: StreamPlan,
    key: LoadKey,
    options: LoadOptions,
    name: String,
    /// The model's outputs (its stems, then the complement of a single-target model).
    outputs: Vec<String>,
    complement: bool,
    info: ActiveInfo,
}

impl<const STEM_OUTPUTS: bool> Plugin for MdxStems<STEM_OUTPUTS> {
    const NAME: &'static str = Self::IDS.name;
    const VENDOR: &'static str = ids::VENDOR;
    const URL: &'static str = "https://github.com/mdx-stems/mdx-stems";
    const EMAIL: &'static str = "mdx-stems@users.noreply.github.com";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = if STEM_OUTPUTS { &[MULTI_LAYOUT] } else { &[STEREO_LAYOUT] };

    const SAMPLE_ACCURATE_AUTOMATION: bool = false;

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = editor::MdxEditor;

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(self.params.clone(), self.shared.clone(), self.downloads.clone(), self.editor_state.clone(), STEM_OUTPUTS)
    }

    /// States saved before `state_version` existed (version 1) need no change: every field
    /// kept its name and JSON form. Later format changes migrate here.
    fn filter_state(state: &mut PluginState) {
        let version = state.fields.get("state_version").and_then(|v| v.parse::<u32>().ok()).unwrap_or(1);
        if version < params::STATE_VERSION {
            nice_log!("loading a version {version} state (this build writes version {})", params::STATE_VERSION);
        }
    }

    fn activate(
        &mut self,
        _layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        self.stop_worker();
        self.audio = None;
        self.restart_requested = false;
        let host_rate = buffer_config.sample_rate.round() as u32;
        let max_block = buffer_config.max_buffer_size.max(1) as usize;
        let declared = match buffer_config.process_mode {
            ProcessMode::Offline => Declared::Offline,
            // VST3 `kPrefetch` (Cubase's ASIO-Guard): live, processed ahead of the device.
            ProcessMode::Buffered => Declared::Buffered,
            ProcessMode::Realtime => Declared::Realtime,
        };
        self.latency = 0;
        self.shared.dropouts.store(0, Ordering::Relaxed);
        match self.plan(host_rate, max_block) {
            Ok(setup) => self.start(setup, declared),
            Err(problem) => {
                self.shared.set_info(ActiveInfo::default());
                self.shared.set_problem(problem);
            }
        }
        self.generation = self.params.generation();
        let info = self.shared.info();
        if self.audio.is_some() {
            nice_log!(
                "activate: {host_rate} Hz, max block {max_block}, {}: {} (chunk {}, overlap {}) -> latency {} samples",
                match declared {
                    Declared::Offline => "offline",
                    Declared::Buffered => "buffered (live, processed ahead)",
                    Declared::Realtime => "real time",
                },
                info.model,
                info.chunk,
                info.overlap,
                self.latency
            );
        } else {
            nice_log!("activate: {host_rate} Hz, pass-through: {}", self.shared.status_line());
        }
        self.shared.latency_samples.store(self.latency, Ordering::Relaxed);
        self.shared.latency_ms.store(1000.0 * self.latency as f32 / host_rate.max(1) as f32, Ordering::Relaxed);
        self.shared.changed();
        context.set_latency_samples(self.latency);
        true
    }

    fn reset(&mut self) {
        if let Some(a) = self.audio.as_mut() {
            a.reset();
        }
    }

    fn deactivate(&mut self) {
        nice_log!("deactivate");
        self.stop_worker();
        self.audio = None;
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        // The host's thread: denormals flushed for this call only (decaying tails, smoothers).
        let _denormals = crate::backend::cpu::kernels::pool::DenormalsFlushed::new();
        let generation = self.params.generation();
        if !self.restart_requested && generation != self.generation {
            // A setting that fixes the latency changed: it applies on the next activation, which
            // the host performs on request. The editor asks itself (GUI thread); a state loaded
            // by the host while processing is noticed here, the only place that runs regularly.
            self.restart_requested = true;
            if self.shared.restart_asked.load(Ordering::Acquire) != generation {
                context.request_restart();
            }
        }
        let t = context.transport();
        let position = Position {
            playing: t.playing,
            // Only sample or second positions: a position from beats and tempo is not exact.
            samples: t.pos_samples.or_else(|| t.pos_seconds.map(|s| (s * t.sample_rate as f64).round() as i64)),
        };
        let main = buffer.as_slice();
        let mut outs = aux.outputs.iter_mut();
        let mut ports: [Option<&mut [&mut [f32]]>; MAX_STEMS] = std::array::from_fn(|_| outs.next().map(|b| b.as_slice()));
        match self.audio.as_mut() {
            Some(a) => a.process(main, &mut ports, &self.params, position),
            None => {
                // No model: the input passes through (already in `main`), stems are silent.
                for port in ports.iter_mut().flatten() {
                    for ch in port.iter_mut() {
                        ch.fill(0.0);
                    }
                }
                realtime::meter::publish(&self.shared, main, &ports);
            }
        }
        if self.latency > 0 { ProcessStatus::Tail(self.latency) } else { ProcessStatus::Normal }
    }
}

/// Removing the plugin never waits for a chunk, a model load or a download in progress: every thread is
/// asked to stop, those that end within [`detach::GRACE`] (all together) are joined, the others
/// finish on their own ([`detach`]).
impl<const STEM_OUTPUTS: bool> Drop for MdxStems<STEM_OUTPUTS> {
    fn drop(&mut self) {
        self.stop_worker();
        self.loader.request_stop();
        let deadline = Instant::now() + detach::GRACE;
        for w in self.retired.drain(..) {
            w.finish_by(deadline);
        }
        self.loader.finish_by(deadline);
        self.downloads.shut_down(deadline);
    }
}

impl<const STEM_OUTPUTS: bool> MdxStems<STEM_OUTPUTS> {
    /// Ask the inference thread to stop and keep its handle until it has (never waits: a
    /// thread in the middle of a chunk finishes it first; the engine then goes back to the
    /// loader's cache, where the next activation's thread picks it up).
    fn stop_worker(&mut self) {
        if let Some(mut w) = self.worker.take() {
            w.request_stop();
            self.retired.push(w);
        }
        // Finished threads are joined here (instantly).
        self.retired.retain(|w| !w.is_finished());
    }

    /// The model this activation uses: the setting (a file, or a built-in's name); else the
    /// first ready model found, else the default built-in ([`crate::nets::builtin::DEFAULT`],
    /// not saved in the setting, so a model installed later takes over); and when the
    /// setting's file is gone, the model with the same UVR hash, else the same name, among
    /// those found (the project moved to another machine or the models to another folder).
    fn resolve_model(&self) -> Result<PathBuf, Problem> {
        let setting = self.params.model_path.get();
        let setting = setting.trim();
        if crate::nets::builtin::Builtin::is_builtin_name(setting) || (!setting.is_empty() && Path::new(setting).is_file()) {
            return Ok(PathBuf::from(setting));
        }
        let found = crate::catalog::discover();
        let ready = || found.iter().filter(|m| m.is_ready());
        let pick = if setting.is_empty() {
            ready().next()
        } else {
            let (hash, name) = (self.params.model_hash.get(), self.params.model_name.get());
            let file_name = Path::new(setting).file_name().map(|f| f.to_os_string());
            let same_hash = |m: &&crate::catalog::ModelEntry| !hash.is_empty() && crate::catalog::uvr_hash(&m.path).is_ok_and(|h| h == hash);
            let same_name = |m: &&crate::catalog::ModelEntry| (!name.is_empty() && m.name == name) || m.path.file_name().map(|f| f.to_os_string()) == file_name;
            let found = ready().find(same_hash).or_else(|| ready().find(same_name));
            if found.is_none() {
                return Err(Problem::MissingModel(PathBuf::from(setting)));
            }
            found
        };
        let Some(m) = pick else {
            // No model file at all: separate with the default built-in rather than pass dry.
            return Ok(PathBuf::from(crate::nets::builtin::DEFAULT));
        };
        if !setting.is_empty() {
            self.shared.push_notice(format!("{setting} is gone: using the same model found at {}", m.path.display()));
        }
        self.params.model_path.put(m.path.to_string_lossy().into_owned());
        Ok(m.path.clone())
    }

    /// Work out this activation from the persisted settings: model, config, sizes, latency.
    /// The model is resolved by the catalog (a built-in or a file); the plan follows its
    /// [`Schedule`](crate::nets::Schedule): chunks with the overlap and segment settings, or a
    /// stream built at the host's rate.
    fn plan(&mut self, host_rate: u32, max_block: usize) -> Result<Setup, Problem> {
        let path = self.resolve_model()?;
        let fallback = self.params.model_path.get().trim().is_empty() && crate::nets::builtin::Builtin::is_builtin_name(&path.to_string_lossy());
        let resolved = crate::catalog::resolve_any(&path, None);
        let name = match &resolved {
            Ok(r) => r.name(),
            Err(_) => crate::catalog::display_name(&path),
        };
        let bad = |message: String| Problem::BadModel { model: name.clone(), message };
        let resolved = resolved.map_err(|e| bad(e.to_string()))?;
        let info = resolved.info(host_rate);
        let mut outputs = info.stems.clone();
        outputs.extend(info.complement.clone());
        if outputs.len() > MAX_STEMS {
            return Err(Problem::TooManyStems { model: name, stems: outputs.len(), max: MAX_STEMS });
        }
        let precision = self.params.precision.get().precision();
        let safety = self.params.safety.get().clamp(*SAFETY_RANGE.start(), *SAFETY_RANGE.end()) as usize;
        let threads = plugin_threads(self.params.cpu_threads.get());
        let segment = self.params.segment.get() as usize;
        let (plan, chosen, default_segment, segments, costs) = match (&resolved, info.schedule) {
            (crate::catalog::Resolved::File(f), _) => {
                let net = &*f.net;
                // What finds the model again if it moves.
                self.params.model_name.put(name.clone());
                if let Ok(h) = crate::catalog::uvr_hash(&path) {
                    self.params.model_hash.put(h);
                }
                // The network's own rule for which settings it takes; other values mean the default.
                let segs = net.segments();
                let chosen = net.pick_segment(segment);
                let chunk = chosen.map_or(info.unit_len(), |s| net.segment_chunk(s));
                let overlap = overlap_for(self.params.overlap.get(), net.configured_overlap());
                let plan = StreamPlan::new(host_rate, info.sample_rate, chunk, overlap, info.stems.len(), max_block, safety)
                    .map_err(|e| bad(e.to_string()))?;
                let costs = budget::SegmentCost::table(net, chosen.unwrap_or(segs.default), chunk);
                (plan, chosen, segs.default, segs.choices, costs)
            }
            (_, crate::nets::Schedule::Stream { block, latency }) => {
                let plan = StreamPlan::streaming(host_rate, block, latency, info.stems.len(), max_block, safety).map_err(|e| bad(e.to_string()))?;
                (plan, None, 0, vec![], vec![])
            }
            (_, crate::nets::Schedule::Chunks { .. }) => return Err(bad("a chunked model without a config".into())),
        };
        if fallback {
            self.shared.push_notice(format!(
                "No model found: separating with {} (drums, harmonic, residual). Download an MDX23C model for vocals.",
                name
            ));
        }
        let rate = if matches!(resolved, crate::catalog::Resolved::Builtin(_)) { host_rate } else { 0 };
        let key = LoadKey { model: path.clone(), segment: chosen, precision, threads, rate };
        let engine = EngineOptions { device: DeviceRequest::Auto, precision, warmup: true, threads, ..EngineOptions::from_env() };
        let options = LoadOptions { model: path, config: None, segment: chosen, sample_rate: Some(host_rate), options: engine };
        let info_line = ActiveInfo {
            model: name.clone(),
            chunk: plan.chunk,
            hop: plan.hop,
            overlap: plan.overlap,
            model_rate: plan.model_rate,
            host_rate,
            default_segment,
            segments,
            segment: chosen.unwrap_or(default_segment),
            costs,
        };
        let complement = info.complement.is_some();
        Ok(Setup { plan, key, options, name, outputs, complement, info: info_line })
    }

    /// Start the worker and build the audio side for `setup`.
    fn start(&mut self, setup: Setup, declared: Declared) {
        let Setup { plan, key, options, name, outputs, complement, info } = setup;
        self.shared.set_stem_names(outputs);
        self.shared.set_info(info);
        self.shared.set_loading(name.clone());
        self.loader.request(key.clone(), options, name);
        let source = EngineSource::Cache { cache: self.loader.cache(), key };
        let (audio_ends, worker_ends) = worker::link(&plan);
        match WorkerHandle::spawn(plan.clone(), source, self.shared.clone(), worker_ends, WorkerOptions::from_env(declared != Declared::Offline)) {
            Ok(w) => {
                let waker = w.waker();
                self.worker = Some(w);
                self.latency = plan.latency_samples() as u32;
                let watchdog = Duration::from_secs(self.params.watchdog_s.get().max(1) as u64);
                let position_offset = host::position_offset(self.latency as usize);
                let opts = AudioOptions { declared, complement, watchdog, position_offset };
                self.audio = Some(AudioSide::new(&plan, audio_ends, self.shared.clone(), opts, waker));
            }
            Err(e) => self.shared.set_problem(Problem::Thread(e.to_string())),
        }
    }
}

/// CPU threads for the engine: the setting, or (0) every core but one, at least one.
pub fn plugin_threads(setting: u32) -> usize {
    match setting {
        0 => crate::engine::resolve_threads(0).saturating_sub(1).max(1),
        // A state's value is clamped: a pool of millions of threads is never plausible.
        n => (n as usize).min(crate::limits::MAX_THREADS),
    }
}

/// The overlap this activation uses: the setting, else the config's (`configured`), else 4;
/// clamped to [`OVERLAP_RANGE`].
fn overlap_for(setting: u32, configured: Option<usize>) -> usize {
    let k = if setting != 0 { setting as usize } else { configured.unwrap_or(DEFAULT_OVERLAP) };
    k.clamp(*OVERLAP_RANGE.start() as usize, *OVERLAP_RANGE.end() as usize)
}

/// The plugin's reported latency for a model at `host_rate` (what `activate` reports), for
/// documentation and the CLI's `info`.
pub fn latency_for(model_rate: u32, chunk: usize, overlap: usize, stems: usize, host_rate: u32, max_block: usize) -> Option<usize> {
    StreamPlan::new(host_rate, model_rate, chunk, overlap, stems, max_block, 0).ok().map(|p| p.latency_samples())
}

impl<const STEM_OUTPUTS: bool> ClapPlugin for MdxStems<STEM_OUTPUTS> {
    const CLAP_ID: &'static str = Self::IDS.clap_id;
    const CLAP_DESCRIPTION: Option<&'static str> = Some(if STEM_OUTPUTS {
        "Stem separation (MDX23C / TFC-TDF v3) with a stereo output per stem"
    } else {
        "Stem separation (MDX23C / TFC-TDF v3), main output only"
    });
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::AudioEffect, ClapFeature::Stereo, ClapFeature::Utility];
}

impl<const STEM_OUTPUTS: bool> Vst3Plugin for MdxStems<STEM_OUTPUTS> {
    const VST3_CLASS_ID: [u8; 16] = Self::IDS.vst3_class_id;
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[Vst3SubCategory::Fx, Vst3SubCategory::Tools];
}

impl<const STEM_OUTPUTS: bool> MdxStems<STEM_OUTPUTS> {
    /// Names, ids and codes ([`ids`]; the CLAP factory lists [`ids::PLUGINS`] in this order).
    const IDS: &'static ids::PluginIds = if STEM_OUTPUTS { &ids::MULTI } else { &ids::STEREO };
}

nice_export_clap!(MdxStemsMulti, MdxStemsStereo);
// VST3: nice-plug's wrapper behind our bus guard, so that hosts which leave the stem outputs
// unconnected still get the stems on the main output (see `vst3_guard`).
vst3_guard::export_guarded_vst3!(MdxStemsMulti, MdxStemsStereo);
// AUv2 (feature `au`, macOS): clap-wrapper's `GetPluginFactoryAUV2_<n>` entry points wrap the
// CLAP factory's plugins; `xtask` writes the `.component` bundle whose Info.plist names them
// (`ids::PLUGINS`). Elsewhere the macro exports nothing.
#[cfg(feature = "au")]
clap_wrapper::export_auv2!();
