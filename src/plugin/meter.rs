//! The editor's level meters, on the GUI thread: peak level with decay, and a peak hold, in dB,
//! from the peaks the audio thread publishes ([`super::shared::Meters`]). Time is passed in
//! (seconds on any monotonic clock), so the ballistics are tested without waiting.

/// Bottom of the meter scale: quieter reads as silence.
pub const FLOOR_DB: f32 = -60.0;
/// Top of the scale (a little headroom above full scale shows overs).
pub const TOP_DB: f32 = 6.0;
/// How fast the level falls after a peak.
pub const DECAY_DB_PER_S: f32 = 24.0;
/// How long the hold mark stays at a peak before it falls (at the decay rate).
pub const HOLD_S: f64 = 1.5;

/// A sample value in dB full scale, [`FLOOR_DB`] for silence.
pub fn to_db(peak: f32) -> f32 {
    if peak > 0.0 { (20.0 * peak.log10()).max(FLOOR_DB) } else { FLOOR_DB }
}

/// One output's meter. Owned by the editor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ballistics {
    /// The level shown, in dB.
    pub level_db: f32,
    /// The hold mark, in dB.
    pub hold_db: f32,
    /// When the hold mark was last set.
    hold_at: f64,
    /// The last update.
    last: f64,
    /// A sample above full scale within the last [`HOLD_S`], and when the last one came.
    pub over: bool,
    over_at: f64,
}

impl Default for Ballistics {
    fn default() -> Self {
        Ballistics { level_db: FLOOR_DB, hold_db: FLOOR_DB, hold_at: f64::NEG_INFINITY, last: f64::NEG_INFINITY, over: false, over_at: f64::NEG_INFINITY }
    }
}

impl Ballistics {
    /// At time `now`, the audio thread reports `peak` (absolute sample value) since the last
    /// update.
    pub fn update(&mut self, peak: f32, now: f64) {
        let dt = if self.last.is_finite() { (now - self.last).max(0.0) as f32 } else { 0.0 };
        self.last = now;
        let db = to_db(peak);
        let fall = DECAY_DB_PER_S * dt;
        self.level_db = db.max(self.level_db - fall).max(FLOOR_DB);
        if db >= self.hold_db {
            self.hold_db = db;
            self.hold_at = now;
        } else if now - self.hold_at > HOLD_S {
            // After the hold time the mark falls, never below the level.
            let held_for = (now - self.hold_at - HOLD_S) as f32;
            self.hold_db = (self.hold_db - fall.min(DECAY_DB_PER_S * held_for)).max(self.level_db);
        }
        if peak > 1.0 {
            self.over_at = now;
        }
        self.over = now - self.over_at <= HOLD_S;
    }

    /// Whether the meter still moves without new input (the editor keeps repainting).
    pub fn moving(&self) -> bool {
        self.level_db > FLOOR_DB || self.hold_db > FLOOR_DB
    }

    /// Position of `db` on the meter, 0 (floor) to 1 (top).
    pub fn fraction(db: f32) -> f32 {
        ((db - FLOOR_DB) / (TOP_DB - FLOOR_DB)).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-3
    }

    #[test]
    fn a_peak_shows_at_once_in_db() {
        let mut m = Ballistics::default();
        m.update(0.5, 10.0);
        // 20 log10(0.5) = -6.0206 dB
        assert!(close(m.level_db, -6.0206), "{}", m.level_db);
        assert!(close(m.hold_db, -6.0206));
        assert!(!m.over);
        m.update(1.0, 10.01);
        assert!(close(m.level_db, 0.0) && close(m.hold_db, 0.0));
    }

    #[test]
    fn the_level_decays_at_24_db_per_second_and_the_hold_stays_for_1_5_s() {
        let mut m = Ballistics::default();
        m.update(1.0, 0.0);
        m.update(0.0, 0.5);
        assert!(close(m.level_db, -12.0), "level {}", m.level_db);
        assert!(close(m.hold_db, 0.0), "hold {}", m.hold_db);
        m.update(0.0, 1.0);
        assert!(close(m.level_db, -24.0));
        assert!(close(m.hold_db, 0.0), "still held at 1.0 s: {}", m.hold_db);
        // Held until 1.5 s, then falling at 24 dB/s: at 2.0 s, 12 dB down.
        m.update(0.0, 2.0);
        assert!(close(m.level_db, -48.0), "level {}", m.level_db);
        assert!(close(m.hold_db, -12.0), "hold {}", m.hold_db);
        // Down to the floor, and still there.
        m.update(0.0, 10.0);
        assert_eq!((m.level_db, m.hold_db), (FLOOR_DB, FLOOR_DB));
        assert!(!m.moving());
    }

    #[test]
    fn a_louder_peak_resets_the_hold_and_a_quieter_one_does_not() {
        let mut m = Ballistics::default();
        m.update(0.25, 0.0); // -12 dB
        m.update(0.5, 1.0); // -6 dB: new hold at 1.0
        m.update(0.25, 2.0); // quieter: hold stays (held until 2.5)
        assert!(close(m.hold_db, -6.0206), "{}", m.hold_db);
        // The level fell 24 dB/s from -6 but not below the new peak.
        assert!(close(m.level_db, -12.0412), "{}", m.level_db);
        m.update(0.25, 3.0);
        // Held until 2.5 s, then 0.5 s of fall = 12 dB, but never below the level (-12 dB).
        assert!(close(m.hold_db, -12.0412), "{}", m.hold_db);
    }

    #[test]
    fn an_over_is_shown_for_the_hold_time() {
        let mut m = Ballistics::default();
        m.update(1.5, 0.0);
        assert!(m.over);
        assert!(m.level_db > 3.0);
        m.update(0.1, 1.0);
        assert!(m.over);
        m.update(0.1, 2.0);
        assert!(!m.over);
    }

    #[test]
    fn the_scale_runs_from_the_floor_to_the_top() {
        assert_eq!(Ballistics::fraction(FLOOR_DB), 0.0);
        assert_eq!(Ballistics::fraction(TOP_DB), 1.0);
        assert_eq!(Ballistics::fraction(-100.0), 0.0);
        assert!(close(Ballistics::fraction(-27.0), 0.5));
        assert_eq!(to_db(0.0), FLOOR_DB);
    }
}
