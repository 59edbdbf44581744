//! The editor (nice-plug-egui), on the host's GUI thread.
//!
//! Shows the engine's status (loading, ready on which device, or why not), the engine's and
//! the plugin's notices (GPU fallbacks, a model found again after it moved, ...), the latency,
//! whether the host is rendering, a real-time load meter and the dropout count, all read from
//! [`Shared`]; lists the models found in the user's folders (scanned on a helper thread that
//! the editor joins) and accepts a path; edits the persisted settings (model, overlap,
//! segment, precision, CPU threads, safety, render watchdog), which apply on the next
//! activation (the audio thread asks the host for it as soon as they change); and the stem
//! parameters (preset, gain, mute, solo) through the host's parameter setter.
//!
//! It repaints only when something changed: user input, or [`Shared::changed`] (the worker,
//! the audio thread or the main thread after an update of what is shown).

use super::params::{MAX_STEMS, MdxParams, OVERLAP_RANGE, PRESET_COUNT, PrecisionSetting, Preset, SAFETY_RANGE};
use super::shared::{EngineState, Shared};
use crate::catalog::{self as models, ModelEntry};
use nice_plug::prelude::*;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{EguiEditor, EguiEditorState, EguiNiceSettings, NiceEguiApp, RepaintNotifier, create_egui_editor};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub type MdxEditor = EguiEditor<EditorApp>;

/// Editor window size in logical pixels.
pub const SIZE: (u32, u32) = (560, 640);

pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(nice_plug::editor::dpi::LogicalSize::new(SIZE.0 as f64, SIZE.1 as f64), 1.0)
}

pub fn create(params: Arc<MdxParams>, shared: Arc<Shared>, state: Arc<EguiEditorState>) -> Option<MdxEditor> {
    let repaint = shared.repaint.clone();
    let app = EditorApp { params, shared, gui: None, scan: Scan::default(), fetch: Fetch::default(), path_text: String::new() };
    create_egui_editor(state, repaint, EguiNiceSettings::new().with_tile("MDX Stems"), app)
}

/// Model folder scan on a helper thread (discovery hashes files, too slow for the GUI thread).
#[derive(Default)]
struct Scan {
    result: Arc<Mutex<Option<Vec<ModelEntry>>>>,
    thread: Option<JoinHandle<()>>,
    models: Vec<ModelEntry>,
}

impl Scan {
    /// Scan on a helper thread; `done` repaints the editor when the list is there.
    fn start(&mut self, done: RepaintNotifier) {
        if self.thread.is_some() {
            return;
        }
        let out = self.result.clone();
        self.thread = std::thread::Builder::new()
            .name("mdx-stems model scan".into())
            .spawn(move || {
                let found = models::discover();
                if let Ok(mut o) = out.lock() {
                    *o = Some(found);
                }
                done.request_repaint();
            })
            .ok();
    }

    fn poll(&mut self) {
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            if let Some(found) = self.result.lock().ok().and_then(|mut r| r.take()) {
                self.models = found;
            }
        }
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One model download on a helper thread (never the GUI or audio thread): progress in
/// atomics, the result in a slot; cancelled and joined when the editor closes.
#[derive(Default)]
struct Fetch {
    name: String,
    done: Arc<std::sync::atomic::AtomicU64>,
    total: Arc<std::sync::atomic::AtomicU64>,
    cancel: Arc<std::sync::atomic::AtomicBool>,
    result: Arc<Mutex<Option<Result<String, String>>>>,
    thread: Option<JoinHandle<()>>,
    /// The last outcome, shown under the list.
    message: String,
}

impl Fetch {
    fn start(&mut self, model: &'static crate::download::Available, done: RepaintNotifier) {
        if self.thread.is_some() {
            return;
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.name = model.name.to_string();
        self.done.store(0, Relaxed);
        self.total.store(0, Relaxed);
        self.cancel.store(false, Relaxed);
        self.message.clear();
        let (d, t, out) = (self.done.clone(), self.total.clone(), self.result.clone());
        let mut opts = crate::download::DownloadOptions::from_env();
        opts.stall_timeout = std::time::Duration::from_secs(10);
        opts.cancel = Some(self.cancel.clone());
        self.thread = std::thread::Builder::new()
            .name("mdx-stems download".into())
            .spawn(move || {
                let rp = done.clone();
                let mut last = std::time::Instant::now();
                let r = crate::download::download(model, &opts, &mut |done, total| {
                    d.store(done, Relaxed);
                    t.store(total.unwrap_or(0), Relaxed);
                    if last.elapsed() > std::time::Duration::from_millis(100) {
                        last = std::time::Instant::now();
                        rp.request_repaint();
                    }
                });
                if let Ok(mut o) = out.lock() {
                    *o = Some(r.map(|p| p.to_string_lossy().into_owned()).map_err(|e| e.to_string()));
                }
                done.request_repaint();
            })
            .ok();
    }

    /// The finished download's path, once.
    fn poll(&mut self) -> Option<String> {
        if !self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            return None;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        match self.result.lock().ok().and_then(|mut r| r.take()) {
            Some(Ok(path)) => {
                self.message = format!("Downloaded and verified {}", self.name);
                Some(path)
            }
            Some(Err(e)) => {
                self.message = e;
                None
            }
            None => None,
        }
    }
}

impl Drop for Fetch {
    fn drop(&mut self) {
        self.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct EditorApp {
    params: Arc<MdxParams>,
    shared: Arc<Shared>,
    gui: Option<GuiContext>,
    scan: Scan,
    fetch: Fetch,
    path_text: String,
}

use nice_plug::context::gui::GuiContext;

impl NiceEguiApp for EditorApp {
    fn build(
        &mut self,
        _egui_ctx: egui::Context,
        gui: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.gui = Some(gui);
        self.path_text = self.params.model_path.get();
        self.scan.start(self.shared.repaint.clone());
        Ok(())
    }

    fn editor_closed(&mut self) {
        self.gui = None;
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        self.scan.poll();
        let Some(gui) = self.gui.clone() else { return };
        let setter = gui.param_setter();
        let generation = self.params.generation();
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                ui.heading("MDX Stems");
                self.status_ui(ui);
                ui.separator();
                self.model_ui(ui);
                ui.separator();
                self.settings_ui(ui);
                ui.separator();
                self.stems_ui(ui, &setter);
            });
        });
        let now = self.params.generation();
        if now != generation {
            // Model, overlap, segment or precision changed: they apply on the next activation,
            // which we ask the host for from here (the GUI thread) rather than from the audio
            // thread.
            self.shared.restart_asked.store(now, Ordering::Release);
            gui.request_restart();
        }
    }
}

/// How a status line is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Warn,
    Bad,
    Plain,
}

/// The status block's first lines, as the editor shows them: the engine's state and status, a
/// line per notice (the engine's warnings among them), and whether the host renders.
pub fn status_lines(shared: &Shared) -> Vec<(Tone, String)> {
    let (label, tone) = match shared.state() {
        EngineState::NoModel => ("No model", Tone::Warn),
        EngineState::Loading => ("Loading", Tone::Warn),
        EngineState::Ready => ("Ready", Tone::Good),
        EngineState::Error => ("Error", Tone::Bad),
    };
    let status = shared.status_line();
    let mut lines = vec![(tone, if status.is_empty() { label.to_string() } else { status })];
    lines.extend(shared.notices().into_iter().map(|n| (Tone::Warn, format!("Note: {n}"))));
    if shared.rendering.load(Ordering::Relaxed) {
        lines.push((Tone::Plain, "Rendering: every result is waited for (the host renders offline or faster than real time).".into()));
    }
    lines
}

impl EditorApp {
    fn status_ui(&self, ui: &mut egui::Ui) {
        for (tone, text) in status_lines(&self.shared) {
            let color = match tone {
                Tone::Good => egui::Color32::from_rgb(90, 190, 90),
                Tone::Warn => egui::Color32::from_rgb(200, 160, 60),
                Tone::Bad => egui::Color32::from_rgb(220, 80, 80),
                Tone::Plain => ui.visuals().text_color(),
            };
            ui.colored_label(color, text);
        }
        let info = self.shared.info();
        if !info.model.is_empty() {
            ui.label(format!(
                "{}: chunk {} samples at {} Hz, overlap {} (hop {}), host {} Hz",
                info.model, info.chunk, info.model_rate, info.overlap, info.hop, info.host_rate
            ));
        }
        let lat = self.shared.latency_samples.load(Ordering::Relaxed);
        let ms = self.shared.latency_ms.load(Ordering::Relaxed);
        ui.label(format!("Latency: {lat} samples = {ms:.1} ms (reported to the host, which compensates it)"));
        let load = self.shared.load.load(Ordering::Relaxed);
        ui.horizontal(|ui| {
            ui.label("Load:");
            let bar = egui::ProgressBar::new((load / 1.5).clamp(0.0, 1.0))
                .text(format!("{:.0}% of real time", 100.0 * load))
                .desired_width(220.0);
            ui.add(bar);
            ui.label(format!("dropouts: {}", self.shared.dropouts.load(Ordering::Relaxed)));
        });
        self.live_ui(ui, &info);
        let rss = self.shared.peak_rss_mb.load(Ordering::Relaxed);
        let gpu = self.shared.gpu_mb.load(Ordering::Relaxed);
        let mut memory = Vec::new();
        if rss >= 0.0 {
            memory.push(format!("host process peak {rss:.0} MB"));
        }
        if gpu >= 0.0 {
            memory.push(format!("GPU (this model) peak {gpu:.0} MB"));
        }
        if !memory.is_empty() {
            ui.label(format!("Memory: {}", memory.join(", ")));
        }
        if load > 1.0 && self.shared.state() == EngineState::Ready {
            ui.colored_label(
                egui::Color32::from_rgb(220, 80, 80),
                "The model is slower than real time here: playback falls back to the dry signal. \
                 Lower the overlap or the segment size, use a GPU build, or bounce offline \
                 (offline rendering waits for every result).",
            );
        }
    }

    /// Which overlap and segment settings run live here, from the measured chunk time
    /// ([`super::budget`]); chunked models only, once a chunk has been timed.
    fn live_ui(&self, ui: &mut egui::Ui, info: &super::shared::ActiveInfo) {
        let secs = self.shared.chunk_secs.load(Ordering::Relaxed) as f64;
        let Some(at) = info.costs.iter().find(|c| c.dim_t == info.dim_t) else { return };
        if secs <= 0.0 {
            return;
        }
        let m = super::budget::Measured { secs, at, rate: info.model_rate };
        ui.label(super::budget::summary(&m, info.overlap, &info.costs));
        egui::CollapsingHeader::new("What runs live on this machine").id_salt("live").show(ui, |ui| {
            ui.label(format!(
                "Percent of real time each setting needs, estimated from the measured chunk (live: at most {:.0}%).",
                100.0 * super::budget::LIVE_LOAD
            ));
            egui::Grid::new("live_grid").striped(true).show(ui, |ui| {
                ui.label("segment");
                for k in super::budget::OVERLAPS {
                    ui.label(format!("overlap {k}"));
                }
                ui.end_row();
                for c in info.costs.iter().rev() {
                    let mark = if c.dim_t == info.dim_t { " (now)" } else { "" };
                    ui.label(format!("{}{mark}", c.dim_t));
                    for k in super::budget::OVERLAPS {
                        let load = m.load(c, k);
                        let color = if load <= super::budget::LIVE_LOAD {
                            egui::Color32::from_rgb(90, 190, 90)
                        } else {
                            egui::Color32::from_rgb(220, 80, 80)
                        };
                        ui.colored_label(color, format!("{:.0}%", 100.0 * load));
                    }
                    ui.end_row();
                }
            });
        });
    }

    fn choose_model(&mut self, path: String) {
        self.path_text = path.clone();
        self.params.model_path.put(path);
    }

    fn model_ui(&mut self, ui: &mut egui::Ui) {
        ui.label(format!("Models folder: {}", models::app_models_dir().display()));
        let current = self.params.model_path.get();
        let mut pick: Option<String> = None;
        ui.horizontal(|ui| {
            let selected = self
                .scan
                .models
                .iter()
                .find(|m| m.path.to_string_lossy() == current)
                .map_or_else(|| if current.is_empty() { "(first model found)".to_string() } else { current.clone() }, |m| m.name.clone());
            egui::ComboBox::from_id_salt("model").selected_text(selected).width(330.0).show_ui(ui, |ui| {
                for m in &self.scan.models {
                    let p = m.path.to_string_lossy().into_owned();
                    let text = if m.stems.is_empty() { m.name.clone() } else { format!("{} ({})", m.name, m.stems.join(", ")) };
                    let r = ui.add_enabled(m.is_ready(), egui::Button::selectable(p == current, text));
                    let r = match &m.config {
                        Ok(origin) => r.on_hover_text(format!("{} [{}, {origin}]", m.path.display(), m.source)),
                        Err(why) => r.on_disabled_hover_text(why.clone()),
                    };
                    if r.clicked() {
                        pick = Some(p);
                    }
                }
                if self.scan.models.is_empty() {
                    ui.label("No models found yet.");
                }
            });
            if ui.button("Rescan").clicked() {
                self.scan.start(self.shared.repaint.clone());
            }
        });
        ui.horizontal(|ui| {
            ui.label("Path:");
            ui.add(egui::TextEdit::singleline(&mut self.path_text).desired_width(360.0));
            if ui.button("Use").clicked() {
                pick = Some(self.path_text.trim().to_string());
            }
        });
        if let Some(p) = self.fetch.poll() {
            self.scan.start(self.shared.repaint.clone());
            pick = Some(p);
        }
        egui::CollapsingHeader::new("Download MDX23C models").show(ui, |ui| {
            let busy = self.fetch.thread.is_some();
            for m in crate::download::AVAILABLE {
                ui.horizontal(|ui| {
                    if ui.add_enabled(!busy, egui::Button::new("Download")).clicked() {
                        self.fetch.start(m, self.shared.repaint.clone());
                    }
                    ui.label(format!("{} ({})", m.name, m.stems)).on_hover_text(format!("{}; {}", m.source, m.sdr));
                });
            }
            if busy {
                use std::sync::atomic::Ordering::Relaxed;
                let (d, t) = (self.fetch.done.load(Relaxed), self.fetch.total.load(Relaxed));
                let frac = if t > 0 { d as f32 / t as f32 } else { 0.0 };
                ui.add(egui::ProgressBar::new(frac).text(format!("{}: {:.0} / {:.0} MB", self.fetch.name, d as f64 / 1e6, t as f64 / 1e6)));
                if ui.button("Cancel").clicked() {
                    self.fetch.cancel.store(true, Relaxed);
                }
            } else if !self.fetch.message.is_empty() {
                ui.label(&self.fetch.message);
            }
        });
        if let Some(p) = pick {
            self.choose_model(p);
        }
    }

    fn settings_ui(&mut self, ui: &mut egui::Ui) {
        let info = self.shared.info();
        ui.label("Overlap and segment change the latency; all of these apply when the host next restarts processing.");
        egui::Grid::new("settings").num_columns(2).show(ui, |ui| {
            ui.label("Overlap");
            let ov = self.params.overlap.get();
            let text = |k: u32| if k == 0 { "model default".to_string() } else { format!("{k}") };
            egui::ComboBox::from_id_salt("overlap").selected_text(text(ov)).show_ui(ui, |ui| {
                for k in std::iter::once(0).chain(OVERLAP_RANGE) {
                    if ui.selectable_label(ov == k, text(k)).clicked() {
                        self.params.overlap.put(k);
                    }
                }
            });
            ui.end_row();

            ui.label("Segment (STFT frames)");
            let seg = self.params.segment.get();
            let seg_text = |d: u32| if d == 0 { format!("model default ({})", info.default_dim_t) } else { format!("{d}") };
            egui::ComboBox::from_id_salt("segment").selected_text(seg_text(seg)).show_ui(ui, |ui| {
                for d in std::iter::once(0).chain(info.segments.iter().map(|&d| d as u32)) {
                    if ui.selectable_label(seg == d, seg_text(d)).clicked() {
                        self.params.segment.put(d);
                    }
                }
            });
            ui.end_row();

            ui.label("Precision");
            let pr = self.params.precision.get();
            egui::ComboBox::from_id_salt("precision").selected_text(pr.name()).show_ui(ui, |ui| {
                for p in PrecisionSetting::ALL {
                    if ui.selectable_label(pr == p, p.name()).clicked() {
                        self.params.precision.put(p);
                    }
                }
            });
            ui.end_row();

            ui.label("Safety (extra hops of latency)");
            let sf = self.params.safety.get();
            egui::ComboBox::from_id_salt("safety").selected_text(format!("{sf}")).show_ui(ui, |ui| {
                for k in SAFETY_RANGE {
                    if ui.selectable_label(sf == k, format!("{k}")).clicked() {
                        self.params.safety.put(k);
                    }
                }
            })
            .response
            .on_hover_text("Each step gives the model one more hop of time per chunk, for machines that are only just fast enough; it adds a hop to the latency.");
            ui.end_row();

            ui.label("Render watchdog (s)");
            let wd = self.params.watchdog_s.get();
            egui::ComboBox::from_id_salt("watchdog").selected_text(format!("{wd}")).show_ui(ui, |ui| {
                for k in [10u32, 30, 60, 120, 300, 900] {
                    if ui.selectable_label(wd == k, format!("{k}")).clicked() {
                        self.params.watchdog_s.put(k);
                    }
                }
            })
            .response
            .on_hover_text("During a render, if the model makes no progress for this long the plugin says so and plays the dry signal, so the host never hangs.");
            ui.end_row();

            ui.label("CPU threads");
            let th = self.params.cpu_threads.get();
            let cores = crate::engine::resolve_threads(0) as u32;
            let th_text = |n: u32| if n == 0 { format!("auto ({})", super::plugin_threads(0)) } else { format!("{n}") };
            egui::ComboBox::from_id_salt("cpu_threads").selected_text(th_text(th)).show_ui(ui, |ui| {
                for n in std::iter::once(0).chain(1..=cores) {
                    if ui.selectable_label(th == n, th_text(n)).clicked() {
                        self.params.cpu_threads.put(n);
                    }
                }
            });
            ui.end_row();
        });
    }

    fn stems_ui(&self, ui: &mut egui::Ui, setter: &ParamSetter) {
        let names = self.shared.stem_names();
        let preset = self.params.preset.value();
        ui.horizontal(|ui| {
            ui.label("Main output:");
            egui::ComboBox::from_id_salt("preset")
                .selected_text(Preset::from_index(preset).label(&names))
                .show_ui(ui, |ui| {
                    for v in 0..PRESET_COUNT {
                        let p = Preset::from_index(v);
                        let idx = match p {
                            Preset::All => None,
                            Preset::Only(i) | Preset::AllBut(i) => Some(i),
                        };
                        if idx.is_some_and(|i| i >= names.len().max(1)) {
                            continue;
                        }
                        if ui.selectable_label(v == preset, p.label(&names)).clicked() {
                            setter.begin_set_parameter(&self.params.preset);
                            setter.set_parameter(&self.params.preset, v);
                            setter.end_set_parameter(&self.params.preset);
                        }
                    }
                });
        });
        egui::Grid::new("stems").num_columns(5).show(ui, |ui| {
            ui.label("Output");
            ui.label("Stem");
            ui.label("Gain");
            ui.label("Mute");
            ui.label("Solo");
            ui.end_row();
            for i in 0..MAX_STEMS.min(names.len().max(1)) {
                let sp = &self.params.stems[i];
                ui.label(format!("Stem {}", i + 1));
                ui.label(names.get(i).cloned().unwrap_or_default());
                ui.add(ParamSlider::for_param(&sp.gain, setter).with_width(160.0));
                for p in [&sp.mute, &sp.solo] {
                    let mut v = p.value();
                    if ui.checkbox(&mut v, "").changed() {
                        setter.begin_set_parameter(p);
                        setter.set_parameter(p, v);
                        setter.end_set_parameter(p);
                    }
                }
                ui.end_row();
            }
        });
        ui.label("Each stem also plays on its own stereo output (\"Stem 1\", \"Stem 2\", ...): route them to tracks in the host.");
    }
}
