//! The level meters' input ([`crate::plugin::realtime::meter`]): the peaks the audio side
//! publishes per output, for a known signal, and without allocating.
use super::*;
use crate::plugin::shared::Meters;

/// Stem `s` = the input times `GAINS[s]`: with a linear engine the stems are the input scaled
/// (overlap-add reproduces it), so their peaks are known.
const GAINS: [f32; 2] = [0.25, 0.5];

struct Scale {
    c: usize,
}

impl ChunkEngine for Scale {
    fn process(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), String> {
        for (s, g) in GAINS.iter().enumerate() {
            for ch in 0..2 {
                for t in 0..self.c {
                    out[(s * 2 + ch) * self.c + t] = g * input[ch * self.c + t];
                }
            }
        }
        Ok(())
    }
    fn chunk_len(&self) -> usize {
        self.c
    }
    fn num_stems(&self) -> usize {
        GAINS.len()
    }
    fn describe(&self) -> String {
        "scale".into()
    }
}

#[test]
fn the_meters_get_the_peak_of_the_main_output_and_of_each_stem_output() {
    let plan = StreamPlan::new(44100, 44100, 1984, 4, GAINS.len(), 512, 0).unwrap();
    // A sine of period 4 samples hits its peaks exactly: 0.8 on the left, 0.4 on the right.
    let n = 30000;
    let sine = |a: f32| (0..n).map(|i| a * (std::f32::consts::FRAC_PI_2 * i as f32).sin()).collect::<Vec<f32>>();
    let x = [sine(0.8), sine(0.4)];
    let r = run(&plan, Host::Offline, Scale { c: plan.chunk }, &x, 5, false);
    let m = &r.shared.meters;
    let main = m.take(Meters::MAIN);
    let stems: Vec<f32> = (0..MAX_STEMS).map(|s| m.take(1 + s)).collect();
    // Main = both stems (0.25 + 0.5) of the 0.8 peak; stem s = GAINS[s] * 0.8; unused ports silent.
    assert!((main - 0.6).abs() < 1e-3, "main {main}");
    assert!((stems[0] - 0.2).abs() < 1e-3, "stem 1 {}", stems[0]);
    assert!((stems[1] - 0.4).abs() < 1e-3, "stem 2 {}", stems[1]);
    assert!(stems[2..].iter().all(|&p| p == 0.0), "{stems:?}");
    // Taking clears.
    assert_eq!(m.take(Meters::MAIN), 0.0);
}

#[test]
fn publishing_the_peaks_keeps_the_largest_and_does_not_allocate() {
    let shared = Shared::new(Arc::new(RwLock::new(vec![])));
    let (mut l, mut r) = (vec![0.1f32, -0.3, 0.2], vec![0.05f32, 0.0, -0.25]);
    let (mut a, mut b) = (vec![-0.7f32, 0.1, 0.0], vec![0.0f32; 3]);
    let main: [&mut [f32]; 2] = [&mut l, &mut r];
    let mut stem: [&mut [f32]; 2] = [&mut a, &mut b];
    let aux: [Option<&mut [&mut [f32]]>; 2] = [Some(&mut stem), None];
    nice_assert_no_alloc::assert_no_alloc(|| {
        crate::plugin::realtime::meter::publish(&shared, &main, &aux);
        // A quieter buffer after it does not lower the peak the editor has not taken yet.
        crate::plugin::realtime::meter::publish(&shared, &main[..1], &[]);
    });
    assert_eq!(shared.meters.take(Meters::MAIN), 0.3);
    assert_eq!(shared.meters.take(1), 0.7);
    assert_eq!(shared.meters.take(2), 0.0);
}
