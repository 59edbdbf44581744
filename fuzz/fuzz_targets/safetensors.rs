#![no_main]
// See fuzz/Cargo.toml and mdx_stems::fuzz::Target::Safetensors.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mdx_stems::fuzz::libfuzzer(mdx_stems::fuzz::Target::Safetensors, data));
