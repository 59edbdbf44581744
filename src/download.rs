//! Public MDX23C and RoFormer checkpoints by name: [`AVAILABLE`] (what `mdx-stems models --available` lists)
//! and [`download`] (what `--download <name>` and the plugin's editor run).
//!
//! A download goes to `<models>/.downloads/<file>` (a hidden folder the model search skips),
//! resumes from there with an HTTP `Range` request after a dropped connection (within a run,
//! and in a later run after a stall or an interrupt), and is verified before it is renamed
//! into the models folder: the size the server announced, then the UVR hash (UVR's files, the
//! hash UVR itself recognises them by) or the sha256, and for every model that its tensors
//! match its config. A model that fails verification is removed, so the models folder holds
//! a verified model or nothing. The config comes with it: from UVR's hash table (built in) or
//! the publisher's yaml, saved as `<file stem>.yaml` beside the checkpoint.
//!
//! `MDX_STEMS_MODEL_BASE_URL` (read by the program edges, [`DownloadOptions::from_env`])
//! replaces every publisher URL by `<base>/<file name>`: tests serve fixtures that way.

use crate::catalog::uvr_hash;
use crate::nets::{Checkpoint, NetSpec};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a downloaded checkpoint is recognised as the right file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// UVR's hash (MD5 of the last 10,000 KiB), as in UVR's model data.
    UvrHash(&'static str),
    /// sha256 of the whole file, lowercase hex.
    Sha256(&'static str),
    /// No published hash: the announced size and the tensors against the config.
    TensorsOnly,
}

/// Where a model's config comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// UVR's hash -> config table, compiled in (nothing to download).
    UvrTable,
    /// The publisher's yaml at this URL (file name = last path segment).
    Url(&'static str),
}

/// A public MDX23C or RoFormer checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    /// The name `--download` takes (the file stem).
    pub name: &'static str,
    /// The publisher's URL of the checkpoint (file name = last path segment).
    pub url: &'static str,
    pub config: ConfigSource,
    pub stems: &'static str,
    /// Exact size in bytes where the publisher states it.
    pub size: Option<u64>,
    pub check: Check,
    /// Who publishes it, and the licence or terms.
    pub source: &'static str,
    /// The separation quality the publisher reports.
    pub sdr: &'static str,
}

impl Available {
    /// The checkpoint's file name.
    pub fn file_name(&self) -> &'static str {
        last_segment(self.url)
    }
}

fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// The model `mdx-stems separate` suggests when it has none (vocals and instrumental).
pub const RECOMMENDED: &str = "MDX23C-8KFFT-InstVoc_HQ";

/// The public MDX23C checkpoints, from the publishers' own pages: UVR's model repository
/// (TRvlvr/model_repo, release `all_public_uvr_models`; the hash is UVR's own, from UVR's
/// model data: `99b6ceaa…` -> `model_2_stem_full_band_8k.yaml`) and the releases that
/// ZFTurbo/Music-Source-Separation-Training lists in `docs/pretrained_models.md` (its own
/// v1.0.0 and v1.0.1 releases, and jarredou/models for the DrumSep model), with the SDR each
/// reports. Neither publishes file sizes or sha256 sums; the size the server announces is
/// checked, and every checkpoint's tensors against its config.
pub const AVAILABLE: &[Available] = &[
    Available {
        name: "MDX23C-8KFFT-InstVoc_HQ",
        url: "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/MDX23C-8KFFT-InstVoc_HQ.ckpt",
        config: ConfigSource::UvrTable,
        stems: "Vocals, Instrumental",
        size: None,
        check: Check::UvrHash("99b6ceaae542265a3b6d657bf9fde79f"),
        source: "UVR (Anjok07, aufr33), UVR's public model repository",
        sdr: "UVR's \"MDX23C-InstVoc HQ\"; MSST lists its twin at vocals 10.17 (Multisong)",
    },
    Available {
        name: "model_vocals_mdx23c_sdr_10.17",
        url: "https://github.com/ZFTurbo/Music-Source-Separation-Training/releases/download/v1.0.0/model_vocals_mdx23c_sdr_10.17.ckpt",
        config: ConfigSource::Url("https://github.com/ZFTurbo/Music-Source-Separation-Training/releases/download/v1.0.0/config_vocals_mdx23c.yaml"),
        stems: "vocals, other",
        size: None,
        check: Check::TensorsOnly,
        source: "ZFTurbo, MSST release v1.0.0 (MIT code, weights shared publicly)",
        sdr: "vocals 10.17 (Multisong)",
    },
    Available {
        name: "model_mdx23c_ep_168_sdr_7.0207",
        url: "https://github.com/ZFTurbo/Music-Source-Separation-Training/releases/download/v1.0.1/model_mdx23c_ep_168_sdr_7.0207.ckpt",
        config: ConfigSource::Url("https://github.com/ZFTurbo/Music-Source-Separation-Training/releases/download/v1.0.1/config_musdb18_mdx23c.yaml"),
        stems: "bass, drums, vocals, other",
        size: None,
        check: Check::TensorsOnly,
        source: "ZFTurbo, MSST release v1.0.1, trained on MUSDB18HQ only",
        sdr: "avg 7.15 MUSDB18 test (bass 5.77, drums 7.93, vocals 9.23, other 5.68); 7.02 Multisong",
    },
    Available {
        name: "aufr33-jarredou_DrumSep_model_mdx23c_ep_141_sdr_10.8059",
        url: "https://github.com/jarredou/models/releases/download/aufr33-jarredou_MDX23C_DrumSep_model_v0.1/aufr33-jarredou_DrumSep_model_mdx23c_ep_141_sdr_10.8059.ckpt",
        config: ConfigSource::Url("https://github.com/jarredou/models/releases/download/aufr33-jarredou_MDX23C_DrumSep_model_v0.1/aufr33-jarredou_DrumSep_model_mdx23c_ep_141_sdr_10.8059.yaml"),
        stems: "kick, snare, toms, hh, ride, crash (from a drums stem)",
        size: None,
        check: Check::TensorsOnly,
        source: "aufr33 and jarredou, jarredou/models release (listed by MSST)",
        sdr: "not reported (10.81 in the file name)",
    },
    // RoFormers (BS-RoFormer, Mel-Band RoFormer): UVR's list (TRvlvr/application_data,
    // `filelists/download_checks.json`: `roformer_download_list`, `other_network_list`) with
    // UVR's hashes (`mdx_model_data/model_data_new.json`) and configs (`assets/uvr-roformer/`),
    // and MSST's vocal and MUSDB18HQ tables for the SDRs. See docs/cli.md, "RoFormer models".
    Available {
        name: "MelBandRoformer",
        url: "https://huggingface.co/KimberleyJSN/melbandroformer/resolve/main/MelBandRoformer.ckpt",
        config: ConfigSource::UvrTable,
        stems: "Vocals, Instrumental",
        size: None,
        check: Check::UvrHash("e4ca75912fcff3224a19058e55facfbf"),
        source: "Kimberley Jensen, Hugging Face KimberleyJSN/melbandroformer (listed by UVR, MSST)",
        sdr: "vocals 10.98 (Multisong, MSST)",
    },
    Available {
        name: "model_bs_roformer_ep_317_sdr_12.9755",
        url: "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/model_bs_roformer_ep_317_sdr_12.9755.ckpt",
        config: ConfigSource::UvrTable,
        stems: "Vocals, Instrumental",
        size: None,
        check: Check::UvrHash("53f707017bfcbb56f5e1bfac420d6732"),
        source: "viperx, UVR's public model repository (listed by MSST)",
        sdr: "vocals 10.87 (Multisong, MSST); UVR's \"BS-Roformer-Viperx-1297\"",
    },
    Available {
        name: "model_bs_roformer_ep_368_sdr_12.9628",
        url: "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/model_bs_roformer_ep_368_sdr_12.9628.ckpt",
        config: ConfigSource::UvrTable,
        stems: "Vocals, Instrumental",
        size: None,
        check: Check::UvrHash("d789065adfd747d6f585b27b495bcdae"),
        source: "viperx, UVR's public model repository",
        sdr: "not on MSST's list (12.96 in the file name); UVR's \"BS-Roformer-Viperx-1296\"",
    },
    Available {
        name: "model_mel_band_roformer_ep_3005_sdr_11.4360",
        url: "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/model_mel_band_roformer_ep_3005_sdr_11.4360.ckpt",
        config: ConfigSource::UvrTable,
        stems: "Vocals, Instrumental",
        size: None,
        check: Check::UvrHash("63e41acc264bf681a73aa9f7e5f606cc"),
        source: "viperx, UVR's public model repository (listed by MSST)",
        sdr: "vocals 9.67 (Multisong, MSST); UVR's \"Mel-Roformer-Viperx-1143\"",
    },
    Available {
        name: "model_bs_roformer_ep_17_sdr_9.6568",
        url: "https://github.com/ZFTurbo/Music-Source-Separation-Training/releases/download/v1.0.12/model_bs_roformer_ep_17_sdr_9.6568.ckpt",
        config: ConfigSource::Url("https://github.com/ZFTurbo/Music-Source-Separation-Training/releases/download/v1.0.12/config_bs_roformer_384_8_2_485100.yaml"),
        stems: "bass, drums, vocals, other",
        size: None,
        check: Check::TensorsOnly,
        source: "ZFTurbo, MSST release v1.0.12, trained on MUSDB18HQ only",
        sdr: "avg 9.65 MUSDB18 test (bass 8.48, drums 11.61, vocals 11.08, other 7.44); 9.38 Multisong",
    },
];

/// The download size as `--available` prints it: the publisher's exact size, else an estimate
/// from a compiled-in config (its parameter count as 32-bit floats), else that it is shown when
/// the download starts.
pub fn size_text(a: &Available) -> String {
    if let Some(b) = a.size {
        return format!("{:.0} MB", b as f64 / 1e6);
    }
    let config = match (a.config, a.check) {
        (ConfigSource::UvrTable, Check::UvrHash(h)) => crate::catalog::UvrTable::builtin().config_for(h).and_then(|(_, c)| c.ok()),
        _ => None,
    };
    match config {
        Some(cfg) => format!("about {:.0} MB (estimated: {} parameters as f32)", cfg.parameter_count() as f64 * 4.0 / 1e6, cfg.parameter_count()),
        None => "not published (shown when the download starts)".to_string(),
    }
}

/// The table `mdx-stems models --available` prints.
pub fn print_available(list: &[Available]) -> String {
    let mut s = String::new();
    for a in list {
        let check = match a.check {
            Check::UvrHash(_) => "UVR hash",
            Check::Sha256(_) => "sha256",
            Check::TensorsOnly => "tensors vs config",
        };
        let about = crate::catalog::quality::KNOWN.iter().find(|k| k.file_stem == a.name).map_or("", |k| k.about);
        s.push_str(&format!(
            "{}\n  for: {}\n  stems: {}\n  quality: {}\n  source: {}\n  download size: {}; verified by {}\n",
            a.name,
            about,
            a.stems,
            a.sdr,
            a.source,
            size_text(a),
            check
        ));
    }
    s.push_str("download one with: mdx-stems models --download <NAME> (a unique prefix or part of a name is enough)\n");
    s
}

/// Find a model of `list` by name or file name: exactly, else by a unique prefix, else by a
/// unique part (any case; [`crate::catalog::match_names`]). Several matches: the error lists them.
pub fn find<'a>(list: &'a [Available], name: &str) -> Result<&'a Available, DownloadError> {
    let (hits, _) = crate::catalog::match_names(name, list, |a| vec![a.name.to_string(), a.file_name().to_string()]);
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(DownloadError::UnknownName {
            name: name.to_string(),
            names: list.iter().map(|a| a.name).collect::<Vec<_>>().join(", "),
        }),
        many => Err(DownloadError::Ambiguous {
            name: name.to_string(),
            names: many.iter().map(|a| a.name).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// Everything that can stop a download, each a line a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("no downloadable model named `{name}`; the names are: {names}")]
    UnknownName { name: String, names: String },
    #[error("`{name}` matches several downloadable models: {names}; give more of the name")]
    Ambiguous { name: String, names: String },
    #[error("cannot reach {host}: {reason} (no network?); run the command again to resume")]
    Network { host: String, reason: String },
    #[error("{url} was not found (HTTP 404); the publisher may have moved it")]
    NotFound { url: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("refused a redirect from {from} to {to}: {why}")]
    Redirect { from: String, to: String, why: &'static str },
    #[error("the download from {url} stalled (no data for {secs} s); run the command again to resume")]
    Stalled { url: String, secs: u64 },
    #[error("the disk is full writing {path}; free some space and run the command again to resume")]
    DiskFull { path: PathBuf },
    #[error("{file} is not the published file ({what}); it was removed")]
    Verification { file: String, what: String },
    #[error("the download was cancelled; run it again to resume")]
    Cancelled,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// How to download.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// The models folder (created if missing).
    pub dir: PathBuf,
    /// `Some`: every file is fetched from `<base>/<file name>` instead of its publisher's URL.
    pub base_url: Option<String>,
    /// No data for this long: the download stalls (resumable).
    pub stall_timeout: Duration,
    /// Attempts per file when the connection drops (each resumes where the last stopped).
    pub attempts: usize,
    /// Set from another thread to stop the download (the partial file stays, to resume).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl DownloadOptions {
    /// The app's models folder, `MDX_STEMS_MODEL_BASE_URL`, 30 s stall timeout, 4 attempts.
    pub fn from_env() -> Self {
        DownloadOptions {
            dir: crate::catalog::app_models_dir(),
            base_url: std::env::var("MDX_STEMS_MODEL_BASE_URL").ok().filter(|s| !s.trim().is_empty()),
            stall_timeout: Duration::from_secs(30),
            attempts: 4,
            cancel: None,
        }
    }

    fn url_for(&self, publisher_url: &str) -> String {
        match &self.base_url {
            Some(b) => format!("{}/{}", b.trim_end_matches('/'), last_segment(publisher_url)),
            None => publisher_url.to_string(),
        }
    }
}

/// Progress: `(bytes done, total bytes if known)`, called often.
pub type Progress<'a> = dyn FnMut(u64, Option<u64>) + 'a;

/// Download `model` into `opts.dir` with its config, verify it, and return the checkpoint's
/// path. An existing verified file is kept (nothing fetched).
pub fn download(model: &Available, opts: &DownloadOptions, progress: &mut Progress<'_>) -> Result<PathBuf, DownloadError> {
    let dir = &opts.dir;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| classify_io(path, source)
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let staging = dir.join(".downloads");
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let file = model.file_name();
    let target = dir.join(file);
    let yaml_target = target.with_extension("yaml");
    let part = staging.join(file);
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(opts.stall_timeout)
        .redirects(0)
        .build();
    // The config first (small): the checkpoint is checked against it.
    let config_text = match model.config {
        ConfigSource::UvrTable => None,
        ConfigSource::Url(u) => {
            let url = opts.url_for(u);
            let mut buf = Vec::new();
            let (resp, _) = get(&agent, &url, 0)?;
            resp.into_reader().take(16 << 20).read_to_end(&mut buf).map_err(|e| net_error(&url, e, opts.stall_timeout))?;
            Some(String::from_utf8_lossy(&buf).into_owned())
        }
    };
    let config = match (&config_text, model.config) {
        (Some(t), _) => Some(crate::nets::from_yaml_str(t).map_err(|e| DownloadError::Verification { file: file.into(), what: format!("its config does not parse: {e}") })?),
        (None, _) => match model.check {
            Check::UvrHash(h) => crate::catalog::UvrTable::builtin().config_for(h).map(|(_, c)| c.ok()).flatten(),
            _ => None,
        },
    };
    let url = opts.url_for(model.url);
    fetch_resumable(&agent, &url, &part, opts, progress)?;
    if let Err(e) = verify(model, &part, config.as_deref()) {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    if let Some(t) = &config_text {
        std::fs::write(&yaml_target, t).map_err(io(&yaml_target))?;
    }
    std::fs::rename(&part, &target).map_err(io(&target))?;
    let _ = std::fs::remove_dir(&staging);
    Ok(target)
}

/// The file at `path` is `model`: announced size (checked while fetching), size, hash, tensors.
fn verify(model: &Available, path: &Path, config: Option<&dyn NetSpec>) -> Result<(), DownloadError> {
    let file = model.file_name().to_string();
    let bad = |what: String| DownloadError::Verification { file: file.clone(), what };
    let len = std::fs::metadata(path).map_err(|e| DownloadError::Io { path: path.into(), source: e })?.len();
    if let Some(size) = model.size {
        if len != size {
            return Err(bad(format!("{len} bytes, the publisher's file has {size}")));
        }
    }
    match model.check {
        Check::UvrHash(want) => {
            let got = uvr_hash(path).map_err(|e| DownloadError::Io { path: path.into(), source: e })?;
            if got != want {
                return Err(bad(format!("UVR hash {got}, expected {want}")));
            }
        }
        Check::Sha256(want) => {
            let got = sha256_file(path).map_err(|e| DownloadError::Io { path: path.into(), source: e })?;
            if got != want {
                return Err(bad(format!("sha256 {got}, expected {want}")));
            }
        }
        Check::TensorsOnly => {}
    }
    if let Some(cfg) = config {
        let ckpt = Checkpoint::read(path).map_err(|e| bad(format!("not a readable checkpoint: {e}")))?;
        cfg.check_tensors(&ckpt).map_err(|e| bad(format!("its tensors do not match its config: {e}")))?;
    }
    Ok(())
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// GET `url` (from byte `from`), following up to 5 redirects that stay on http(s) and never go
/// from https to http. Returns the response and whether it is a partial (206) one.
fn get(agent: &ureq::Agent, url: &str, from: u64) -> Result<(ureq::Response, bool), DownloadError> {
    let mut url = url.to_string();
    for _ in 0..=5 {
        let mut req = agent.get(&url);
        if from > 0 {
            req = req.set("Range", &format!("bytes={from}-"));
        }
        match req.call() {
            Ok(resp) if (300..400).contains(&resp.status()) => {
                let to = resp.header("location").unwrap_or("").to_string();
                let next = resolve_location(&url, &to);
                let why = if !(next.starts_with("https://") || next.starts_with("http://")) {
                    Some("not an http(s) address")
                } else if url.starts_with("https://") && next.starts_with("http://") {
                    Some("it would leave https")
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(DownloadError::Redirect { from: url, to, why });
                }
                url = next;
            }
            Ok(resp) => {
                let partial = resp.status() == 206;
                return Ok((resp, partial));
            }
            Err(ureq::Error::Status(404, _)) => return Err(DownloadError::NotFound { url }),
            Err(ureq::Error::Status(416, r)) => return Ok((r, true)),
            Err(ureq::Error::Status(code, _)) => return Err(DownloadError::Status { url, status: code }),
            Err(ureq::Error::Transport(t)) => return Err(transport(&url, &t)),
        }
    }
    Err(DownloadError::Redirect { from: url.clone(), to: url, why: "more than 5 redirects" })
}

/// A `Location` header against the URL it came from (absolute, or a path on the same host).
fn resolve_location(base: &str, loc: &str) -> String {
    if loc.contains("://") {
        return loc.to_string();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    if loc.starts_with('/') { format!("{}{loc}", &base[..host_end]) } else { format!("{}/{loc}", &base[..host_end]) }
}

fn host_of(url: &str) -> String {
    let s = url.split("://").nth(1).unwrap_or(url);
    s.split('/').next().unwrap_or(s).to_string()
}

fn transport(url: &str, t: &ureq::Transport) -> DownloadError {
    DownloadError::Network { host: host_of(url), reason: t.to_string().lines().next().unwrap_or("").to_string() }
}

fn net_error(url: &str, e: std::io::Error, stall: Duration) -> DownloadError {
    if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) {
        DownloadError::Stalled { url: url.to_string(), secs: stall.as_secs().max(1) }
    } else {
        DownloadError::Network { host: host_of(url), reason: e.to_string() }
    }
}

fn classify_io(path: PathBuf, source: std::io::Error) -> DownloadError {
    if source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
        DownloadError::DiskFull { path }
    } else {
        DownloadError::Io { path, source }
    }
}

/// Fetch `url` into `part`, resuming from its current length; retries a dropped connection
/// `opts.attempts` times. Complete when the server's announced length is reached.
fn fetch_resumable(agent: &ureq::Agent, url: &str, part: &Path, opts: &DownloadOptions, progress: &mut Progress<'_>) -> Result<(), DownloadError> {
    let mut last_err = None;
    for _ in 0..opts.attempts.max(1) {
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let (resp, partial) = get(agent, url, have)?;
        if resp.status() == 416 {
            // Nothing left to fetch: the partial file is whole (verification decides).
            return Ok(());
        }
        let start = if partial { have } else { 0 };
        let total = resp.header("content-length").and_then(|v| v.parse::<u64>().ok()).map(|n| n + start);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(partial)
            .truncate(!partial)
            .open(part)
            .map_err(|e| classify_io(part.into(), e))?;
        let mut done = start;
        progress(done, total);
        let mut reader = resp.into_reader();
        let mut buf = vec![0u8; 256 << 10];
        let outcome = loop {
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(_) if opts.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) => {
                    break Err(DownloadError::Cancelled);
                }
                Ok(n) => {
                    if let Err(e) = f.write_all(&buf[..n]) {
                        return Err(classify_io(part.into(), e));
                    }
                    done += n as u64;
                    progress(done, total);
                }
                Err(e) => break Err(net_error(url, e, opts.stall_timeout)),
            }
        };
        f.flush().map_err(|e| classify_io(part.into(), e))?;
        drop(f);
        match outcome {
            Ok(()) if total.is_none_or(|t| done >= t) => return Ok(()),
            // The server closed before the announced end: resume.
            Ok(()) => last_err = Some(DownloadError::Network { host: host_of(url), reason: format!("connection closed after {done} of {} bytes", total.unwrap_or(0)) }),
            Err(e @ (DownloadError::Stalled { .. } | DownloadError::Cancelled)) => return Err(e),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("at least one attempt"))
}
