//! The editor (nice-plug-egui), on the host's GUI thread.
//!
//! Shows a peak level meter with hold per output (main, and each stem output) from the peaks
//! the audio thread publishes ([`super::shared::Meters`]; hold and decay in [`super::meter`]),
//! the engine's status (loading, ready on which device, or why not), the engine's and
//! the plugin's notices (GPU fallbacks, a model found again after it moved, ...), a model
//! download's progress ([`super::fetch`], owned by the plugin: closing the editor never waits
//! for it), the latency, whether the host is rendering, the real-time load as a bar and the
//! dropout count, all read from [`Shared`]; lists the models found in the user's folders
//! (scanned on a helper thread, never waited for when the editor closes) and accepts a path; edits the persisted settings (model, overlap,
//! segment, precision, CPU threads, safety, render watchdog), which apply on the next
//! activation (the audio thread asks the host for it as soon as they change); and the stem
//! parameters (preset, gain, mute, solo) through the host's parameter setter.
//!
//! It repaints only when something changed: user input, or [`Shared::changed`] (the worker,
//! the audio thread or the main thread after an update of what is shown), and while a meter
//! still falls.

use super::params::{MAX_STEMS, MdxParams, OVERLAP_RANGE, PRESET_COUNT, PrecisionSetting, Preset, SAFETY_RANGE};
use super::fetch::Downloads;
use super::meter::{self, Ballistics};
use super::shared::{EngineState, Meters, Shared};
use crate::catalog::{self as models, ModelEntry};
use nice_plug::prelude::*;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{EguiEditor, EguiEditorState, EguiNiceSettings, NiceEguiApp, RepaintNotifier, create_egui_editor};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

pub type MdxEditor = EguiEditor<EditorApp>;

/// Editor window size in logical pixels.
pub const SIZE: (u32, u32) = (560, 640);

pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(nice_plug::editor::dpi::LogicalSize::new(SIZE.0 as f64, SIZE.1 as f64), 1.0)
}

/// The editor of an instance; `stem_outputs`: the plugin has the stem outputs (meters for them).
pub fn create(
    params: Arc<MdxParams>,
    shared: Arc<Shared>,
    downloads: Arc<Downloads>,
    state: Arc<EguiEditorState>,
    stem_outputs: bool,
) -> Option<MdxEditor> {
    let repaint = shared.repaint.clone();
    let app = EditorApp::new(params, shared, downloads, stem_outputs);
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

/// Closing the editor never waits for a scan (it hashes files): one still running finishes on
/// its own ([`super::detach`]).
impl Drop for Scan {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            super::detach::join_or_detach(t, Instant::now() + super::detach::GRACE, "the model scan");
        }
    }
}

/// Colours of the meters: up to -12 dB, up to -3 dB, above (the Xvfb test finds the first in
/// its screenshot).
pub const METER_GREEN: egui::Color32 = egui::Color32::from_rgb(60, 200, 110);
pub const METER_YELLOW: egui::Color32 = egui::Color32::from_rgb(230, 190, 50);
pub const METER_RED: egui::Color32 = egui::Color32::from_rgb(235, 70, 55);

/// The editor's state (GUI thread). Dropped when the host closes the editor: nothing here waits.
pub struct EditorApp {
    params: Arc<MdxParams>,
    shared: Arc<Shared>,
    downloads: Arc<Downloads>,
    /// Downloads already seen to have brought a model (a new one: rescan, show the path).
    arrived: u32,
    gui: Option<GuiContext>,
    scan: Scan,
    path_text: String,
    /// One meter per output ([`Meters::MAIN`], then the stems).
    meters: [Ballistics; Meters::COUNT],
    stem_outputs: bool,
    clock: Instant,
}

use nice_plug::context::gui::GuiContext;

impl EditorApp {
    pub fn new(params: Arc<MdxParams>, shared: Arc<Shared>, downloads: Arc<Downloads>, stem_outputs: bool) -> Self {
        let arrived = downloads.view().arrived;
        EditorApp {
            params,
            shared,
            downloads,
            arrived,
            gui: None,
            scan: Scan::default(),
            path_text: String::new(),
            meters: [Ballistics::default(); Meters::COUNT],
            stem_outputs,
            clock: Instant::now(),
        }
    }

    /// Start downloading model `name` with `job` (the plugin owns the download; see
    /// [`super::fetch`]).
    fn start_download(&mut self, name: &str, job: impl FnOnce(&mut super::fetch::Progress) -> Result<std::path::PathBuf, String> + Send + 'static) {
        self.downloads.start(name, self.params.clone(), self.shared.clone(), job);
    }
}

impl NiceEguiApp for EditorApp {
    fn build(
        &mut self,
        _egui_ctx: egui::Context,
        gui: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        // The window's thread (baseview) can still be closing when a host closes the editor and
        // unloads the plugin's library at once (removing the plugin with its window open): keep
        // the library loaded from the first editor on, so that thread never runs unmapped code.
        crate::detach::pin_library();
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
                self.meters_ui(ui);
                ui.separator();
                self.status_ui(ui);
                self.download_ui(ui);
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

/// One meter: the level as a bar (green, yellow above -12 dB, red above -3 dB), the hold as a
/// light mark, dB ticks every 12 dB, full scale (0 dB) as a brighter tick.
fn meter_bar(ui: &mut egui::Ui, m: &Ballistics, width: f32) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 14.0), egui::Sense::hover());
    let p = ui.painter_at(rect);
    p.rect_filled(rect, 2.0, egui::Color32::from_gray(28));
    let x = |db: f32| rect.left() + rect.width() * Ballistics::fraction(db);
    let level = x(m.level_db);
    for (from, to, color) in [(meter::FLOOR_DB, -12.0, METER_GREEN), (-12.0, -3.0, METER_YELLOW), (-3.0, meter::TOP_DB, METER_RED)] {
        let (a, b) = (x(from), x(to).min(level));
        if b > a {
            p.rect_filled(egui::Rect::from_x_y_ranges(a..=b, rect.y_range()), 0.0, color);
        }
    }
    for db in [-48.0, -36.0, -24.0, -12.0, 0.0] {
        let gray = if db == 0.0 { 200 } else { 90 };
        p.vline(x(db), rect.bottom() - 4.0..=rect.bottom(), egui::Stroke::new(1.0, egui::Color32::from_gray(gray)));
    }
    if m.hold_db > meter::FLOOR_DB {
        let hx = x(m.hold_db).clamp(rect.left() + 1.0, rect.right() - 1.0);
        p.vline(hx, rect.y_range(), egui::Stroke::new(2.0, egui::Color32::from_gray(235)));
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

impl Tone {
    fn color(self, ui: &egui::Ui) -> egui::Color32 {
        match self {
            Tone::Good => egui::Color32::from_rgb(90, 190, 90),
            Tone::Warn => egui::Color32::from_rgb(200, 160, 60),
            Tone::Bad => egui::Color32::from_rgb(220, 80, 80),
            Tone::Plain => ui.visuals().text_color(),
        }
    }
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
            ui.colored_label(tone.color(ui), text);
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
            let fill = if load > 1.0 {
                Tone::Bad
            } else if load > super::budget::LIVE_LOAD as f32 {
                Tone::Warn
            } else {
                Tone::Good
            }
            .color(ui);
            let bar = egui::ProgressBar::new((load / 1.5).clamp(0.0, 1.0))
                .text(format!("{:.0}% of real time", 100.0 * load))
                .fill(fill)
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
        let Some(at) = info.costs.iter().find(|c| c.segment == info.segment) else { return };
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
                    let mark = if c.segment == info.segment { " (now)" } else { "" };
                    ui.label(format!("{}{mark}", c.segment));
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

    /// A download's progress (with Cancel) while it runs, else its outcome.
    fn download_ui(&self, ui: &mut egui::Ui) {
        let v = self.downloads.view();
        if v.running {
            ui.horizontal(|ui| {
                let frac = if v.total > 0 { v.done as f32 / v.total as f32 } else { 0.0 };
                let text = format!("Downloading {}: {:.0} / {:.0} MB", v.name, v.done as f64 / 1e6, v.total as f64 / 1e6);
                ui.add(egui::ProgressBar::new(frac).text(text).desired_width(420.0));
                if ui.button("Cancel").clicked() {
                    self.downloads.cancel();
                }
            });
        } else if !v.message.is_empty() {
            ui.label(&v.message);
        }
    }

    /// Peak meters with hold: the main output, then each stem output of the model.
    fn meters_ui(&mut self, ui: &mut egui::Ui) {
        let now = self.clock.elapsed().as_secs_f64();
        for (i, m) in self.meters.iter_mut().enumerate() {
            m.update(self.shared.meters.take(i), now);
        }
        let names = self.shared.stem_names();
        let stems = if self.stem_outputs { names.len().min(Meters::COUNT - 1) } else { 0 };
        egui::Grid::new("meters").num_columns(3).spacing([8.0, 3.0]).show(ui, |ui| {
            for i in 0..1 + stems {
                let label = if i == Meters::MAIN { "Main".to_string() } else { format!("{} {}", i, names[i - 1]) };
                ui.add_sized([110.0, 16.0], egui::Label::new(label).truncate());
                meter_bar(ui, &self.meters[i], 340.0);
                let hold = self.meters[i].hold_db;
                let text = if hold <= meter::FLOOR_DB { "-inf dB".to_string() } else { format!("{hold:.1} dB") };
                let color = if self.meters[i].over { METER_RED } else { ui.visuals().text_color() };
                ui.add_sized([60.0, 16.0], egui::Label::new(egui::RichText::new(text).color(color).monospace()));
                ui.end_row();
            }
        });
        if self.meters.iter().any(Ballistics::moving) {
            // Keep drawing while a meter falls (the repaint flag is polled about 60 times a second).
            self.shared.repaint.request_repaint();
        }
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
        let view = self.downloads.view();
        if view.arrived != self.arrived {
            // A download brought a model (and made it the setting): list it, show its path.
            self.arrived = view.arrived;
            self.path_text = self.params.model_path.get();
            self.scan.start(self.shared.repaint.clone());
        }
        egui::CollapsingHeader::new("Download MDX23C models").show(ui, |ui| {
            for m in crate::download::AVAILABLE {
                ui.horizontal(|ui| {
                    if ui.add_enabled(!view.running, egui::Button::new("Download")).clicked() {
                        self.start_download(m.name, super::fetch::catalog_job(m));
                    }
                    ui.label(format!("{} ({})", m.name, m.stems)).on_hover_text(format!("{}; {}", m.source, m.sdr));
                });
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
            let seg_text = |d: u32| if d == 0 { format!("model default ({})", info.default_segment) } else { format!("{d}") };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::fetch::tests::{slow_job, wait_idle};
    use std::sync::RwLock;
    use std::time::Duration;

    #[test]
    fn closing_the_editor_never_waits_for_a_download_and_its_model_still_arrives() {
        let names = Arc::new(RwLock::new(vec![]));
        let (params, shared) = (Arc::new(MdxParams::new(names.clone())), Arc::new(Shared::new(names)));
        let downloads = Arc::new(Downloads::default());
        let mut app = EditorApp::new(params.clone(), shared.clone(), downloads.clone(), true);
        app.start_download("Slow", slow_job(400));
        assert!(downloads.view().running);
        let t = Instant::now();
        app.editor_closed();
        drop(app);
        assert!(t.elapsed() < Duration::from_millis(50), "closing the editor took {:?}", t.elapsed());
        assert!(downloads.view().running, "the download goes on");
        // It finishes with the editor closed, and its model becomes the setting.
        let v = wait_idle(&downloads, Duration::from_secs(5));
        assert!(!v.running);
        assert_eq!(params.model_path.get(), "/models/fake.ckpt");
        // An editor opened later shows the outcome.
        let app = EditorApp::new(params, shared, downloads.clone(), true);
        assert!(app.downloads.view().message.starts_with("Downloaded and verified Slow"));
    }
}
