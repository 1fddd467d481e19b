"""`audiodenoise prepare` at the reference scale (2,000 clean files), then the training loader reading it all.

Reports time, patch pairs per second, peak memory of the whole process tree (the sum of PSS, so pages
that forked workers share are counted once), size on disk, and the loader's pairs per second and peak RSS."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import CORPUS, print_table, write_results

LOADER = """
import resource, sys, time
from audiodenoise.data.sources import PreparedSource
source = PreparedSource(sys.argv[1])
started, pairs = time.perf_counter(), 0
for noisy, clean in source.epoch(0, 0, batch_size=16, seed=0):
    pairs += len(noisy)
seconds = time.perf_counter() - started
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(pairs, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      int(status["RssAnon"].split()[0]) / 1024, int(status["RssFile"].split()[0]) / 1024)
"""


def _tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        kids = [int(c) for c in children.read_text().split()]
    except OSError:
        return []
    return [pid] + [p for kid in kids for p in _tree(kid)]


def _pss_mib(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("Pss:")), 0.0)


def run_sampled(command: list[str]) -> tuple[float, float]:
    """Run ``command``; returns (wall seconds, peak summed PSS of its process tree in MiB)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.1):
            peak = max(peak, sum(_pss_mib(pid) for pid in _tree(process.pid)))

    started = time.perf_counter()
    sampler = threading.Thread(target=sample)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    print(output.strip())
    return seconds, peak


def disk_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000, help="clean files (the reference used 2,000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", type=Path, help="keep the dataset here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = args.output or Path(scratch) / "dataset"
        command = [sys.executable, "-m", "audiodenoise", "prepare", "--speech", str(CORPUS / "speech")]
        command += ["--noise", str(CORPUS / "noise"), "-o", str(out), "--max-files", str(args.files)]
        command += ["--workers", str(args.workers)]
        seconds, peak_pss = run_sampled(command)
        manifest = json.loads((out / "manifest.json").read_text())
        pairs = sum(split["pairs"] for split in manifest["splits"].values())
        size = disk_mib(out)
        loader = subprocess.run([sys.executable, "-c", LOADER, str(out)], check=True, capture_output=True, text=True)
        read, load_seconds, load_peak, rss_anon, rss_file = (float(v) for v in loader.stdout.split())
    print_table(
        ["clean files", "pairs (train/val)", "seconds", "pairs/s", "peak PSS MiB", "disk MiB"],
        [
            [
                manifest["counts"]["clean_files"],
                f"{pairs} ({manifest['splits']['train']['pairs']}/{manifest['splits']['val']['pairs']})",
                seconds,
                pairs / seconds,
                peak_pss,
                size,
            ]
        ],
    )
    print()
    print_table(
        ["loader pairs", "seconds", "pairs/s", "peak RSS MiB", "anonymous MiB at end", "file-backed MiB at end"],
        [[int(read), load_seconds, read / load_seconds, load_peak, rss_anon, rss_file]],
    )
    write_results(
        "prepare",
        {
            "workers": args.workers,
            "clean_files": manifest["counts"]["clean_files"],
            "failed_files": manifest["counts"]["failed"],
            "skipped_files": manifest["counts"]["skipped"],
            "pairs": {name: split["pairs"] for name, split in manifest["splits"].items()},
            "seconds": seconds,
            "pairs_per_second": pairs / seconds,
            "peak_pss_mib": peak_pss,
            "disk_mib": size,
            "loader": {
                "pairs": int(read),
                "seconds": load_seconds,
                "pairs_per_second": read / load_seconds,
                "peak_rss_mib": load_peak,
                "rss_anon_mib_at_end": rss_anon,
                "rss_file_mib_at_end": rss_file,
            },
        },
    )


if __name__ == "__main__":
    main()
