//! Where the audio thread's stream is: stream positions, the stream epoch, and the host's
//! transport ([`Transport::follow`]). Part of [`super::AudioSide`]; audio thread only, no
//! allocation.
//!
//! A new stream starts on activation, on `reset`, and when the playing position jumps. With a
//! position, the stream is anchored to the project timeline ([`StreamPlan::anchor`]): it starts
//! in the state the stream from the project's start would have reached there, so its chunk grid
//! is the whole-song render's.

use super::Position;
use crate::plugin::plan::StreamPlan;
use crate::plugin::shared::Shared;
use std::sync::atomic::Ordering;

/// See the module docs.
pub struct Transport {
    /// Frames per input/output block, and the output's delay behind the input, in frames.
    block: usize,
    audio_delay: u64,
    anchor: Option<u64>,
    /// Added to the host's position to get the input's ([`crate::plugin::host::position_offset`]).
    position_offset: i64,
    /// Stream epoch (16 bits), bumped by every new stream.
    epoch: u32,
    /// Stream position of the next frame.
    pos: u64,
    /// The stream's first block: the worker answers blocks from this one on (earlier output
    /// blocks stand for input from before the stream and are never coming).
    first_block: u64,
    /// Project position of stream position 0 while the stream is anchored to the timeline.
    timeline: Option<i64>,
    /// Stream position of the project's start when the stream starts before it (else 0).
    song_start: u64,
    /// Start a new stream at the next call (activation, `reset`).
    start_pending: bool,
}

impl Transport {
    pub fn new(plan: &StreamPlan, position_offset: i64) -> Self {
        Transport {
            block: plan.block,
            audio_delay: plan.audio_delay as u64,
            anchor: plan.anchor,
            position_offset,
            epoch: 0,
            pos: 0,
            first_block: 0,
            timeline: None,
            song_start: 0,
            start_pending: true,
        }
    }

    /// The next call starts a new stream (`reset`).
    pub fn restart(&mut self) {
        self.start_pending = true;
    }

    /// Start a new stream when the host's position says so (see the module docs). Returns
    /// whether one started.
    pub fn follow(&mut self, position: Position) -> bool {
        let at = position.samples.filter(|_| position.playing && self.anchor.is_some()).map(|p| p + self.position_offset);
        if self.start_pending {
            self.start(at);
            return true;
        }
        if let Some(p) = at {
            // CLAP and VST3 positions reach us through seconds: allow a sample of rounding.
            let jumped = self.timeline.is_none_or(|t0| (p - (t0 + self.pos as i64)).abs() > 1);
            if jumped {
                self.start(Some(p));
                return true;
            }
        }
        false
    }

    /// A new stream: at project position `at` when the host tells it (anchored to the timeline
    /// grid), else at stream position 0.
    fn start(&mut self, at: Option<i64>) {
        self.epoch = (self.epoch + 1) & 0xffff;
        self.start_pending = false;
        let (pos, timeline) = match (at, self.anchor) {
            (Some(p), Some(a)) => {
                let a = a as i64;
                let origin = p.div_euclid(a) * a;
                ((p - origin) as u64, Some(origin))
            }
            _ => (0, None),
        };
        self.pos = pos;
        self.first_block = pos / self.block as u64;
        self.timeline = timeline;
        self.song_start = timeline.map_or(0, |t0| t0.min(0).unsigned_abs());
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Stream position of the project's start when the stream starts before it (else 0).
    pub fn song_start(&self) -> u64 {
        self.song_start
    }

    /// Where the next frame goes in the input block being filled.
    pub fn in_offset(&self) -> usize {
        (self.pos % self.block as u64) as usize
    }

    /// Frames from here to the next input or output block boundary.
    pub fn room(&self) -> usize {
        let hh = self.block;
        let in_room = hh - self.in_offset();
        let out_room = if self.pos < self.audio_delay {
            (self.audio_delay - self.pos) as usize
        } else {
            hh - ((self.pos - self.audio_delay) % hh as u64) as usize
        };
        in_room.min(out_room)
    }

    /// The output block `j` the next frame plays from, the offset in it, and whether it is due
    /// (before the stream's first answer is due there is nothing to play but the dry signal).
    pub fn out_block(&self) -> (u64, usize, bool) {
        let hh = self.block as u64;
        let (j, o) = if self.pos >= self.audio_delay {
            let rel = self.pos - self.audio_delay;
            (rel / hh, (rel % hh) as usize)
        } else {
            (0, 0)
        };
        (j, o, self.pos >= self.audio_delay && j >= self.first_block)
    }

    /// Move on by `len` frames (never past a block boundary, see [`Transport::room`]); returns
    /// the index of the input block this completes.
    pub fn advance(&mut self, len: usize) -> Option<u64> {
        self.pos += len as u64;
        let hh = self.block as u64;
        self.pos.is_multiple_of(hh).then(|| self.pos / hh - 1)
    }

    /// Tell the worker the output block the next buffer starts in: every block before it has
    /// been played.
    pub fn publish(&self, shared: &Shared) {
        let needed = self.pos.saturating_sub(self.audio_delay) / self.block as u64;
        shared.play_position.store(Shared::pack_position(self.epoch, needed), Ordering::Release);
    }
}
