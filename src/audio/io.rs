//! Reading audio files (symphonia) and writing 32-bit float WAV files (hound).
//!
//! [`read_audio`] decodes the first audio track of a WAV, FLAC, MP3, OGG Vorbis or AIFF file into
//! planar `f32`, trimming encoder delay/padding where the format signals it (gapless decoding).
//! [`write_wav_f32`] writes planar `f32` channels as an interleaved IEEE-float WAV.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::{AudioBuffer, AudioError};
use crate::limits;

/// Give up after this many consecutive packets that fail to decode (a few corrupt MP3 frames are
/// skipped, a file that is garbage throughout is reported).
const MAX_CONSECUTIVE_BAD_PACKETS: usize = 64;

/// Upper bound on the capacity reserved up front from the frame count a header claims, so a junk
/// header cannot make us reserve gigabytes. Longer files still decode, the Vecs just grow.
const MAX_RESERVE_FRAMES: u64 = 1 << 24;

/// Decode an audio file into planar `f32` at its native sample rate and channel count.
///
/// The container is probed from the content, with the file extension as a hint, so a misnamed
/// file still decodes. Supported: WAV (PCM integer/float, ADPCM), FLAC, MP3, OGG Vorbis, AIFF.
/// Only the first (default) audio track is decoded. Isolated corrupt packets are skipped; too
/// many in a row is a [`AudioError::Decode`]. A truncated file yields the audio up to the cut.
/// A valid file with no samples yields an empty buffer (`frames() == 0`).
///
/// Never panics on junk input: a panic inside a decoder is caught and reported as
/// [`AudioError::Decode`]. The whole file is held in memory: [`AudioReader`] streams it.
///
/// # Errors
/// [`AudioError::Open`] if the file cannot be opened, [`AudioError::UnsupportedFormat`] for an
/// unrecognised, empty or junk file, [`AudioError::NoAudioTrack`], or [`AudioError::Decode`].
pub fn read_audio(path: &Path) -> Result<AudioBuffer, AudioError> {
    let mut reader = AudioReader::open(path)?;
    let reserve = reader.frames_hint().unwrap_or(0).min(MAX_RESERVE_FRAMES) as usize;
    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut block = Vec::new();
    while reader.next_block(&mut block)? {
        if channels.is_empty() {
            channels = block.iter().map(|_| Vec::with_capacity(reserve)).collect();
        }
        for (dst, src) in channels.iter_mut().zip(&block) {
            dst.extend_from_slice(src);
        }
    }
    if channels.is_empty() {
        channels = vec![Vec::new(); reader.channels()];
    }
    Ok(AudioBuffer { sample_rate: reader.sample_rate(), channels })
}

fn decode_error(path: &Path, message: impl Into<String>) -> AudioError {
    AudioError::Decode {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The error for a file no format probe accepts: what its first bytes say it is
/// ([`crate::sniff`]) when that is clear, else [`AudioError::UnsupportedFormat`].
fn not_read(path: &Path) -> AudioError {
    use crate::sniff::Kind;
    let what = match crate::sniff::describe(path) {
        Some((Kind::Empty, _)) => "the file is empty (0 bytes)".to_string(),
        Some((k @ (Kind::Text | Kind::Zip | Kind::Pdf | Kind::Pickle), _)) => format!("{}, not audio", k.phrase()),
        Some((k @ (Kind::Wav | Kind::Flac | Kind::Ogg | Kind::Aiff), len)) => format!("{} ({len} bytes) whose header is damaged or truncated", k.phrase()),
        _ => return unsupported(path),
    };
    AudioError::NotAudio { path: path.to_path_buf(), what }
}

fn unsupported(path: &Path) -> AudioError {
    AudioError::UnsupportedFormat {
        path: path.to_path_buf(),
    }
}

/// An audio file decoded packet by packet: memory stays at one packet whatever the file's
/// length. Same formats, checks and error handling as [`read_audio`] (which is built on it).
///
/// The sample rate and channel count are known after [`AudioReader::open`] (from the codec
/// parameters, else from the first packet, which is then decoded ahead) and checked against
/// [`crate::limits`]; a stream whose layout changes mid-file is an error.
pub struct AudioReader {
    path: PathBuf,
    format: Box<dyn symphonia::core::formats::FormatReader>,
    decoder: Box<dyn symphonia::core::codecs::audio::AudioDecoder>,
    track_id: u32,
    sample_rate: u32,
    channels: usize,
    frames_hint: Option<u64>,
    /// The first packet, decoded during `open` when the codec parameters lacked the layout.
    first: Option<Vec<Vec<f32>>>,
    done: bool,
    /// Whether any packet decoded (trailing bad packets after good ones are skipped).
    decoded_any: bool,
}

impl std::fmt::Debug for AudioReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioReader")
            .field("path", &self.path)
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .field("frames_hint", &self.frames_hint)
            .finish()
    }
}

impl AudioReader {
    /// Open and probe `path`, and read its layout.
    ///
    /// # Errors
    /// As [`read_audio`], plus [`AudioError::Implausible`] for a sample rate or channel count
    /// outside [`crate::limits`].
    pub fn open(path: &Path) -> Result<Self, AudioError> {
        let file = File::open(path).map_err(|error| AudioError::Open {
            path: path.to_path_buf(),
            error,
        })?;
        guarded(path, || Self::open_file(path, file))
    }

    fn open_file(path: &Path, file: File) -> Result<Self, AudioError> {
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        // Probe failures (no known container found, empty file, junk) all mean "not a format
        // we read"; a genuine I/O failure while reading would have been an `Open` error.
        let format = symphonia::default::get_probe()
            .probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
            .map_err(|_| not_read(path))?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| AudioError::NoAudioTrack { path: path.to_path_buf() })?;
        let track_id = track.id;
        let frames_hint = track.num_frames;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| AudioError::NoAudioTrack { path: path.to_path_buf() })?;
        let sample_rate = params.sample_rate.unwrap_or(0);
        let channels = params.channels.as_ref().map_or(0, |c| c.count());
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|e| match e {
                SymphoniaError::Unsupported(_) => unsupported(path),
                other => decode_error(path, other.to_string()),
            })?;
        let mut reader = AudioReader {
            path: path.to_path_buf(),
            format,
            decoder,
            track_id,
            sample_rate,
            channels,
            frames_hint,
            first: None,
            done: false,
            decoded_any: false,
        };
        // A layout the header declares is checked before any decoding work.
        if sample_rate != 0 {
            limits::check_sample_rate(sample_rate).map_err(|m| reader.implausible(m))?;
        }
        if channels != 0 {
            limits::check_channels(channels).map_err(|m| reader.implausible(m))?;
        }
        if sample_rate == 0 || channels == 0 {
            // The codec parameters omit the layout: the first packet gives it.
            let mut first = Vec::new();
            if reader.decode_next(&mut first, true)? {
                reader.first = Some(first);
            } else if reader.channels == 0 {
                return Err(decode_error(path, "stream has zero channels"));
            }
            if reader.sample_rate == 0 {
                return Err(decode_error(path, "unknown sample rate"));
            }
        }
        reader.frames_hint = frames_hint.filter(|&f| limits::check_frames(f, reader.sample_rate).is_ok());
        Ok(reader)
    }

    fn implausible(&self, message: String) -> AudioError {
        AudioError::Implausible { path: self.path.clone(), message }
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channels in the file (blocks have this many).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Frames the header announces, when it does and the number is plausible (a progress
    /// estimate only: the stream decides).
    pub fn frames_hint(&self) -> Option<u64> {
        self.frames_hint
    }

    /// Decode the next packet into `block` (one `Vec` per channel, replaced). `Ok(false)` at the
    /// end of the stream. Packets that decode to no frames are skipped.
    ///
    /// # Errors
    /// [`AudioError::Decode`] (too many corrupt packets in a row, layout change, a decoder
    /// panic), [`AudioError::Implausible`].
    pub fn next_block(&mut self, block: &mut Vec<Vec<f32>>) -> Result<bool, AudioError> {
        if let Some(first) = self.first.take() {
            *block = first;
            return Ok(true);
        }
        let path = self.path.clone();
        guarded(&path, || self.decode_next(block, false))
    }

    fn decode_next(&mut self, block: &mut Vec<Vec<f32>>, first: bool) -> Result<bool, AudioError> {
        let path = self.path.clone();
        let path = path.as_path();
        let mut bad_in_a_row = 0usize;
        let mut last_packet_error = String::new();
        while !self.done {
            let packet = match self.format.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                // A chained OGG stream changes its track list: keep the first stream only.
                Err(SymphoniaError::ResetRequired) => break,
                // Truncated file: keep what was decoded up to the cut.
                Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(decode_error(path, e.to_string())),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(decoded) => decoded,
                Err(SymphoniaError::DecodeError(msg)) => {
                    bad_in_a_row += 1;
                    last_packet_error = msg.to_string();
                    if bad_in_a_row > MAX_CONSECUTIVE_BAD_PACKETS {
                        return Err(decode_error(path, format!("too many corrupt packets in a row ({last_packet_error})")));
                    }
                    continue;
                }
                Err(SymphoniaError::IoError(e)) => {
                    bad_in_a_row += 1;
                    last_packet_error = e.to_string();
                    if bad_in_a_row > MAX_CONSECUTIVE_BAD_PACKETS {
                        return Err(decode_error(path, format!("too many corrupt packets in a row ({last_packet_error})")));
                    }
                    continue;
                }
                Err(e) => return Err(decode_error(path, e.to_string())),
            };
            bad_in_a_row = 0;
            let spec = decoded.spec();
            let rate = spec.rate();
            let count = spec.channels().count();
            if first {
                // The first decoded packet fixes a layout the codec parameters omit.
                if rate != 0 && self.sample_rate == 0 {
                    limits::check_sample_rate(rate).map_err(|message| AudioError::Implausible { path: path.to_path_buf(), message })?;
                    self.sample_rate = rate;
                }
                if count != 0 && self.channels == 0 {
                    limits::check_channels(count).map_err(|message| AudioError::Implausible { path: path.to_path_buf(), message })?;
                    self.channels = count;
                }
                if self.channels == 0 {
                    return Err(decode_error(path, "stream has zero channels"));
                }
            }
            if count != self.channels || (rate != 0 && rate != self.sample_rate) {
                return Err(decode_error(
                    path,
                    format!(
                        "stream format changes mid-file ({} ch @ {} Hz -> {count} ch @ {rate} Hz)",
                        self.channels, self.sample_rate
                    ),
                ));
            }
            if decoded.frames() == 0 {
                continue;
            }
            decoded.copy_to_vecs_planar::<f32>(block);
            block.truncate(self.channels);
            self.decoded_any = true;
            return Ok(true);
        }
        self.done = true;
        if bad_in_a_row > 0 && !self.decoded_any {
            return Err(decode_error(path, format!("no packet could be decoded ({last_packet_error})")));
        }
        Ok(false)
    }
}

/// Run decoder code, turning a panic on malformed data into [`AudioError::Decode`].
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, AudioError>) -> Result<T, AudioError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(decode_error(path, "the decoder panicked on malformed data")),
    }
}

/// Write planar `channels` as a 32-bit IEEE-float WAV file (interleaved frames), overwriting
/// any existing file.
///
/// # Errors
/// [`AudioError::Write`] if there are no channels or more than 65535, the channels differ in
/// length, `sample_rate` is 0, or the file cannot be created/written (e.g. missing directory,
/// more than 4 GiB of data).
pub fn write_wav_f32(
    path: &Path,
    sample_rate: u32,
    channels: &[Vec<f32>],
) -> Result<(), AudioError> {
    let write_err = |message: String| AudioError::Write {
        path: path.to_path_buf(),
        message,
    };

    if channels.is_empty() {
        return Err(write_err("no channels to write".into()));
    }
    let num_channels = u16::try_from(channels.len())
        .map_err(|_| write_err(format!("too many channels ({})", channels.len())))?;
    if sample_rate == 0 {
        return Err(write_err("sample rate is 0".into()));
    }
    let frames = channels[0].len();
    if channels.iter().any(|c| c.len() != frames) {
        return Err(write_err("channels have different lengths".into()));
    }

    let spec = hound::WavSpec {
        channels: num_channels,
        sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(|e| write_err(e.to_string()))?;
    for frame in 0..frames {
        for channel in channels {
            writer
                .write_sample(channel[frame])
                .map_err(|e| write_err(e.to_string()))?;
        }
    }
    writer.finalize().map_err(|e| write_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh scratch directory per test (tests run in parallel).
    fn temp_dir(test: &str) -> PathBuf {
        crate::testing::temp_dir("audio", test)
    }

    fn test_data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("data")
            .join(name)
    }

    /// Deterministic pseudo-random bytes (xorshift64*), no `rand` dependency.
    fn junk_bytes(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed >> 12;
                seed ^= seed << 25;
                seed ^= seed >> 27;
                (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    /// Amplitude of the best-fitting sinusoid at `freq` and the fraction of the signal energy it
    /// explains (1.0 = pure sine at that frequency).
    fn sine_fit(x: &[f32], rate: f64, freq: f64) -> (f64, f64) {
        let w = 2.0 * std::f64::consts::PI * freq / rate;
        let (mut s, mut c, mut energy) = (0.0f64, 0.0f64, 0.0f64);
        for (n, &v) in x.iter().enumerate() {
            let v = v as f64;
            s += v * (w * n as f64).sin();
            c += v * (w * n as f64).cos();
            energy += v * v;
        }
        let n = x.len() as f64;
        let amp = 2.0 / n * (s * s + c * c).sqrt();
        let explained = (amp * amp / 2.0 * n) / energy.max(1e-30);
        (amp, explained)
    }

    #[test]
    fn f32_wav_round_trip_is_bit_exact() {
        let dir = temp_dir("f32_round_trip");
        let path = dir.join("rt.wav");
        let left: Vec<f32> = (0..1000)
            .map(|i| ((i as f32) * 0.0123).sin() * 0.9)
            .collect();
        let mut right: Vec<f32> = junk_bytes(1000, 7)
            .iter()
            .map(|&b| (b as f32 - 128.0) / 97.0)
            .collect();
        // Values that must survive untouched: extremes, subnormal, > 1.0, negative zero.
        right[0] = 1.5;
        right[1] = -2.25;
        right[2] = f32::MIN_POSITIVE / 4.0;
        right[3] = -0.0;
        write_wav_f32(&path, 48000, &[left.clone(), right.clone()]).expect("write");
        let buf = read_audio(&path).expect("read");
        assert_eq!(buf.sample_rate, 48000);
        assert_eq!(buf.channels.len(), 2);
        assert_eq!(buf.frames(), 1000);
        for (a, b) in buf.channels[0].iter().zip(&left) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        for (a, b) in buf.channels[1].iter().zip(&right) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn mono_file_becomes_two_identical_channels() {
        let dir = temp_dir("mono");
        let path = dir.join("mono.wav");
        let mono: Vec<f32> = (0..500).map(|i| (i as f32 / 500.0) - 0.5).collect();
        write_wav_f32(&path, 22050, std::slice::from_ref(&mono)).expect("write");
        let buf = read_audio(&path).expect("read");
        assert_eq!(buf.channels.len(), 1);
        let st = buf.into_stereo();
        assert_eq!(st.sample_rate, 22050);
        assert_eq!(st.channels.len(), 2);
        assert_eq!(st.channels[0], mono);
        assert_eq!(st.channels[1], mono);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn write_int_wav(path: &Path, bits: u16, samples: &[i32]) {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44100,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).expect("create");
        for &s in samples {
            w.write_sample(s).expect("write sample");
        }
        w.finalize().expect("finalize");
    }

    #[test]
    fn pcm16_and_pcm24_decode_to_the_right_values() {
        let dir = temp_dir("pcm_int");
        // Interleaved L/R pairs.
        let s16 = [0, 0, 16384, -16384, 32767, -32768, 1, -1, 12345, -23456];
        let p16 = dir.join("s16.wav");
        write_int_wav(&p16, 16, &s16);
        let b = read_audio(&p16).expect("read 16-bit");
        assert_eq!((b.sample_rate, b.channels.len(), b.frames()), (44100, 2, 5));
        for (i, &s) in s16.iter().enumerate() {
            let got = b.channels[i % 2][i / 2];
            assert!(
                (got - s as f32 / 32768.0).abs() <= 1e-7,
                "16-bit sample {i}: {got} vs {s}"
            );
        }
        assert_eq!(b.channels[1][2], -1.0);

        let s24 = [
            0, 0, 4_194_304, -4_194_304, 8_388_607, -8_388_608, 1, -1, 1_234_567, -7_654_321,
        ];
        let p24 = dir.join("s24.wav");
        write_int_wav(&p24, 24, &s24);
        let b = read_audio(&p24).expect("read 24-bit");
        assert_eq!((b.sample_rate, b.channels.len(), b.frames()), (44100, 2, 5));
        for (i, &s) in s24.iter().enumerate() {
            let got = b.channels[i % 2][i / 2];
            assert!(
                (got - s as f32 / 8_388_608.0).abs() <= 1e-7,
                "24-bit sample {i}: {got} vs {s}"
            );
        }
        assert_eq!(b.channels[0][1], 0.5);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn check_sine_file(name: &str, len_tolerance: usize) {
        let path = test_data(name);
        let b = read_audio(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.sample_rate, 44100, "{name}");
        assert_eq!(b.channels.len(), 2, "{name}");
        let frames = b.frames();
        assert!(
            frames.abs_diff(22050) <= len_tolerance,
            "{name}: {frames} frames, expected 22050 +- {len_tolerance}"
        );
        for (c, ch) in b.channels.iter().enumerate() {
            assert_eq!(ch.len(), frames);
            // Middle 0.3 s, away from codec priming/padding transients.
            let mid = &ch[4410..4410 + 13230];
            let (amp, explained) = sine_fit(mid, 44100.0, 440.0);
            assert!(
                (amp - 0.5).abs() < 0.03,
                "{name} ch{c}: 440 Hz amplitude {amp}"
            );
            assert!(
                explained > 0.99,
                "{name} ch{c}: 440 Hz explains only {explained} of the energy"
            );
            // A neighbouring frequency must not fit (guards against a wrong sample rate).
            let (amp_off, _) = sine_fit(mid, 44100.0, 480.0);
            assert!(amp_off < 0.05, "{name} ch{c}: 480 Hz amplitude {amp_off}");
        }
    }

    #[test]
    fn flac_decodes_to_440hz_sine() {
        check_sine_file("sine_440.flac", 0);
    }

    #[test]
    fn ogg_vorbis_decodes_to_440hz_sine() {
        check_sine_file("sine_440.ogg", 0);
    }

    #[test]
    fn mp3_decodes_to_440hz_sine() {
        // The file carries a LAME "Info" tag, so gapless trimming should give exactly 22050
        // frames; allow up to one MPEG frame for encoder/decoder variations. An untrimmed
        // decode of this file is 24192 frames and fails.
        check_sine_file("sine_440.mp3", 1152);
    }

    #[test]
    fn missing_file_is_an_open_error() {
        let path = temp_dir("missing").join("does_not_exist.wav");
        match read_audio(&path) {
            Err(AudioError::Open { path: p, error }) => {
                assert_eq!(p, path);
                assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected Open error, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_is_unsupported() {
        let dir = temp_dir("empty");
        let path = dir.join("empty.wav");
        std::fs::write(&path, b"").expect("write");
        let err = read_audio(&path).expect_err("empty file must fail");
        assert!(matches!(err, AudioError::NotAudio { .. }), "got {err:?}");
        assert_eq!(err.to_string(), format!("{}: the file is empty (0 bytes)", path.display()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn junk_bytes_are_unsupported() {
        let dir = temp_dir("junk");
        for (i, seed) in [1u64, 42, 0xDEAD_BEEF].into_iter().enumerate() {
            let path = dir.join(format!("x{i}.wav"));
            std::fs::write(&path, junk_bytes(20_000, seed)).expect("write");
            let err = read_audio(&path).expect_err("junk must fail");
            assert!(
                matches!(err, AudioError::UnsupportedFormat { .. }),
                "seed {seed}: got {err:?}"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn truncated_wav_decodes_what_is_there() {
        let dir = temp_dir("truncated");
        let path = dir.join("t.wav");
        let ch: Vec<f32> = (0..4000).map(|i| (i as f32 * 0.01).sin()).collect();
        write_wav_f32(&path, 44100, &[ch.clone(), ch.clone()]).expect("write");
        let bytes = std::fs::read(&path).expect("read back");
        // Cut in the middle of the data chunk (header claims more than is present).
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
        let b = read_audio(&path).expect("truncated file still decodes");
        assert!(
            b.frames() > 1000 && b.frames() < 4000,
            "frames {}",
            b.frames()
        );
        assert_eq!(&b.channels[0][..1000], &ch[..1000]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn write_rejects_bad_input_and_bad_paths() {
        let dir = temp_dir("write_errors");
        let p = dir.join("o.wav");
        assert!(matches!(
            write_wav_f32(&p, 44100, &[]),
            Err(AudioError::Write { .. })
        ));
        assert!(matches!(
            write_wav_f32(&p, 44100, &[vec![0.0; 3], vec![0.0; 2]]),
            Err(AudioError::Write { .. })
        ));
        assert!(matches!(
            write_wav_f32(&p, 0, &[vec![0.0; 3]]),
            Err(AudioError::Write { .. })
        ));
        let bad = dir.join("no_such_dir").join("o.wav");
        let err = write_wav_f32(&bad, 44100, &[vec![0.0; 3]]).expect_err("missing dir");
        assert!(matches!(err, AudioError::Write { .. }));
        assert!(
            err.to_string()
                .starts_with(&format!("cannot write {}", bad.display())),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
