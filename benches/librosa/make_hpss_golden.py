#!/usr/bin/env python3
"""Golden data for `builtin:hpss` from librosa (run by hand, like benches/torch/).

    apt-get install drascula-music        # Debian's game music: OGG Vorbis, real instruments
    pip install librosa soundfile
    python3 benches/librosa/make_hpss_golden.py

Writes tests/data/hpss/: `mix.wav` (16-bit stereo excerpt at 22050 Hz: what the test feeds),
`harmonic.wav` and `percussive.wav` (32-bit float, `librosa.effects.hpss` of that same 16-bit
signal read back as float32) and `params.json` (every parameter, and the versions used).
tests/hpss_librosa.rs compares the built-in separator against them.
"""
import json
import os
import sys

import librosa
import numpy as np
import scipy
import soundfile as sf

SRC = "/usr/share/scummvm/drascula/audio/track3.ogg"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "hpss")
RATE = 22050
START_S, SECONDS = 20.0, 2.0
# The built-in's defaults (src/nets/builtin/hpss.rs), except the margin, which differs per
# component here so that a swapped margin would show.
PARAMS = dict(kernel_size=31, power=2.0, margin=(2.0, 3.0), n_fft=2048, hop_length=512)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else SRC
    y, sr = librosa.load(src, sr=RATE, mono=False, offset=START_S, duration=SECONDS)
    assert y.ndim == 2 and y.shape[0] == 2, "a stereo source is expected"
    os.makedirs(OUT, exist_ok=True)
    mix_path = os.path.join(OUT, "mix.wav")
    sf.write(mix_path, y.T, RATE, subtype="PCM_16")
    # What the test reads: the 16-bit file as float32 (x / 32768).
    y16, _ = sf.read(mix_path, dtype="float32", always_2d=True)
    y16 = np.ascontiguousarray(y16.T)
    h, p = librosa.effects.hpss(y16, window="hann", center=True, **PARAMS)
    sf.write(os.path.join(OUT, "harmonic.wav"), h.T.astype(np.float32), RATE, subtype="FLOAT")
    sf.write(os.path.join(OUT, "percussive.wav"), p.T.astype(np.float32), RATE, subtype="FLOAT")
    meta = dict(
        source=os.path.basename(src) + " (Debian package drascula-music)",
        offset_s=START_S,
        seconds=SECONDS,
        sample_rate=RATE,
        kernel_harm=PARAMS["kernel_size"],
        kernel_perc=PARAMS["kernel_size"],
        power=PARAMS["power"],
        margin_harm=PARAMS["margin"][0],
        margin_perc=PARAMS["margin"][1],
        n_fft=PARAMS["n_fft"],
        hop=PARAMS["hop_length"],
        window="hann",
        versions=dict(librosa=librosa.__version__, numpy=np.__version__, scipy=scipy.__version__),
    )
    with open(os.path.join(OUT, "params.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("wrote", OUT, "peak", float(np.abs(y16).max()), "rms h/p", float(np.sqrt((h**2).mean())), float(np.sqrt((p**2).mean())))


if __name__ == "__main__":
    main()
