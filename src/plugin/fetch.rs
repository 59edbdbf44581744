//! Model downloads started from the editor, on a thread of their own that the plugin instance
//! owns, not the editor: closing the editor never waits for a download. The download goes on
//! while the editor is closed, its progress and outcome stay here (the editor shows them when
//! it opens again), and a model that arrives becomes the model setting at once (it applies on
//! the next activation, which the audio thread asks the host for). When the plugin is removed,
//! the download is cancelled (its flag) and finishes on its own, detached ([`super::detach`]).

use super::detach;
use super::params::MdxParams;
use super::shared::Shared;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Progress callback and cancel flag a download job gets.
pub struct Progress<'a> {
    done: &'a AtomicU64,
    total: &'a AtomicU64,
    shared: &'a Shared,
    /// Set when the download must stop (the user's Cancel, or the plugin being removed).
    pub cancel: &'a Arc<AtomicBool>,
    last_repaint: Instant,
}

impl Progress<'_> {
    /// `done` bytes of `total` (when known) are here.
    pub fn report(&mut self, done: u64, total: Option<u64>) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total.unwrap_or(0), Ordering::Relaxed);
        if self.last_repaint.elapsed().as_millis() >= 100 {
            self.last_repaint = Instant::now();
            self.shared.changed();
        }
    }
}

/// One download at a time per plugin instance (shared by the plugin and its editor).
#[derive(Default)]
pub struct Downloads {
    /// The model being (or last) downloaded, for the editor.
    name: Mutex<String>,
    done: AtomicU64,
    total: AtomicU64,
    cancel: Arc<AtomicBool>,
    running: AtomicBool,
    /// Downloads finished with a model (the editor rescans the models folder when it changes).
    arrived: AtomicU32,
    /// The last outcome, for the editor: "Downloaded ...", or why not.
    message: Mutex<String>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the editor shows of a download.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub name: String,
    pub running: bool,
    pub done: u64,
    /// 0: unknown.
    pub total: u64,
    pub message: String,
    pub arrived: u32,
}

impl Downloads {
    /// GUI thread: start `job` (which downloads model `name` and returns its path) unless a
    /// download is running. On success the model becomes `params`' model setting. Never waits.
    pub fn start(
        self: &Arc<Self>,
        name: &str,
        params: Arc<MdxParams>,
        shared: Arc<Shared>,
        job: impl FnOnce(&mut Progress) -> Result<PathBuf, String> + Send + 'static,
    ) -> bool {
        if self.running.swap(true, Ordering::AcqRel) {
            return false;
        }
        // A thread of an earlier download that has ended.
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
        set(&self.name, name.to_string());
        set(&self.message, String::new());
        self.done.store(0, Ordering::Relaxed);
        self.total.store(0, Ordering::Relaxed);
        self.cancel.store(false, Ordering::Relaxed);
        let me = self.clone();
        let model = name.to_string();
        let spawned = std::thread::Builder::new().name("mdx-stems download".into()).spawn(move || {
            let mut progress = Progress { done: &me.done, total: &me.total, shared: &shared, cancel: &me.cancel, last_repaint: Instant::now() };
            let message = match job(&mut progress) {
                Ok(path) => {
                    params.model_path.put(path.to_string_lossy().into_owned());
                    me.arrived.fetch_add(1, Ordering::AcqRel);
                    format!("Downloaded and verified {model}: it is the model now (it loads when the host next restarts processing)")
                }
                Err(e) if me.cancel.load(Ordering::Relaxed) => format!("Download of {model} cancelled ({e})"),
                Err(e) => format!("Download of {model} failed: {e}"),
            };
            set(&me.message, message);
            me.running.store(false, Ordering::Release);
            shared.changed();
        });
        match spawned {
            Ok(t) => {
                if let Ok(mut slot) = self.thread.lock() {
                    *slot = Some(t);
                }
                true
            }
            Err(e) => {
                set(&self.message, format!("cannot start the download: {e}"));
                self.running.store(false, Ordering::Release);
                false
            }
        }
    }

    /// Ask the running download to stop (it keeps the partial file, to resume).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn view(&self) -> View {
        View {
            name: get(&self.name),
            running: self.running.load(Ordering::Acquire),
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            message: get(&self.message),
            arrived: self.arrived.load(Ordering::Acquire),
        }
    }

    /// The plugin is removed: cancel the download and wait for it until `deadline` at most;
    /// one still busy then finishes on its own ([`detach::join_or_detach`]).
    pub fn shut_down(&self, deadline: Instant) {
        self.cancel();
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            detach::join_or_detach(t, deadline, "the model download");
        }
    }
}

fn set(slot: &Mutex<String>, text: String) {
    if let Ok(mut s) = slot.lock() {
        *s = text;
    }
}

fn get(slot: &Mutex<String>) -> String {
    slot.lock().map(|s| s.clone()).unwrap_or_default()
}

/// The job that downloads catalog model `model` into the models folder
/// ([`crate::download::download`]), for [`Downloads::start`].
pub fn catalog_job(model: &'static crate::download::Available) -> impl FnOnce(&mut Progress) -> Result<PathBuf, String> + Send + 'static {
    move |progress| {
        let mut opts = crate::download::DownloadOptions::from_env();
        opts.stall_timeout = std::time::Duration::from_secs(10);
        opts.cancel = Some(progress.cancel.clone());
        crate::download::download(model, &opts, &mut |done, total| progress.report(done, total)).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::RwLock;
    use std::time::Duration;

    fn setup() -> (Arc<Downloads>, Arc<MdxParams>, Arc<Shared>) {
        let names = Arc::new(RwLock::new(vec![]));
        (Arc::new(Downloads::default()), Arc::new(MdxParams::new(names.clone())), Arc::new(Shared::new(names)))
    }

    /// A download taking `ms` (in 10 ms steps, reporting progress, stopping when cancelled).
    pub(crate) fn slow_job(ms: u64) -> impl FnOnce(&mut Progress) -> Result<PathBuf, String> + Send + 'static {
        move |p| {
            for i in 0..ms / 10 {
                if p.cancel.load(Ordering::Relaxed) {
                    return Err("stopped".into());
                }
                p.report(i * 10, Some(ms));
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(PathBuf::from("/models/fake.ckpt"))
        }
    }

    pub(crate) fn wait_idle(d: &Downloads, limit: Duration) -> View {
        let t = Instant::now();
        while d.view().running && t.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
        d.view()
    }

    #[test]
    fn a_finished_download_becomes_the_model_setting() {
        let (d, params, shared) = setup();
        assert!(d.start("Fake", params.clone(), shared.clone(), slow_job(50)));
        // One at a time.
        assert!(!d.start("Other", params.clone(), shared, slow_job(50)));
        let v = wait_idle(&d, Duration::from_secs(5));
        assert!(!v.running);
        assert_eq!(params.model_path.get(), "/models/fake.ckpt");
        assert_eq!(v.arrived, 1);
        assert!(v.message.starts_with("Downloaded and verified Fake"), "{}", v.message);
    }

    #[test]
    fn removing_the_plugin_cancels_the_download_without_waiting_for_it() {
        let (d, params, shared) = setup();
        // A download that only stops at its next check of the flag, 300 ms from now.
        let job = |p: &mut Progress| {
            std::thread::sleep(Duration::from_millis(300));
            if p.cancel.load(Ordering::Relaxed) { Err("stopped".to_string()) } else { Ok(PathBuf::from("/models/late.ckpt")) }
        };
        assert!(d.start("Late", params.clone(), shared, job));
        let t = Instant::now();
        d.shut_down(Instant::now() + detach::GRACE);
        assert!(t.elapsed() < detach::GRACE + Duration::from_millis(30), "waited {:?}", t.elapsed());
        let v = wait_idle(&d, Duration::from_secs(5));
        assert!(v.message.starts_with("Download of Late cancelled"), "{}", v.message);
        assert_eq!(params.model_path.get(), "", "a cancelled download does not change the model");
    }
}
