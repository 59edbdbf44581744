//! A minimal real CLAP host (clack-host) for the plugin tests: loads a `.clap` (or the debug
//! cdylib, which is the same thing), runs the activate / restart / process cycle the way a DAW
//! does, and gives the tests planar buffers.
#![allow(dead_code)]

use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{ParamValueEvent, TransportEvent, TransportFlags};
use clack_host::events::{EventFlags, EventHeader};
use clack_host::utils::{BeatTime, SecondsTime};
use clack_host::prelude::*;
use std::cell::Cell;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// "MDX Stems": main output and a stereo output per stem.
pub const PLUGIN_ID: &str = "io.github.mdx-stems";
/// "MDX Stems (Stereo)": main output only.
pub const STEREO_ID: &str = "io.github.mdx-stems.stereo";
/// Main output + 6 stem outputs, stereo each.
pub const OUT_PORTS: usize = 7;

/// `target/<profile>` of the running test binary (`target/debug/deps/<test>` -> `target/debug`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf()
}

/// The release CLAP bundle that `cargo xtask bundle mdx-stems --release` writes.
pub fn release_clap() -> PathBuf {
    let bundled = profile_dir().parent().expect("target dir").join("bundled");
    let p = bundled.join("MDX Stems.clap");
    let file = if p.is_dir() { p.join("Contents").join("MacOS").join("MDX Stems") } else { p };
    assert!(
        file.exists(),
        "{} is missing: build the plugin bundles first with `cargo xtask bundle mdx-stems --release` (README, Install)",
        file.display()
    );
    warn_if_stale(&file);
    file
}

/// The debug cdylib (a CLAP plugin too) that `cargo test` builds next to the test binaries in
/// `target/debug/deps/` (`cargo build` also copies it to `target/debug/`): the newer of the two.
pub fn debug_cdylib() -> PathBuf {
    let name = format!("{}mdx_stems{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let candidates = [profile_dir().join("deps").join(&name), profile_dir().join(&name)];
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    candidates
        .iter()
        .filter(|p| p.exists())
        .max_by_key(|p| modified(p))
        .cloned()
        .unwrap_or_else(|| panic!("{} is missing: `cargo test` builds it (crate-type cdylib)", candidates[0].display()))
}

/// Loudly say when a bundle is older than the sources (it would test old code).
fn warn_if_stale(bundle: &Path) {
    let newest_src = walk_newest(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"));
    let built = std::fs::metadata(bundle).and_then(|m| m.modified()).ok();
    if let (Some(src), Some(b)) = (newest_src, built)
        && src > b
    {
        eprintln!(
            "WARNING: {} is older than the sources in src/: rebuild it with `cargo xtask bundle mdx-stems --release`",
            bundle.display()
        );
    }
}

fn walk_newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() { walk_newest(&p) } else { e.metadata().ok().and_then(|m| m.modified().ok()) };
        if let Some(t) = t {
            newest = Some(newest.map_or(t, |n: std::time::SystemTime| n.max(t)));
        }
    }
    newest
}

/// (name, channel count, is main port)
pub type PortInfo = (String, u32, bool);

pub struct TestHost;

#[derive(Default)]
pub struct HostShared {
    pub restart: AtomicBool,
    pub callback: AtomicBool,
    /// request_restart calls seen (they may come from the audio thread).
    pub restarts: AtomicU32,
}

impl<'a> SharedHandler<'a> for HostShared {
    fn request_restart(&self) {
        // Audio-thread safe: two atomic operations, no allocation.
        self.restart.store(true, Ordering::SeqCst);
        self.restarts.fetch_add(1, Ordering::SeqCst);
    }
    fn request_process(&self) {}
    fn request_callback(&self) {
        self.callback.store(true, Ordering::SeqCst);
    }
}

/// The GUI host extension (nice-plug's editor needs one): accepts every request.
impl clack_extensions::gui::HostGuiImpl for HostShared {
    fn resize_hints_changed(&self) {}
    fn request_resize(&self, _new_size: clack_extensions::gui::GuiSize) -> Result<(), HostError> {
        Ok(())
    }
    fn request_show(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn request_hide(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn closed(&self, _was_destroyed: bool) {}
}

#[derive(Default)]
pub struct HostMain {
    pub latency_changed: Cell<u32>,
}

impl<'a> MainThreadHandler<'a> for HostMain {}

impl HostLatencyImpl for HostMain {
    fn changed(&self) {
        self.latency_changed.set(self.latency_changed.get() + 1);
    }
}

impl HostHandlers for TestHost {
    type Shared<'a> = HostShared;
    type MainThread<'a> = HostMain;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder.register::<HostLatency>().register::<clack_extensions::gui::HostGui>();
    }
}

/// One plugin instance plus the host-side buffers, driven from the calling thread.
pub struct Plug {
    /// Dropped before `_entry` (by `Drop` or [`Plug::destroy`]).
    pub instance: std::mem::ManuallyDrop<PluginInstance<TestHost>>,
    /// The instance was destroyed by [`Plug::destroy`].
    destroyed: bool,
    /// The bundle: unloaded when the last `PluginEntry` of it is dropped.
    _entry: PluginEntry,
    started: Option<StartedPluginAudioProcessor<TestHost>>,
    stopped: Option<StoppedPluginAudioProcessor<TestHost>>,
    config: Option<PluginAudioConfiguration>,
    in_ports: AudioPorts,
    out_ports: AudioPorts,
    in_bufs: [Vec<f32>; 2],
    out_bufs: Vec<[Vec<f32>; 2]>,
    events: EventBuffer,
    /// Restart cycles the host has performed on request.
    pub restarts_done: u32,
    /// Time spent inside the plugin's `process` (not the host's copies), summed since load.
    pub process_times: ProcessTimes,
    /// The transport plays, at this project sample (advanced by every `process`); `None`: no
    /// transport information is given.
    pub transport: Option<i64>,
}

/// What the plugin's `process` calls cost the calling (audio) thread.
#[derive(Debug, Default, Clone)]
pub struct ProcessTimes {
    pub calls: u64,
    /// CPU time of the calling thread inside `process` (CLOCK_THREAD_CPUTIME_ID).
    pub cpu: std::time::Duration,
    /// Wall time inside `process`, in total and for the slowest call.
    pub wall: std::time::Duration,
    pub worst_wall: std::time::Duration,
    /// Wall time of every call, in order (only when [`Plug::record_calls`] is set).
    pub per_call: Vec<std::time::Duration>,
}

/// CPU time of the calling thread (Unix; elsewhere the wall time since the first call, an
/// upper bound).
#[cfg(not(unix))]
pub fn thread_cpu_time() -> std::time::Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// CPU time of the calling thread.
#[cfg(unix)]
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Plug {
    pub fn load(path: &Path) -> Plug {
        Self::load_id(path, PLUGIN_ID)
    }

    pub fn load_id(path: &Path, plugin_id: &str) -> Plug {
        // SAFETY: loading a plugin runs its code; it is the code under test.
        let entry = unsafe { PluginEntry::load(path) }.unwrap_or_else(|e| panic!("loading {}: {e:?}", path.display()));
        let host_info = HostInfo::new("mdx-stems test host", "mdx-stems", "https://example.invalid", "1.0").unwrap();
        let id = CString::new(plugin_id).unwrap();
        {
            let factory = entry.get_plugin_factory().expect("plugin factory");
            let ids: Vec<String> = factory
                .plugin_descriptors()
                .filter_map(|d| d.id().map(|i| i.to_string_lossy().into_owned()))
                .collect();
            assert_eq!(ids, [PLUGIN_ID, STEREO_ID], "plugin ids in the bundle");
            // The Audio Unit's factory functions wrap the CLAP factory's plugins by index.
            let au_order: Vec<&str> = mdx_stems::plugin::ids::PLUGINS.iter().map(|p| p.clap_id).collect();
            assert_eq!(ids, au_order, "plugin ids in the order `ids::PLUGINS` gives the Audio Unit");
        }
        let instance = PluginInstance::<TestHost>::new(|_| HostShared::default(), |_| HostMain::default(), &entry, &id, &host_info)
            .unwrap_or_else(|e| panic!("instantiating: {e:?}"));
        Plug {
            instance: std::mem::ManuallyDrop::new(instance),
            destroyed: false,
            _entry: entry,
            started: None,
            stopped: None,
            config: None,
            in_ports: AudioPorts::with_capacity(2, 1),
            out_ports: AudioPorts::with_capacity(2 * OUT_PORTS, OUT_PORTS),
            in_bufs: [vec![], vec![]],
            out_bufs: (0..OUT_PORTS).map(|_| [vec![], vec![]]).collect(),
            events: EventBuffer::new(),
            restarts_done: 0,
            process_times: ProcessTimes::default(),
            transport: None,
        }
    }

    pub fn latency_changed_calls(&mut self) -> u32 {
        self.instance.access_handler(|h| h.latency_changed.get())
    }

    /// Run main-thread callbacks the plugin asked for.
    pub fn pump(&mut self) {
        if self.instance.access_shared_handler(|h| h.callback.swap(false, Ordering::SeqCst)) {
            self.instance.call_on_main_thread_callback();
        }
    }

    pub fn restart_requested(&mut self) -> bool {
        self.instance.access_shared_handler(|h| h.restart.load(Ordering::SeqCst))
    }

    pub fn latency(&mut self) -> u32 {
        let h = self.instance.plugin_handle();
        let ext: PluginLatency = h.get_extension().expect("latency extension");
        ext.get(&h)
    }

    pub fn set_offline(&mut self, offline: bool) {
        let h = self.instance.plugin_handle();
        let ext: PluginRender = h.get_extension().expect("render extension");
        ext.set(&h, if offline { RenderMode::Offline } else { RenderMode::Realtime }).expect("render mode");
    }

    /// (name, channels, is_main) of every port, inputs then outputs.
    pub fn ports(&mut self) -> (Vec<PortInfo>, Vec<PortInfo>) {
        let h = self.instance.plugin_handle();
        let ext: PluginAudioPorts = h.get_extension().expect("audio-ports extension");
        let mut buf = AudioPortInfoBuffer::new();
        let mut list = |is_input: bool| -> Vec<PortInfo> {
            (0..ext.count(&h, is_input))
                .map(|i| {
                    let info = ext.get(&h, i, is_input, &mut buf).expect("port info");
                    (
                        String::from_utf8_lossy(info.name).into_owned(),
                        info.channel_count,
                        info.flags.contains(clack_extensions::audio_ports::AudioPortFlags::IS_MAIN),
                    )
                })
                .collect()
        };
        (list(true), list(false))
    }

    /// Open the editor embedded in the X11 window `parent` (e.g. the root window of an Xvfb
    /// display); returns its size.
    pub fn open_editor_x11(&mut self, parent: std::ffi::c_ulong) -> (u32, u32) {
        use clack_extensions::gui::{GuiApiType, GuiConfiguration, PluginGui, Window};
        let h = self.instance.plugin_handle();
        let gui: PluginGui = h.get_extension().expect("gui extension");
        let api = GuiApiType::default_for_current_platform().expect("a GUI API on this platform");
        gui.create(&h, GuiConfiguration { api_type: api, is_floating: false }).expect("gui create");
        let size = gui.get_size(&h).expect("gui size");
        // SAFETY: the parent (a root window) outlives the editor.
        unsafe { gui.set_parent(&h, Window::from_x11_handle(parent)) }.expect("gui set_parent");
        gui.show(&h).expect("gui show");
        (size.width, size.height)
    }

    /// Tell the editor the host's scale (CLAP `gui.set_scale`; 2.0 = 200%).
    pub fn set_editor_scale(&mut self, scale: f64) {
        use clack_extensions::gui::PluginGui;
        let h = self.instance.plugin_handle();
        let gui: PluginGui = h.get_extension().expect("gui extension");
        gui.set_scale(&h, scale).expect("gui set_scale");
    }

    /// The editor's size in physical pixels.
    pub fn editor_size(&mut self) -> (u32, u32) {
        use clack_extensions::gui::PluginGui;
        let h = self.instance.plugin_handle();
        let gui: PluginGui = h.get_extension().expect("gui extension");
        let size = gui.get_size(&h).expect("gui size");
        (size.width, size.height)
    }

    pub fn close_editor(&mut self) {
        use clack_extensions::gui::PluginGui;
        let h = self.instance.plugin_handle();
        let gui: PluginGui = h.get_extension().expect("gui extension");
        let _ = gui.hide(&h);
        gui.destroy(&h);
    }

    pub fn save_state(&mut self) -> Vec<u8> {
        let h = self.instance.plugin_handle();
        let ext: PluginState = h.get_extension().expect("state extension");
        let mut out = Vec::new();
        ext.save(&h, &mut out).expect("state save");
        out
    }

    pub fn load_state(&mut self, bytes: &[u8]) {
        let h = self.instance.plugin_handle();
        let ext: PluginState = h.get_extension().expect("state extension");
        ext.load(&h, &mut &bytes[..]).expect("state load");
        self.pump();
    }

    /// The plugin's state as JSON (nice-plug's CLAP format: a little-endian u64 length, then
    /// JSON with `params` and `fields`, each field a JSON string of its value).
    pub fn state_json(&mut self) -> serde_json::Value {
        state_to_json(&self.save_state())
    }

    /// Set persisted fields through a state load (what a host does when it opens a project).
    pub fn set_fields(&mut self, fields: &[(&str, serde_json::Value)]) {
        let mut s = self.state_json();
        for (k, v) in fields {
            s["fields"][*k] = serde_json::Value::String(v.to_string());
        }
        self.load_state(&json_to_state(&s));
    }

    /// Parameter id by display name.
    pub fn param_id(&mut self, name: &str) -> ClapId {
        let h = self.instance.plugin_handle();
        let ext: PluginParams = h.get_extension().expect("params extension");
        let mut buf = ParamInfoBuffer::new();
        for i in 0..ext.count(&h) {
            let info = ext.get_info(&h, i, &mut buf).expect("param info");
            if info.name == name.as_bytes() {
                return info.id;
            }
        }
        panic!("no parameter named {name}");
    }

    /// Queue a parameter change for the next `process` call (plain value).
    pub fn queue_param(&mut self, id: ClapId, value: f64) {
        self.events.push(&ParamValueEvent::new(0, id, Pckn::match_all(), value));
    }

    /// Activate (and run the restart cycle until the plugin is satisfied), then start processing.
    pub fn activate(&mut self, sample_rate: f64, max_block: u32) {
        let config = PluginAudioConfiguration { sample_rate, min_frames_count: 1, max_frames_count: max_block };
        self.config = Some(config);
        for b in self.in_bufs.iter_mut() {
            *b = vec![0.0; max_block as usize];
        }
        for port in self.out_bufs.iter_mut() {
            for b in port.iter_mut() {
                *b = vec![0.0; max_block as usize];
            }
        }
        self.instance.access_shared_handler(|h| h.restart.store(false, Ordering::SeqCst));
        let stopped = self.instance.activate(|_, _| (), config).expect("activate");
        self.stopped = Some(stopped);
        self.pump();
        if self.restart_requested() {
            self.restart();
        } else {
            self.start();
        }
    }

    fn start(&mut self) {
        let stopped = self.stopped.take().expect("activated");
        self.started = Some(stopped.start_processing().expect("start processing"));
    }

    /// What a DAW does on `request_restart`: stop, deactivate, activate, start.
    pub fn restart(&mut self) {
        if let Some(s) = self.started.take() {
            self.stopped = Some(s.stop_processing());
        }
        let stopped = self.stopped.take().expect("activated");
        self.instance.deactivate(stopped);
        self.pump();
        self.instance.access_shared_handler(|h| h.restart.store(false, Ordering::SeqCst));
        let config = self.config.expect("configured");
        self.stopped = Some(self.instance.activate(|_, _| (), config).expect("re-activate"));
        self.pump();
        self.restarts_done += 1;
        self.start();
    }

    /// Handle a pending restart request (after `process`).
    pub fn service(&mut self) -> bool {
        self.pump();
        if self.restart_requested() {
            self.restart();
            return true;
        }
        false
    }

    pub fn reset(&mut self) {
        self.started.as_mut().expect("processing").reset();
    }

    pub fn deactivate(&mut self) {
        if let Some(s) = self.started.take() {
            self.stopped = Some(s.stop_processing());
        }
        if let Some(s) = self.stopped.take() {
            self.instance.deactivate(s);
        }
        self.pump();
    }

    /// Reset [`Plug::process_times`] and keep the wall time of up to `calls` calls.
    pub fn record_calls(&mut self, calls: usize) {
        self.process_times = ProcessTimes { per_call: Vec::with_capacity(calls), ..Default::default() };
    }

    /// One `process` call of `input[ch].len()` frames; returns the outputs [port][ch][frames]
    /// (port 0 = main).
    pub fn process(&mut self, input: [&[f32]; 2], out: &mut [[Vec<f32>; 2]]) {
        let n = input[0].len();
        for (b, x) in self.in_bufs.iter_mut().zip(input) {
            b[..n].copy_from_slice(x);
        }
        let started = self.started.as_mut().expect("processing");
        let inputs = self.in_ports.with_input_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_input_only(self.in_bufs.iter_mut().map(|b| InputChannel::variable(&mut b[..n]))),
        }]);
        let mut outputs = self.out_ports.with_output_buffers(self.out_bufs.iter_mut().map(|port| AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only(port.iter_mut().map(|c| &mut c[..n])),
        }));
        let events = InputEvents::from_buffer(&self.events);
        let rate = self.config.expect("activated").sample_rate;
        let transport = self.transport.map(|pos| TransportEvent {
            header: EventHeader::new_core(0, EventFlags::empty()),
            flags: TransportFlags::IS_PLAYING | TransportFlags::HAS_SECONDS_TIMELINE,
            song_pos_beats: BeatTime::from_int(0),
            song_pos_seconds: SecondsTime::from_float(pos as f64 / rate),
            tempo: 120.0,
            tempo_inc: 0.0,
            loop_start_beats: BeatTime::from_int(0),
            loop_end_beats: BeatTime::from_int(0),
            loop_start_seconds: SecondsTime::from_int(0),
            loop_end_seconds: SecondsTime::from_int(0),
            bar_start: BeatTime::from_int(0),
            bar_number: 0,
            time_signature_numerator: 4,
            time_signature_denominator: 4,
        });
        if let Some(p) = self.transport.as_mut() {
            *p += n as i64;
        }
        let (wall0, cpu0) = (std::time::Instant::now(), thread_cpu_time());
        let status = started.process(&inputs, &mut outputs, &events, &mut OutputEvents::void(), None, transport.as_ref());
        let (wall, cpu) = (wall0.elapsed(), thread_cpu_time() - cpu0);
        status.expect("process");
        let t = &mut self.process_times;
        t.calls += 1;
        t.cpu += cpu;
        t.wall += wall;
        t.worst_wall = t.worst_wall.max(wall);
        if t.per_call.capacity() > t.per_call.len() {
            t.per_call.push(wall);
        }
        self.events.clear();
        for (dst, src) in out.iter_mut().zip(&self.out_bufs) {
            for ch in 0..2 {
                dst[ch].extend_from_slice(&src[ch][..n]);
            }
        }
    }
}

impl Plug {
    /// Remove the plugin as a host does: stop processing, deactivate, destroy the instance.
    /// Returns how long that blocked the calling (the host's main) thread. Then this `Plug`'s
    /// reference to the bundle goes: when it was the last, clack-host unloads the library.
    pub fn destroy(mut self) -> std::time::Duration {
        let t = std::time::Instant::now();
        self.deactivate();
        self.destroyed = true;
        // SAFETY: dropped once (`Drop` skips it once `destroyed` is set).
        unsafe { std::mem::ManuallyDrop::drop(&mut self.instance) };
        t.elapsed()
    }
}

impl Drop for Plug {
    fn drop(&mut self) {
        if !self.destroyed {
            self.deactivate();
            // SAFETY: dropped once, before the entry (the field after it).
            unsafe { std::mem::ManuallyDrop::drop(&mut self.instance) };
        }
    }
}

pub fn state_to_json(bytes: &[u8]) -> serde_json::Value {
    assert!(bytes.len() >= 8, "state too short");
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len() - 8, "state length prefix");
    serde_json::from_slice(&bytes[8..]).expect("state is JSON")
}

pub fn json_to_state(v: &serde_json::Value) -> Vec<u8> {
    let json = serde_json::to_vec(v).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out
}

/// Empty output collectors, [port][ch].
pub fn outputs() -> Vec<[Vec<f32>; 2]> {
    (0..OUT_PORTS).map(|_| [Vec::new(), Vec::new()]).collect()
}
