"""Batch denoising: files per second over 12 dev-eval files with `denoise --jobs 1` and `--jobs 2` (1 thread
each) and with `--ray local`, whole commands as a user runs them (start-up included), and the batch alone (the
summary line's seconds, from the first file's start to the last one's end); the peak RSS of each worker; and
whether every run wrote the bytes of `--jobs 1`."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CORPUS, print_table, write_results

from audiodenoise.engine import DEFAULT_ENGINE, resolve_engine

RUNS = {"jobs 1": ["--jobs", "1"], "jobs 2": ["--jobs", "2"], "ray local": ["--ray", "local", "--jobs", "2"]}
SUMMARY = re.compile(r"([\d.]+) s of audio in ([\d.]+) s")
POLL_SECONDS = 0.05


def descendants(root: int) -> dict[int, str]:
    """Every process under ``root`` (itself included), with its command line."""
    parents, names = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                names[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except (OSError, ValueError, IndexError):
                continue
    found, before = {root}, 0
    while len(found) != before:
        before = len(found)
        found |= {pid for pid, parent in parents.items() if parent in found}
    return {pid: names.get(pid, "") for pid in found}


def peak_rss_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match[1]) / 1024 if match else None


def kind(pid: int, command: str, root: int, processes: dict[int, str]) -> str:
    """driver, worker (a pool's forked worker or a Ray actor), or other (the fork server, Ray's own services)."""
    if pid == root:
        return "driver"
    if command.startswith("ray::_Loaded"):
        return "worker"
    if "forkserver" in command:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        return "worker" if "forkserver" in processes.get(parent, "") else "other"
    return "other"


def cpu_jiffies() -> tuple[int, int]:
    """Busy and total CPU time of the whole machine so far (/proc/stat), every process counted."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def run(folder: Path, out: Path, options: list[str], model: str) -> dict:
    """One command, timed; the peak RSS of each of its processes, sampled until it ends; how busy the machine was
    meanwhile (other work on it included)."""
    command = [sys.executable, "-m", "audiodenoise", "denoise", str(folder), "-o", str(out), "--threads", "1"]
    busy_before, total_before = cpu_jiffies()
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, "--model", model, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peaks: dict[int, tuple[str, float]] = {}
    while process.poll() is None:
        processes = descendants(process.pid)
        for pid, name in processes.items():
            rss = peak_rss_mib(pid)
            if rss is not None:
                try:
                    label = kind(pid, name, process.pid, processes)
                except (OSError, ValueError, IndexError):
                    continue
                peaks[pid] = (label, max(rss, peaks.get(pid, ("", 0.0))[1]))
        time.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - started
    busy, total = (after - before for after, before in zip(cpu_jiffies(), (busy_before, total_before)))
    stdout, stderr = process.communicate()
    if process.returncode:
        sys.exit(f"{' '.join(options)}: failed ({stderr.strip()})")
    audio, batch = map(float, SUMMARY.search(stdout).groups())
    workers = [rss for label, rss in peaks.values() if label == "worker"]
    return {
        "wall_seconds": seconds,
        "batch_seconds": batch,
        "audio_seconds": audio,
        "driver_peak_rss_mib": next((rss for label, rss in peaks.values() if label == "driver"), None),
        "worker_peak_rss_mib": max(workers) if workers else None,
        "workers_seen": len(workers),
        "other_processes_rss_mib": sum(rss for label, rss in peaks.values() if label == "other"),
        "machine_busy_cores": os.cpu_count() * busy / total,
    }


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--files", type=int, default=12, help="the first N files of dev-eval/noisy")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    args = parser.parse_args()
    sources = sorted((CORPUS / "dev-eval" / "noisy").glob("*.wav"))[: args.files]
    if len(sources) < args.files:
        sys.exit(f"{CORPUS / 'dev-eval' / 'noisy'}: fewer than {args.files} files")
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "noisy"
        folder.mkdir()
        for source in sources:
            os.symlink(source.resolve(), folder / source.name)
        reference = None
        for name in args.runs:
            out = Path(scratch) / name.replace(" ", "-")
            result = run(folder, out, RUNS[name], args.model)
            written = digests(out)
            reference = reference or written
            result["same_bytes_as_first_run"] = written == reference
            results[name] = result
            rows.append(
                [
                    name,
                    len(sources) / result["wall_seconds"],
                    result["wall_seconds"],
                    len(sources) / result["batch_seconds"],
                    result["batch_seconds"],
                    result["worker_peak_rss_mib"] or result["driver_peak_rss_mib"],
                    result["driver_peak_rss_mib"],
                    result["other_processes_rss_mib"],
                    result["machine_busy_cores"],
                    "yes" if result["same_bytes_as_first_run"] else "NO",
                ]
            )
    print_table(
        [
            "run (1 thread each)",
            "files/s",
            "wall s",
            "files/s, batch",
            "batch s",
            "peak RSS per worker MiB",
            "driver MiB",
            "other processes MiB",
            "busy cores (all processes)",
            f"bytes = {args.runs[0]}",
        ],
        rows,
    )
    engine = resolve_engine(DEFAULT_ENGINE)
    audio = next(iter(results.values()))["audio_seconds"]
    write_results(
        "batch",
        {"model": args.model, "engine": engine, "files": len(sources), "audio_seconds": audio, "results": results},
    )


if __name__ == "__main__":
    main()
