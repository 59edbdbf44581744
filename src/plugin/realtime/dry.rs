//! The dry signal and the fades: the delay line that plays the input `latency` frames late
//! (the fallback while results are missing, and the complement of single-target models), how
//! long the input has been silent, and the gains that crossfade between stems and dry signal
//! and ramp each stem in and out of the main mix. Part of [`super::AudioSide`]; audio thread
//! only, allocated once in `activate`.

use crate::plugin::params::MAX_STEMS;

/// Input at or below this level counts as silence (about -120 dBFS).
const QUIET_LEVEL: f32 = 1e-6;

/// The input, delayed by the plugin's latency.
pub struct DryLine {
    /// 2 channels, `latency + max_block + 1` frames each, written at `pos` (frames since
    /// activation, independent of stream restarts).
    ring: [Vec<f32>; 2],
    pos: u64,
    latency: u64,
    /// Input frames since the last non-silent one (saturating).
    quiet_run: u64,
    /// The same for the delayed signal as played ([`DryLine::play`]).
    played_quiet_run: u64,
}

impl DryLine {
    /// Main thread, in `activate`.
    pub fn new(latency: usize, max_block: usize) -> Self {
        let len = latency + max_block + 1;
        DryLine { ring: [vec![0.0; len], vec![0.0; len]], pos: 0, latency: latency as u64, quiet_run: u64::MAX, played_quiet_run: u64::MAX }
    }

    /// Forget the history (`reset`): silence, as after activation.
    pub fn clear(&mut self) {
        for d in &mut self.ring {
            d.fill(0.0);
        }
        self.quiet_run = u64::MAX;
        self.played_quiet_run = u64::MAX;
    }

    /// Append `len` frames of `input` from `off` (a mono input feeds both channels).
    pub fn write(&mut self, input: &[&mut [f32]], off: usize, len: usize) {
        let ring = self.ring[0].len();
        let w = (self.pos % ring as u64) as usize;
        let mut last_sound: Option<usize> = None;
        for ch in 0..2 {
            let src = &input[ch.min(input.len() - 1)][off..off + len];
            let first = len.min(ring - w);
            self.ring[ch][w..w + first].copy_from_slice(&src[..first]);
            self.ring[ch][..len - first].copy_from_slice(&src[first..]);
            if let Some(i) = src.iter().rposition(|v| v.abs() > QUIET_LEVEL) {
                last_sound = Some(last_sound.map_or(i, |l| l.max(i)));
            }
        }
        self.quiet_run = match last_sound {
            Some(i) => (len - 1 - i) as u64,
            None => self.quiet_run.saturating_add(len as u64),
        };
    }

    /// The frames written last are played from now on.
    pub fn advance(&mut self, len: usize) {
        self.pos += len as u64;
    }

    /// The input `latency` frames before frame `t` of the current sub-block, as it is played
    /// (frames in order: it counts how long the played signal has been silent).
    pub fn play(&mut self, t: usize) -> [f32; 2] {
        let ring = self.ring[0].len() as u64;
        let at = self.pos + t as u64;
        let d = ((at + ring - self.latency % ring) % ring) as usize;
        let v = [self.ring[0][d], self.ring[1][d]];
        self.played_quiet_run =
            if v[0].abs() > QUIET_LEVEL || v[1].abs() > QUIET_LEVEL { 0 } else { self.played_quiet_run.saturating_add(1) };
        v
    }

    /// The delayed signal played up to now has been silent for at least `frames` frames.
    pub fn played_silence(&self, frames: usize) -> bool {
        self.played_quiet_run >= frames as u64
    }

    /// The input has been silent for at least the latency.
    pub fn quiet(&self) -> bool {
        self.quiet_run >= self.latency
    }
}

/// The gains of the crossfades: wet (stems) against dry on the main output and on the stem
/// outputs, and each output's weight in the main mix (mute, solo, preset). All ramps are
/// linear over [`FADE_SECONDS`](super::FADE_SECONDS).
pub struct Fades {
    /// Wet/dry mix of the main output and gain of the stem outputs, 0..=1.
    wet: f32,
    /// Gain change per frame.
    step: f32,
    /// Smoothed main-mix weight of each output, 0..=1.
    weights: [f32; MAX_STEMS],
}

impl Fades {
    pub fn new(host_rate: u32) -> Self {
        Fades { wet: 0.0, step: 1.0 / (super::FADE_SECONDS * host_rate as f32).max(1.0), weights: [0.0; MAX_STEMS] }
    }

    /// Frames of a fade-out at the end of a block of `block` frames.
    pub fn out_len(&self, block: usize) -> usize {
        ((1.0 / self.step) as usize).min(block)
    }

    /// No stems to play: dry at once (the fade-out was done ahead, see [`Fades::fade_out`]).
    pub fn cut(&mut self) {
        self.wet = 0.0;
    }

    /// The stems take over at full level at once (nothing to crossfade from: the dry signal
    /// played before was silence).
    pub fn resume(&mut self) {
        self.wet = 1.0;
    }

    /// The next frame's wet gain while stems play: fading in up to 1.
    pub fn fade_in(&mut self) -> f32 {
        if self.wet < 1.0 {
            self.wet = (self.wet + self.step).min(1.0);
        }
        self.wet
    }

    /// The next frame's wet gain in a fade-out of `len` frames with `left` frames after it:
    /// reaches 0 on the last one.
    pub fn fade_out(&mut self, left: usize, len: usize) -> f32 {
        self.wet = self.wet.min(left as f32 / len as f32);
        self.wet
    }

    pub fn wet(&self) -> f32 {
        self.wet
    }

    /// The next frame's main-mix weight of output `s`, ramping towards `kept`.
    pub fn weight(&mut self, s: usize, kept: bool) -> f32 {
        let target = kept as u8 as f32;
        let w = &mut self.weights[s];
        *w = if *w < target { (*w + self.step).min(target) } else { (*w - self.step).max(target) };
        *w
    }
}
