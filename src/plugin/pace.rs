//! How the host delivers audio, and therefore how long the audio thread may wait for a result.
//!
//! Owned by the audio thread ([`super::realtime::AudioSide`]); pure arithmetic on timestamps
//! the caller passes in, so it is tested with synthetic clocks.
//!
//! Two rules, and one decision between them:
//!
//! * **Live** (the default): waiting for a late result is paid from a budget that grows by a
//!   quarter of the audio each call delivers ([`WAIT_FRACTION`]) and holds at most
//!   [`live_wait_bound`]: a quarter of the host's largest buffer, and never more than
//!   [`WAIT_CAP_SECONDS`] (2 ms). So one call never waits longer than that, and all calls
//!   together never wait more than a quarter of the audio they handle, whatever the host does.
//!   That absorbs a result that arrives a moment late (the inference thread's scheduling) and
//!   lets a host that renders faster than real time without saying so keep the first results
//!   until the render is proven. A result later than that is played as a crossfade to the
//!   delayed dry signal ([`super::realtime`]).
//! * **Render**: every result is waited for (bounded only by the render watchdog). Declared by
//!   the host (`ProcessMode::Offline`: CLAP's render extension, VST3 `kOffline`; clap-wrapper's
//!   Audio Unit ignores the offline-render property, so Logic's bounces are proven), or proven
//!   by [`Pace`].
//!
//! **The proof** uses evidence no live host produces. A live host is paced by its audio device:
//! whatever it does (REAPER's anticipative processing renders up to its "render-ahead" setting,
//! 200 ms by default, ahead of the device in bursts; device buffers split into several calls;
//! block sizes changing every call), the audio it has delivered never exceeds the wall time
//! elapsed plus its render-ahead plus a device buffer. So the host's **lead** is measured
//! against the wall clock *including* the plugin's own waits (waiting can only shrink it):
//! `audio delivered - time elapsed`, never below zero. Only a host ahead by more than
//! [`RENDER_ENTER_SECONDS`] (2 s, ten times REAPER's default render-ahead and twice the largest
//! value in our tests) renders: a freewheeling export reaches that after about 2 s of audio,
//! with the full-size models before their first result is due (their latency is several
//! seconds). A host that declares a live mode (`ProcessMode::Buffered`, VST3's `kPrefetch`:
//! Cubase's ASIO-Guard) is never taken for a render.
//!
//! **Leaving a proven render**: once rendering, the plugin waits for every result, so a slow
//! model paces the host and the lead cannot tell anything any more. The render ends when the
//! host pauses for [`IDLE_SECONDS`] (it stopped), when its transport goes from playing to
//! stopped, when the stream is reset (the caller makes a new [`Pace`]), or when the host, over
//! two windows of [`RENDER_EXIT_WINDOW_SECONDS`] of its *own* time (the plugin's waits
//! excluded), delivers at most [`RENDER_EXIT_SPEED`] times real time: it is paced by a device
//! again.

use std::time::Duration;

/// Seconds a host must be ahead of the wall clock (the plugin's waits counted as elapsed time)
/// before it counts as rendering. See the module docs.
pub const RENDER_ENTER_SECONDS: f64 = 2.0;
/// A window of the host's own time in which it delivers at most this speed counts as real time.
pub const RENDER_EXIT_SPEED: f64 = 1.25;
/// The window length for [`RENDER_EXIT_SPEED`] (at least four host buffers).
pub const RENDER_EXIT_WINDOW_SECONDS: f64 = 0.5;
/// Outside a render, waiting is paid from a budget that grows by this share of the audio
/// delivered...
pub const WAIT_FRACTION: f64 = 0.25;
/// ...and holds at most [`WAIT_FRACTION`] of the host's largest buffer, never more than this.
pub const WAIT_CAP_SECONDS: f64 = 0.002;
/// The lead is capped here (a longer history says nothing new).
const LEAD_CAP_SECONDS: f64 = 30.0;
/// The wall clock counts this much faster than the host's audio (100 ppm): a device whose
/// clock runs a little fast never builds up a lead over hours of live playback.
const CLOCK_TOLERANCE: f64 = 1e-4;
/// A pause in the calls this long ends a render (the host stopped).
pub const IDLE_SECONDS: f64 = 1.0;

/// What the host declared for this activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// Real time, possibly an undeclared render (Ardour's export says real time).
    Realtime,
    /// A live mode that processes ahead of the device (VST3 `kPrefetch`): never a render.
    Buffered,
    /// An offline render: every result is waited for.
    Offline,
}

/// See the module docs. Times are seconds on any monotonic clock.
#[derive(Debug, Clone)]
pub struct Pace {
    declared: Declared,
    rate: f64,
    buffer: f64,
    /// Ahead of the wall clock, the plugin's waits counted as elapsed time.
    lead: f64,
    /// Start of the previous call, and how long the plugin waited inside it.
    last: Option<f64>,
    waited: f64,
    /// The live rule's wait budget (seconds) and its ceiling.
    budget: f64,
    budget_cap: f64,
    render: bool,
    /// The transport was seen playing during this render.
    render_saw_playing: bool,
    /// The exit window: audio delivered and host time spent in it, and windows in a row that
    /// looked like real time.
    win_audio: f64,
    win_host: f64,
    calm_windows: u32,
}

impl Pace {
    /// For a host at `rate` Hz whose buffers hold at most `max_block` frames.
    pub fn new(rate: u32, max_block: usize, declared: Declared) -> Self {
        Pace {
            declared,
            rate: rate.max(1) as f64,
            buffer: max_block.max(1) as f64 / rate.max(1) as f64,
            lead: 0.0,
            last: None,
            waited: 0.0,
            budget: 0.0,
            budget_cap: (WAIT_FRACTION * max_block.max(1) as f64 / rate.max(1) as f64).min(WAIT_CAP_SECONDS),
            render: declared == Declared::Offline,
            render_saw_playing: false,
            win_audio: 0.0,
            win_host: 0.0,
            calm_windows: 0,
        }
    }

    /// Start of a `process` call at time `now` delivering `frames` frames, with the host's
    /// transport playing or not (`false` where the host gives no transport). Returns whether
    /// the host is rendering.
    pub fn on_call(&mut self, now: f64, frames: usize, playing: bool) -> bool {
        let audio = frames as f64 / self.rate;
        self.budget = (self.budget + WAIT_FRACTION * audio).min(self.budget_cap);
        if self.declared != Declared::Realtime {
            self.last = Some(now);
            self.waited = 0.0;
            return self.render;
        }
        if let Some(last) = self.last {
            let elapsed = (now - last).max(0.0);
            // The host's own time: what it spent outside the plugin's waits.
            let host = (elapsed - self.waited).max(0.0);
            self.lead = (self.lead - elapsed * (1.0 + CLOCK_TOLERANCE)).max(0.0);
            if self.render {
                self.render_saw_playing |= playing;
                let stopped = self.render_saw_playing && !playing;
                if host >= IDLE_SECONDS || stopped {
                    self.leave_render();
                } else {
                    self.win_audio += audio;
                    self.win_host += host;
                    let window = RENDER_EXIT_WINDOW_SECONDS.max(4.0 * self.buffer);
                    if self.win_host >= window {
                        let calm = self.win_audio <= RENDER_EXIT_SPEED * self.win_host;
                        self.calm_windows = if calm { self.calm_windows + 1 } else { 0 };
                        self.win_audio = 0.0;
                        self.win_host = 0.0;
                        if self.calm_windows >= 2 {
                            self.leave_render();
                        }
                    }
                }
            }
        }
        self.last = Some(now);
        self.waited = 0.0;
        self.lead = (self.lead + audio).min(LEAD_CAP_SECONDS);
        if !self.render && self.lead >= RENDER_ENTER_SECONDS {
            self.render = true;
            self.render_saw_playing = playing;
            self.calm_windows = 0;
            self.win_audio = 0.0;
            self.win_host = 0.0;
        }
        self.render
    }

    fn leave_render(&mut self) {
        self.render = false;
        // The audio delivered during the render says nothing about the device.
        self.lead = 0.0;
        self.calm_windows = 0;
        self.win_audio = 0.0;
        self.win_host = 0.0;
    }

    /// The plugin waited `d` inside the current call (paid from the live budget).
    pub fn add_wait(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        self.waited += s;
        self.budget = (self.budget - s).max(0.0);
    }

    /// How long the current call may still wait for a result under the live rule (rendering:
    /// see [`Pace::rendering`]).
    pub fn wait_budget(&self) -> Duration {
        Duration::from_secs_f64(self.budget)
    }

    /// Whether every result is waited for (declared or proven render).
    pub fn rendering(&self) -> bool {
        self.render
    }

    /// Seconds of audio the host is ahead of the wall clock.
    pub fn lead_seconds(&self) -> f64 {
        self.lead
    }
}

/// The longest one `process` call waits for results outside a render, for a host at `rate`
/// Hz whose buffers hold at most `max_block` frames: a quarter of that buffer, at most 2 ms.
pub fn live_wait_bound(rate: u32, max_block: usize) -> Duration {
    Duration::from_secs_f64((WAIT_FRACTION * max_block as f64 / rate.max(1) as f64).min(WAIT_CAP_SECONDS))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls of `block(i)` frames at `rate`, the host spending `host_s(i)` between calls and
    /// the plugin `plugin_s(rendering)` inside each; returns whether it rendered after each call.
    fn drive(
        p: &mut Pace,
        calls: usize,
        mut block: impl FnMut(usize) -> usize,
        mut host_s: impl FnMut(usize) -> f64,
        plugin_s: impl Fn(bool) -> f64,
        playing: bool,
    ) -> Vec<bool> {
        let mut t = 0.0;
        let mut out = vec![];
        for i in 0..calls {
            let r = p.on_call(t, block(i), playing);
            out.push(r);
            let w = plugin_s(r);
            p.add_wait(Duration::from_secs_f64(w));
            t += w + host_s(i);
        }
        out
    }

    /// A host paced by a device of `device` frames that keeps `ahead` seconds rendered ahead
    /// and calls with `call(i)` frames; the plugin waits `plugin_s(rendering)` in every call
    /// (a slow model: whatever the rule allows). Returns (ever rendered, device underruns).
    fn device_host(ahead: f64, device: usize, mut call: impl FnMut(usize) -> usize, plugin_s: impl Fn(&Pace) -> f64, secs: f64) -> (bool, u32) {
        let rate = 48000u32;
        let max_block = 4096;
        let mut p = Pace::new(rate, max_block, Declared::Realtime);
        let period = device as f64 / rate as f64;
        let (mut t, mut next_tick) = (0.0, period);
        let (mut queued, mut rendered_any, mut underruns) = (0.0f64, false, 0u32);
        // The device plays every period due by `t`; one with too little audio is an underrun.
        let play_due = |t: f64, next_tick: &mut f64, queued: &mut f64, underruns: &mut u32| {
            while *next_tick <= t {
                if *queued + 1e-9 < period {
                    *underruns += 1;
                    *queued = 0.0;
                } else {
                    *queued -= period;
                }
                *next_tick += period;
            }
        };
        let mut i = 0;
        while t < secs {
            play_due(t, &mut next_tick, &mut queued, &mut underruns);
            if queued < ahead + period {
                let n = call(i);
                i += 1;
                rendered_any |= p.on_call(t, n, true);
                let w = plugin_s(&p);
                p.add_wait(Duration::from_secs_f64(w));
                // The host's own work: 50 us per call.
                t += w + 5e-5;
                // Device ticks that fell inside the call saw the queue without this audio.
                play_due(t, &mut next_tick, &mut queued, &mut underruns);
                queued += n as f64 / rate as f64;
            } else {
                t = next_tick;
            }
        }
        (rendered_any, underruns)
    }

    /// Waits everything the rule allows (a model far slower than real time).
    fn greedy(p: &Pace) -> f64 {
        if p.rendering() { 0.5 } else { p.wait_budget().as_secs_f64() }
    }

    #[test]
    fn no_live_host_pattern_is_ever_a_render_even_with_a_model_that_is_always_late() {
        let cases: [(&str, f64, usize, Box<dyn FnMut(usize) -> usize>); 5] = [
            ("plain callback", 0.0, 512, Box::new(|_| 512)),
            ("render-ahead 200 ms", 0.2, 512, Box::new(|_| 512)),
            ("render-ahead 1000 ms", 1.0, 512, Box::new(|_| 512)),
            ("2048-frame device, 512-frame calls", 0.0, 2048, Box::new(|_| 512)),
            ("block size changing every call", 0.2, 1024, Box::new(|i| 1 + (i * 7919) % 1024)),
        ];
        for (what, ahead, device, call) in cases {
            let (rendered, underruns) = device_host(ahead, device, call, greedy, 60.0);
            assert!(!rendered, "{what}: taken for a render");
            assert_eq!(underruns, 0, "{what}: the device ran dry");
        }
    }

    #[test]
    fn the_live_wait_budget_grows_by_a_quarter_of_the_audio_up_to_a_quarter_buffer_or_2_ms() {
        let mut p = Pace::new(48000, 4096, Declared::Realtime);
        p.on_call(0.0, 64, false);
        assert!((p.wait_budget().as_secs_f64() - 0.25 * 64.0 / 48000.0).abs() < 1e-9);
        p.on_call(0.01, 4096, false);
        assert_eq!(p.wait_budget(), Duration::from_millis(2));
        p.add_wait(Duration::from_micros(1500));
        assert!((p.wait_budget().as_secs_f64() - 0.0005).abs() < 1e-9);
        p.add_wait(Duration::from_millis(1));
        assert!(p.wait_budget().is_zero());
        assert_eq!(live_wait_bound(48000, 4096), Duration::from_millis(2));
        // A host of 64-frame buffers: never more than a quarter of one, however long it plays.
        let mut p = Pace::new(48000, 64, Declared::Realtime);
        for i in 0..1000 {
            p.on_call(i as f64 * 64.0 / 48000.0, 64, true);
        }
        assert!((p.wait_budget().as_secs_f64() - 0.25 * 64.0 / 48000.0).abs() < 1e-9);
        assert_eq!(p.wait_budget(), live_wait_bound(48000, 64));
    }

    #[test]
    fn a_freewheeling_render_is_proven_after_about_2_s_of_audio_and_stays_one_with_a_slow_model() {
        let (rate, block) = (44100u32, 1024usize);
        let mut p = Pace::new(rate, block, Declared::Realtime);
        // The host needs 0.1 ms per block; the plugin waits what the live rule allows, then
        // 50 ms per block once rendering (a model far slower than real time).
        let r = drive(&mut p, 4000, |_| block, |_| 0.0001, |render| if render { 0.05 } else { 0.0007 }, true);
        let first = r.iter().position(|x| *x).expect("never recognised");
        let audio_at_detection = first as f64 * block as f64 / rate as f64;
        assert!(audio_at_detection <= RENDER_ENTER_SECONDS * 1.6, "{audio_at_detection} s");
        assert!(r[first..].iter().all(|x| *x), "left the render with a slow model");
    }

    #[test]
    fn the_render_ends_when_the_host_plays_in_real_time_again_stops_its_transport_or_pauses() {
        let (rate, block) = (48000u32, 512usize);
        let period = block as f64 / rate as f64;
        let fast = |p: &mut Pace| drive(p, 1000, |_| block, |_| 0.0002, |_| 0.0, true);
        let mut p = Pace::new(rate, block, Declared::Realtime);
        assert!(*fast(&mut p).last().unwrap());
        // Playing again (a fast model: no waits): out within two windows (plus one).
        let r = drive(&mut p, 500, |_| block, |_| period, |_| 0.0, true);
        let exit = r.iter().position(|x| !x).expect("never left the render");
        assert!(exit as f64 * period <= 3.0 * RENDER_EXIT_WINDOW_SECONDS + 0.1, "{exit}");
        // The transport stops (a host that keeps calling while stopped, with a slow model).
        let mut p = Pace::new(rate, block, Declared::Realtime);
        fast(&mut p);
        let r = drive(&mut p, 3, |_| block, |_| 0.0, |_| 0.3, false);
        assert!(!r[0], "still rendering after the transport stopped");
        // A pause of two seconds.
        let mut p = Pace::new(rate, block, Declared::Realtime);
        fast(&mut p);
        assert!(!p.on_call(100.0, block, true));
    }

    #[test]
    fn declared_modes_decide_alone() {
        let mut off = Pace::new(48000, 512, Declared::Offline);
        let mut buffered = Pace::new(48000, 512, Declared::Buffered);
        for i in 0..10000 {
            let t = i as f64 * 1e-5;
            assert!(off.on_call(t, 512, false));
            assert!(!buffered.on_call(t, 512, true));
        }
    }
}
