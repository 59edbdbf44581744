"""TFC-TDF v3 (MDX23C) in PyTorch, written from the spec, docs/tfc-tdf-v3.md.

Baseline for the MDX Stems benchmark. Module and parameter names follow the spec's
"Parameter names" section, so a user's `model.ckpt` loads with `strict=True`:

    model = TFC_TDF_v3(load_config("config.yaml"))
    model.load_state_dict(torch.load("model.ckpt", weights_only=True))
    out = model.eval()(mix)        # mix [B, 2, L] -> out [B, stems, 2, L]
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- config

def _ns(d):
    if isinstance(d, dict):
        return SimpleNamespace(**{k: _ns(v) for k, v in d.items()})
    return d


def load_config(path_or_dict):
    """YAML file (or an already parsed dict) -> nested SimpleNamespace. Unknown keys are kept
    and ignored."""
    if isinstance(path_or_dict, dict):
        return _ns(path_or_dict)
    import yaml
    with open(path_or_dict) as f:
        return _ns(yaml.safe_load(f))


def stems_of(cfg) -> list[str]:
    tr = cfg.training
    target = getattr(tr, "target_instrument", None)
    return [target] if target is not None else list(tr.instruments)


def make_norm(kind: str, c: int) -> nn.Module:
    if kind == "InstanceNorm":
        return nn.InstanceNorm2d(c, affine=True, eps=1e-5)  # no running stats
    if kind == "BatchNorm":
        return nn.BatchNorm2d(c, eps=1e-5)
    m = re.fullmatch(r"GroupNorm(\d+)", kind)
    if m:
        return nn.GroupNorm(int(m.group(1)), c, eps=1e-5)
    return nn.Identity()


def make_act(kind: str) -> nn.Module:
    if kind == "gelu":
        return nn.GELU()  # exact erf form
    if kind == "relu":
        return nn.ReLU()
    if kind.startswith("elu"):
        return nn.ELU(alpha=float(kind[3:]))
    raise ValueError(f"unknown activation {kind!r}")


# ---------------------------------------------------------------- STFT

class STFT(nn.Module):
    def __init__(self, n_fft: int, hop: int, dim_f: int):
        super().__init__()
        self.n_fft, self.hop, self.dim_f = n_fft, hop, dim_f
        # periodic Hann, float32, not a parameter (not in the checkpoint)
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, x):
        """[B, ch, L] -> [B, ch*2, dim_f, T] ordered (ch0.re, ch0.im, ch1.re, ch1.im)."""
        b, ch, length = x.shape
        spec = torch.stft(x.reshape(b * ch, length).float(), self.n_fft, self.hop,
                          window=self.window, center=True, pad_mode="reflect",
                          normalized=False, onesided=True, return_complex=True)
        spec = torch.view_as_real(spec)                     # [B*ch, bins, T, 2]
        spec = spec.permute(0, 3, 1, 2)                     # [B*ch, 2, bins, T]
        spec = spec.reshape(b, ch * 2, *spec.shape[-2:])
        return spec[:, :, : self.dim_f]

    def inverse(self, x, length: int):
        """[..., ch*2, dim_f, T] -> [..., ch, length]."""
        lead, (c2, f, t) = x.shape[:-3], x.shape[-3:]
        bins = self.n_fft // 2 + 1
        x = F.pad(x.float(), (0, 0, 0, bins - f))           # zero bins above dim_f
        x = x.reshape(-1, 2, bins, t).permute(0, 2, 3, 1).contiguous()
        x = torch.view_as_complex(x)                        # [N*ch, bins, T]
        y = torch.istft(x, self.n_fft, self.hop, window=self.window, center=True,
                        normalized=False, onesided=True, length=length)
        return y.reshape(*lead, c2 // 2, length)


# ---------------------------------------------------------------- blocks

class TFC_TDF(nn.Module):
    def __init__(self, in_c, c, num_blocks, f, bn, norm, act):
        super().__init__()
        self.blocks = nn.ModuleList()
        for _ in range(num_blocks):
            blk = nn.Module()
            blk.tfc1 = nn.Sequential(make_norm(norm, in_c), make_act(act),
                                     nn.Conv2d(in_c, c, 3, 1, 1, bias=False))
            blk.tdf = nn.Sequential(make_norm(norm, c), make_act(act),
                                    nn.Linear(f, f // bn, bias=False),
                                    make_norm(norm, c), make_act(act),
                                    nn.Linear(f // bn, f, bias=False))
            blk.tfc2 = nn.Sequential(make_norm(norm, c), make_act(act),
                                     nn.Conv2d(c, c, 3, 1, 1, bias=False))
            blk.shortcut = nn.Conv2d(in_c, c, 1, 1, 0, bias=False)
            self.blocks.append(blk)
            in_c = c

    def forward(self, x):                                   # x: [B, c, T, F]
        for blk in self.blocks:
            s = blk.shortcut(x)
            x = blk.tfc1(x)
            x = x + blk.tdf(x)
            x = blk.tfc2(x)
            x = x + s
        return x


class Downscale(nn.Module):
    def __init__(self, in_c, out_c, scale, norm, act):
        super().__init__()
        self.conv = nn.Sequential(make_norm(norm, in_c), make_act(act),
                                  nn.Conv2d(in_c, out_c, scale, scale, bias=False))

    def forward(self, x):
        return self.conv(x)


class Upscale(nn.Module):
    def __init__(self, in_c, out_c, scale, norm, act):
        super().__init__()
        self.conv = nn.Sequential(make_norm(norm, in_c), make_act(act),
                                  nn.ConvTranspose2d(in_c, out_c, scale, scale, bias=False))

    def forward(self, x):
        return self.conv(x)


# ---------------------------------------------------------------- network

class TFC_TDF_v3(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        a, m = cfg.audio, cfg.model
        norm, act = m.norm, m.act
        self.stems = stems_of(cfg)
        self.k = m.num_subbands
        self.dim_c = self.k * a.num_channels * 2
        scale = tuple(m.scale)
        n, g, l = m.num_scales, m.growth, m.num_blocks_per_scale
        c, f = m.num_channels, a.dim_f // self.k

        self.stft = STFT(a.n_fft, a.hop_length, a.dim_f)
        self.first_conv = nn.Conv2d(self.dim_c, c, 1, 1, 0, bias=False)

        self.encoder_blocks = nn.ModuleList()
        for _ in range(n):
            blk = nn.Module()
            blk.tfc_tdf = TFC_TDF(c, c, l, f, m.bottleneck_factor, norm, act)
            blk.downscale = Downscale(c, c + g, scale, norm, act)
            f //= scale[1]
            c += g
            self.encoder_blocks.append(blk)

        self.bottleneck_block = TFC_TDF(c, c, l, f, m.bottleneck_factor, norm, act)

        self.decoder_blocks = nn.ModuleList()
        for _ in range(n):
            blk = nn.Module()
            blk.upscale = Upscale(c, c - g, scale, norm, act)
            f *= scale[1]
            c -= g
            blk.tfc_tdf = TFC_TDF(2 * c, c, l, f, m.bottleneck_factor, norm, act)
            self.decoder_blocks.append(blk)

        self.final_conv = nn.Sequential(
            nn.Conv2d(c + self.dim_c, c, 1, 1, 0, bias=False),
            make_act(act),
            nn.Conv2d(c, len(self.stems) * self.dim_c, 1, 1, 0, bias=False),
        )

    def fold(self, x):                                      # [B, C, F, T] -> [B, C*k, F/k, T]
        b, c, f, t = x.shape
        return x.reshape(b, c, self.k, f // self.k, t).reshape(b, c * self.k, f // self.k, t)

    def unfold(self, x):                                    # [B, C*k, F/k, T] -> [B, C, F, T]
        b, ck, f, t = x.shape
        return x.reshape(b, ck // self.k, self.k * f, t)

    def forward(self, x):                                   # [B, 2, L] -> [B, stems, 2, L]
        length = x.shape[-1]
        mix = x = self.fold(self.stft(x))
        first = x = self.first_conv(x)
        x = x.transpose(-1, -2)                             # [B, c, T, F]

        skips = []
        for blk in self.encoder_blocks:
            x = blk.tfc_tdf(x)
            skips.append(x)
            x = blk.downscale(x)

        x = self.bottleneck_block(x)

        for blk in self.decoder_blocks:
            x = blk.upscale(x)
            x = torch.cat([x, skips.pop()], 1)
            x = blk.tfc_tdf(x)

        x = x.transpose(-1, -2) * first                     # [B, c, F, T]
        x = self.final_conv(torch.cat([mix, x], 1))
        x = self.unfold(x)                                  # [B, stems*4, dim_f, T]
        b, _, f, t = x.shape
        x = x.reshape(b, len(self.stems), -1, f, t)
        return self.stft.inverse(x, length)


# full-size InstVoc HQ config (spec, "Config"): 111,990,272 parameters
FULL_CONFIG = {
    "audio": {"chunk_size": 261120, "dim_f": 4096, "dim_t": 256, "hop_length": 1024,
              "n_fft": 8192, "num_channels": 2, "sample_rate": 44100},
    "model": {"act": "gelu", "bottleneck_factor": 4, "growth": 128, "norm": "InstanceNorm",
              "num_blocks_per_scale": 2, "num_channels": 128, "num_scales": 5,
              "num_subbands": 4, "scale": [2, 2]},
    "training": {"instruments": ["Vocals", "Instrumental"], "target_instrument": None},
    "inference": {"batch_size": 1, "dim_t": 256, "num_overlap": 2},
}
FULL_PARAMS = 111_990_272
