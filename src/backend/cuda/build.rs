//! Build script: with the `cuda` feature, compile `src/backend/cuda/kernels.cu` to PTX with nvcc
//! (the same nvcc that candle-kernels uses; see .ci/CUDA.md). Without `cuda` it does nothing.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=src/backend/cuda/build.rs");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo::rerun-if-changed=src/backend/cuda/kernels.cu");
    // cudarc's `dynamic-linking` (set by candle-core) links the CUDA libraries candle uses but
    // not cuFFT, whose bindings we enable for the GPU STFT.
    println!("cargo::rustc-link-lib=dylib=cufft");
    println!("cargo::rerun-if-env-changed=NVCC");
    println!("cargo::rerun-if-env-changed=CUDA_HOME");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("mdx_kernels.ptx");
    let nvcc = env::var("NVCC").ok().or_else(|| env::var("CUDA_HOME").ok().map(|h| format!("{h}/bin/nvcc"))).unwrap_or_else(|| "nvcc".into());
    // PTX for the same virtual architecture candle's kernels are built for (CUDA_COMPUTE_CAP);
    // the driver JIT-compiles it for the GPU at hand (that GPU or any newer one).
    let cap = env::var("CUDA_COMPUTE_CAP").ok().and_then(|s| s.trim().replace('.', "").parse::<u32>().ok()).unwrap_or(80);
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17"])
        .arg(format!("-arch=compute_{cap}"))
        .arg("-o")
        .arg(&out)
        .arg("src/backend/cuda/kernels.cu")
        .status()
        .unwrap_or_else(|e| panic!("cannot run nvcc ({nvcc}): {e}; set NVCC or CUDA_HOME (see .ci/CUDA.md)"));
    assert!(status.success(), "nvcc failed on src/backend/cuda/kernels.cu");
}
