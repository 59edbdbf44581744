//! Writing stems as they are produced: WAV (hound) or FLAC (flacenc, frame by frame), 16 or
//! 24-bit integers or 32-bit float (WAV only), to a file that only the caller renames into place.
//! Integers clip at full scale: the writer counts the clipped samples and keeps the peak
//! ([`AudioWriter::clipped`]) so that no clip goes unreported.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flacenc::component::BitRepr;
use flacenc::error::Verify;
use flacenc::source::{Context, Fill, FrameBuf};

use super::AudioError;

/// File format of the stems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Wav,
    Flac,
}

impl Format {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Wav => "wav",
            Format::Flac => "flac",
        }
    }
}

/// Sample format of the stems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BitDepth {
    #[value(name = "16")]
    I16,
    #[value(name = "24")]
    I24,
    #[value(name = "32f")]
    F32,
}

impl BitDepth {
    fn bits(self) -> u16 {
        match self {
            BitDepth::I16 => 16,
            BitDepth::I24 => 24,
            BitDepth::F32 => 32,
        }
    }

    /// `x` as a `bits`-bit integer: scaled by 2^(bits-1), rounded, clipped (no dither).
    #[cfg(test)]
    fn quantize(self, x: f32) -> i32 {
        self.quantize_checked(x).0
    }

    /// [`BitDepth::quantize`], and whether the value was clipped.
    fn quantize_checked(self, x: f32) -> (i32, bool) {
        let scale = (1i64 << (self.bits() - 1)) as f32;
        let max = scale as i64 - 1;
        let v = (x * scale).round();
        if v.is_nan() {
            (0, false)
        } else {
            let q = (v as i64).clamp(-(max + 1), max);
            (q as i32, q as f32 != v)
        }
    }
}

/// Stereo (or any channel count) samples streamed to a WAV or FLAC file.
pub struct AudioWriter {
    path: PathBuf,
    inner: Inner,
    depth: BitDepth,
    channels: usize,
    frames: u64,
    clip: Clipping,
}

/// Samples clipped at full scale so far, and the largest magnitude asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Clipping {
    pub samples: u64,
    pub peak: f32,
}

enum Inner {
    Wav(hound::WavWriter<BufWriter<File>>),
    Flac(Box<FlacStream>),
}

/// FLAC written frame by frame: a STREAMINFO block rewritten at the end (total samples, MD5,
/// frame sizes), each frame encoded as soon as a block of samples is complete.
struct FlacStream {
    file: BufWriter<File>,
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    info: flacenc::component::StreamInfo,
    fb: FrameBuf,
    ctx: Context,
    /// Interleaved samples of the block being filled.
    pending: Vec<i32>,
    block: usize,
    sink: flacenc::bitsink::ByteSink,
}

const FLAC_BLOCK: usize = 4096;

impl AudioWriter {
    /// Create `path` (overwritten) for `channels` channels at `rate` Hz.
    ///
    /// # Errors
    /// [`AudioError::Write`] for FLAC with `--bit-depth 32f` (FLAC stores integers), a bad rate
    /// or channel count, or a file that cannot be created.
    pub fn create(path: &Path, format: Format, depth: BitDepth, rate: u32, channels: usize) -> Result<Self, AudioError> {
        let err = |message: String| AudioError::Write { path: path.to_path_buf(), message };
        if channels == 0 || channels > 8 {
            return Err(err(format!("cannot write {channels} channels")));
        }
        if rate == 0 {
            return Err(err("sample rate is 0".into()));
        }
        let inner = match format {
            Format::Wav => {
                let spec = hound::WavSpec {
                    channels: channels as u16,
                    sample_rate: rate,
                    bits_per_sample: depth.bits(),
                    sample_format: if depth == BitDepth::F32 { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
                };
                Inner::Wav(hound::WavWriter::create(path, spec).map_err(|e| err(e.to_string()))?)
            }
            Format::Flac => {
                if depth == BitDepth::F32 {
                    return Err(err("FLAC stores integers: use --bit-depth 16 or 24 (or --format wav for 32-bit float)".into()));
                }
                if rate > 655_350 {
                    return Err(err(format!("FLAC cannot store a sample rate of {rate} Hz")));
                }
                let bits = depth.bits() as usize;
                let mut config = flacenc::config::Encoder::default();
                config.block_size = FLAC_BLOCK;
                let config = config.into_verified().map_err(|(_, e)| err(format!("FLAC encoder: {e:?}")))?;
                let info = flacenc::component::StreamInfo::new(rate as usize, channels, bits).map_err(|e| err(format!("FLAC: {e:?}")))?;
                let mut file = BufWriter::new(File::create(path).map_err(|e| err(e.to_string()))?);
                // Room for the header; rewritten with the real values at the end.
                write_flac_header(&mut file, &info).map_err(|e| err(e.to_string()))?;
                Inner::Flac(Box::new(FlacStream {
                    file,
                    config,
                    info,
                    fb: FrameBuf::with_size(channels, FLAC_BLOCK).map_err(|e| err(format!("FLAC: {e:?}")))?,
                    ctx: Context::new(bits, channels),
                    pending: Vec::with_capacity(FLAC_BLOCK * channels),
                    block: FLAC_BLOCK,
                    sink: flacenc::bitsink::ByteSink::new(),
                }))
            }
        };
        Ok(AudioWriter { path: path.to_path_buf(), inner, depth, channels, frames: 0, clip: Clipping::default() })
    }

    fn err(&self, message: impl Into<String>) -> AudioError {
        AudioError::Write { path: self.path.clone(), message: message.into() }
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The samples clipped so far (integer formats; none for float) and the peak magnitude.
    pub fn clipped(&self) -> Clipping {
        self.clip
    }

    /// Append planar `channels` (equal lengths).
    pub fn write(&mut self, channels: &[&[f32]]) -> Result<(), AudioError> {
        if channels.len() != self.channels {
            return Err(self.err("wrong channel count"));
        }
        let n = channels[0].len();
        if channels.iter().any(|c| c.len() != n) {
            return Err(self.err("channels have different lengths"));
        }
        let depth = self.depth;
        let clip = &mut self.clip;
        let mut quantize = |x: f32| {
            let (q, clipped) = depth.quantize_checked(x);
            if clipped {
                clip.samples += 1;
                clip.peak = clip.peak.max(x.abs());
            }
            q
        };
        let result = match &mut self.inner {
            Inner::Wav(w) => (|| {
                for i in 0..n {
                    for c in channels {
                        match depth {
                            BitDepth::F32 => w.write_sample(c[i])?,
                            _ => w.write_sample(quantize(c[i]))?,
                        }
                    }
                }
                Ok::<(), hound::Error>(())
            })()
            .map_err(|e| e.to_string()),
            Inner::Flac(f) => {
                let mut r = Ok(());
                for i in 0..n {
                    for c in channels {
                        f.pending.push(quantize(c[i]));
                    }
                    if f.pending.len() == f.block * channels.len() {
                        r = f.encode_pending();
                        if r.is_err() {
                            break;
                        }
                    }
                }
                r
            }
        };
        result.map_err(|e| self.err(e))?;
        self.frames += n as u64;
        Ok(())
    }

    /// Write what is pending and the final header, and close the file.
    pub fn finish(self) -> Result<(), AudioError> {
        let path = self.path.clone();
        let err = |message: String| AudioError::Write { path: path.clone(), message };
        match self.inner {
            Inner::Wav(w) => w.finalize().map_err(|e| err(e.to_string())),
            Inner::Flac(mut f) => {
                if !f.pending.is_empty() {
                    f.encode_pending().map_err(err)?;
                }
                f.info.set_md5_digest(&f.ctx.md5_digest());
                // The block sizes exclude the last, shorter block (as the FLAC format says, and as
                // decoders check); every other block is FLAC_BLOCK long.
                let _ = f.info.set_block_sizes(FLAC_BLOCK, FLAC_BLOCK);
                f.file.seek(SeekFrom::Start(0)).map_err(|e| err(e.to_string()))?;
                write_flac_header(&mut f.file, &f.info).map_err(|e| err(e.to_string()))?;
                f.file.flush().map_err(|e| err(e.to_string()))?;
                f.file.get_ref().sync_all().map_err(|e| err(e.to_string()))
            }
        }
    }
}

impl FlacStream {
    fn encode_pending(&mut self) -> Result<(), String> {
        let mut both = (&mut self.fb, &mut self.ctx);
        both.fill_interleaved(&self.pending).map_err(|e| format!("FLAC: {e:?}"))?;
        let number = self.ctx.current_frame_number().unwrap_or(0);
        let frame = flacenc::encode_fixed_size_frame(&self.config, &self.fb, number, &self.info)
            .map_err(|e| format!("FLAC: {e:?}"))?;
        self.info.update_frame_info(&frame);
        self.sink.clear();
        frame.write(&mut self.sink).map_err(|e| format!("FLAC: {e:?}"))?;
        self.file.write_all(self.sink.as_slice()).map_err(|e| e.to_string())?;
        self.pending.clear();
        Ok(())
    }
}

/// `fLaC`, then the STREAMINFO metadata block (the last one).
fn write_flac_header(file: &mut impl Write, info: &flacenc::component::StreamInfo) -> std::io::Result<()> {
    let mut sink = flacenc::bitsink::ByteSink::new();
    info.write(&mut sink).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let body = sink.as_slice();
    file.write_all(b"fLaC")?;
    // Last-metadata-block flag + type 0 (STREAMINFO), 24-bit length.
    let len = body.len() as u32;
    file.write_all(&[0x80, (len >> 16) as u8, (len >> 8) as u8, len as u8])?;
    file.write_all(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::read_audio;

    fn signal(n: usize) -> Vec<Vec<f32>> {
        (0..2).map(|ch| (0..n).map(|i| (i as f32 * 0.013 + ch as f32).sin() * 0.8).collect()).collect()
    }

    #[test]
    fn every_format_and_depth_reads_back_within_its_quantization_step() {
        let dir = crate::testing::temp_dir("audio", "writer_formats");
        // Not a multiple of the FLAC block, written in odd pieces.
        let n = FLAC_BLOCK * 2 + 777;
        let x = signal(n);
        for (format, depth, tol) in [
            (Format::Wav, BitDepth::F32, 0.0),
            (Format::Wav, BitDepth::I24, 1.0 / 8_388_608.0),
            (Format::Wav, BitDepth::I16, 1.0 / 32768.0),
            (Format::Flac, BitDepth::I24, 1.0 / 8_388_608.0),
            (Format::Flac, BitDepth::I16, 1.0 / 32768.0),
        ] {
            let path = dir.join(format!("x_{depth:?}.{}", format.extension()));
            let mut w = AudioWriter::create(&path, format, depth, 48000, 2).unwrap();
            let mut pos = 0;
            for piece in [1usize, 1000, 5000, 10_000].iter().cycle() {
                let m = (*piece).min(n - pos);
                w.write(&[&x[0][pos..pos + m], &x[1][pos..pos + m]]).unwrap();
                pos += m;
                if pos == n {
                    break;
                }
            }
            assert_eq!(w.frames(), n as u64);
            w.finish().unwrap();
            let back = read_audio(&path).unwrap_or_else(|e| panic!("{format:?} {depth:?}: {e}"));
            assert_eq!((back.sample_rate, back.channels.len(), back.frames()), (48000, 2, n), "{format:?} {depth:?}");
            for ch in 0..2 {
                let d = crate::testing::max_abs_diff(&back.channels[ch], &x[ch]);
                assert!(d <= tol * 0.5 + 1e-9, "{format:?} {depth:?}: error {d} above half a step {tol}");
            }
        }
        assert!(AudioWriter::create(&dir.join("f.flac"), Format::Flac, BitDepth::F32, 44100, 2).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn flac_header_carries_the_length_and_the_md5_of_the_samples() {
        let dir = crate::testing::temp_dir("audio", "flac_header");
        let path = dir.join("h.flac");
        let x = signal(10_000);
        let mut w = AudioWriter::create(&path, Format::Flac, BitDepth::I16, 44100, 2).unwrap();
        w.write(&[&x[0], &x[1]]).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"fLaC");
        // STREAMINFO: 36-bit total samples at bytes 8+13.., MD5 at 8+18..8+34.
        let si = &bytes[8..42];
        let total = ((si[13] as u64 & 0x0f) << 32) | u64::from(u32::from_be_bytes([si[14], si[15], si[16], si[17]]));
        assert_eq!(total, 10_000);
        use md5::Digest;
        let mut h = md5::Md5::new();
        for i in 0..10_000 {
            for c in &x {
                h.update((BitDepth::I16.quantize(c[i]) as i16).to_le_bytes());
            }
        }
        assert_eq!(&si[18..34], h.finalize().as_slice());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn quantization_rounds_and_clips() {
        assert_eq!(BitDepth::I16.quantize(1.0), 32767);
        assert_eq!(BitDepth::I16.quantize(-1.0), -32768);
        assert_eq!(BitDepth::I16.quantize(-3.0), -32768);
        assert_eq!(BitDepth::I16.quantize(0.5 / 32768.0 + 1e-9), 1);
        assert_eq!(BitDepth::I24.quantize(f32::NAN), 0);
        assert_eq!(BitDepth::I24.quantize(f32::INFINITY), 8_388_607);
    }
}
