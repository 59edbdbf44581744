//! Threads that may outlive the plugin instance that started them: the plugin's inference and
//! loader threads ([`crate::plugin`]), and the CPU pool's threads after the last engine that
//! used them is freed ([`crate::backend::cpu::kernels::pool::CpuPool`]).
//!
//! Removing or deactivating the plugin never waits for a chunk or a model load (seconds on a
//! CPU). The plugin asks its threads to stop, waits at most [`GRACE`] for them (all of them
//! together), joins those that ended and lets the others finish on their own, detached
//! ([`join_or_detach`]). A detached thread owns everything it touches (the engine, its channel
//! ends, `Arc`s of the engine cache and of the shared status), gives the engine back to the cache
//! or drops it on its own thread, and ends; nothing the plugin frees is touched.
//!
//! Such a thread still runs code of the plugin's shared library, which the host may unload as
//! soon as the plugin is gone. So before a thread is detached, the library is pinned
//! ([`pin_library`]): it then stays loaded until the process ends (Linux and macOS: `dlopen`
//! with `RTLD_NODELETE`; Windows: `GetModuleHandleExW` with `GET_MODULE_HANDLE_EX_FLAG_PIN`).
//! Where it cannot be pinned, the thread is joined, blocking, rather than risk a crash.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest the plugin waits for its threads to end when it is removed (the host's main
/// thread must never be blocked for more than 50 ms).
pub const GRACE: Duration = Duration::from_millis(20);

/// Wait until `deadline` at most for `thread` to end: join it if it did (its result), else pin
/// the library and let it run on, detached (`None`; its result is dropped on its own thread).
/// `what` names the thread in the log.
pub fn join_or_detach<T>(thread: JoinHandle<T>, deadline: Instant, what: &str) -> Option<T> {
    while !thread.is_finished() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(1)));
    }
    if thread.is_finished() {
        return thread.join().ok();
    }
    if !pin_library() {
        nice_plug::nice_log!("{what} is still busy and the plugin's library cannot be kept loaded: waiting for it");
        return thread.join().ok();
    }
    nice_plug::nice_log!("{what} is still busy: it finishes on its own");
    drop(thread);
    None
}

/// Keep the library this code is in loaded until the process ends (once; later calls return the
/// first answer). True when it is pinned, or is the executable itself.
pub fn pin_library() -> bool {
    static PINNED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PINNED.get_or_init(|| {
        let pinned = pin();
        nice_plug::nice_log!("plugin library pinned until the process ends: {pinned}");
        pinned
    })
}

/// An address inside this library.
fn anchor() -> *const std::ffi::c_void {
    pin_library as fn() -> bool as *const std::ffi::c_void
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "macos", target_os = "ios", target_os = "freebsd"))]
fn pin() -> bool {
    // SAFETY: `dladdr` fills `info` for an address of ours; `dli_fname` then points to the
    // loader's NUL-terminated copy of the library's path, valid while the library is loaded.
    // `dlopen` with RTLD_NOLOAD only takes a reference on a library already loaded (ours); that
    // handle is never closed, and RTLD_NODELETE keeps the library mapped after any dlclose.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(anchor(), &mut info) == 0 || info.dli_fname.is_null() {
            return false;
        }
        let handle = libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE);
        if !handle.is_null() {
            return true;
        }
        // The executable itself (the CLI, tests) is never unloaded; `dlopen` does not find it
        // by its path.
        let path = std::ffi::CStr::from_ptr(info.dli_fname).to_string_lossy().into_owned();
        let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        std::env::current_exe().is_ok_and(|exe| same(&exe, std::path::Path::new(&path)))
    }
}

#[cfg(windows)]
fn pin() -> bool {
    const GET_MODULE_HANDLE_EX_FLAG_PIN: u32 = 0x1;
    const GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS: u32 = 0x4;
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetModuleHandleExW(flags: u32, module_name: *const u16, module: *mut *mut std::ffi::c_void) -> i32;
    }
    let mut module = std::ptr::null_mut();
    // SAFETY: with FROM_ADDRESS the name is an address inside the module to pin (ours);
    // `module` is a valid out-pointer. A pinned module is never unloaded (no handle to close).
    unsafe {
        GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN, anchor() as *const u16, &mut module)
            != 0
    }
}

#[cfg(not(any(windows, target_os = "linux", target_os = "android", target_os = "macos", target_os = "ios", target_os = "freebsd")))]
fn pin() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_thread_is_joined_and_gives_its_result() {
        let t = std::thread::spawn(|| 7);
        assert_eq!(join_or_detach(t, Instant::now() + Duration::from_secs(5), "test thread"), Some(7));
    }

    #[test]
    fn a_busy_thread_is_left_running_after_the_grace() {
        // The test binary is the executable: "pinned" (never unloaded).
        assert!(pin_library());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            d.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let start = Instant::now();
        assert_eq!(join_or_detach(t, Instant::now() + GRACE, "test thread"), None);
        let took = start.elapsed();
        assert!(took < GRACE + Duration::from_millis(15), "waited {took:?}");
        assert!(!done.load(std::sync::atomic::Ordering::SeqCst));
        // It finishes on its own.
        std::thread::sleep(Duration::from_millis(800));
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
