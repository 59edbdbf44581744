#!/usr/bin/env python3
"""PyTorch baseline for RoFormer configs: times MSST's OWN model code.

  python benches/torch/bench_msst.py --msst DIR --config YAML [--device cpu|cuda]
      [--dtype f32|f16|bf16] [--batch N] [--threads N] [--repeats N] [--warmup N] [--compile]

DIR is a checkout of ZFTurbo's Music-Source-Separation-Training. The model is built as MSST's
utils/settings.get_model_from_config does: the config read with yaml.FullLoader, then
BSRoformer(**config.model) (models/bs_roformer/bs_roformer.py) or MelBandRoformer(**config.model)
(models/bs_roformer/mel_band_roformer.py), chosen by the model section's keys (`num_bands`:
Mel-Band). Only those model files (and their attend.py) are imported: the `models` packages
are registered empty, so MSST's training utilities and their dependencies are not needed.
`flash_attn` is the config's: with it MSST's Attend calls F.scaled_dot_product_attention, on
CUDA and on the CPU.

Precision follows MSST's inference (utils/model_utils.demix): f32 weights, the forward pass
under autocast (MSST: torch.cuda.amp.autocast(enabled=training.use_amp), float16 on CUDA);
here f16/bf16 autocast on the device, f32 none. Random data: torch.manual_seed(seed), the
model (PyTorch's default init), torch.manual_seed(seed) again, input torch.rand(B, 2, chunk)
* 2 - 1. Prints ONE JSON line on stdout with the keys of bench_torch.py's --full.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import sys
import time
import types
from contextlib import nullcontext

import torch
import yaml

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def peak_rss_mb():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


def autocast(device, dtype):
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def msst_model_class(msst, mel):
    """MSST's BSRoformer or MelBandRoformer, importing only its model files."""
    for name, path in [("models", "models"), ("models.bs_roformer", os.path.join("models", "bs_roformer"))]:
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [os.path.join(msst, path)]
            sys.modules[name] = pkg
    if mel:
        return importlib.import_module("models.bs_roformer.mel_band_roformer").MelBandRoformer
    return importlib.import_module("models.bs_roformer.bs_roformer").BSRoformer


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--msst", default=os.environ.get("MDX_STEMS_MSST"),
                   help="a checkout of Music-Source-Separation-Training (default: $MDX_STEMS_MSST)")
    p.add_argument("--config", required=True, help="an MSST BS-RoFormer or Mel-Band RoFormer YAML")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="f32")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if not args.msst or not os.path.isfile(os.path.join(args.msst, "models", "bs_roformer", "bs_roformer.py")):
        p.error("--msst DIR (or $MDX_STEMS_MSST) must be a checkout of Music-Source-Separation-Training")
    msst = os.path.abspath(args.msst)
    sys.path.insert(0, msst)

    torch.set_num_threads(args.threads)
    dev, dtype = args.device, DTYPES[args.dtype]
    with open(args.config) as f:
        config = yaml.load(f, Loader=yaml.FullLoader)
    kwargs = dict(config["model"])
    mel = "num_bands" in kwargs
    chunk = config.get("inference", {}).get("chunk_size") or config["audio"]["chunk_size"]

    torch.manual_seed(args.seed)
    model = msst_model_class(msst, mel)(**kwargs)
    params = sum(p.numel() for p in model.parameters())
    log(f"MSST {type(model).__name__}: {params:,} parameters, flash_attn {kwargs.get('flash_attn')}, chunk {chunk}")
    model = model.eval().to(dev)

    torch.manual_seed(args.seed)
    x = (torch.rand(args.batch, 2, chunk) * 2 - 1).to(dev)
    batch = x.shape[0]

    fwd = torch.compile(model) if args.compile else model
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()

    times, cpu_times = [], []
    with torch.inference_mode(), autocast(dev, dtype):
        for i in range(args.warmup + args.repeats):
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            out = fwd(x)
            sync()
            dt = (time.perf_counter() - t0) * 1e3
            if i >= args.warmup:
                times.append(dt)
                cpu_times.append((time.process_time() - c0) * 1e3)
            log(f"{'warmup' if i < args.warmup else 'run'} {i}: {dt:.1f} ms per batch")
    if not torch.isfinite(out).all():
        sys.exit("MSST's model produced non-finite output")

    res = {
        "impl": "msst",
        "model": type(model).__name__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
        "dtype": args.dtype,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "compile": args.compile,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "chunk_samples": x.shape[-1],
        "ms_per_chunk_median": statistics.median(times) / batch,
        "ms_per_chunk_best": min(times) / batch,
        "ms_per_batch_median": statistics.median(times),
        # CPU time of the process (all threads) per chunk: steadier than wall time on a shared machine.
        "cpu_ms_per_chunk_median": statistics.median(cpu_times) / batch,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "params": params,
    }
    if dev == "cuda":
        res["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
