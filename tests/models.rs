//! Models users already have: UVR's hash rule, recognising a checkpoint without a `.yaml`,
//! what the shapes determine, and a listing that survives junk files.

mod common;
use common::*;

use md5::{Digest, Md5};
use mdx_stems::catalog::{
    discover_in, find_config, resolve_model_arg_in, uvr_hash, ConfigOrigin, ModelSource, UvrTable, UVR_HASH_BYTES,
};
use mdx_stems::device::{DeviceRequest, Precision};
use mdx_stems::dsp::overlap::Scheme;
use mdx_stems::engine::{LoadOptions, Separator};
use mdx_stems::nets::read_shapes;
use mdx_stems::nets::tfc_tdf::infer::{infer_from_checkpoint, infer_from_shapes, InferredNorm};
use mdx_stems::nets::tfc_tdf::{Checkpoint, ModelConfig, NormKind};
use mdx_stems::options::EngineOptions;
use std::path::{Path, PathBuf};

/// A fresh empty folder.
fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("models-tests", name)
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn uvr_hash_covers_the_last_10000_kib_or_the_whole_file() {
    assert_eq!(UVR_HASH_BYTES, 10_240_000);
    let dir = temp_dir("hash");
    // Bytes that differ everywhere, so hashing the wrong window gives another digest.
    let big: Vec<u8> = (0..UVR_HASH_BYTES as usize + 12_345).map(|i| (i * 31 + i / 977) as u8).collect();
    let p = dir.join("big.ckpt");
    std::fs::write(&p, &big).unwrap();
    let tail = &big[big.len() - UVR_HASH_BYTES as usize..];
    assert_eq!(uvr_hash(&p).unwrap(), md5_hex(tail), "file larger than 10,000 KiB: MD5 of the last 10,240,000 bytes");
    assert_ne!(md5_hex(tail), md5_hex(&big));

    let small = &big[..4_000_000];
    let q = dir.join("small.ckpt");
    std::fs::write(&q, small).unwrap();
    assert_eq!(uvr_hash(&q).unwrap(), md5_hex(small), "file smaller than 10,000 KiB: MD5 of the whole file");

    let exact = &big[..UVR_HASH_BYTES as usize];
    let r = dir.join("exact.ckpt");
    std::fs::write(&r, exact).unwrap();
    assert_eq!(uvr_hash(&r).unwrap(), md5_hex(exact));
}

/// A fixture's `model.ckpt` copied alone into a UVR-like `models/MDX_Net_Models` folder is found,
/// recognised through a (test) hash table entry, named as UVR names it, and separates exactly as
/// with its own config.
#[test]
fn checkpoint_without_yaml_is_recognised_by_uvr_hash_and_separates_identically() {
    let name = "small_groupnorm_relu_4stem";
    let src = fixture_dir(name);
    let uvr = temp_dir("uvr").join("models").join("MDX_Net_Models");
    std::fs::create_dir_all(&uvr).unwrap();
    let ckpt = uvr.join("MDX23C_test_model.ckpt");
    std::fs::copy(src.join("model.ckpt"), &ckpt).unwrap();
    let yaml_text = std::fs::read_to_string(src.join("config.yaml")).unwrap();
    let hash = uvr_hash(&ckpt).unwrap();

    // Without a table entry the model is listed as not ready, with the reason.
    let none = discover_in(&[(uvr.clone(), ModelSource::Uvr)], &UvrTable::empty());
    assert_eq!(none.len(), 1);
    let why = none[0].config.as_ref().unwrap_err();
    assert!(why.contains("no config") && why.contains("stem names"), "{why}");

    let table = UvrTable::empty()
        .with_entry(&hash, "model_test.yaml", &yaml_text)
        .with_name("MDX23C_test_model.ckpt", "MDX23C Test Model");
    let found = discover_in(&[(uvr.clone(), ModelSource::Uvr)], &table);
    assert_eq!(found.len(), 1);
    let e = &found[0];
    assert_eq!(e.name, "MDX23C Test Model");
    assert_eq!(e.source, ModelSource::Uvr);
    assert_eq!(e.stems, vec!["vocals", "bass", "drums", "other"]);
    assert_eq!(e.config, Ok(ConfigOrigin::UvrHash { hash: hash.clone(), yaml: "model_test.yaml".into() }));
    assert_eq!(resolve_model_arg_in("mdx23c test", &found).unwrap(), ckpt, "a unique prefix of the display name");

    let (cfg, origin) = find_config(&ckpt, None, &table).unwrap();
    assert!(matches!(origin, ConfigOrigin::UvrHash { .. }));
    let options = EngineOptions { device: DeviceRequest::Cpu, precision: Some(Precision::F32), ..Default::default() };
    let builder = cfg.open(&ckpt, None).unwrap();
    let mut by_hash = Separator::new(builder, &options).unwrap();
    let explicit = LoadOptions { model: src.join("model.ckpt"), config: Some(src.join("config.yaml")), segment: None, sample_rate: None, options };
    let mut by_yaml = Separator::load(&explicit).unwrap();
    let mix = planar(&load_st(name, "demix.safetensors")["mix"]);
    let a = by_hash.separate(&mix, Scheme::Uvr, 2, 1, &mut |_, _| {}).unwrap();
    let b = by_yaml.separate(&mix, Scheme::Uvr, 2, 1, &mut |_, _| {}).unwrap();
    assert_eq!(a, b, "identical separation through the hash-found config");

    // A .yaml beside the model wins over the hash table.
    let mut other = yaml_text.replace("vocals", "voice");
    other.push('\n');
    std::fs::write(ckpt.with_extension("yaml"), other).unwrap();
    let (cfg, origin) = find_config(&ckpt, None, &table).unwrap();
    assert!(matches!(origin, ConfigOrigin::BesideModel(_)), "{origin:?}");
    assert_eq!(cfg.info().stems[0], "voice");
}

#[test]
fn shape_inference_recovers_every_shape_determined_value() {
    for name in FIXTURES {
        let dir = fixture_dir(name);
        let cfg = ModelConfig::from_yaml_file(&dir.join("config.yaml")).unwrap();
        for file in ["model.ckpt", "model.safetensors"] {
            // From the file's shapes (no weights loaded) and from a loaded checkpoint alike.
            let from_file = infer_from_shapes(&read_shapes(&dir.join(file)).unwrap()).unwrap();
            let from_ckpt = infer_from_checkpoint(&Checkpoint::read(&dir.join(file)).unwrap()).unwrap();
            assert_eq!(from_file, from_ckpt, "{name}/{file}");
            let s = from_file;
            let m = &cfg.model;
            assert_eq!(s.num_subbands, m.num_subbands, "{name}");
            assert_eq!(s.dim_c(), cfg.dim_c(), "{name}");
            assert_eq!(s.num_channels, m.num_channels, "{name}");
            assert_eq!(s.growth, Some(m.growth), "{name}");
            assert_eq!(s.num_scales, m.num_scales, "{name}");
            assert_eq!(s.num_blocks_per_scale, m.num_blocks_per_scale, "{name}");
            assert_eq!(s.bottleneck_factor, m.bottleneck_factor, "{name}");
            assert_eq!(s.num_stems, cfg.num_stems(), "{name}");
            assert_eq!(s.dim_f, cfg.audio.dim_f, "{name}");
            assert_eq!(s.scale, Some(m.scale), "{name}");
            let norm = match m.norm {
                NormKind::Batch => InferredNorm::Batch,
                NormKind::Instance | NormKind::Group(_) => InferredNorm::InstanceOrGroup,
                NormKind::Identity => InferredNorm::Identity,
            };
            assert_eq!(s.norm, norm, "{name}");
            assert!(s.differences(&cfg).is_empty(), "{name}: {:?}", s.differences(&cfg));
            // What the shapes cannot tell is named, never guessed.
            let missing = s.missing().join("; ");
            for key in ["audio.n_fft", "audio.hop_length", "audio.dim_t", "model.act", "training.instruments"] {
                assert!(missing.contains(key), "{name}: {missing}");
            }
        }
    }
}

#[test]
fn a_checkpoint_with_no_config_is_refused_with_what_is_missing() {
    let dir = temp_dir("noconfig");
    let ckpt = dir.join("mystery.ckpt");
    std::fs::copy(fixture_dir("tiny_instnorm_gelu").join("model.ckpt"), &ckpt).unwrap();
    let err = match Separator::load(&LoadOptions::new(&ckpt)) {
        Ok(_) => panic!("a checkpoint without config must be refused"),
        Err(e) => e.to_string(),
    };
    for needle in ["no config", "num_subbands 2", "num_scales 2", "2 stems", "audio.n_fft", "audio.hop_length", "training.instruments", "--config"] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

fn write(p: &Path, bytes: &[u8]) {
    std::fs::write(p, bytes).unwrap();
}

#[test]
fn junk_files_are_listed_as_not_ready_and_never_fail_the_listing() {
    let dir = temp_dir("junk");
    write(&dir.join("empty.ckpt"), b"");
    write(&dir.join("text.ckpt"), b"this is not a checkpoint at all");
    write(&dir.join("random.safetensors"), &(0..5000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>());
    let good = std::fs::read(fixture_dir("tiny_instnorm_gelu").join("model.ckpt")).unwrap();
    write(&dir.join("truncated.ckpt"), &good[..good.len() / 2]);
    write(&dir.join("notes.txt"), b"ignored: not a model extension");
    // A real model with its yaml, to show the listing goes on past the junk.
    std::fs::copy(fixture_dir("tiny_instnorm_gelu").join("model.ckpt"), dir.join("tiny.ckpt")).unwrap();
    std::fs::copy(fixture_dir("tiny_instnorm_gelu").join("config.yaml"), dir.join("tiny.yaml")).unwrap();
    // A config that does not fit its weights.
    std::fs::copy(fixture_dir("tiny_instnorm_gelu").join("model.ckpt"), dir.join("mismatch.ckpt")).unwrap();
    std::fs::copy(fixture_dir("small_groupnorm_relu_4stem").join("config.yaml"), dir.join("mismatch.yaml")).unwrap();

    let list = discover_in(&[(dir.clone(), ModelSource::App), (dir.join("does-not-exist"), ModelSource::Uvr)], &UvrTable::empty());
    let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["empty", "mismatch", "random", "text", "tiny", "truncated"]);
    for e in &list {
        if e.name == "tiny" {
            assert!(e.is_ready(), "{:?}", e.config);
            assert_eq!(e.stems, vec!["vocals", "instrumental"]);
        } else {
            let why = e.config.as_ref().expect_err(&e.name);
            assert!(!why.is_empty() && !why.contains('\n'), "{}: one-line reason, got {why:?}", e.name);
            assert!(e.stems.is_empty());
        }
    }
    let mismatch = list.iter().find(|e| e.name == "mismatch").unwrap();
    assert!(mismatch.config.as_ref().unwrap_err().contains("does not match"), "{:?}", mismatch.config);
    let table = mdx_stems::catalog::print_models_table(&list);
    assert!(table.contains("6 model files, 1 ready"), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[1].starts_with("builtin:hpss") && lines[2].starts_with("builtin:center"), "built-ins first: {table}");
    // 100 columns at most, however long the reasons and paths; every path shown, long ones cut in
    // the middle (start and file name kept).
    for l in &lines {
        assert!(l.chars().count() <= 100, "{} columns: {l}\n{table}", l.chars().count());
    }
    let deep = dir.join("a folder with a rather long name".repeat(3)).join("and another level of folders");
    std::fs::create_dir_all(&deep).unwrap();
    let long = deep.join("a model file with a very long name indeed, as downloads have.ckpt");
    std::fs::copy(fixture_dir("tiny_instnorm_gelu").join("model.ckpt"), &long).unwrap();
    let entry = mdx_stems::catalog::inspect(&long, ModelSource::App, &UvrTable::empty());
    let table = mdx_stems::catalog::print_models_table(&[entry]);
    for l in table.lines() {
        assert!(l.chars().count() <= 100, "{} columns: {l}\n{table}", l.chars().count());
    }
    let path_line = table.lines().find(|l| l.contains("as downloads have.ckpt")).unwrap_or_else(|| panic!("no path line: {table}"));
    assert!(path_line.contains('…') && path_line.trim_start().starts_with(&dir.display().to_string()[..10]), "{path_line}");
}

// ---- RoFormer checkpoints in UVR's and python-audio-separator's folders (issue #22) ----

/// One of UVR's RoFormer configs as compiled in (`assets/uvr-roformer/`).
fn uvr_roformer_yaml(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/uvr-roformer").join(name)).unwrap()
}

/// The default model for vocals and instrumental, ranked as `separate` ranks: by what each
/// model delivers (its config's stems and complement).
fn vocals_first(list: &[mdx_stems::catalog::ModelEntry]) -> Option<(String, Option<f32>)> {
    let want = vec!["vocals".to_string(), "instrumental".to_string()];
    let stems_of = |e: &mdx_stems::catalog::ModelEntry| {
        mdx_stems::catalog::resolve_config(&e.path, None).map(|c| c.output_stems()).unwrap_or_else(|_| e.stems.clone())
    };
    mdx_stems::catalog::quality::best_for(list, &want, &stems_of).map(|c| (c.entry.name.clone(), c.sdr.map(|(v, _)| v)))
}

/// UVR 5.6 keeps RoFormers in `MDX_Net_Models` under their download names, their configs in
/// `model_data/mdx_c_configs`, and its hash table in `model_data/model_data.json`: they are
/// found by hash, named as UVR names them, ready with their config's stems, and Kimberley
/// Jensen's Mel-Band RoFormer (vocals 10.98) becomes the default over InstVoc HQ (10.17).
#[test]
fn roformers_in_a_uvr_folder_are_found_by_hash_and_ranked_by_sdr() {
    let mdx = temp_dir("uvr-roformer").join("models").join("MDX_Net_Models");
    let configs = mdx.join("model_data").join("mdx_c_configs");
    std::fs::create_dir_all(&configs).unwrap();
    let kim_yaml = uvr_roformer_yaml("config_vocals_mel_band_roformer_kim.yaml");
    let bs_yaml = uvr_roformer_yaml("model_bs_roformer_ep_317_sdr_12.9755.yaml");
    let kim = shapes_only_checkpoint(&kim_yaml, 1);
    let bs = shapes_only_checkpoint(&bs_yaml, 2);
    write(&mdx.join("MelBandRoformer.ckpt"), &kim);
    write(&mdx.join("model_bs_roformer_ep_317_sdr_12.9755.ckpt"), &bs);
    write(&mdx.join("my_roformer.ckpt"), &shapes_only_checkpoint(&kim_yaml, 3));
    // UVR downloaded the config of Kim's model; ep_317's is missing there (the built-in is used).
    write(&configs.join("config_vocals_mel_band_roformer_kim.yaml"), kim_yaml.as_bytes());
    // InstVoc HQ's stand-in (a fixture under its name, its config by hash), MDX weights that
    // UVR's data wrongly pairs with a RoFormer config, and a Mel-Band RoFormer paired with the
    // BS-RoFormer's config.
    let instvoc = std::fs::read(fixture_dir("tiny_instnorm_gelu").join("model.ckpt")).unwrap();
    write(&mdx.join("MDX23C-8KFFT-InstVoc_HQ.ckpt"), &instvoc);
    std::fs::copy(fixture_dir("tiny_instnorm_gelu").join("config.yaml"), configs.join("tiny.yaml")).unwrap();
    let wrong = std::fs::read(fixture_dir("small_groupnorm_relu_4stem").join("model.ckpt")).unwrap();
    write(&mdx.join("wrong.ckpt"), &wrong);
    let other = shapes_only_checkpoint(&kim_yaml, 8);
    write(&mdx.join("other_roformer.ckpt"), &other);
    let data = serde_json::json!({
        md5_hex(&kim): {"config_yaml": "config_vocals_mel_band_roformer_kim.yaml", "is_roformer": true},
        md5_hex(&bs): {"config_yaml": "model_bs_roformer_ep_317_sdr_12.9755.yaml", "is_roformer": true},
        md5_hex(&instvoc): {"config_yaml": "tiny.yaml"},
        md5_hex(&wrong): {"config_yaml": "model_bs_roformer_ep_317_sdr_12.9755.yaml", "is_roformer": true},
        md5_hex(&other): {"config_yaml": "model_bs_roformer_ep_317_sdr_12.9755.yaml", "is_roformer": true},
    });
    write(&mdx.join("model_data").join("model_data.json"), data.to_string().as_bytes());

    let list = discover_in(&[(mdx.clone(), ModelSource::Uvr)], UvrTable::builtin());
    let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["BS-Roformer-Viperx-1297", "MB-Roformer-Kim", "MDX23C-InstVoc HQ", "my_roformer", "other_roformer", "wrong"]);
    let by = |n: &str| list.iter().find(|e| e.name == n).unwrap();
    let uvr = |bytes: &[u8], yaml: &str| Ok(ConfigOrigin::UvrHash { hash: md5_hex(bytes), yaml: yaml.into() });
    assert_eq!(by("MB-Roformer-Kim").config, uvr(&kim, "config_vocals_mel_band_roformer_kim.yaml"));
    // The stems the network outputs (the target; its complement, the rest of the mix, is
    // delivered besides: see `vocals_first`).
    assert_eq!(by("MB-Roformer-Kim").stems, ["Vocals"]);
    assert_eq!(by("BS-Roformer-Viperx-1297").config, uvr(&bs, "model_bs_roformer_ep_317_sdr_12.9755.yaml"));
    assert_eq!(by("BS-Roformer-Viperx-1297").stems, ["Vocals"]);
    assert!(by("MDX23C-InstVoc HQ").is_ready(), "{:?}", by("MDX23C-InstVoc HQ").config);
    let lost = by("my_roformer").config.as_ref().unwrap_err();
    assert!(lost.contains("no config") && lost.contains("RoFormer config") && lost.contains("--config"), "{lost}");
    let wrong = by("wrong").config.as_ref().unwrap_err();
    assert!(wrong.contains("does not match the weights") && wrong.contains("MDX23C") && wrong.contains("BS-RoFormer"), "{wrong}");
    let other = by("other_roformer").config.as_ref().unwrap_err();
    assert!(other.contains("does not match the weights") && other.contains("BS-RoFormer tensors missing"), "{other}");
    let table = mdx_stems::catalog::print_models_table(&list);
    assert!(table.contains("6 model files, 3 ready"), "{table}");
    for l in table.lines() {
        assert!(l.chars().count() <= 100, "{} columns: {l}\n{table}", l.chars().count());
    }

    assert_eq!(vocals_first(&list), Some(("MB-Roformer-Kim".into(), Some(10.98))));
    std::fs::remove_file(mdx.join("MelBandRoformer.ckpt")).unwrap();
    let list = discover_in(&[(mdx.clone(), ModelSource::Uvr)], UvrTable::builtin());
    assert_eq!(vocals_first(&list), Some(("BS-Roformer-Viperx-1297".into(), Some(10.87))));
    std::fs::remove_file(mdx.join("model_bs_roformer_ep_317_sdr_12.9755.ckpt")).unwrap();
    let list = discover_in(&[(mdx, ModelSource::Uvr)], UvrTable::builtin());
    assert_eq!(vocals_first(&list), Some(("MDX23C-InstVoc HQ".into(), Some(10.17))));
}

/// python-audio-separator keeps each RoFormer beside the `.yaml` its model list names (for the
/// public ones `<checkpoint stem>.yaml`, e.g. `vocals_mel_band_roformer.yaml`), and UVR's table
/// as `mdx_model_data.json` in the same folder. A config the RoFormer parser refuses (a value
/// it does not compute) leaves the model listed, not ready, with the parser's one line.
#[test]
fn roformers_in_a_python_audio_separator_folder_are_found_beside_their_yaml() {
    let dir = temp_dir("audio-separator-models");
    // MSST's config for Kimberley Jensen's model names its stems vocals and other.
    let kj = "audio:\n  chunk_size: 352800\n  sample_rate: 44100\nmodel:\n  dim: 384\n  depth: 6\n  num_bands: 60\n  \
              stereo: true\n  num_stems: 1\n  stft_hop_length: 441\ntraining:\n  instruments:\n  - vocals\n  - other\n  target_instrument: vocals\n";
    let kim = dir.join("vocals_mel_band_roformer.ckpt");
    write(&kim, &shapes_only_checkpoint(kj, 4));
    write(&dir.join("vocals_mel_band_roformer.yaml"), kj.as_bytes());
    let bs_yaml = uvr_roformer_yaml("model_bs_roformer_ep_317_sdr_12.9755.yaml");
    let bs = dir.join("model_bs_roformer_ep_317_sdr_12.9755.ckpt");
    write(&bs, &shapes_only_checkpoint(&bs_yaml, 5));
    write(&bs.with_extension("yaml"), bs_yaml.as_bytes());
    let kara = shapes_only_checkpoint(&uvr_roformer_yaml("config_mel_band_roformer_karaoke.yaml"), 6);
    write(&dir.join("mel_band_roformer_karaoke_aufr33_viperx_sdr_10.1956.ckpt"), &kara);
    let data = serde_json::json!({ md5_hex(&kara): {"config_yaml": "config_mel_band_roformer_karaoke.yaml", "is_roformer": true} });
    write(&dir.join("mdx_model_data.json"), data.to_string().as_bytes());
    write(&dir.join("normalized_roformer.ckpt"), &shapes_only_checkpoint(kj, 7));
    write(&dir.join("normalized_roformer.yaml"), kj.replace("  stereo: true\n", "  stereo: true\n  stft_normalized: true\n").as_bytes());

    let list = discover_in(&[(dir.clone(), ModelSource::AudioSeparator)], UvrTable::builtin());
    let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["BS-Roformer-Viperx-1297", "MB-Ro-Kara-Aufr33-Viperx", "normalized_roformer", "vocals_mel_band_roformer"]);
    let by = |n: &str| list.iter().find(|e| e.name == n).unwrap();
    assert_eq!(by("vocals_mel_band_roformer").config, Ok(ConfigOrigin::BesideModel(dir.join("vocals_mel_band_roformer.yaml"))));
    assert_eq!(by("vocals_mel_band_roformer").stems, ["vocals"]);
    assert_eq!(by("BS-Roformer-Viperx-1297").config, Ok(ConfigOrigin::BesideModel(bs.with_extension("yaml"))));
    assert_eq!(
        by("MB-Ro-Kara-Aufr33-Viperx").config,
        Ok(ConfigOrigin::UvrHash { hash: md5_hex(&kara), yaml: "config_mel_band_roformer_karaoke.yaml".into() })
    );
    let refused = by("normalized_roformer").config.as_ref().unwrap_err();
    assert!(refused.contains("model values not supported: stft_normalized: true") && !refused.contains('\n'), "{refused}");
    assert!(list.iter().all(|e| e.source == ModelSource::AudioSeparator));
    assert_eq!(vocals_first(&list), Some(("vocals_mel_band_roformer".into(), Some(10.98))));
}
