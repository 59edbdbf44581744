//! Downloads by name against an HTTP server on 127.0.0.1 started here (no outside network):
//! a fixture checkpoint served under catalog names. After each case the models folder holds
//! the verified model (with its config) or no model at all.

mod common;
use common::*;

use mdx_stems::download::{self, Available, Check, ConfigSource, DownloadError, DownloadOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server answers a request for the checkpoint.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Good,
    /// The first response announces the whole file and closes halfway.
    DropHalfway,
    /// Sends half, then nothing (the connection stays open).
    Stall,
    /// Redirects to a non-http address.
    BadRedirect,
}

/// A tiny HTTP/1.1 server: `files` by name, `Range: bytes=N-` honoured; every request's Range
/// header is recorded. Stops when the test ends (its thread is detached, bounded by the test).
struct Server {
    base: String,
    ranges: Arc<Mutex<Vec<Option<u64>>>>,
}

fn serve(files: Vec<(String, Vec<u8>)>, mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(vec![]));
    let rec = ranges.clone();
    std::thread::spawn(move || {
        let files = Arc::new(files);
        let mut served = 0;
        for stream in listener.incoming().take(20) {
            let Ok(stream) = stream else { continue };
            served += 1;
            // One thread a connection: a stalled one must not hold up the next.
            let (files, rec) = (files.clone(), rec.clone());
            std::thread::spawn(move || handle(stream, &files, mode, served, &rec));
        }
    });
    Server { base, ranges }
}

fn handle(mut s: TcpStream, files: &[(String, Vec<u8>)], mode: Mode, nth: usize, rec: &Mutex<Vec<Option<u64>>>) {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = v.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    let Some((_, body)) = files.iter().find(|(n, _)| *n == path) else {
        let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return;
    };
    let is_ckpt = path.ends_with(".ckpt");
    if is_ckpt {
        rec.lock().unwrap().push(range);
    }
    if is_ckpt && mode == Mode::BadRedirect {
        let _ = s.write_all(b"HTTP/1.1 302 Found\r\nlocation: ftp://example.invalid/model.ckpt\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return;
    }
    let from = range.unwrap_or(0) as usize;
    let part = &body[from.min(body.len())..];
    let head = if range.is_some() {
        format!("HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {from}-{}/{}\r\nconnection: close\r\n\r\n", part.len(), body.len() - 1, body.len())
    } else {
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", part.len())
    };
    let _ = s.write_all(head.as_bytes());
    let first_ckpt = is_ckpt && nth <= 2 && range.is_none();
    match mode {
        Mode::DropHalfway | Mode::Stall if first_ckpt => {
            let _ = s.write_all(&part[..part.len() / 2]);
            let _ = s.flush();
            if mode == Mode::Stall {
                std::thread::sleep(Duration::from_secs(3));
            }
            // Dropped: the connection closes before the announced end.
        }
        _ => {
            let _ = s.write_all(part);
        }
    }
}

/// The fixture checkpoint with its config, and a catalog entry for it under `name`.
fn fixture(check: fn(&Path) -> Check) -> (Vec<(String, Vec<u8>)>, Available) {
    let d = fixture_dir("tiny_instnorm_gelu");
    let ckpt = std::fs::read(d.join("model.ckpt")).unwrap();
    let yaml = std::fs::read(d.join("config.yaml")).unwrap();
    let entry = Available {
        name: "model_vocals_mdx23c_sdr_10.17",
        url: "https://publisher.invalid/v1/model_vocals_mdx23c_sdr_10.17.ckpt",
        config: ConfigSource::Url("https://publisher.invalid/v1/config_vocals_mdx23c.yaml"),
        stems: "vocals, instrumental",
        size: Some(ckpt.len() as u64),
        check: check(&d.join("model.ckpt")),
        source: "test",
        sdr: "-",
    };
    (vec![("model_vocals_mdx23c_sdr_10.17.ckpt".into(), ckpt), ("config_vocals_mdx23c.yaml".into(), yaml)], entry)
}

fn sha_check(p: &Path) -> Check {
    Check::Sha256(Box::leak(download::sha256_file(p).unwrap().into_boxed_str()))
}

fn opts(dir: &Path, base: &str) -> DownloadOptions {
    DownloadOptions { dir: dir.to_path_buf(), base_url: Some(base.to_string()), stall_timeout: Duration::from_millis(800), attempts: 3, cancel: None }
}

/// The model files in the folder (what `mdx-stems models` would list), not the staging area.
fn models_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).map(|r| r.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect()).unwrap_or_default();
    v.sort();
    v
}

fn fresh(name: &str) -> PathBuf {
    let d = temp_dir("download-tests", name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_good_download_is_verified_and_found_with_its_config() {
    let (files, entry) = fixture(sha_check);
    let srv = serve(files, Mode::Good);
    let dir = fresh("good");
    let mut last = (0, None);
    let path = download::download(&entry, &opts(&dir, &srv.base), &mut |d, t| last = (d, t)).unwrap();
    assert_eq!(path, dir.join("model_vocals_mdx23c_sdr_10.17.ckpt"));
    assert_eq!(last, (entry.size.unwrap(), entry.size), "progress reached the total");
    assert_eq!(models_in(&dir), vec![dir.join("model_vocals_mdx23c_sdr_10.17.ckpt"), dir.join("model_vocals_mdx23c_sdr_10.17.yaml")]);
    let found = mdx_stems::catalog::discover_in(&[(dir.clone(), mdx_stems::catalog::ModelSource::App)], mdx_stems::catalog::UvrTable::builtin());
    assert_eq!(found.len(), 1);
    assert!(found[0].is_ready(), "{:?}", found[0].config);
}

#[test]
fn a_dropped_connection_resumes_with_a_range_request() {
    let (files, entry) = fixture(sha_check);
    let srv = serve(files, Mode::DropHalfway);
    let dir = fresh("resume");
    download::download(&entry, &opts(&dir, &srv.base), &mut |_, _| {}).unwrap();
    let ranges = srv.ranges.lock().unwrap().clone();
    let half = entry.size.unwrap() / 2;
    assert_eq!(ranges, vec![None, Some(half)], "the second request resumes at the half");
    assert_eq!(download::sha256_file(&dir.join("model_vocals_mdx23c_sdr_10.17.ckpt")).unwrap(), match entry.check { Check::Sha256(h) => h, _ => unreachable!() });
}

#[test]
fn a_stalled_server_times_out_and_the_next_run_resumes() {
    let (files, entry) = fixture(sha_check);
    let srv = serve(files, Mode::Stall);
    let dir = fresh("stall");
    let err = download::download(&entry, &opts(&dir, &srv.base), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Stalled { .. }), "{err}");
    assert!(err.to_string().contains("stalled") && !err.to_string().contains('\n'), "{err}");
    assert!(models_in(&dir).is_empty(), "no model after a stall: {:?}", models_in(&dir));
    // Run again: it continues from the half it has.
    download::download(&entry, &opts(&dir, &srv.base), &mut |_, _| {}).unwrap();
    let ranges = srv.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![None, Some(entry.size.unwrap() / 2)]);
    assert_eq!(models_in(&dir).len(), 2);
}

#[test]
fn a_wrong_hash_removes_the_file() {
    let (files, entry) = fixture(|_| Check::Sha256("0000000000000000000000000000000000000000000000000000000000000000"));
    let srv = serve(files, Mode::Good);
    let dir = fresh("hash");
    let err = download::download(&entry, &opts(&dir, &srv.base), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Verification { .. }) && err.to_string().contains("sha256"), "{err}");
    assert!(models_in(&dir).is_empty());
    assert!(!dir.join(".downloads/model_vocals_mdx23c_sdr_10.17.ckpt").exists(), "the partial is removed");
    // The real UVR entry served with other content: UVR's hash does not match either.
    let (files, _) = fixture(sha_check);
    let renamed: Vec<(String, Vec<u8>)> = files.into_iter().map(|(n, b)| (n.replace("model_vocals_mdx23c_sdr_10.17", "MDX23C-8KFFT-InstVoc_HQ"), b)).collect();
    let srv = serve(renamed, Mode::Good);
    let uvr = download::find(download::AVAILABLE, "MDX23C-8KFFT").unwrap();
    let err = download::download(uvr, &opts(&dir, &srv.base), &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("UVR hash") && err.to_string().contains("99b6ceaae542265a3b6d657bf9fde79f"), "{err}");
    assert!(models_in(&dir).is_empty());
}

#[test]
fn not_found_refused_redirect_and_no_network_are_one_line_errors() {
    let (files, entry) = fixture(sha_check);
    let dir = fresh("errors");
    let srv = serve(vec![files[1].clone()], Mode::Good);
    let err = download::download(&entry, &opts(&dir, &srv.base), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, DownloadError::NotFound { .. }) && err.to_string().contains("404"), "{err}");
    let srv = serve(files, Mode::BadRedirect);
    let err = download::download(&entry, &opts(&dir, &srv.base), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Redirect { .. }) && err.to_string().contains("refused a redirect"), "{err}");
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = download::download(&entry, &opts(&dir, &format!("http://{closed}")), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Network { .. }) && err.to_string().contains("no network"), "{err}");
    for e in [&err] {
        assert!(!e.to_string().contains('\n'));
    }
    assert!(models_in(&dir).is_empty());
}

#[test]
fn names_and_the_available_table() {
    assert_eq!(download::find(download::AVAILABLE, "mdx23c-8kfft").unwrap().name, "MDX23C-8KFFT-InstVoc_HQ");
    // An ambiguous prefix names its candidates (not "no model named").
    let err = download::find(download::AVAILABLE, "model_").unwrap_err().to_string();
    assert!(
        err.contains("matches several") && err.contains("model_vocals_mdx23c_sdr_10.17") && err.contains("model_mdx23c_ep_168_sdr_7.0207"),
        "{err}"
    );
    // No prefix matches: a unique part of the name does, in any case; an ambiguous part lists.
    assert_eq!(download::find(download::AVAILABLE, "InstVoc").unwrap().name, "MDX23C-8KFFT-InstVoc_HQ");
    assert_eq!(download::find(download::AVAILABLE, "drumsep").unwrap().name, "aufr33-jarredou_DrumSep_model_mdx23c_ep_141_sdr_10.8059");
    // A prefix wins over parts: `mdx23c` begins one name and is inside three others.
    assert_eq!(download::find(download::AVAILABLE, "mdx23c").unwrap().name, "MDX23C-8KFFT-InstVoc_HQ");
    let err = download::find(download::AVAILABLE, "sdr_").unwrap_err().to_string();
    assert!(err.contains("matches several") && err.contains("DrumSep") && err.contains("ep_168"), "{err}");
    assert!(download::find(download::AVAILABLE, "nothing-like-it").unwrap_err().to_string().contains("no downloadable model named"));
    let t = download::print_available(download::AVAILABLE);
    for needle in ["MDX23C-8KFFT-InstVoc_HQ", "vocals 10.17", "bass, drums, vocals, other", "DrumSep", "UVR hash"] {
        assert!(t.contains(needle), "{needle} in\n{t}");
    }
    // Every model says its download size (what `--available`'s help promises).
    assert_eq!(t.matches("download size: ").count(), download::AVAILABLE.len(), "{t}");
    let uvr = t.lines().skip_while(|l| *l != "MDX23C-8KFFT-InstVoc_HQ").find(|l| l.contains("download size")).unwrap();
    assert!(uvr.contains(" MB"), "the UVR model's config is built in: its size is estimated: {uvr}");
}

/// Every entry of `--available`: a unique name that is its file's stem, an https URL of a
/// checkpoint, a config source (UVR's table: a UVR hash that the built-in table maps to an
/// embedded config; else the publisher's yaml), and the public RoFormers are there, each
/// recognised as the family its config says.
#[test]
fn the_available_entries_are_well_formed_and_offer_the_public_roformers() {
    let well_formed = |u: &str, ext: &str| {
        u.starts_with("https://") && !u.contains(char::is_whitespace) && u.matches("://").count() == 1 && u.ends_with(ext) && u.split('/').count() >= 5
    };
    let table = mdx_stems::catalog::UvrTable::builtin();
    let mut names = std::collections::HashSet::new();
    for a in download::AVAILABLE {
        assert!(names.insert(a.name.to_lowercase()), "{} twice", a.name);
        assert!(well_formed(a.url, ".ckpt"), "{}: {}", a.name, a.url);
        assert_eq!(a.file_name().strip_suffix(".ckpt"), Some(a.name), "the name is the file's stem");
        match (a.config, a.check) {
            (ConfigSource::UvrTable, Check::UvrHash(h)) => {
                let yaml = table.yaml_name(h).unwrap_or_else(|| panic!("{}: hash {h} not in the built-in table", a.name));
                assert!(table.yaml_text(yaml).is_some(), "{}: {yaml} not embedded", a.name);
            }
            (ConfigSource::UvrTable, other) => panic!("{}: UVR's table needs UVR's hash, not {other:?}", a.name),
            (ConfigSource::Url(u), _) => assert!(well_formed(u, ".yaml"), "{}: {u}", a.name),
        }
        assert!(!a.stems.is_empty() && !a.source.is_empty() && !a.sdr.is_empty(), "{}", a.name);
    }
    let uvr_family = |name: &str| match download::find(download::AVAILABLE, name).unwrap().check {
        Check::UvrHash(h) => table.lookup(h).map(|(_, net)| net.family()),
        _ => None,
    };
    assert_eq!(uvr_family("model_bs_roformer_ep_317_sdr_12.9755"), Some("BS-RoFormer"));
    assert_eq!(uvr_family("model_bs_roformer_ep_368_sdr_12.9628"), Some("BS-RoFormer"));
    assert_eq!(uvr_family("model_mel_band_roformer_ep_3005_sdr_11.4360"), Some("Mel-Band RoFormer"));
    assert_eq!(uvr_family("MelBandRoformer"), Some("Mel-Band RoFormer"));
    assert_eq!(uvr_family("MDX23C-8KFFT-InstVoc_HQ"), Some("MDX23C (TFC-TDF v3)"));
    let kim = download::find(download::AVAILABLE, "melbandroformer").unwrap();
    assert_eq!(kim.check, Check::UvrHash("e4ca75912fcff3224a19058e55facfbf"), "UVR's hash of MelBandRoformer.ckpt");
    assert!(kim.sdr.contains("10.98"), "{}", kim.sdr);
    assert!(matches!(download::find(download::AVAILABLE, "ep_17").unwrap().config, ConfigSource::Url(u) if u.ends_with("config_bs_roformer_384_8_2_485100.yaml")));
    // `--available` says what each is for, and stays within 100 columns.
    let t = download::print_available(download::AVAILABLE);
    assert_eq!(t.matches("\n  for: ").count(), download::AVAILABLE.len(), "{t}");
    for needle in ["Mel-Band RoFormer (Kimberley Jensen)", "BS-RoFormer (viperx)", "vocals 10.87 (Multisong, MSST)"] {
        assert!(t.contains(needle), "{needle} in\n{t}");
    }
    for l in t.lines() {
        assert!(l.chars().count() <= 100, "{} columns: {l}", l.chars().count());
    }
}

/// A RoFormer published with its own yaml is verified like an MDX23C: its config parsed by the
/// registry and its tensors checked strictly against it (`NetSpec::check_tensors`). Weights of
/// another RoFormer under its name are refused and removed.
#[test]
fn a_roformer_download_is_checked_against_its_config() {
    let d = mdx_stems::testing::roformer_fixture_dir("mel_tiny_target");
    let ckpt = std::fs::read(d.join("model.ckpt")).unwrap();
    let yaml = std::fs::read(d.join("config.yaml")).unwrap();
    let entry = Available {
        name: "mel_tiny_roformer",
        url: "https://publisher.invalid/v1/mel_tiny_roformer.ckpt",
        config: ConfigSource::Url("https://publisher.invalid/v1/config_mel_tiny.yaml"),
        stems: "vocals, other",
        size: None,
        check: Check::TensorsOnly,
        source: "test",
        sdr: "-",
    };
    let srv = serve(vec![("mel_tiny_roformer.ckpt".into(), ckpt), ("config_mel_tiny.yaml".into(), yaml.clone())], Mode::Good);
    let dir = fresh("roformer");
    let path = download::download(&entry, &opts(&dir, &srv.base), &mut |_, _| {}).unwrap();
    assert_eq!(path, dir.join("mel_tiny_roformer.ckpt"));
    let found = mdx_stems::catalog::discover_in(&[(dir.clone(), mdx_stems::catalog::ModelSource::App)], mdx_stems::catalog::UvrTable::builtin());
    assert_eq!(found.len(), 1);
    assert!(found[0].is_ready(), "{:?}", found[0].config);
    // Another RoFormer's weights (a tiny BS-RoFormer) under that name.
    let other = std::fs::read(mdx_stems::testing::roformer_fixture_dir("bs_tiny_target").join("model.ckpt")).unwrap();
    let srv = serve(vec![("mel_tiny_roformer.ckpt".into(), other), ("config_mel_tiny.yaml".into(), yaml)], Mode::Good);
    let dir = fresh("roformer-wrong");
    let err = download::download(&entry, &opts(&dir, &srv.base), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Verification { .. }) && err.to_string().contains("do not match its config"), "{err}");
    assert!(models_in(&dir).is_empty(), "{:?}", models_in(&dir));
}
