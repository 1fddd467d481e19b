"""Peak RSS of `audiodenoise denoise` on a 10-minute file, against the size of the audio itself."""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import print_table, write_results
from speed import long_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        source, output = Path(folder) / "long.wav", Path(folder) / "long_denoised.wav"
        long_clip(args.minutes * 60, source)
        command = [sys.executable, "-m", "audiodenoise", "denoise", str(source), "-o", str(output), "-q"]
        started = time.perf_counter()
        subprocess.run(command + ["--model", args.model], check=True, capture_output=True)
        seconds = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    audio_mib = args.minutes * 60 * 22050 * 4 / 2**20
    print_table(
        ["audio", "float32 audio MiB", "peak RSS MiB", "wall s"],
        [[f"{args.minutes:g} min", audio_mib, peak_mib, seconds]],
    )
    write_results(
        "memory", {"model": args.model, "minutes": args.minutes, "peak_rss_mib": peak_mib, "wall_seconds": seconds}
    )


if __name__ == "__main__":
    main()
