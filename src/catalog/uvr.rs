//! Ultimate Vocal Remover's way of recognising MDX-C and RoFormer checkpoints: a hash of the
//! file, a hash -> config table, and the configs themselves.
//!
//! The data (from UVR's repositories, MIT licence; see `assets/uvr-mdxc/README.md` for MDX-C
//! and `assets/uvr-roformer/README.md` for RoFormers) is compiled into the binary: one table,
//! whatever the network, as UVR keeps it. UVR's own copies in an installed UVR folder
//! (`model_data/model_data.json`, `model_data/<hash>.json`, `model_data/mdx_c_configs/*.yaml`)
//! and python-audio-separator's (`mdx_model_data.json` and the `.yaml` files in its model
//! folder) are read as well, for hashes the built-in table does not know (models a user set up
//! in UVR, newer UVR releases).

use crate::nets::{ConfigError, NetSpec};
use md5::{Digest, Md5};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// How many bytes at the end of a file UVR hashes: 10,000 KiB.
pub const UVR_HASH_BYTES: u64 = 10_000 * 1024;

/// UVR's model hash: MD5 of the file's last 10,000 KiB (10,240,000 bytes), or of the whole file
/// when it is shorter, as lowercase hex.
///
/// UVR (`UVR.py`, `ModelData.get_model_hash`) does `f.seek(-10000 * 1024, 2)` and falls back to
/// the whole file when that seek fails; python-audio-separator (`Separator.get_model_hash`)
/// spells the same rule out with the file size. Results are cached per (path, size, mtime).
pub fn uvr_hash(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    static CACHE: OnceLock<Mutex<HashMap<(PathBuf, u64, Option<SystemTime>), String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(h) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(h);
    }
    let len = meta.len();
    if len > UVR_HASH_BYTES {
        f.seek(SeekFrom::Start(len - UVR_HASH_BYTES))?;
    }
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hex = to_hex(&hasher.finalize());
    if let Ok(mut c) = cache.lock() {
        c.insert(key, hex.clone());
    }
    Ok(hex)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const HASH_TO_CONFIG: &str = include_str!("../../assets/uvr-mdxc/hash_to_config.json");
const NAME_MAPPER: &str = include_str!("../../assets/uvr-mdxc/model_name_mapper.json");
/// UVR's RoFormer entries (BS-RoFormer, Mel-Band RoFormer), same formats.
const ROFORMER_HASH_TO_CONFIG: &str = include_str!("../../assets/uvr-roformer/hash_to_config.json");
const ROFORMER_NAME_MAPPER: &str = include_str!("../../assets/uvr-roformer/model_name_mapper.json");

/// Every MDX-C config UVR ships, by file name.
const YAMLS: &[(&str, &str)] = &[
    ("model1.yaml", include_str!("../../assets/uvr-mdxc/model1.yaml")),
    ("model2.yaml", include_str!("../../assets/uvr-mdxc/model2.yaml")),
    ("model3.yaml", include_str!("../../assets/uvr-mdxc/model3.yaml")),
    ("modelA.yaml", include_str!("../../assets/uvr-mdxc/modelA.yaml")),
    ("modelB.yaml", include_str!("../../assets/uvr-mdxc/modelB.yaml")),
    ("model_2_stem_061321.yaml", include_str!("../../assets/uvr-mdxc/model_2_stem_061321.yaml")),
    ("model_2_stem_full_band.yaml", include_str!("../../assets/uvr-mdxc/model_2_stem_full_band.yaml")),
    ("model_2_stem_full_band_2.yaml", include_str!("../../assets/uvr-mdxc/model_2_stem_full_band_2.yaml")),
    ("model_2_stem_full_band_3.yaml", include_str!("../../assets/uvr-mdxc/model_2_stem_full_band_3.yaml")),
    ("model_2_stem_full_band_4.yaml", include_str!("../../assets/uvr-mdxc/model_2_stem_full_band_4.yaml")),
    ("model_2_stem_full_band_8k.yaml", include_str!("../../assets/uvr-mdxc/model_2_stem_full_band_8k.yaml")),
    ("sndfx.yaml", include_str!("../../assets/uvr-mdxc/sndfx.yaml")),
];

/// The RoFormer configs of UVR's RoFormer entries, by file name.
const ROFORMER_YAMLS: &[(&str, &str)] = &[
    ("model_bs_roformer_ep_317_sdr_12.9755.yaml", include_str!("../../assets/uvr-roformer/model_bs_roformer_ep_317_sdr_12.9755.yaml")),
    ("model_bs_roformer_ep_368_sdr_12.9628.yaml", include_str!("../../assets/uvr-roformer/model_bs_roformer_ep_368_sdr_12.9628.yaml")),
    ("model_bs_roformer_ep_937_sdr_10.5309.yaml", include_str!("../../assets/uvr-roformer/model_bs_roformer_ep_937_sdr_10.5309.yaml")),
    ("model_mel_band_roformer_ep_3005_sdr_11.4360.yaml", include_str!("../../assets/uvr-roformer/model_mel_band_roformer_ep_3005_sdr_11.4360.yaml")),
    ("config_vocals_mel_band_roformer_kim.yaml", include_str!("../../assets/uvr-roformer/config_vocals_mel_band_roformer_kim.yaml")),
    ("config_melbandroformer_inst.yaml", include_str!("../../assets/uvr-roformer/config_melbandroformer_inst.yaml")),
    ("config_melbandroformer_inst_v2.yaml", include_str!("../../assets/uvr-roformer/config_melbandroformer_inst_v2.yaml")),
    ("config_melbandroformer_instvoc_duality.yaml", include_str!("../../assets/uvr-roformer/config_melbandroformer_instvoc_duality.yaml")),
    ("config_mel_band_roformer_karaoke.yaml", include_str!("../../assets/uvr-roformer/config_mel_band_roformer_karaoke.yaml")),
    ("deverb_bs_roformer_8_256dim_8depth.yaml", include_str!("../../assets/uvr-roformer/deverb_bs_roformer_8_256dim_8depth.yaml")),
];

/// UVR's hash -> config table, its configs, and its file name -> display name map.
#[derive(Debug, Clone, Default)]
pub struct UvrTable {
    /// Model hash (lowercase hex) -> config file name.
    hashes: BTreeMap<String, String>,
    /// Config file name -> YAML text.
    yamls: BTreeMap<String, Cow<'static, str>>,
    /// Checkpoint file name as UVR lists it (with or without extension) -> name UVR shows.
    names: BTreeMap<String, String>,
}

/// `{"<hash>": {"config_yaml": "<file>.yaml", ...}, ...}` -> hash -> yaml name (the entries
/// with a config: MDX-C and RoFormer; MDX-Net entries have none).
fn parse_hash_table(text: &str) -> Result<BTreeMap<String, String>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    Ok(obj
        .iter()
        .filter_map(|(h, e)| Some((h.to_ascii_lowercase(), e.get("config_yaml")?.as_str()?.to_string())))
        .collect())
}

impl UvrTable {
    /// The table compiled into the binary (UVR's MDX-C data, `assets/uvr-mdxc/`, and its RoFormer
    /// data, `assets/uvr-roformer/`).
    pub fn builtin() -> &'static UvrTable {
        static TABLE: OnceLock<UvrTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            let mut hashes = parse_hash_table(HASH_TO_CONFIG).expect("embedded hash_to_config.json is valid");
            hashes.extend(parse_hash_table(ROFORMER_HASH_TO_CONFIG).expect("embedded roformer hash_to_config.json is valid"));
            let mut names: BTreeMap<String, String> =
                serde_json::from_str(NAME_MAPPER).expect("embedded model_name_mapper.json is valid");
            let roformer_names: BTreeMap<String, String> =
                serde_json::from_str(ROFORMER_NAME_MAPPER).expect("embedded roformer model_name_mapper.json is valid");
            names.extend(roformer_names);
            let yamls = YAMLS.iter().chain(ROFORMER_YAMLS).map(|(n, t)| (n.to_string(), Cow::Borrowed(*t))).collect();
            UvrTable { hashes, yamls, names }
        })
    }

    /// A table with nothing in it.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Add (or replace) a hash -> config entry with the config's text (tests, custom tables).
    pub fn with_entry(mut self, hash: &str, yaml_name: &str, yaml_text: &str) -> Self {
        self.hashes.insert(hash.to_ascii_lowercase(), yaml_name.to_string());
        self.yamls.insert(yaml_name.to_string(), Cow::Owned(yaml_text.to_string()));
        self
    }

    /// Add (or replace) a display name for a checkpoint file name.
    pub fn with_name(mut self, file_name: &str, display: &str) -> Self {
        self.names.insert(file_name.to_string(), display.to_string());
        self
    }

    /// The config file name UVR uses for a model hash.
    pub fn yaml_name(&self, hash: &str) -> Option<&str> {
        self.hashes.get(&hash.to_ascii_lowercase()).map(String::as_str)
    }

    /// The text of an embedded config, by file name.
    pub fn yaml_text(&self, yaml_name: &str) -> Option<&str> {
        self.yamls.get(yaml_name).map(|c| c.as_ref())
    }

    /// Every (hash, config file name) pair.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.hashes.iter().map(|(h, y)| (h.as_str(), y.as_str()))
    }

    /// Every embedded config, (file name, text).
    pub fn yamls(&self) -> impl Iterator<Item = (&str, &str)> {
        self.yamls.iter().map(|(n, t)| (n.as_str(), t.as_ref()))
    }

    /// The config for a model hash, parsed: `(config file name, config)`. `None` when the hash
    /// is unknown or its config is not embedded or does not parse (see [`UvrTable::config_for`]).
    pub fn lookup(&self, hash: &str) -> Option<(String, Arc<dyn NetSpec>)> {
        match self.config_for(hash)? {
            (name, Ok(cfg)) => Some((name, cfg)),
            (_, Err(_)) => None,
        }
    }

    /// Like [`UvrTable::lookup`], but a known hash whose config cannot be used gives the error.
    pub fn config_for(&self, hash: &str) -> Option<(String, Result<Arc<dyn NetSpec>, ConfigError>)> {
        let name = self.yaml_name(hash)?;
        let text = self.yaml_text(name)?;
        Some((name.to_string(), crate::nets::from_yaml_str(text).map_err(|e| in_named(e, name))))
    }

    /// The name UVR shows for a checkpoint file (`model_name_mapper.json`, matched on the file
    /// name, then on the name without extension as UVR lists its `.onnx` models).
    pub fn display_name(&self, file_name: &str) -> Option<String> {
        if let Some(n) = self.names.get(file_name) {
            return Some(n.clone());
        }
        let stem = Path::new(file_name).file_stem()?.to_str()?;
        self.names.get(stem).cloned()
    }
}

/// Name the config in a parse error.
fn in_named(e: ConfigError, name: &str) -> ConfigError {
    match e {
        ConfigError::Yaml { msg, .. } => ConfigError::Yaml { path: PathBuf::from(name), msg },
        other => other.in_file(Path::new(name)),
    }
}

/// A config found through the data UVR or python-audio-separator keep next to their models.
pub(crate) struct LocalMatch {
    /// The config's file name as the data names it.
    pub yaml_name: String,
    pub config: Result<Arc<dyn NetSpec>, ConfigError>,
}

/// Look a hash up in the data files of the folder a model lives in:
/// - UVR (`<MDX_Net_Models>/model_data/`): `<hash>.json` (what UVR writes when a user picks a
///   config for an unknown model), then `model_data.json` (UVR's table); the config is
///   `model_data/mdx_c_configs/<config_yaml>` (RoFormer configs too: UVR keeps them there).
/// - python-audio-separator (`<model_file_dir>/`): `mdx_model_data.json` (UVR's table as it
///   downloads it); the config is `<model_file_dir>/<config_yaml>`.
///
/// A config file that is missing there is taken from the built-in configs when one has that name.
pub(crate) fn lookup_local(model: &Path, hash: &str, builtin: &UvrTable) -> Option<LocalMatch> {
    let dir = model.parent()?;
    let data = dir.join("model_data");
    let candidates = [
        (data.join(format!("{hash}.json")), data.join("mdx_c_configs")),
        (data.join("model_data.json"), data.join("mdx_c_configs")),
        (dir.join("mdx_model_data.json"), dir.to_path_buf()),
    ];
    for (table_file, yaml_dir) in candidates {
        let Ok(text) = std::fs::read_to_string(&table_file) else { continue };
        let yaml_name = if table_file.file_stem().is_some_and(|s| s == hash) {
            // A per-model file holds the entry itself.
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("config_yaml")?.as_str().map(str::to_string))
        } else {
            parse_hash_table(&text).ok().and_then(|t| t.get(hash).cloned())
        };
        let Some(yaml_name) = yaml_name else { continue };
        let yaml_path = yaml_dir.join(&yaml_name);
        if yaml_path.is_file() {
            return Some(LocalMatch { config: crate::nets::from_yaml_file(&yaml_path), yaml_name });
        }
        if let Some(text) = builtin.yaml_text(&yaml_name) {
            let config = crate::nets::from_yaml_str(text).map_err(|e| in_named(e, &yaml_name));
            return Some(LocalMatch { config, yaml_name });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses_and_every_config_is_valid() {
        let t = UvrTable::builtin();
        let n = t.entries().count();
        assert_eq!(n, 32, "20 MDX-C entries (assets/uvr-mdxc) and 12 RoFormer entries (assets/uvr-roformer)");
        let mut roformers = 0;
        for (hash, yaml) in t.entries() {
            assert_eq!(hash.len(), 32, "{hash}");
            assert!(hash.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{hash}");
            let text = t.yaml_text(yaml).unwrap_or_else(|| panic!("{hash} -> {yaml} is not embedded"));
            let cfg = crate::nets::from_yaml_str(text).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            assert!(!cfg.info().stems.is_empty());
            if cfg.family().contains("RoFormer") {
                roformers += 1;
            }
            let (name, cfg2) = t.lookup(hash).unwrap();
            assert_eq!(name, yaml);
            assert_eq!(format!("{cfg:?}"), format!("{cfg2:?}"));
        }
        assert_eq!(roformers, 12);
        for (name, text) in t.yamls() {
            crate::nets::from_yaml_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert_eq!(t.yamls().count(), 22);
    }

    /// UVR's RoFormer configs, compiled in unchanged: each parses (the RoFormer family's strict
    /// parser) as the variant its name says, and UVR's hashes of the public RoFormers point at
    /// them with their stems.
    #[test]
    fn roformer_configs_parse_as_their_variant() {
        let t = UvrTable::builtin();
        let mut seen = 0;
        for (name, text) in t.yamls() {
            let net = crate::nets::from_yaml_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let is_bs = name.contains("bs_roformer");
            let is_mel = name.contains("mel_band_roformer") || name.contains("melbandroformer");
            let want = if is_bs {
                "BS-RoFormer"
            } else if is_mel {
                "Mel-Band RoFormer"
            } else {
                assert!(!net.family().contains("RoFormer"), "{name}");
                continue;
            };
            seen += 1;
            assert_eq!(net.family(), want, "{name}");
            assert_eq!(net.info().sample_rate, 44100, "{name}");
        }
        assert_eq!(seen, 10, "assets/uvr-roformer has 10 configs");
        for (hash, yaml, family) in [
            ("53f707017bfcbb56f5e1bfac420d6732", "model_bs_roformer_ep_317_sdr_12.9755.yaml", "BS-RoFormer"),
            ("d789065adfd747d6f585b27b495bcdae", "model_bs_roformer_ep_368_sdr_12.9628.yaml", "BS-RoFormer"),
            ("63e41acc264bf681a73aa9f7e5f606cc", "model_mel_band_roformer_ep_3005_sdr_11.4360.yaml", "Mel-Band RoFormer"),
            ("e4ca75912fcff3224a19058e55facfbf", "config_vocals_mel_band_roformer_kim.yaml", "Mel-Band RoFormer"),
        ] {
            assert_eq!(t.yaml_name(hash), Some(yaml));
            let (name, net) = t.lookup(hash).unwrap_or_else(|| panic!("{yaml} resolves"));
            assert_eq!(name, yaml);
            assert_eq!(net.family(), family, "{yaml}");
            assert_eq!(net.output_stems(), ["Vocals", "Instrumental"], "{yaml}");
        }
        assert_eq!(t.display_name("model_bs_roformer_ep_317_sdr_12.9755.ckpt").as_deref(), Some("BS-Roformer-Viperx-1297"));
        assert_eq!(t.display_name("MelBandRoformer.ckpt").as_deref(), Some("MB-Roformer-Kim"));
    }

    #[test]
    fn instvoc_hq_hash_maps_to_8k_config() {
        let t = UvrTable::builtin();
        assert_eq!(t.yaml_name("99b6ceaae542265a3b6d657bf9fde79f"), Some("model_2_stem_full_band_8k.yaml"));
        assert_eq!(t.yaml_name("99B6CEAAE542265A3B6D657BF9FDE79F"), Some("model_2_stem_full_band_8k.yaml"));
        let (name, cfg) = t.lookup("99b6ceaae542265a3b6d657bf9fde79f").unwrap();
        assert_eq!(name, "model_2_stem_full_band_8k.yaml");
        let chunk = &cfg.describe()[0].1;
        assert!(chunk.contains("n_fft 8192") && chunk.contains("dim_f 4096"), "{chunk}");
        assert_eq!(cfg.info().stems, vec!["Vocals", "Instrumental"]);
        assert!(t.lookup("00000000000000000000000000000000").is_none());
    }

    #[test]
    fn display_names_follow_uvrs_mapper() {
        let t = UvrTable::builtin();
        assert_eq!(t.display_name("MDX23C-8KFFT-InstVoc_HQ.ckpt").as_deref(), Some("MDX23C-InstVoc HQ"));
        assert_eq!(t.display_name("Kim_Vocal_2.onnx").as_deref(), Some("Kim Vocal 2"));
        assert_eq!(t.display_name("something_else.ckpt"), None);
        let t = t.clone().with_name("x.ckpt", "X Model");
        assert_eq!(t.display_name("x.ckpt").as_deref(), Some("X Model"));
    }

    #[test]
    fn with_entry_adds_a_config() {
        let yaml = UvrTable::builtin().yaml_text("model1.yaml").unwrap().to_string();
        let t = UvrTable::empty().with_entry("ABCDEF", "mine.yaml", &yaml);
        assert_eq!(t.yaml_name("abcdef"), Some("mine.yaml"));
        assert!(t.lookup("abcdef").is_some());
        let t = t.with_entry("bad", "bad.yaml", "audio: [1");
        assert!(t.lookup("bad").is_none());
        assert!(matches!(t.config_for("bad"), Some((_, Err(_)))));
    }
}
