#!/bin/bash
# Copy the newest CUDA test executables and binaries, stripped and xz-compressed, plus the
# scripts, into DEST (default <checkout>/.device) for the device tool. The fixtures are not packed:
# they are tracked files (tests/fixtures), so they travel with the working tree, and run.sh points
# the test executables at them with MDX_STEMS_FIXTURES.
#   .ci/device/pack.sh [DEST]
#   BENCH_MAIN=<another build's bench> .ci/device/pack.sh DEST   # also packs it as bin/bench-main,
#       for `run.sh compare` (the benchmark of two builds in one device call)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="${1:-$REPO/.device}"
T="${CARGO_TARGET_DIR:-$REPO/target-cuda}/release"
mkdir -p "$DEST/bin"
rm -f "$DEST"/bin/*
for b in cuda fixtures nhwc roformer; do
  f=$(ls -t "$T"/deps/$b-* | grep -v '\.d$' | head -1 || true)   # head closes the pipe early
  echo "$b-tests <- $f" >&2
  strip -o "$DEST/bin/$b-tests" "$f"
done
for b in bench mdx-stems; do [ -f "$T/$b" ] && strip -o "$DEST/bin/$b" "$T/$b"; done
if [ -n "${BENCH_MAIN:-}" ]; then
  echo "bench-main <- $BENCH_MAIN" >&2
  strip -o "$DEST/bin/bench-main" "$BENCH_MAIN"
fi
xz -9 -T2 -f "$DEST"/bin/*
cp "$REPO"/.ci/device/run.sh "$REPO"/.ci/device/env.sh "$REPO"/.ci/device/ncu_summary.py "$DEST/"
du -sh "$DEST" "$DEST"/bin/* >&2
