"""Peak RSS of `audiodenoise denoise` on a 10-minute file, against the size of the audio itself."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import print_table, write_results
from speed import long_clip

from audiodenoise.engine import DEFAULT_ENGINE, resolve_engine


def peak_rss_mib(model: str, minutes: float, folder: Path) -> tuple[float, float]:
    """Peak RSS and wall time of one CLI run in a fresh process."""
    source, output = folder / f"long_{minutes:g}.wav", folder / f"long_{minutes:g}_denoised.wav"
    long_clip(minutes * 60, source)
    command = [sys.executable, "-m", "audiodenoise", "denoise", str(source), "-o", str(output), "-q", "--model", model]
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far, so time each length in its own wrapper.
    wrapper = [sys.executable, "-c", RUSAGE, *command]
    started = time.perf_counter()
    peak = float(subprocess.run(wrapper, check=True, capture_output=True, text=True).stdout.split()[-1])
    return peak, time.perf_counter() - started


RUSAGE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    args = parser.parse_args()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for minutes in args.minutes:
            peak, seconds = peak_rss_mib(args.model, minutes, Path(folder))
            audio_mib = minutes * 60 * 22050 * 4 / 2**20
            rows.append([f"{minutes:g} min", audio_mib, peak, seconds])
            results[f"{minutes:g}_min"] = {"peak_rss_mib": peak, "wall_seconds": seconds}
    print_table(["audio", "float32 audio MiB", "peak RSS MiB", "wall s"], rows)
    engine = resolve_engine(DEFAULT_ENGINE)
    write_results("memory", {"model": args.model, "engine": engine, "results": results})


if __name__ == "__main__":
    main()
