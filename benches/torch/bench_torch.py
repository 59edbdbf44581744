#!/usr/bin/env python3
"""PyTorch baseline for the MDX Stems benchmark (TFC-TDF v3 / MDX23C).

  --check   load every fixture in tests/fixtures/mdx23c/*/ (config.yaml + model.ckpt),
            run the forward pass on `mix` and require max|out - ref| <= 1e-4.
  --full    time the full-size InstVoc HQ network (or --config YAML) with seeded random
            weights on one chunk per batch item; prints ONE JSON line on stdout.

Random data (--full): torch.manual_seed(seed) then the model is built (PyTorch default init);
then torch.manual_seed(seed) again and the input is torch.rand(B, 2, chunk) * 2 - 1 (uniform
in [-1, 1]). --input-npy replaces that input; --output-npy saves the output of the last timed
run ([B, stems, 2, L] float32); --save-weights writes the random weights as safetensors so
another engine can run the very same network.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import statistics
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tfc_tdf_v3 import FULL_CONFIG, FULL_PARAMS, TFC_TDF_v3, load_config  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "mdx23c")
TOL = 1e-4
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def load_weights(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def peak_rss_mb():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


def autocast(device, dtype):
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def check(args):
    from safetensors.torch import load_file
    dirs = sorted(d for d in glob.glob(os.path.join(args.fixtures, "*")) if os.path.isdir(d))
    if not dirs:
        sys.exit(f"no fixtures under {args.fixtures}")
    ok = True
    for d in dirs:
        name = os.path.basename(d)
        cfg = load_config(os.path.join(d, "config.yaml"))
        meta = json.load(open(os.path.join(d, "meta.json")))
        model = TFC_TDF_v3(cfg)
        model.load_state_dict(load_weights(os.path.join(d, "model.ckpt")), strict=True)
        model = model.eval().to(args.device)
        n_float = sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
        ref = load_file(os.path.join(d, "forward.safetensors"))
        mix = ref["mix"].to(args.device)
        with torch.inference_mode():
            spec = model.stft(mix).cpu()
            out = model(mix).float().cpu()
        d_spec = (spec - ref["spec"]).abs().max().item()
        d_out = (out - ref["out"]).abs().max().item()
        d_f64 = (out.double() - ref["out_f64"]).abs().max().item()
        good = (out.shape == ref["out"].shape and d_out <= TOL
                and n_float == meta["parameters"] and model.stems == meta["stems"])
        ok &= good
        print(f"{'PASS' if good else 'FAIL'} {name}: out {tuple(out.shape)} "
              f"max|out-ref|={d_out:.3e} max|out-out_f64|={d_f64:.3e} "
              f"max|spec-ref|={d_spec:.3e} (|ref|max {meta['out_max_abs']:.2f}) "
              f"params={n_float} (meta {meta['parameters']}) stems={model.stems}")
    print("check:", "PASS" if ok else "FAIL", f"(tol {TOL})")
    sys.exit(0 if ok else 1)


def full(args):
    torch.set_num_threads(args.threads)
    dev, dtype = args.device, DTYPES[args.dtype]
    cfg = load_config(args.config) if args.config else load_config(FULL_CONFIG)
    chunk = cfg.audio.chunk_size

    torch.manual_seed(args.seed)
    model = TFC_TDF_v3(cfg)
    if args.weights:
        model.load_state_dict(load_weights(args.weights), strict=True)
    params = sum(p.numel() for p in model.parameters())
    log(f"params: {params:,}")
    if not args.config and params != FULL_PARAMS:
        sys.exit(f"full-size parameter count {params} != spec {FULL_PARAMS}")
    if args.save_weights:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.save_weights)
        log(f"weights -> {args.save_weights}")
    model = model.eval().to(dev)

    if args.input_npy:
        x = torch.from_numpy(np.load(args.input_npy)).float()
        if x.dim() == 2:
            x = x[None]
    else:
        torch.manual_seed(args.seed)
        x = torch.rand(args.batch, 2, chunk) * 2 - 1
    x = x.to(dev)
    batch = x.shape[0]

    fwd = torch.compile(model) if args.compile else model
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()

    times = []
    cpu_times = []
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

    if args.output_npy:
        np.save(args.output_npy, out.float().cpu().numpy())
        log(f"output {tuple(out.shape)} -> {args.output_npy}")

    res = {
        "impl": "pytorch",
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="verify against the fixtures")
    mode.add_argument("--full", action="store_true", help="benchmark the full-size network")
    p.add_argument("--fixtures", default=FIXTURES)
    p.add_argument("--config", help="YAML config to time instead of the full-size one")
    p.add_argument("--weights", help="model.ckpt / .safetensors instead of random weights")
    p.add_argument("--save-weights", help="write the (random) weights as .safetensors")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="f32")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-npy", help="input [B, 2, L] or [2, L] float32 .npy")
    p.add_argument("--output-npy", help="save output [B, stems, 2, L] float32 .npy")
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    check(args) if args.check else full(args)


if __name__ == "__main__":
    main()
