"""Load on `audiodenoise serve`: concurrent clients on loopback send 10 s clips for a minute.

Reports requests/s, latency percentiles, errors (503s apart: they are the queue working as designed) and the
server's RSS sampled every 0.5 s: its peak in the first, middle and last third of the run must stay flat
(RSS rises and falls with each request's buffers, so single samples say little).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from common import print_table, write_results
from speed import long_clip


def start_server(folder: Path, options: list[str]) -> tuple[subprocess.Popen, str]:
    log = folder / "serve.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "audiodenoise", "serve", "--port", "0", *options],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while not (found := re.search(r"serving on (http://\S+)", log.read_text())):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            sys.exit(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return server, found.group(1)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


class Sampler(threading.Thread):
    """The server's RSS every half second, with the time since the load started."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], threading.Event()
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.samples.append((time.monotonic() - self.started, rss_mib(self.pid)))

    def peak(self, start: float, stop: float) -> float:
        return max(value for seconds, value in self.samples if start <= seconds <= stop)


def client(url: str, body: bytes, deadline: float, results: list) -> None:
    """POST the clip again and again until ``deadline``; one (status, latency, server seconds) per request."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            connection.request("POST", "/v1/denoise", body=body, headers={"Content-Type": "audio/wav"})
            response = connection.getresponse()
            response.read()
            server_seconds = float(response.headers.get("X-Processing-Time") or "nan")
            results.append((response.status, time.monotonic() - started, server_seconds))
            if response.status == 503:
                time.sleep(float(response.headers.get("Retry-After", 1)))  # as a polite client would
        except (OSError, http.client.HTTPException):
            results.append((0, time.monotonic() - started, float("nan")))
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients keep sending")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--server-option", action="append", default=[], help="passed to serve, e.g. --queue=2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.wav"
        long_clip(args.clip_seconds, clip)
        body = clip.read_bytes()
        server, url = start_server(Path(folder), ["--model", args.model, *args.server_option])
        try:
            warm_up = urllib.request.Request(url + "v1/denoise", data=body, headers={"Content-Type": "audio/wav"})
            with urllib.request.urlopen(warm_up, timeout=300) as response:
                response.read()  # the first request pays for lazy initialisation; it is not counted
            load_before = os.getloadavg()[0]
            sampler = Sampler(server.pid)
            sampler.start()
            results: list[tuple[int, float, float]] = []
            deadline = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=client, args=(url, body, deadline, results)) for _ in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - sampler.started
            sampler.stop.set()
            sampler.join()
        finally:
            server.terminate()
            server.wait(30)
    ok = np.array([latency for status, latency, _ in results if status == 200])
    processing = np.nanmean([seconds for status, _, seconds in results if status == 200])
    busy = sum(status == 503 for status, _, _ in results)
    errors = sum(status not in (200, 503) for status, _, _ in results)
    p50, p95, p99 = np.percentile(ok, [50, 95, 99]) if len(ok) else (float("nan"),) * 3
    third = elapsed / 3
    rss = {
        "start": sampler.peak(0, third),
        "middle": sampler.peak(third, 2 * third),
        "end": sampler.peak(2 * third, elapsed),
        "peak": sampler.peak(0, elapsed),
    }
    print(
        f"{args.clients} clients, {args.clip_seconds:g} s clips for {args.seconds:g} s on loopback; "
        f"load average {load_before:.1f} when the run started"
    )
    print_table(
        ["requests", "req/s", "audio s/s", "p50 s", "p95 s", "p99 s", "server s", "errors", "503s"],
        [[len(ok), len(ok) / elapsed, len(ok) * args.clip_seconds / elapsed, p50, p95, p99, processing, errors, busy]],
    )
    print()
    print_table(["peak RSS MiB", *rss], [["server", *rss.values()]])
    write_results(
        "serve_load",
        {
            "model": args.model,
            "clients": args.clients,
            "seconds": args.seconds,
            "clip_seconds": args.clip_seconds,
            "server_options": args.server_option,
            "load_average_at_start": load_before,
            "requests": len(ok),
            "requests_per_second": len(ok) / elapsed,
            "latency_seconds": {"p50": p50, "p95": p95, "p99": p99},
            "mean_processing_seconds": processing,
            "errors": errors,
            "busy_503": busy,
            "server_peak_rss_mib_by_third": rss,
            "rss_samples": [[round(t, 1), round(value, 1)] for t, value in sampler.samples],
        },
    )


if __name__ == "__main__":
    main()
