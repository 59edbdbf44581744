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
