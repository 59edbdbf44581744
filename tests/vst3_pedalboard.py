"""Load the built MDX Stems VST3 in pedalboard (a JUCE-based host) and check it.

Run by tests/plugin_vst3.rs, which prepares the inputs:
  --vst3 <MDX Stems.vst3>  --song <song.wav>  --stems <cli vocals.wav> <cli instrumental.wav>
  --expect-latency <samples>  --buffer-size <frames>
The model comes from MDX_STEMS_MODELS (a folder holding only the fixture model): the plugin
picks the first model it finds there when no model was chosen.

The bundle holds two plugins: "MDX Stems" (a stereo output per stem) and "MDX Stems (Stereo)"
(main output only). pedalboard connects only a plugin's main output bus and leaves the stem
outputs unconnected (buses of 0 channels): the multi-output plugin must process all the same
(the plugin's VST3 bus guard), so both plugins get every check.

Checks, per plugin: the reported latency; finite output; after pedalboard's own latency
compensation, the main output equals the sum of the CLI's stems, and with the "<stem> only"
presets it equals each CLI stem (so the stems are aligned, not just present).
"""

import argparse
import sys

import numpy as np
import pedalboard
from pedalboard.io import AudioFile


def read(path):
    with AudioFile(path) as f:
        return f.read(f.frames), f.samplerate


def check_plugin(a, name, song, rate, stems, failures):
    plugin = pedalboard.load_plugin(a.vst3, plugin_name=name)
    print(f"loaded {plugin.name!r} by {plugin.manufacturer_name!r}; parameters: {list(plugin.parameters)[:6]}...")

    def run(preset):
        plugin.parameters["preset"].raw_value = preset / 12.0
        return plugin.process(song, rate, buffer_size=a.buffer_size, reset=True)

    mixed = run(0)
    latency = plugin.reported_latency_samples
    print(f"{name}: reported latency {latency} samples (expected {a.expect_latency})")
    if latency != a.expect_latency:
        failures.append(f"{name}: reported latency {latency} != {a.expect_latency}")
    if mixed.shape != song.shape:
        failures.append(f"{name}: output shape {mixed.shape} != input shape {song.shape}")
    if not np.all(np.isfinite(mixed)):
        failures.append(f"{name}: output has non-finite samples")

    want_mix = sum(stems)
    err_mix = float(np.max(np.abs(mixed - want_mix)))
    dry_err = float(np.max(np.abs(mixed - song)))
    print(f"{name}, all stems: max |out - sum of CLI stems| = {err_mix:.2e} (vs the dry input: {dry_err:.2e})")
    if not err_mix <= a.tolerance:
        failures.append(f"{name}: main output differs from the sum of the CLI's stems by {err_mix}")

    for k, stem in enumerate(stems):
        only = run(1 + k)
        err = float(np.max(np.abs(only - stem)))
        # A misalignment by one sample would be far above the tolerance for this material.
        shifted = float(np.max(np.abs(only[:, 1:] - stem[:, :-1])))
        print(f"{name}, stem {k + 1} only: max |out - CLI stem| = {err:.2e} (peak {float(np.max(np.abs(stem))):.3f}; "
              f"one sample off it would be {shifted:.2e})")
        if not err <= a.tolerance:
            failures.append(f"{name}: preset 'stem {k + 1} only' differs from the CLI's stem by {err}")
    del plugin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vst3", required=True)
    ap.add_argument("--song", required=True)
    ap.add_argument("--stems", nargs="+", required=True)
    ap.add_argument("--expect-latency", type=int, required=True)
    ap.add_argument("--buffer-size", type=int, default=512)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    a = ap.parse_args()

    song, rate = read(a.song)
    stems = [read(p)[0] for p in a.stems]
    print(f"pedalboard {pedalboard.__version__}; song {song.shape} at {rate} Hz")

    names = pedalboard.VST3Plugin.get_plugin_names_for_file(a.vst3)
    print(f"plugins in the bundle: {names}")
    failures = []
    if sorted(names) != ["MDX Stems", "MDX Stems (Stereo)"]:
        failures.append(f"unexpected plugins in the bundle: {names}")

    for name in ["MDX Stems", "MDX Stems (Stereo)"]:
        check_plugin(a, name, song, rate, stems, failures)

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("VST3 OK")


if __name__ == "__main__":
    main()
