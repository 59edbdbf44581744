//! Checkpoint reading, for every network family: the tensors ([`Checkpoint::read`]), their
//! names and shapes alone ([`read_shapes`]), and the strict comparison with what a network
//! needs ([`compare`]; each family says what it needs, [`super::NetSpec::check_tensors`]).
//!
//! `.ckpt`/`.pth` files are PyTorch zip archives holding a pickled `state_dict`. They are read
//! with candle's pickle *interpreter*, which only understands the opcodes needed to rebuild
//! dicts and tensors and never imports or calls Python code. `.safetensors` files are read
//! directly. Before a network is built, its family compares what the file holds with what the
//! config needs and reports every difference at once.

use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Tensor names and shapes, sorted by name.
pub type Shapes = BTreeMap<String, Vec<usize>>;

/// Errors while reading a model's weights.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read model {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a PyTorch checkpoint or safetensors file: {reason}")]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error("{path} holds no tensors (is it a model checkpoint?)")]
    Empty { path: PathBuf },
    #[error("{}", mismatch_message(path, missing, unexpected, misshaped, hint))]
    Mismatch {
        path: PathBuf,
        missing: Vec<(String, Vec<usize>)>,
        unexpected: Vec<(String, Vec<usize>)>,
        misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
        hint: Option<String>,
    },
}

fn mismatch_message(
    path: &Path,
    missing: &[(String, Vec<usize>)],
    unexpected: &[(String, Vec<usize>)],
    misshaped: &[(String, Vec<usize>, Vec<usize>)],
    hint: &Option<String>,
) -> String {
    const SHOW: usize = 12;
    let mut s = format!(
        "model {} does not match its config: {} missing, {} unexpected, {} mis-shaped tensors",
        path.display(),
        missing.len(),
        unexpected.len(),
        misshaped.len()
    );
    if let Some(h) = hint {
        s.push_str(&format!("\n  hint: {h}"));
    }
    for (n, sh) in missing.iter().take(SHOW) {
        s.push_str(&format!("\n  missing:     {n} {sh:?}"));
    }
    if missing.len() > SHOW {
        s.push_str(&format!("\n  ... and {} more missing", missing.len() - SHOW));
    }
    for (n, sh) in unexpected.iter().take(SHOW) {
        s.push_str(&format!("\n  unexpected:  {n} {sh:?}"));
    }
    if unexpected.len() > SHOW {
        s.push_str(&format!("\n  ... and {} more unexpected", unexpected.len() - SHOW));
    }
    for (n, e, f) in misshaped.iter().take(SHOW) {
        s.push_str(&format!("\n  mis-shaped:  {n} expected {e:?}, found {f:?}"));
    }
    if misshaped.len() > SHOW {
        s.push_str(&format!("\n  ... and {} more mis-shaped", misshaped.len() - SHOW));
    }
    s
}

/// A checkpoint's floating-point tensors, by name, on the CPU in their stored dtype.
/// Integer bookkeeping tensors (`num_batches_tracked`) are dropped.
pub struct Checkpoint {
    pub path: PathBuf,
    pub tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Read `.safetensors`, or a PyTorch zip checkpoint (`.ckpt`, `.pth`, `.pt`), by content.
    pub fn read(path: &Path) -> Result<Self, WeightsError> {
        let bytes_head = {
            use std::io::Read;
            let mut f = std::fs::File::open(path)
                .map_err(|source| WeightsError::Io { path: path.to_path_buf(), source })?;
            let mut head = [0u8; 4];
            let n = f.read(&mut head).map_err(|source| WeightsError::Io { path: path.to_path_buf(), source })?;
            head[..n].to_vec()
        };
        let not = |reason: String| WeightsError::NotACheckpoint { path: path.to_path_buf(), reason };
        let size = std::fs::metadata(path).map_err(|source| WeightsError::Io { path: path.to_path_buf(), source })?.len();
        if size > crate::limits::MAX_CHECKPOINT_BYTES {
            return Err(not(format!("{size} bytes is larger than the {} accepted", crate::limits::MAX_CHECKPOINT_BYTES)));
        }
        let raw: Vec<(String, Tensor)> = if bytes_head.starts_with(b"PK") {
            check_zip(path).map_err(not)?;
            read_pickle_zip(path).map_err(not)?
        } else if bytes_head.len() == 4 {
            // safetensors starts with a little-endian u64 header length.
            candle_core::safetensors::load(path, &Device::Cpu)
                .map_err(|e| not(format!("not a zip checkpoint and not safetensors ({e})")))?
                .into_iter()
                .collect()
        } else {
            return Err(not("file is too short".into()));
        };
        if raw.len() > crate::limits::MAX_TENSORS {
            return Err(not(format!("{} tensors (at most {})", raw.len(), crate::limits::MAX_TENSORS)));
        }
        let mut tensors = HashMap::new();
        for (name, t) in raw {
            crate::limits::check_tensor_shape(&name, t.dims()).map_err(not)?;
            if !t.dtype().is_float() {
                continue;
            }
            tensors.insert(name, t);
        }
        strip_common_prefix(&mut tensors);
        if tensors.is_empty() {
            return Err(WeightsError::Empty { path: path.to_path_buf() });
        }
        Ok(Checkpoint { path: path.to_path_buf(), tensors })
    }

    /// Names and shapes, sorted by name.
    pub fn shapes(&self) -> Shapes {
        self.tensors.iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect()
    }

    /// Total number of floating-point values.
    pub fn parameter_count(&self) -> usize {
        self.tensors.values().map(|t| t.elem_count()).sum()
    }
}

/// A zip checkpoint's directory, before anything is decompressed: a plausible number of
/// entries whose declared sizes fit the file (each entry's stored bytes, and what they can
/// unpack to) and add up to a plausible total (no decompression bomb); then every pickle in it
/// ([`check_pickle`]). Run before candle's pickle reader sees the file.
pub(crate) fn check_zip(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| format!("not a valid zip archive ({e})"))?;
    if zip.len() > crate::limits::MAX_ZIP_ENTRIES {
        return Err(format!("{} zip entries (at most {})", zip.len(), crate::limits::MAX_ZIP_ENTRIES));
    }
    let mut total = 0u64;
    let mut pickles = Vec::new();
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| format!("bad zip entry {i} ({e})"))?;
        let (size, packed) = (entry.size(), entry.compressed_size());
        // Deflate unpacks at most 1032 bytes from one; stored entries are their own size.
        let most = match entry.compression() {
            zip::CompressionMethod::Stored => packed,
            _ => packed.saturating_mul(1032).saturating_add(64),
        };
        if packed > file_len || size > most {
            return Err(format!("zip entry {} declares {size} bytes from {packed} stored in a {file_len}-byte file", entry.name()));
        }
        total = total.saturating_add(size);
        if entry.name().ends_with("data.pkl") {
            pickles.push(i);
        }
    }
    if total > crate::limits::MAX_CHECKPOINT_BYTES {
        return Err(format!("its entries unpack to {total} bytes, more than the {} accepted", crate::limits::MAX_CHECKPOINT_BYTES));
    }
    for i in pickles {
        use std::io::Read;
        let mut entry = zip.by_index(i).map_err(|e| format!("bad zip entry {i} ({e})"))?;
        let name = entry.name().to_string();
        let mut pickle = Vec::new();
        entry.read_to_end(&mut pickle).map_err(|e| format!("cannot unpack {name} ({e})"))?;
        check_pickle(&pickle).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// A pickle walked as candle's interpreter would run it, opcode by opcode, without building
/// anything: every length it reads fits in what is left of the pickle (candle allocates a
/// string's declared length before reading it), and the values it would build, memo copies
/// included (each `BINGET` clones a whole object), stay below [`crate::limits::MAX_PICKLE_VALUES`]
/// (a few hundred bytes of nested tuples can otherwise ask for 2^40 values). The walk only
/// ends where candle's does (`STOP`, an unknown opcode, the end of the data); where candle
/// would fail on the stack or the memo it goes on (the reader reports that error).
pub(crate) fn check_pickle(p: &[u8]) -> Result<(), String> {
    use crate::limits::MAX_PICKLE_VALUES;
    /// An object on the stack: its size in values (string bytes count), and whether it is a mark.
    #[derive(Clone, Copy)]
    struct Obj {
        size: u64,
        mark: bool,
    }
    fn pop(stack: &mut Vec<Obj>) -> u64 {
        stack.pop().map_or(0, |o| o.size)
    }
    fn pop_to_mark(stack: &mut Vec<Obj>) -> u64 {
        let mark = stack.iter().rposition(|o| o.mark).unwrap_or(0);
        let sum = stack[mark..].iter().filter(|o| !o.mark).fold(0u64, |a, o| a.saturating_add(o.size));
        stack.truncate(mark);
        sum
    }
    let mut pos = 0usize;
    let mut stack: Vec<Obj> = Vec::new();
    let mut memo: HashMap<u64, u64> = HashMap::new();
    let mut built = 0u64;
    // The next `n` bytes as a little-endian number; `None` past the end (candle fails there).
    let arg = |pos: &mut usize, n: usize| -> Option<u64> {
        let b = p.get(*pos..*pos + n)?;
        *pos += n;
        Some(b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64))
    };
    while pos < p.len() {
        let op = p[pos];
        pos += 1;
        // The object pushed, and how many new values building it takes.
        let (size, fresh) = match op {
            // PROTO
            0x80 => {
                if arg(&mut pos, 1).is_none() {
                    break;
                }
                continue;
            }
            // GLOBAL: two lines
            b'c' => {
                let mut len = 1u64;
                for _ in 0..2 {
                    let Some(nl) = p[pos..].iter().position(|&c| c == b'\n') else { return Ok(()) };
                    len += nl as u64;
                    pos += nl + 1;
                }
                (len, len)
            }
            // BININT1, BININT2, BININT, BINFLOAT
            b'K' | b'M' | b'J' | b'G' => {
                let n = match op { b'K' => 1, b'M' => 2, b'J' => 4, _ => 8 };
                if arg(&mut pos, n).is_none() {
                    break;
                }
                (1, 1)
            }
            // BINPUT, LONG_BINPUT: the top object copied into the memo
            b'q' | b'r' => {
                let Some(id) = arg(&mut pos, if op == b'q' { 1 } else { 4 }) else { break };
                memo.insert(id, stack.last().map_or(0, |o| o.size));
                continue;
            }
            // BINGET, LONG_BINGET: a memo object cloned
            b'h' | b'j' => {
                let Some(id) = arg(&mut pos, if op == b'h' { 1 } else { 4 }) else { break };
                let size = memo.get(&id).copied().unwrap_or(1);
                (size, size)
            }
            // BINUNICODE: a 4-byte length, then the string
            b'X' => {
                let Some(len) = arg(&mut pos, 4) else { break };
                if len > (p.len() - pos) as u64 {
                    return Err(format!("a string of {len} bytes at byte {} of a {}-byte pickle", pos - 5, p.len()));
                }
                pos += len as usize;
                (1 + len, 1 + len)
            }
            // LONG1: a 1-byte length, then the number
            0x8a => {
                let Some(n) = arg(&mut pos, 1) else { break };
                if arg(&mut pos, n as usize).is_none() {
                    break;
                }
                (1, 1)
            }
            // BINPERSID: the top object wrapped
            b'Q' => (1u64.saturating_add(pop(&mut stack)), 1),
            // TUPLE: everything down to the mark
            b't' => (1u64.saturating_add(pop_to_mark(&mut stack)), 1),
            // TUPLE1..3
            0x85..=0x87 => {
                let mut size = 1u64;
                for _ in 0..op - 0x84 {
                    size = size.saturating_add(pop(&mut stack));
                }
                (size, 1)
            }
            // NEWTRUE, NEWFALSE, NONE, EMPTY_DICT ('d' too, for candle), EMPTY_TUPLE, EMPTY_LIST
            0x88 | 0x89 | b'N' | b'}' | b'd' | b')' | b']' => (1, 1),
            // APPEND, SETITEM: values added to the object below them; BUILD, REDUCE, NEWOBJ:
            // two objects made one.
            b'a' | b's' | b'b' | b'R' | 0x81 => {
                let mut size = 1u64.saturating_add(pop(&mut stack)).saturating_add(pop(&mut stack));
                if op == b's' {
                    size = size.saturating_add(pop(&mut stack));
                }
                (size, 1)
            }
            // APPENDS, SETITEMS: everything down to the mark added to the object below it.
            b'e' | b'u' => {
                let items = pop_to_mark(&mut stack);
                (items.saturating_add(pop(&mut stack)), 1)
            }
            // MARK
            b'(' => (1, 1),
            // STOP, or an opcode candle does not know: its reading ends here.
            _ => break,
        };
        built = built.saturating_add(fresh);
        if built > MAX_PICKLE_VALUES {
            return Err(format!("it builds more than {MAX_PICKLE_VALUES} values (at byte {pos} of {})", p.len()));
        }
        stack.push(Obj { size, mark: op == b'(' });
    }
    Ok(())
}

/// The checkpoint's state dict is either the top-level object or under `state_dict`
/// (Lightning). Each tensor's shape and bytes are checked against the zip entry that holds it
/// before candle reads it (it allocates the shape's size first).
fn read_pickle_zip(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let attempt = |key: Option<&str>| -> Result<Vec<(String, Tensor)>, String> {
        // The pickle reader is a data-only interpreter; guard against panics on hostile input.
        let p = path.to_path_buf();
        let key = key.map(str::to_owned);
        std::panic::catch_unwind(move || -> Result<Vec<(String, Tensor)>, String> {
            let pth = candle_core::pickle::PthTensors::new(&p, key.as_deref()).map_err(|e| e.to_string())?;
            let file = std::fs::File::open(&p).map_err(|e| e.to_string())?;
            let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
            let mut names: Vec<&String> = pth.tensor_infos().keys().collect();
            names.sort();
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                let info = &pth.tensor_infos()[name];
                crate::limits::check_tensor_shape(name, info.layout.dims())?;
                let bytes = (info.layout.shape().elem_count() as u64)
                    .saturating_mul(info.dtype.size_in_bytes() as u64)
                    .saturating_add(info.layout.start_offset() as u64);
                let stored = match zip.index_for_name(&info.path) {
                    Some(i) => zip.by_index_raw(i).map_err(|e| e.to_string())?.size(),
                    None => return Err(format!("tensor {name}: no zip entry {}", info.path)),
                };
                if bytes > stored {
                    return Err(format!("tensor {name} needs {bytes} bytes, its entry {} holds {stored}", info.path));
                }
                if let Some(t) = pth.get(name).map_err(|e| e.to_string())? {
                    out.push((name.clone(), t));
                }
            }
            Ok(out)
        })
        .map_err(|_| "the pickle data is malformed".to_string())?
    };
    let top = attempt(None)?;
    if !top.is_empty() {
        return Ok(top);
    }
    attempt(Some("state_dict")).or(Ok(vec![]))
}

/// Lightning / DataParallel checkpoints prefix every key (`model.`, `module.`): remove it.
fn strip_common_prefix(tensors: &mut HashMap<String, Tensor>) {
    for prefix in ["model.", "module."] {
        if !tensors.is_empty() && tensors.keys().all(|k| k.starts_with(prefix)) {
            let old = std::mem::take(tensors);
            *tensors = old.into_iter().map(|(k, v)| (k[prefix.len()..].to_string(), v)).collect();
        }
    }
}

/// Compare a checkpoint with the tensors a network needs (`expected`, in checkpoint naming);
/// one error lists every difference, with `hint(found)`: the family's guess at the config value
/// that is wrong.
pub fn compare(ckpt: &Checkpoint, expected: &Shapes, hint: impl FnOnce(&Shapes) -> Option<String>) -> Result<(), WeightsError> {
    let found = ckpt.shapes();
    let mut missing = vec![];
    let mut misshaped = vec![];
    for (name, shape) in expected {
        match found.get(name) {
            None => missing.push((name.clone(), shape.clone())),
            Some(f) if f != shape => misshaped.push((name.clone(), shape.clone(), f.clone())),
            Some(_) => {}
        }
    }
    let unexpected: Vec<_> =
        found.iter().filter(|(k, _)| !expected.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if missing.is_empty() && unexpected.is_empty() && misshaped.is_empty() {
        return Ok(());
    }
    Err(WeightsError::Mismatch { path: ckpt.path.clone(), hint: hint(&found), missing, unexpected, misshaped })
}

/// A prefix into a name -> tensor map; `pp` appends a path segment like candle's VarBuilder, so
/// the network's structs find their tensors by the checkpoint's key paths.
#[derive(Clone)]
pub struct Weights<'a> {
    map: &'a HashMap<String, Tensor>,
    prefix: String,
}

impl<'a> Weights<'a> {
    pub fn new(map: &'a HashMap<String, Tensor>) -> Self {
        Weights { map, prefix: String::new() }
    }

    pub fn pp(&self, s: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() { s.to_string() } else { format!("{}.{s}", self.prefix) };
        Weights { map: self.map, prefix }
    }

    /// The tensor `<prefix>.<name>`, checked against `shape`.
    pub fn get(&self, shape: &[usize], name: &str) -> candle_core::Result<Tensor> {
        let key = format!("{}.{name}", self.prefix);
        let t = self.map.get(&key).ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {key}")))?;
        if t.dims() != shape {
            candle_core::bail!("tensor {key}: expected shape {shape:?}, found {:?}", t.dims());
        }
        Ok(t.clone())
    }
}

/// Cast every tensor to `dtype` on `device` (one upload per tensor at load time).
pub fn to_device(
    tensors: &HashMap<String, Tensor>,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<HashMap<String, Tensor>> {
    tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_dtype(dtype)?.to_device(device)?)))
        .collect()
}

impl Checkpoint {
    /// A checkpoint of seeded random weights with the names and shapes of `expected`
    /// (benchmarks and tests): weights of 2 or more dimensions uniform in ±1/sqrt(fan_in) as
    /// PyTorch initialises them; 1-D tensors named `.weight` or `running_var` 1, others 0.
    pub fn random_with(expected: Shapes, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let tensors = expected
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = if shape.len() == 1 {
                    let one = name.ends_with(".weight") || name.ends_with("running_var");
                    vec![if one { 1.0 } else { 0.0 }; n]
                } else {
                    let fan_in: usize = shape[1..].iter().product();
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    (0..n).map(|_| (rng.next_f32() * 2.0 - 1.0) * bound).collect()
                };
                let t = Tensor::from_vec(values, shape, &Device::Cpu).expect("shape matches length");
                (name, t)
            })
            .collect();
        Checkpoint { path: PathBuf::from("<random weights>"), tensors }
    }
}

/// A small deterministic generator for [`Checkpoint::random`] and benchmark inputs.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Why a file cannot be used, as read from its bytes.
fn not_a_checkpoint(reason: impl std::fmt::Display) -> String {
    format!("not a PyTorch checkpoint or safetensors file ({reason})")
}

/// Tensor names and shapes of a checkpoint without loading its data: the pickle of a PyTorch
/// zip checkpoint (`.ckpt`, `.pth`), or the header of a `.safetensors` file. Only floating-point
/// tensors are kept and a common `model.`/`module.` prefix is removed, as [`Checkpoint::read`] does.
pub fn read_shapes(path: &Path) -> Result<Shapes, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let len = f.metadata().map_err(|e| format!("cannot read: {e}"))?.len();
    if len == 0 {
        return Err("empty file".into());
    }
    let mut head = [0u8; 8];
    let n = read_up_to(&mut f, &mut head).map_err(|e| format!("cannot read: {e}"))?;
    let mut shapes = if head[..n].starts_with(b"PK") {
        read_pickle_shapes(path)?
    } else if n == 8 {
        read_safetensors_shapes(&mut f, u64::from_le_bytes(head), len)?
    } else {
        return Err(not_a_checkpoint("file is too short"));
    };
    for prefix in ["model.", "module."] {
        if !shapes.is_empty() && shapes.keys().all(|k| k.starts_with(prefix)) {
            shapes = shapes.into_iter().map(|(k, v)| (k[prefix.len()..].to_string(), v)).collect();
        }
    }
    if shapes.is_empty() {
        return Err("holds no tensors (is it a model checkpoint?)".into());
    }
    Ok(shapes)
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_pickle_shapes(path: &Path) -> Result<Shapes, String> {
    check_zip(path).map_err(not_a_checkpoint)?;
    let attempt = |key: Option<&'static str>| -> Result<Shapes, String> {
        let p = path.to_path_buf();
        // The pickle reader is a data-only interpreter; guard against panics on hostile input.
        let infos = std::panic::catch_unwind(move || candle_core::pickle::read_pth_tensor_info(&p, false, key))
            .map_err(|_| not_a_checkpoint("the pickle data is malformed"))?
            .map_err(not_a_checkpoint)?;
        Ok(infos
            .into_iter()
            .filter(|t| t.dtype.is_float())
            .map(|t| (t.name, t.layout.dims().to_vec()))
            .collect())
    };
    let top = attempt(None)?;
    if !top.is_empty() {
        return Ok(top);
    }
    Ok(attempt(Some("state_dict")).unwrap_or_default())
}

fn read_safetensors_shapes(f: &mut std::fs::File, header_len: u64, file_len: u64) -> Result<Shapes, String> {
    if header_len == 0 || header_len > file_len - 8 || header_len > 100 << 20 {
        return Err(not_a_checkpoint(format!("header length {header_len} does not fit a {file_len}-byte file")));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(|e| format!("cannot read: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| not_a_checkpoint(format!("bad safetensors header: {e}")))?;
    let obj = v.as_object().ok_or_else(|| not_a_checkpoint("safetensors header is not a JSON object"))?;
    let mut shapes = Shapes::new();
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = t.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
        let shape: Option<Vec<usize>> = t
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
        let Some(shape) = shape else {
            return Err(not_a_checkpoint(format!("tensor {name} has no valid shape")));
        };
        if dtype.starts_with('F') || dtype == "BF16" {
            shapes.insert(name.clone(), shape);
        }
    }
    Ok(shapes)
}
