//! How fast the host delivers audio, and how long the audio thread may therefore wait.
//!
//! Owned by the audio thread ([`super::realtime::AudioSide`]); pure arithmetic on timestamps the
//! caller passes in, so it is tested with synthetic clocks.
//!
//! Hosts render exports faster than real time, and many never say so (Ardour's export and track
//! bounce keep VST3's `kRealtime`; so do plenty of others). The plugin must then wait for every
//! result, or the export holds the dry fallback. In real time it must never wait. Two measures
//! decide, updated at the start of every `process` call:
//!
//! * **lead**: how far the host is ahead of the wall clock: seconds of audio delivered minus
//!   seconds elapsed, never below zero, our own waiting included. A host that plays in real time
//!   calls once per buffer, so its lead stays at about one buffer; a host that pre-renders
//!   (REAPER's anticipative processing, a render) is ahead by what it has pre-rendered. Waiting
//!   up to `lead - margin` can never make a live host miss its deadline: the audio it needs has
//!   that much slack. `margin` = two host buffers + 10 ms ([`Pace::wait_budget`]).
//! * **render**: the host's own speed, with our waiting *excluded*: the same integral over the
//!   host's time only. When the host is more than [`RENDER_ENTER_SECONDS`] (or four of its
//!   largest buffers, whichever is longer) ahead on its own, it is rendering: the audio thread
//!   then waits for every result, however long the model takes (bounded by the watchdog).
//!   REAPER's render-ahead (200 ms by default) and large buffers stay below that (a render-ahead
//!   set longer counts as a render at playback start, which costs nothing while the model keeps
//!   up: the waits are short and the host is soon paced by its device again). Back to the
//!   real-time rule as soon as the host delivers at most [`RENDER_EXIT_SPEED`] times real time
//!   over two consecutive windows of [`RENDER_EXIT_WINDOW_SECONDS`] of its own time (a host
//!   that plays again), or when it stops calling for a second.
//!
//! At the start of a render the lead-bounded waits cover the first result; the render flag
//! takes over once the host is clearly ahead. With the full-size models the plugin's latency
//! (several seconds) is longer than the detection, so not even the pre-roll of an export is
//! affected.

use std::time::Duration;

/// Seconds of audio the host must be ahead on its own before it counts as rendering: above
/// REAPER's default render-ahead (200 ms).
pub const RENDER_ENTER_SECONDS: f64 = 0.3;
/// A window of the host's own time in which it delivers at most this speed counts as real time.
pub const RENDER_EXIT_SPEED: f64 = 1.25;
/// The window length for [`RENDER_EXIT_SPEED`] (at least four host buffers).
pub const RENDER_EXIT_WINDOW_SECONDS: f64 = 0.5;
/// Slack kept on top of two buffers when waiting on the lead.
const MARGIN_SECONDS: f64 = 0.010;
/// The lead is capped here (a longer history says nothing new).
const LEAD_CAP_SECONDS: f64 = 30.0;
/// A pause in the calls this long ends a render (the host stopped).
const IDLE_SECONDS: f64 = 1.0;

/// See the module docs. Times are seconds on any monotonic clock.
#[derive(Debug, Clone)]
pub struct Pace {
    rate: f64,
    buffer: f64,
    /// Ahead of the wall clock, our waits included (what a live host's slack really is).
    lead: f64,
    /// Ahead of the host's own time (our waits excluded): the render detector.
    host_lead: f64,
    /// Start of the previous call, and how long we waited inside it.
    last: Option<f64>,
    waited: f64,
    render: bool,
    /// The exit window: audio delivered and host time spent in it, and windows in a row that
    /// looked like real time.
    win_audio: f64,
    win_host: f64,
    calm_windows: u32,
}

impl Pace {
    /// For a host at `rate` Hz whose buffers hold at most `max_block` frames.
    pub fn new(rate: u32, max_block: usize) -> Self {
        Pace {
            rate: rate.max(1) as f64,
            buffer: max_block.max(1) as f64 / rate.max(1) as f64,
            lead: 0.0,
            host_lead: 0.0,
            last: None,
            waited: 0.0,
            render: false,
            win_audio: 0.0,
            win_host: 0.0,
            calm_windows: 0,
        }
    }

    /// Start of a `process` call at time `now` delivering `frames` frames. Returns whether the
    /// host is rendering.
    pub fn on_call(&mut self, now: f64, frames: usize) -> bool {
        let audio = frames as f64 / self.rate;
        if let Some(last) = self.last {
            let elapsed = (now - last).max(0.0);
            let host = (elapsed - self.waited).max(0.0);
            self.lead = (self.lead - elapsed).max(0.0);
            self.host_lead = (self.host_lead - host).max(0.0);
            if host >= IDLE_SECONDS {
                self.render = false;
                self.host_lead = 0.0;
            }
            self.win_audio += audio;
            self.win_host += host;
            let window = RENDER_EXIT_WINDOW_SECONDS.max(4.0 * self.buffer);
            if self.win_host >= window {
                let calm = self.win_audio <= RENDER_EXIT_SPEED * self.win_host;
                self.calm_windows = if calm { self.calm_windows + 1 } else { 0 };
                if self.render && self.calm_windows >= 2 {
                    self.render = false;
                    self.host_lead = 0.0;
                }
                self.win_audio = 0.0;
                self.win_host = 0.0;
            }
        }
        self.last = Some(now);
        self.waited = 0.0;
        self.lead = (self.lead + audio).min(LEAD_CAP_SECONDS);
        self.host_lead = (self.host_lead + audio).min(LEAD_CAP_SECONDS);
        if !self.render && self.host_lead >= RENDER_ENTER_SECONDS.max(4.0 * self.buffer) {
            self.render = true;
            self.calm_windows = 0;
        }
        self.render
    }

    /// We waited `d` inside the current call (it counts against the lead, not the host).
    pub fn add_wait(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        self.waited += s;
        self.lead = (self.lead - s).max(0.0);
    }

    /// How long the audio thread may wait now without risking a live host's deadline:
    /// `lead - (2 buffers + 10 ms)`, or zero.
    pub fn wait_budget(&self) -> Duration {
        Duration::from_secs_f64((self.lead - 2.0 * self.buffer - MARGIN_SECONDS).max(0.0))
    }

    pub fn rendering(&self) -> bool {
        self.render
    }

    /// Seconds of audio the host is ahead of the wall clock.
    pub fn lead_seconds(&self) -> f64 {
        self.lead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls of `block` frames at `rate`, the host spending `host_s` between calls and the
    /// plugin `plugin_s` inside each; returns (rendering after each call, budget after each).
    fn drive(p: &mut Pace, calls: usize, block: usize, mut host_s: impl FnMut(usize) -> f64, plugin_s: f64) -> Vec<(bool, Duration)> {
        let mut t = 0.0;
        let mut out = vec![];
        for i in 0..calls {
            let r = p.on_call(t, block);
            out.push((r, p.wait_budget()));
            p.add_wait(Duration::from_secs_f64(plugin_s));
            t += plugin_s + host_s(i);
        }
        out
    }

    #[test]
    fn a_real_time_host_with_jitter_is_never_a_render_and_leaves_no_budget() {
        let (rate, block) = (48000u32, 512usize);
        let period = block as f64 / rate as f64;
        let mut p = Pace::new(rate, block);
        // Every call late or early by up to 3 ms (alternating), for a minute.
        let r = drive(&mut p, 6000, block, |i| if i % 2 == 0 { period + 0.003 } else { period - 0.003 }, 0.0);
        assert!(r.iter().all(|(render, budget)| !render && budget.is_zero()), "{:?}", r.iter().find(|x| x.0 || !x.1.is_zero()));
    }

    #[test]
    fn huge_buffers_and_bursts_of_sub_blocks_are_real_time() {
        // 8192-frame buffers split into 16 sub-blocks delivered back to back, once per period.
        let (rate, max_block) = (44100u32, 8192usize);
        let period = max_block as f64 / rate as f64;
        let mut p = Pace::new(rate, max_block);
        let r = drive(&mut p, 16 * 600, 512, |i| if i % 16 == 15 { period } else { 0.0 }, 0.0);
        assert!(r.iter().all(|(render, _)| !render));
        // The budget never exceeds what the host is really ahead by (at most one buffer here).
        assert!(r.iter().all(|(_, b)| b.as_secs_f64() <= period));
    }

    #[test]
    fn reaper_style_render_ahead_is_not_a_render_but_may_be_waited_on() {
        // 200 ms rendered as fast as possible at playback start, then paced by the device.
        let (rate, block) = (48000u32, 256usize);
        let period = block as f64 / rate as f64;
        let ahead_calls = (0.2 / period) as usize;
        let mut p = Pace::new(rate, block);
        let r = drive(&mut p, 20000, block, |i| if i < ahead_calls { 0.0001 } else { period }, 0.0);
        assert!(r.iter().all(|(render, _)| !render));
        let max_budget = r.iter().map(|x| x.1).max().unwrap();
        assert!(max_budget > Duration::from_millis(100) && max_budget < Duration::from_millis(200), "{max_budget:?}");
    }

    #[test]
    fn a_fast_render_is_detected_within_a_third_of_a_second_of_audio_and_stays_one_while_we_wait() {
        let (rate, block) = (44100u32, 1024usize);
        let mut p = Pace::new(rate, block);
        // The host needs 0.1 ms per block; after detection the plugin waits 50 ms per block
        // (a model far slower than real time): still a render.
        let mut t = 0.0;
        let mut first = None;
        for i in 0..2000 {
            let render = p.on_call(t, block);
            if render && first.is_none() {
                first = Some(i);
            }
            let wait = if render { 0.05 } else { 0.0 };
            p.add_wait(Duration::from_secs_f64(wait));
            t += wait + 0.0001;
            if first.is_some() {
                assert!(render, "left the render at call {i}");
            }
        }
        let audio_at_detection = first.unwrap() as f64 * block as f64 / rate as f64;
        assert!(audio_at_detection <= RENDER_ENTER_SECONDS + 0.05, "{audio_at_detection} s");
    }

    #[test]
    fn the_render_ends_when_the_host_plays_in_real_time_again_or_stops() {
        let (rate, block) = (48000u32, 512usize);
        let period = block as f64 / rate as f64;
        let mut p = Pace::new(rate, block);
        let r = drive(&mut p, 500, block, |_| 0.0002, 0.0);
        assert!(r.last().unwrap().0);
        // Playing again: out of render mode within two windows (plus one) of real time.
        let r = drive(&mut p, 500, block, |_| period, 0.0);
        let exit = r.iter().position(|x| !x.0).expect("never left the render");
        assert!(exit as f64 * period <= 3.0 * RENDER_EXIT_WINDOW_SECONDS + 0.1, "{exit}");
        // A render, then a pause of two seconds: the next call is real time.
        let mut p = Pace::new(rate, block);
        let _ = drive(&mut p, 500, block, |_| 0.0002, 0.0);
        assert!(p.rendering());
        let t = 10.0;
        assert!(!p.on_call(t, block));
    }

    #[test]
    fn waiting_spends_the_lead_so_a_live_host_keeps_its_slack() {
        let (rate, block) = (48000u32, 480usize);
        let mut p = Pace::new(rate, block);
        // 300 ms delivered at once (a pre-render): budget = 300 ms - 2 buffers - 10 ms.
        for i in 0..30 {
            p.on_call(i as f64 * 1e-5, block);
        }
        let b = p.wait_budget().as_secs_f64();
        assert!((b - (0.3 - 0.02 - 0.01)).abs() < 1e-3, "{b}");
        p.add_wait(Duration::from_millis(200));
        assert!((p.wait_budget().as_secs_f64() - (b - 0.2)).abs() < 1e-3);
    }
}
