//! Built-in separators: classical methods that need no weights, behind the same interface as
//! the networks ([`SeparationModel`], [`ModelBuilder`]), streaming ([`Schedule::Stream`]) with
//! an exact latency. They run on the CPU at whatever rate they are built for (the plugin builds
//! them at the host's rate, the CLI at the file's), so no resampling is involved.
//!
//! - `builtin:hpss` ([`hpss`]): harmonic / percussive / residual by median filtering,
//!   equal to `librosa.effects.hpss` with the same parameters.
//! - `builtin:center` ([`center`]): center / sides by inter-channel similarity.
//!
//! The catalog resolves these names before an engine is built ([`crate::catalog::resolve`]).

pub mod center;
pub mod hpss;
pub mod median;
pub mod stft;

use super::{Event, ModelBuilder, ModelError, ModelInfo, Pass, Schedule, SeparationModel, Target};
use candle_core::Device;
use center::{Center, CenterParams};
use hpss::{Hpss, HpssParams};

/// The prefix of built-in model names.
pub const PREFIX: &str = "builtin:";

/// A built-in separator and its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Builtin {
    Hpss(HpssParams),
    Center(CenterParams),
}

/// The built-ins in the order `mdx-stems models` lists them; the first is the default.
pub const ALL: [&str; 2] = ["builtin:hpss", "builtin:center"];

/// The default separator when no model is found.
pub const DEFAULT: &str = "builtin:hpss";

impl Builtin {
    /// A built-in by name (`builtin:hpss`, `builtin:center`, any case), with default parameters.
    pub fn by_name(name: &str) -> Option<Builtin> {
        match name.trim().to_ascii_lowercase().as_str() {
            "builtin:hpss" => Some(Builtin::Hpss(HpssParams::default())),
            "builtin:center" => Some(Builtin::Center(CenterParams::default())),
            _ => None,
        }
    }

    /// Whether `name` is meant as a built-in (starts with `builtin:`).
    pub fn is_builtin_name(name: &str) -> bool {
        name.trim().to_ascii_lowercase().starts_with(PREFIX)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Builtin::Hpss(_) => "builtin:hpss",
            Builtin::Center(_) => "builtin:center",
        }
    }

    /// Stem names in output order.
    pub fn stems(&self) -> Vec<String> {
        let s: &[&str] = match self {
            Builtin::Hpss(_) => &["Drums", "Harmonic", "Residual"],
            Builtin::Center(_) => &["Center", "Sides"],
        };
        s.iter().map(|s| s.to_string()).collect()
    }

    /// One line: what it does and what it is good for.
    pub fn summary(&self) -> &'static str {
        match self {
            Builtin::Hpss(_) => "harmonic/percussive median filtering (librosa hpss): drums vs sustained parts",
            Builtin::Center(_) => "center vs sides by stereo similarity: vocals+bass+kick vs the rest (stereo mixes only)",
        }
    }

    /// Samples per call and output delay.
    pub fn block_and_latency(&self) -> (usize, usize) {
        match self {
            Builtin::Hpss(p) => (p.hop, p.latency()),
            Builtin::Center(p) => (p.hop, p.latency()),
        }
    }

    pub fn info(&self, sample_rate: u32) -> ModelInfo {
        let (block, latency) = self.block_and_latency();
        ModelInfo { sample_rate, stems: self.stems(), complement: None, schedule: Schedule::Stream { block, latency } }
    }
}

/// Builds a built-in at a sample rate.
pub struct BuiltinBuilder {
    pub builtin: Builtin,
    pub sample_rate: u32,
}

impl BuiltinBuilder {
    pub fn new(builtin: Builtin, sample_rate: u32) -> Self {
        BuiltinBuilder { builtin, sample_rate }
    }
}

impl ModelBuilder for BuiltinBuilder {
    fn info(&self) -> ModelInfo {
        self.builtin.info(self.sample_rate)
    }
    fn build(&mut self, _target: &Target<'_>, _events: &mut Vec<Event>) -> Result<Box<dyn SeparationModel>, ModelError> {
        let info = self.info();
        let hop = self.builtin.block_and_latency().0;
        let kind = match self.builtin {
            Builtin::Hpss(p) => Kind::Hpss(Box::new(Hpss::new(p))),
            Builtin::Center(p) => Kind::Center(Box::new(Center::new(p))),
        };
        let stems = info.stems.len();
        Ok(Box::new(BuiltinModel { info, kind, scratch: vec![vec![0.0; hop]; stems * 2] }))
    }
}

enum Kind {
    Hpss(Box<Hpss>),
    Center(Box<Center>),
}

/// A built-in separator as a [`SeparationModel`] (always on the CPU).
pub struct BuiltinModel {
    info: ModelInfo,
    kind: Kind,
    /// One hop per stem and channel, [stems * 2][hop].
    scratch: Vec<Vec<f32>>,
}

impl SeparationModel for BuiltinModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn device(&self) -> &Device {
        &Device::Cpu
    }
    fn process(&mut self, input: &[f32], n: usize, out: &mut [f32], _pass: &mut Pass<'_>) -> candle_core::Result<()> {
        let b = self.info.unit_len();
        let s = self.info.stems.len();
        let hop = self.scratch[0].len();
        assert_eq!(input.len(), n * 2 * b);
        assert_eq!(out.len(), n * s * 2 * b);
        for j in 0..n {
            for k in (0..b).step_by(hop) {
                let x = |ch: usize| &input[(j * 2 + ch) * b + k..][..hop];
                match &mut self.kind {
                    Kind::Hpss(h) => {
                        for ch in 0..2 {
                            let [p, hm, r] = self.scratch.get_disjoint_mut([ch, 2 + ch, 4 + ch]).expect("distinct");
                            h.push_hop(ch, x(ch), p, hm, r);
                        }
                    }
                    Kind::Center(c) => {
                        let [c0, c1, s0, s1] = self.scratch.get_disjoint_mut([0, 1, 2, 3]).expect("distinct");
                        c.push_hop([x(0), x(1)], [c0.as_mut_slice(), c1.as_mut_slice()], [s0.as_mut_slice(), s1.as_mut_slice()]);
                    }
                }
                for (i, sc) in self.scratch.iter().enumerate() {
                    let (stem, ch) = (i / 2, i % 2);
                    out[((j * s + stem) * 2 + ch) * b + k..][..hop].copy_from_slice(sc);
                }
            }
        }
        Ok(())
    }
    fn reset(&mut self) {
        match &mut self.kind {
            Kind::Hpss(h) => h.reset(),
            Kind::Center(c) => c.reset(),
        }
    }
    fn backend_name(&self) -> &'static str {
        "built-in DSP (CPU)"
    }
}
