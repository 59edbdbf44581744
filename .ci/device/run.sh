#!/bin/bash
# One device call: checks, tests, benchmarks. Usage: bash <packed folder>/run.sh [steps...]
# (the folder .ci/device/pack.sh filled, e.g. .device). Steps: info tests fixtures nhwc
# roformer bench-<precision>-<batch>[-torch] compare torchstrict speed ncu torchsnr (default: see STEPS).
# `compare`: the f16 benchmark at batch 1 and 4 (with PyTorch) of bin/bench-main and bin/bench,
# interleaved, for a before/after in one call.
D="$(cd "$(dirname "$0")" && pwd)"
# Run from the checkout that holds the folder (the PyTorch baseline is benches/torch/ there).
ROOT="$D"; while [ "$ROOT" != / ] && [ ! -f "$ROOT/benches/torch/bench_torch.py" ]; do ROOT="$(dirname "$ROOT")"; done
cd "$ROOT"
# The executables were built in another checkout: the fixtures are this copy's (tests/fixtures).
export MDX_STEMS_FIXTURES=$ROOT/tests/fixtures
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LOG=$OUT/run.log
export CUDA_CACHE_MAXSIZE=4294967296
export PYTHONUNBUFFERED=1
STEPS=${*:-"info tests fixtures nhwc bench-f16-1-torch speed bench-f16-4-torch bench-f32-1-torch bench-tf32-1 bench-bf16-1 torchstrict"}
T0=$(date +%s)
say() { echo "$@" | tee -a "$LOG"; }
run() { # name timeout cmd...
  local name=$1 to=$2; shift 2
  local s=$(date +%s)
  say "=== $name: $*"
  timeout "$to" "$@" >> "$LOG" 2>&1; local rc=$?
  say "=== $name rc=$rc in $(( $(date +%s) - s )) s (total $(( $(date +%s) - T0 )) s)"
  return $rc
}
{
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv
  find / -xdev \( -name 'libcudnn.so.9*' -o -name 'libcufft.so.1*' \) -not -path '/proc/*' 2>/dev/null
} >> "$LOG" 2>&1
export MDX_BENCH_TORCH_LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"   # PyTorch keeps its own libraries
source $D/env.sh 2>> "$LOG"
TORCH_CUDNN=/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cudnn/lib
[ "${CUDNN:-}" = torch ] && export LD_LIBRARY_PATH="$TORCH_CUDNN:$LD_LIBRARY_PATH"
( cd $D/bin && for f in *.xz; do [ -e "$f" ] && xz -d -f -T0 "$f"; done; chmod +x * )
ls -la $D/bin >> "$LOG"
ldd $D/bin/cuda-tests | grep -E 'not found|libcu|nvrtc|cudnn|cufft' >> "$LOG" 2>&1
for step in $STEPS; do
  case $step in
    info) LD_LIBRARY_PATH="$MDX_BENCH_TORCH_LD_LIBRARY_PATH" python3 -c "import torch;print('torch',torch.__version__,'cudnn',torch.backends.cudnn.version(),'allow_tf32 conv',torch.backends.cudnn.allow_tf32,'matmul',torch.backends.cuda.matmul.allow_tf32)" >> "$LOG" 2>&1 ;;
    tests) MDX_CUDNN_LOG=${MDX_CUDNN_LOG:-} run cuda-tests 300 $D/bin/cuda-tests --test-threads=1 --nocapture ;;
    fixtures) MDX_STEMS_TEST_DEVICE=cuda run fixtures-cuda 300 $D/bin/fixtures-tests --test-threads=4 --nocapture ;;
    nhwc) run nhwc-cpu 120 $D/bin/nhwc-tests --nocapture ;;
    roformer) MDX_STEMS_TEST_DEVICE=cuda run roformer-cuda 300 $D/bin/roformer-tests --test-threads=2 --nocapture ;;
    bench) # bench-<precision>-<batch>[-torch]: ours (and PyTorch's in the same invocation)
      ;;
    compare) # the same benchmark for the build in bin/bench-main and the one in bin/bench
      for b in 1 4; do
        for which in bench-main bench; do
          run "$which-f16-$b-torch" 240 $D/bin/$which --device cuda --precision f16 --batch $b --repeats ${REPEATS:-10} --warmup 2 --torch
        done
      done ;;
    bench-*)
      IFS=- read -r _ p b tor <<< "$step"
      extra=""; [ "$p" = tf32 ] && { p=f32; extra="--tf32"; }
      [ "$tor" = torch ] && extra="$extra --torch"
      [ "${PROFILE:-}" = 1 ] && extra="$extra --profile"   # per-stage syncs: slower, for diagnosis only
      run "$step" 240 $D/bin/bench --device cuda --precision $p --batch $b --repeats ${REPEATS:-10} --warmup 2 $extra ;;
    cudnn919-*) # one of our benchmarks again with PyTorch's newer cuDNN
      IFS=- read -r _ p b <<< "$step"
      LD_LIBRARY_PATH="$TORCH_CUDNN:$LD_LIBRARY_PATH" run "$step" 120 $D/bin/bench --device cuda --precision $p --batch $b --repeats ${REPEATS:-10} --warmup 2 ;;
    torchstrict) LD_LIBRARY_PATH="$MDX_BENCH_TORCH_LD_LIBRARY_PATH" NVIDIA_TF32_OVERRIDE=0 run torch-f32-strict 120 python3 benches/torch/bench_torch.py --full --device cuda --dtype f32 --batch 1 --repeats 10 --warmup 3 ;;
    ncu) NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      run ncu 240 $NCU --profile-from-start off --clock-control none --metrics gpu__time_duration.sum --csv --print-units base --log-file $OUT/ncu.csv $D/bin/cuda-tests --ignored --exact one_forward_for_profiler --test-threads=1
      python3 $D/ncu_summary.py $OUT/ncu.csv >> "$LOG" 2>&1 ;;
    torchsnr) # PyTorch's own f16 (autocast) vs f32 on the same random weights and input
      for dt in f32 f16 bf16; do
        LD_LIBRARY_PATH="$MDX_BENCH_TORCH_LD_LIBRARY_PATH" run torch-out-$dt 120 python3 benches/torch/bench_torch.py --full --device cuda --dtype $dt --batch 1 --repeats 1 --warmup 1 --output-npy /tmp/torch_$dt.npy
      done
      python3 -c "
import numpy as np
r=np.load('/tmp/torch_f32.npy').astype(np.float64)
for d in ('f16','bf16'):
    e=np.load(f'/tmp/torch_{d}.npy').astype(np.float64)
    print(f'PyTorch {d} (autocast) vs f32 output: SNR {10*np.log10((r**2).sum()/((e-r)**2).sum()):.1f} dB')
" >> "$LOG" 2>&1 ;;
    speed) MDX_BENCH_CASES=${MDX_BENCH_CASES:-f16:1,f16:4,f32:1} run full-size-speed 300 $D/bin/cuda-tests --ignored --nocapture --test-threads=1 full_size_speed ;;
  esac
done
say "=== summary (total $(( $(date +%s) - T0 )) s)"
grep -E '^=== |^\| |test result|panicked|FAILED|ratio|error' "$LOG" | tail -80
