//! Audio thread: the level meters' input. After each host buffer, the peak of every output
//! the host gave (main, then each stem port) is max-merged into [`Shared::meters`]; the editor
//! takes the peaks and computes hold and decay on its own thread ([`crate::plugin::meter`]).
//! Nothing here allocates or locks: a scan of the buffers, a compare-and-swap per output, and
//! the editor's repaint flag (an atomic store) when there is something to show.

use crate::plugin::shared::{Meters, Shared};

/// Largest absolute sample over `channels`.
fn peak(channels: &[&mut [f32]]) -> f32 {
    channels.iter().flat_map(|c| c.iter()).fold(0f32, |m, v| m.max(v.abs()))
}

/// Publish the peaks of the buffer just played: `main` (the main output) and `aux[s]` (stem
/// output `s`, when the host gave it).
pub fn publish(shared: &Shared, main: &[&mut [f32]], aux: &[Option<&mut [&mut [f32]]>]) {
    let main_peak = peak(main);
    shared.meters.publish(Meters::MAIN, main_peak);
    let mut loudest = main_peak;
    for (s, port) in aux.iter().enumerate() {
        if let Some(port) = port {
            let p = peak(port);
            shared.meters.publish(1 + s, p);
            loudest = loudest.max(p);
        }
    }
    if loudest > 0.0 {
        shared.changed();
    }
}
