//! Audio input/output and sample-rate conversion.
//!
//! This module owns everything between audio on disk (or in a host's stream) and the planar
//! `f32` buffers the separation model consumes:
//!
//! * [`AudioBuffer`]: planar `f32` audio plus its sample rate, with [`AudioBuffer::into_stereo`]
//!   to get the two channels the model expects.
//! * [`read_audio`]: decode WAV / FLAC / MP3 / OGG Vorbis / AIFF files (symphonia).
//! * [`write_wav_f32`]: write 32-bit float WAV files (hound).
//! * [`resample`]: offline, high-quality, delay-compensated resampling of whole clips (rubato FFT).
//! * [`StreamResampler`]: allocation-free block resampler for a plugin's processing thread, and
//!   [`AlignedResampler`], the same with its delay dropped (the streaming pipeline's resampler).
//!
//! Every fallible function returns [`AudioError`], whose messages are one line and name the file.

mod io;
mod resample;
mod write;

use std::path::PathBuf;

pub use io::{AudioReader, read_audio, write_wav_f32};
pub use resample::{AlignedResampler, StreamResampler, resample};
pub use write::{AudioWriter, BitDepth, Clipping, Format};

/// Planar audio in `f32`: `channels[c][frame]`, all channels of equal length.
///
/// Decoded files keep the channel count they were stored with (mono, stereo or more); use
/// [`AudioBuffer::into_stereo`] to get exactly two channels.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioBuffer {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// One `Vec` per channel, all of the same length.
    pub channels: Vec<Vec<f32>>,
}

impl AudioBuffer {
    /// Number of frames (samples per channel); 0 when there are no channels.
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Convert to exactly two channels.
    ///
    /// * mono: the channel is duplicated to left and right;
    /// * stereo: kept as is;
    /// * more than two channels: only the first two are kept (for WAV/FLAC/Vorbis channel order
    ///   these are front left and front right); the others are dropped, not downmixed;
    /// * no channels: two empty channels.
    pub fn into_stereo(self) -> AudioBuffer {
        let sample_rate = self.sample_rate;
        let mut channels = self.channels;
        match channels.len() {
            0 => channels = vec![Vec::new(), Vec::new()],
            1 => {
                let mono = channels[0].clone();
                channels.push(mono);
            }
            _ => channels.truncate(2),
        }
        AudioBuffer {
            sample_rate,
            channels,
        }
    }
}

/// Errors of the audio module. Each message is a single line naming the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be opened (missing, permission denied, ...).
    #[error("cannot open {}: {error}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error (shown in the message, not chained as a source).
        error: std::io::Error,
    },
    /// The file is not in a recognised container/codec (including empty or junk files).
    #[error(
        "unsupported audio format in {} (supported: WAV, FLAC, MP3, OGG Vorbis, AIFF)",
        path.display()
    )]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file's first bytes say what it is, and it is not audio this program reads (empty,
    /// text, an archive, ...) or an audio container whose header does not parse.
    #[error("{}: {what}", path.display())]
    NotAudio {
        /// The file.
        path: PathBuf,
        /// What it is, as a phrase ("the file is empty (0 bytes)", "a text file, not audio").
        what: String,
    },
    /// The container was recognised but holds no decodable audio track.
    #[error("{} has no audio track", path.display())]
    NoAudioTrack {
        /// The file.
        path: PathBuf,
    },
    /// The audio data is malformed or inconsistent.
    #[error("decode error in {}: {message}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Writing an output file failed (I/O error or invalid data to write).
    #[error("cannot write {}: {message}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The resampler could not be built or failed (invalid rates, rubato error).
    #[error("cannot resample from {from} Hz to {to} Hz: {message}")]
    Resample {
        /// Input sample rate in Hz.
        from: u32,
        /// Output sample rate in Hz.
        to: u32,
        /// What went wrong.
        message: String,
    },
    /// A header value (sample rate, channel count, ...) outside what the tool accepts
    /// ([`crate::limits`]): refused before any work it would size.
    #[error("{}: {message}", path.display())]
    Implausible {
        /// The file.
        path: PathBuf,
        /// Which value, and the accepted range.
        message: String,
    },
    /// Buffers passed in have the wrong shape (channel count, unequal lengths, block too long).
    /// Carries a static message so that real-time callers never allocate on this path.
    #[error("invalid audio buffer: {0}")]
    InvalidInput(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_stereo_handles_all_channel_counts() {
        let mono = AudioBuffer {
            sample_rate: 44100,
            channels: vec![vec![0.1, 0.2, 0.3]],
        };
        let st = mono.into_stereo();
        assert_eq!(st.channels.len(), 2);
        assert_eq!(st.channels[0], vec![0.1, 0.2, 0.3]);
        assert_eq!(st.channels[0], st.channels[1]);
        assert_eq!(st.frames(), 3);

        let stereo = AudioBuffer {
            sample_rate: 48000,
            channels: vec![vec![1.0], vec![2.0]],
        };
        assert_eq!(stereo.clone().into_stereo(), stereo);

        let surround = AudioBuffer {
            sample_rate: 48000,
            channels: vec![
                vec![1.0],
                vec![2.0],
                vec![3.0],
                vec![4.0],
                vec![5.0],
                vec![6.0],
            ],
        };
        let st = surround.into_stereo();
        assert_eq!(st.channels, vec![vec![1.0], vec![2.0]]);
        assert_eq!(st.sample_rate, 48000);

        let empty = AudioBuffer {
            sample_rate: 44100,
            channels: vec![],
        };
        assert_eq!(empty.frames(), 0);
        let st = empty.into_stereo();
        assert_eq!(st.channels.len(), 2);
        assert_eq!(st.frames(), 0);
    }

    #[test]
    fn error_messages_name_the_file() {
        let e = AudioError::UnsupportedFormat {
            path: PathBuf::from("/tmp/x.wav"),
        };
        assert_eq!(
            e.to_string(),
            "unsupported audio format in /tmp/x.wav (supported: WAV, FLAC, MP3, OGG Vorbis, AIFF)"
        );
        let e = AudioError::Open {
            path: PathBuf::from("a.flac"),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "not found"),
        };
        assert_eq!(e.to_string(), "cannot open a.flac: not found");
        assert_eq!(
            AudioError::NoAudioTrack {
                path: PathBuf::from("v.ogg")
            }
            .to_string(),
            "v.ogg has no audio track"
        );
    }
}
