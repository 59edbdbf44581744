//! What a file is, from its first bytes (magic numbers), for one-line errors that name it
//! ("is a text file", "is empty") instead of a parser's complaint. Used by the catalog for
//! model files ([`checkpoint_problem`]) and by the audio reader ([`describe`]).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Empty,
    Text,
    Zip,
    /// Python pickle, protocol 2 to 5 (a legacy PyTorch checkpoint).
    Pickle,
    /// 8-byte little-endian header length, then a JSON header.
    Safetensors,
    Wav,
    Flac,
    Ogg,
    /// MPEG audio: an ID3 tag or a frame sync.
    Mp3,
    Aiff,
    Pdf,
    Unknown,
}

impl Kind {
    /// "a text file", "a zip archive", ...: what a message says the file is.
    pub fn phrase(self) -> &'static str {
        match self {
            Kind::Empty => "empty (0 bytes)",
            Kind::Text => "a text file",
            Kind::Zip => "a zip archive",
            Kind::Pickle => "a Python pickle",
            Kind::Safetensors => "a safetensors file",
            Kind::Wav => "a WAV file",
            Kind::Flac => "a FLAC file",
            Kind::Ogg => "an Ogg file",
            Kind::Mp3 => "an MP3 file",
            Kind::Aiff => "an AIFF file",
            Kind::Pdf => "a PDF document",
            Kind::Unknown => "binary data of an unknown kind",
        }
    }

    /// An audio container this program reads.
    pub fn is_audio(self) -> bool {
        matches!(self, Kind::Wav | Kind::Flac | Kind::Ogg | Kind::Mp3 | Kind::Aiff)
    }
}

/// The kind of `head`, the first bytes of a file (up to 4 KiB).
pub fn kind_of(head: &[u8]) -> Kind {
    if head.is_empty() {
        return Kind::Empty;
    }
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"PK\x03\x04") {
        return Kind::Zip;
    }
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Kind::Pickle;
    }
    if starts(b"RIFF") || starts(b"RF64") {
        return Kind::Wav;
    }
    if starts(b"fLaC") {
        return Kind::Flac;
    }
    if starts(b"OggS") {
        return Kind::Ogg;
    }
    if starts(b"FORM") {
        return Kind::Aiff;
    }
    if starts(b"%PDF") {
        return Kind::Pdf;
    }
    if starts(b"ID3") || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0) {
        return Kind::Mp3;
    }
    if head.len() >= 9 && head[8] == b'{' {
        return Kind::Safetensors;
    }
    let text = match std::str::from_utf8(head) {
        Ok(s) => Some(s),
        // A multi-byte character cut at the end of the sample is still text.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    if text.is_some_and(|s| s.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\x0c'))) {
        return Kind::Text;
    }
    Kind::Unknown
}

/// The kind of the file at `path` and its length; `None` when it cannot be read.
pub fn describe(path: &Path) -> Option<(Kind, u64)> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut head = Vec::with_capacity(4096);
    f.by_ref().take(4096).read_to_end(&mut head).ok()?;
    Some((kind_of(&head), len))
}

/// Why the file at `path` cannot be a model checkpoint (a PyTorch zip or pickle, or a whole
/// safetensors file), as a phrase completing "<file> is ...": `None` when it may be one (or
/// cannot be read: the reader's error says why).
pub fn checkpoint_problem(path: &Path) -> Option<String> {
    let (kind, len) = describe(path)?;
    match kind {
        Kind::Pickle => None,
        Kind::Zip => {
            // A zip ends with its end-of-central-directory record (22 bytes plus a comment).
            let mut f = std::fs::File::open(path).ok()?;
            let tail_len = len.min(22 + 65535);
            f.seek(SeekFrom::Start(len - tail_len)).ok()?;
            let mut tail = Vec::with_capacity(tail_len as usize);
            f.take(tail_len).read_to_end(&mut tail).ok()?;
            if tail.windows(4).any(|w| w == b"PK\x05\x06") {
                None
            } else {
                Some(format!("a truncated zip checkpoint ({len} bytes, its end record is missing)"))
            }
        }
        Kind::Safetensors => {
            let mut f = std::fs::File::open(path).ok()?;
            let mut n = [0u8; 8];
            f.read_exact(&mut n).ok()?;
            let header = u64::from_le_bytes(n);
            if header.saturating_add(8) > len {
                Some(format!("a truncated safetensors file (its header alone needs {} bytes, the file has {len})", header.saturating_add(8)))
            } else {
                None
            }
        }
        other => Some(other.phrase().to_string()),
    }
}
