"""Print SI-SDR, PESQ and STOI before and after denoising and the CPU they ran on, and draw the three
spectrograms."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from audiodenoise.audio import read_audio  # noqa: E402
from audiodenoise.metrics import score  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from common import machine  # noqa: E402  (the CPU line the benchmark results carry)

# benchmarks/results/speed.json holds only its latest machine (an AVX512-BF16 one), so the plain-AVX2 figure is
# quoted from the Speed table of docs/benchmarks.md.
AVX2_EXPECTED = (
    "expect on a plain AVX2 CPU: real-time factor 0.150 at 1 thread, 0.102 at 2 (AMD EPYC Zen 3, ONNX Runtime, "
    "60 s file, the model of 2026-11-25; docs/benchmarks.md, Speed)"
)


def mono(path: str) -> tuple[np.ndarray, int]:
    audio, rate = read_audio(path)
    return audio.mean(axis=1), rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--noisy", required=True)
    parser.add_argument("--denoised", required=True)
    parser.add_argument("--clean", required=True)
    parser.add_argument("--png", required=True)
    args = parser.parse_args()
    clean, rate = mono(args.clean)
    signals = {"noisy": mono(args.noisy)[0], "denoised": mono(args.denoised)[0], "clean": clean}
    before, after = score(clean, signals["noisy"], rate), score(clean, signals["denoised"], rate)
    print(f"{'':10}{'SI-SDR (dB)':>12}{'PESQ (wb)':>11}{'STOI':>7}")
    for label, values in (("noisy", before), ("denoised", after)):
        print(f"{label:10}{values['si_sdr']:12.2f}{values['pesq']:11.2f}{values['stoi']:7.3f}")
    print(f"measured on: {machine()}")
    print(AVX2_EXPECTED)
    colours = plt.get_cmap("magma").copy()
    colours.set_bad(colours(0.0))  # digital silence: drawn as the quietest colour
    figure, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for axis, (label, signal) in zip(axes, signals.items()):
        with np.errstate(divide="ignore"):  # digital silence has no dB value
            axis.specgram(signal, NFFT=512, Fs=rate, noverlap=384, cmap=colours, vmin=-120, vmax=-20)
        axis.set_title(label)
        axis.set_ylabel("Hz")
    axes[-1].set_xlabel("seconds")
    figure.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.png, dpi=100)
    print(f"spectrograms: {args.png}")


if __name__ == "__main__":
    main()
