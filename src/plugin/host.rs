//! What the plugin knows about the host it runs in, and the one host quirk it acts on.
//!
//! The host's name comes from VST3's `IHostApplication::getName` (captured by the VST3 export,
//! [`super::vst3_guard::host_name`]), else from the name of the running program (nice-plug does
//! not pass a CLAP host's name on). Main thread only (read in `activate`).
//!
//! # Where the transport position points
//! Hosts report the project position of the buffer they hand the plugin. Most mean the position
//! of the audio in the buffer (the plugin's input). Ardour (and Harrison Mixbus, built on it)
//! reports the position at which the plugin's *output* will be heard: since Ardour 6 its
//! `Route::process_output_buffers` adds each processor's own latency before running it and
//! hands it `start - latency`. Measured with Ardour 7.3 here: the input of a plugin that reports
//! latency `L` is the project audio at the reported position plus `L`. The plugin anchors its
//! chunk grid on the input's position ([`position_offset`]), so its output at a project position
//! equals the whole-song render there in both kinds of host.

/// The host's name, when known.
pub fn name() -> Option<String> {
    if let Some(n) = super::vst3_guard::host_name() {
        return Some(n.to_string());
    }
    std::env::current_exe().ok().and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
}

/// Whether a host of this name reports the position of the plugin's output (see the module docs).
pub fn reports_output_position(name: &str) -> bool {
    let n = name.to_lowercase();
    n.contains("ardour") || n.contains("mixbus") || n.contains("luasession")
}

/// What to add to the host's transport position to get the position of the plugin's input,
/// for a plugin reporting `latency` samples.
pub fn position_offset(latency: usize) -> i64 {
    match name() {
        Some(n) if reports_output_position(&n) => latency as i64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ardour_and_mixbus_report_output_positions_others_input_positions() {
        for n in ["Ardour", "ardour-7.3.0", "luasession", "Harrison Mixbus32C", "Mixbus"] {
            assert!(reports_output_position(n), "{n}");
        }
        for n in ["REAPER", "Bitwig Studio", "Ableton Live 12 Suite", "Cubase", "python3.11", "plugin_clap-3f2a"] {
            assert!(!reports_output_position(n), "{n}");
        }
    }
}
