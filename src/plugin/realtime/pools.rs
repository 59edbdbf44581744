//! The audio thread's ends of the link to the inference thread ([`crate::plugin::worker`]):
//! the input block being filled, the output block being played and one received ahead, and
//! the recycling of every buffer into its pool. Part of [`super::AudioSide`]; audio thread only.
//! Nothing here waits (the waiting is [`super::AudioSide`]'s, by the pace's rules), allocates
//! or frees: received buffers go back to their pools, never dropped.

use crate::plugin::worker::{AudioEnds, InBlock, OutBlock};
use crossbeam_channel::RecvTimeoutError;
use std::time::Duration;

/// See the module docs.
pub struct Pools {
    ends: AudioEnds,
    /// The input block being filled, `[2][block]`; `None` when the pool was empty at the
    /// block's start (that block is then not sent).
    cur_in: Option<Vec<f32>>,
    /// The output block being played, and one received ahead of time.
    cur_out: Option<OutBlock>,
    ahead: Option<OutBlock>,
    /// Parking for buffers that could not go back to their pool (never expected; never
    /// dropped here either). Capacity: every buffer in the system.
    parked: Vec<Vec<f32>>,
}

impl Pools {
    /// Main thread, in `activate`.
    pub fn new(ends: AudioEnds) -> Self {
        let parked = Vec::with_capacity(ends.total_buffers);
        let cur_in = ends.free_in.try_recv().ok();
        Pools { ends, cur_in, cur_out: None, ahead: None, parked }
    }

    fn recycle(&mut self, buf: Vec<f32>) {
        if let Err(e) = self.ends.free_out.try_send(buf) {
            let buf = e.into_inner();
            if self.parked.len() < self.parked.capacity() {
                self.parked.push(buf);
            } else {
                // Unreachable by construction (capacity = every buffer); leaking beats freeing
                // memory on the audio thread.
                std::mem::forget(buf);
            }
        }
    }

    /// A new stream whose first block starts `at` frames into a block of `block` frames: the
    /// old stream's outputs go back to their pool, the input block is silence up to `at`.
    pub fn new_stream(&mut self, block: usize, at: usize) {
        if let Some(b) = self.cur_out.take() {
            self.recycle(b.data);
        }
        if let Some(b) = self.ahead.take() {
            self.recycle(b.data);
        }
        if self.cur_in.is_none() {
            self.cur_in = self.ends.free_in.try_recv().ok();
        }
        if let Some(buf) = self.cur_in.as_mut() {
            buf[..at].fill(0.0);
            buf[block..block + at].fill(0.0);
        }
    }

    /// Copy `len` frames of `input` from `off` to `at` in the input block of `block` frames
    /// (a mono input feeds both channels).
    pub fn write_input(&mut self, input: &[&mut [f32]], off: usize, len: usize, block: usize, at: usize) {
        if let Some(buf) = self.cur_in.as_mut() {
            for ch in 0..2 {
                let src = &input[ch.min(input.len() - 1)][off..off + len];
                buf[ch * block + at..ch * block + at + len].copy_from_slice(src);
            }
        }
    }

    /// Send the filled input block to the worker. `false` when there is no fresh buffer for
    /// the next block yet (the caller may wait for one: [`Pools::take_free_input`]).
    pub fn send(&mut self, epoch: u32, index: u64, quiet: bool, song_start: u64) -> bool {
        if let Some(data) = self.cur_in.take()
            && let Err(e) = self.ends.to_worker.try_send(InBlock { epoch, index, quiet, song_start, data })
        {
            // The worker is gone or the channel is full (cannot happen: it holds the pool):
            // reuse the buffer for the next block; this one is lost.
            self.cur_in = Some(e.into_inner().data);
            return true;
        }
        self.take_free_input()
    }

    /// A fresh input buffer from the pool, if one is there. Returns whether the input block
    /// has a buffer now.
    pub fn take_free_input(&mut self) -> bool {
        if self.cur_in.is_none() {
            self.cur_in = self.ends.free_in.try_recv().ok();
        }
        self.cur_in.is_some()
    }

    /// Block on the free input pool for up to `t` (renders only).
    pub fn wait_free_input(&mut self, t: Duration) -> Result<(), RecvTimeoutError> {
        self.cur_in = Some(self.ends.free_in.recv_timeout(t)?);
        Ok(())
    }

    /// Make `cur_out` hold output block `j` of `epoch` from what has arrived. `Some(true)`: it
    /// is there; `Some(false)`: it will not come (a later block arrived); `None`: nothing more
    /// has arrived yet.
    pub fn take_output(&mut self, epoch: u32, j: u64) -> Option<bool> {
        if self.cur_out.as_ref().is_some_and(|b| b.index == j && b.epoch == epoch) {
            return Some(true);
        }
        if let Some(b) = self.cur_out.take() {
            self.recycle(b.data);
        }
        loop {
            let msg = match self.ahead.take() {
                Some(m) => m,
                None => self.ends.from_worker.try_recv().ok()?,
            };
            if msg.epoch != epoch || msg.index < j {
                self.recycle(msg.data);
                continue;
            }
            if msg.index > j {
                self.ahead = Some(msg);
                return Some(false);
            }
            self.cur_out = Some(msg);
            return Some(true);
        }
    }

    /// Block on the worker's answers for up to `t` and keep the next one ahead (renders only).
    pub fn wait_output(&mut self, t: Duration) -> Result<(), RecvTimeoutError> {
        let m = self.ends.from_worker.recv_timeout(t)?;
        if let Some(b) = self.ahead.replace(m) {
            self.recycle(b.data);
        }
        Ok(())
    }

    /// The output block being played, when it is `j` of `epoch` and valid.
    pub fn playing(&self, epoch: u32, j: u64) -> Option<&[f32]> {
        self.cur_out.as_ref().filter(|b| b.epoch == epoch && b.index == j && b.valid).map(|b| &b.data[..])
    }

    /// Whether output block `j + 1` of `epoch` has arrived (`Some(valid)`), without waiting;
    /// `None`: nothing after block `j` has arrived yet.
    pub fn next_arrived(&mut self, epoch: u32, j: u64) -> Option<bool> {
        loop {
            if let Some(a) = &self.ahead {
                return Some(a.epoch == epoch && a.index == j + 1 && a.valid);
            }
            match self.ends.from_worker.try_recv() {
                Ok(m) if m.epoch != epoch || m.index <= j => self.recycle(m.data),
                Ok(m) => self.ahead = Some(m),
                Err(_) => return None,
            }
        }
    }
}
