#!/usr/bin/env bash
# Assemble a CUDA 13.0 build toolkit from PyPI wheels (no GPU and no system CUDA needed),
# plus link-time stub libraries for the CUDA libraries candle links against.
#
#   usage: .ci/cuda-toolkit.sh [DIR]        (DIR defaults to <repo>/.cuda)
#          eval "$(.ci/cuda-toolkit.sh .cuda)"   # sets the build environment
#
# Idempotent: wheels already downloaded, already unpacked, or stubs already built are reused.
# Everything is logged to stderr; stdout carries only the `export` lines.
# See .ci/CUDA.md for why the stubs exist and how the binary finds the real libraries at run time.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$REPO/.cuda}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
log() { echo "cuda-toolkit: $*" >&2; }

# ---- 1. wheels (CUDA 13.0, matching driver 580 on the GPU machine) -------------------------
WHEELS=(
  nvidia-cuda-nvcc==13.0.88      # nvcc, ptxas, fatbinary
  nvidia-cuda-runtime==13.0.96   # cuda_runtime headers, cuda.h, libcudart.so.13
  nvidia-cuda-cccl==13.0.85      # cub/thrust/libcu++ headers used by candle-kernels
  nvidia-cuda-crt==13.0.88       # crt/host_config.h etc.
  nvidia-nvvm==13.0.88           # cicc + libnvvm (nvcc's front end; not in the nvcc wheel)
)
mkdir -p "$DIR/wheels"
for spec in "${WHEELS[@]}"; do
  name="${spec%%==*}"; ver="${spec##*==}"
  pat="$(echo "$name" | tr - _)-${ver}-*.whl"
  if compgen -G "$DIR/wheels/$pat" >/dev/null; then
    log "have $spec"
  else
    log "downloading $spec"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --python-version 3.11 \
      -d "$DIR/wheels" "$spec" >&2
  fi
done

# ---- 2. unpack (all wheels put their files under nvidia/cu13) -------------------------------
ROOT="$DIR/root"
CUDA_HOME="$ROOT/nvidia/cu13"
for whl in "$DIR"/wheels/*.whl; do
  stamp="$ROOT/.unpacked-$(basename "$whl")"
  if [ ! -e "$stamp" ]; then
    log "unpacking $(basename "$whl")"
    mkdir -p "$ROOT"
    python3 -m zipfile -e "$whl" "$ROOT" >&2   # same as unzip, without needing unzip installed
    touch "$stamp"
  fi
done
# zip does not keep the executable bit
chmod +x "$CUDA_HOME"/bin/* "$CUDA_HOME"/nvvm/bin/* 2>/dev/null || true
[ -x "$CUDA_HOME/bin/nvcc" ] || { log "nvcc missing after unpack"; exit 1; }

# ---- 3. toolkit layout that nvcc.profile and the build scripts expect ------------------------
mkdir -p "$CUDA_HOME/targets/x86_64-linux"
ln -sfn ../../include "$CUDA_HOME/targets/x86_64-linux/include"
ln -sfn ../../lib "$CUDA_HOME/targets/x86_64-linux/lib"
ln -sfn lib "$CUDA_HOME/lib64"
ln -sfn libcudart.so.13 "$CUDA_HOME/lib/libcudart.so"

# ---- 4. link-time stubs -----------------------------------------------------------------------
# candle-core 0.11.1 builds cudarc with `dynamic-linking`, so the linker needs libcuda,
# libnvrtc, libcurand, libcublas, libcublasLt, libcufft (our GPU STFT) and libcudnn (with our
# `cudnn` feature).
# We build tiny stand-ins whose SONAME is that of the real library, exporting every function
# name that cudarc's bindings can call. The binary then records NEEDED libcuda.so.1 etc. and
# binds to the real libraries at load time (LD_LIBRARY_PATH on the GPU machine).
# They live in lib/stubs like a real toolkit's stubs: never ship them, never put them on
# LD_LIBRARY_PATH (libcuda's stub refuses to work there, ours would crash).
STUBS="$CUDA_HOME/lib/stubs"
CUDARC_VER="$(awk '/^name = "cudarc"$/{getline; gsub(/"/,"",$3); print $3; exit}' "$REPO/Cargo.lock")"
CUDARC_SRC="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$CUDARC_VER" 2>/dev/null | head -1 || true)"
if [ -z "$CUDARC_SRC" ]; then
  log "fetching crates (cudarc $CUDARC_VER source is needed for the stub symbol lists)"
  (cd "$REPO" && cargo fetch >&2)
  CUDARC_SRC="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$CUDARC_VER" | head -1)"
fi
# library  real SONAME        cudarc bindings
STUB_LIBS="
cuda      libcuda.so.1        driver
nvrtc     libnvrtc.so.13      nvrtc
curand    libcurand.so.10     curand
cublas    libcublas.so.13     cublas
cublasLt  libcublasLt.so.13   cublaslt
cudnn     libcudnn.so.9       cudnn
cufft     libcufft.so.12      cufft
"
mkdir -p "$STUBS"
stamp_want="cudarc-$CUDARC_VER v2"
if [ "$(cat "$STUBS/.stamp" 2>/dev/null)" != "$stamp_want" ]; then
  echo "$STUB_LIBS" | while read -r lib soname mod; do
    [ -n "$lib" ] || continue
    src="$STUBS/$lib.c"
    {
      echo "/* link-time stub for $soname, generated from cudarc $CUDARC_VER src/$mod/sys/mod.rs */"
      grep -oE 'load::<_F>\("[A-Za-z_][A-Za-z0-9_]*"\)' "$CUDARC_SRC/src/$mod/sys/mod.rs" \
        | sed -E 's/.*\("([^"]+)"\)/\1/' | sort -u | sed 's/.*/void &(void) {}/'
    } >"$src"
    n=$(grep -c '^void' "$src")
    cc -shared -fPIC -nostdlib -o "$STUBS/lib$lib.so" -Wl,-soname,"$soname" "$src"
    log "stub lib$lib.so (SONAME $soname, $n symbols)"
  done
  echo "$stamp_want" >"$STUBS/.stamp"
fi

# ---- 5. environment -----------------------------------------------------------------------------
cat <<EOF
export CUDA_HOME='$CUDA_HOME'
export CUDA_PATH='$CUDA_HOME'
export CUDA_ROOT='$CUDA_HOME'
export NVCC='$CUDA_HOME/bin/nvcc'
export PATH='$CUDA_HOME/bin':"\$PATH"
export CUDA_COMPUTE_CAP=90
export CUDARC_CUDA_VERSION=13000
export RUSTFLAGS='-L native=$CUDA_HOME/lib -L native=$STUBS'
EOF
log "ready: CUDA_HOME=$CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | tail -2 | head -1))"
