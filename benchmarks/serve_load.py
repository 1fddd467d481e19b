"""Load on `audiodenoise serve`: concurrent clients on loopback, in three cases, each against a fresh server.

- normal: every client POSTs a 10 s WAV clip again and again;
- slow: the same, while 20 more clients trickle uploads at 1 byte per 2 s (they must get 408, not a worker);
- compressed: every client POSTs 8 channels x 384 kHz of silent FLAC (a few hundred KB, hundreds of MB decoded).

Each run reports status counts (200, and 503 with Retry-After, are the only answers a client may see),
latency percentiles of the 200s, and the server's RSS sampled every 0.5 s: its peak in the first, middle and
last third of the run must stay flat (RSS rises and falls with each request's buffers).
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import soundfile as sf
from common import print_table, write_results
from speed import long_clip

CASES = ("normal", "slow", "compressed")
RSS_GROWTH, RSS_SLACK_MIB = 1.2, 100  # "flat": the last third's peak within 20% + 100 MiB of the first's


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


def client(url: str, body: bytes, content_type: str, deadline: float, results: list) -> None:
    """POST ``body`` again and again until ``deadline``; one (status, latency, server seconds) per request,
    the status the exception's name where the request failed.

    A 503 without Retry-After is recorded as status -503: the queue must always say when to come back."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            connection.request("POST", "/v1/denoise", body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            response.read()
            server_seconds = float(response.headers.get("X-Processing-Time") or "nan")
            retry_after = response.headers.get("Retry-After")
            status = -503 if response.status == 503 and retry_after is None else response.status
            results.append((status, time.monotonic() - started, server_seconds))
            if response.status == 503 or response.will_close:
                connection.close()  # the wait may outlast the server's keep-alive: come back on a fresh connection
            if response.status == 503:
                time.sleep(float(retry_after or 1))  # as a polite client would
        except (OSError, http.client.HTTPException) as error:
            results.append((type(error).__name__, time.monotonic() - started, float("nan")))
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    connection.close()


def slow_client(url: str, deadline: float, results: list) -> None:
    """Announce a 100 KB upload and send one byte every 2 s until the server answers or ``deadline``;
    one (status, seconds, nan) per upload, the status as text."""
    parts = urlsplit(url)
    while time.monotonic() < deadline:
        started = time.monotonic()
        with socket.create_connection((parts.hostname, parts.port), timeout=2) as sock:
            sock.sendall(
                f"POST /v1/denoise HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: audio/wav\r\n"
                "Content-Length: 100000\r\n\r\n".encode()
            )
            answer = b""
            while time.monotonic() < deadline and not answer:
                try:
                    sock.sendall(b"R")
                    answer = sock.recv(64)
                except TimeoutError:
                    continue
                except OSError:
                    break
            if answer:
                status = answer.split()[1].decode() if answer.startswith(b"HTTP/") else "garbled"
            else:
                status = "open" if time.monotonic() >= deadline else "dropped"  # open: still trickling at the end
            results.append((status, time.monotonic() - started, float("nan")))


def silent_flac(channels: int, rate: int, seconds: int) -> bytes:
    """Silence in FLAC: a few hundred KB that decode to hundreds of MB."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", rate, channels, "PCM_16", format="FLAC") as output:
        for _ in range(seconds):
            output.write(np.zeros((rate, channels), np.int16))
    return buffer.getvalue()


def run_case(case: str, clients: int, args, folder: Path, clip: bytes, flac: bytes) -> dict:
    """One fresh server under ``clients`` clients for ``args.seconds``: status counts, latency and RSS."""
    server, url = start_server(folder, ["--model", args.model, *args.server_option])
    try:
        warm_up = urllib.request.Request(url + "v1/denoise", data=clip, headers={"Content-Type": "audio/wav"})
        with urllib.request.urlopen(warm_up, timeout=300) as response:
            response.read()  # the first request pays for lazy initialisation; it is not counted
        load_before = os.getloadavg()[0]
        sampler = Sampler(server.pid)
        sampler.start()
        results: list[tuple[int, float, float]] = []
        slow_results: list[tuple[int, float, float]] = []
        deadline = time.monotonic() + args.seconds
        body, content_type = (flac, "audio/flac") if case == "compressed" else (clip, "audio/wav")
        threads = [
            threading.Thread(target=client, args=(url, body, content_type, deadline, results)) for _ in range(clients)
        ]
        if case == "slow":
            threads += [
                threading.Thread(target=slow_client, args=(url, deadline, slow_results))
                for _ in range(args.slow_clients)
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
    p50, p95, p99 = np.percentile(ok, [50, 95, 99]) if len(ok) else (float("nan"),) * 3
    third = elapsed / 3
    rss = {
        "start": sampler.peak(0, third),
        "middle": sampler.peak(third, 2 * third),
        "end": sampler.peak(2 * third, elapsed),
        "peak": sampler.peak(0, elapsed),
    }
    statuses = Counter(status for status, _, _ in results)
    return {
        "case": case,
        "clients": clients,
        "slow_clients": args.slow_clients if case == "slow" else 0,
        "load_average_at_start": load_before,
        "requests_ok": len(ok),
        "requests_per_second": len(ok) / elapsed,
        "statuses": {str(status): count for status, count in sorted(statuses.items(), key=str)},
        "slow_client_statuses": dict(sorted(Counter(status for status, _, _ in slow_results).items())),
        "only_200_and_503": set(statuses) <= {200, 503},
        "latency_seconds": {"p50": p50, "p95": p95, "p99": p99},
        "mean_processing_seconds": float(np.nanmean([s for status, _, s in results if status == 200] or [np.nan])),
        "server_peak_rss_mib_by_third": rss,
        "rss_flat": rss["end"] <= rss["start"] * RSS_GROWTH + RSS_SLACK_MIB,
        "rss_samples": [[round(t, 1), round(value, 1)] for t, value in sampler.samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients keep sending, per run")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--slow-clients", type=int, default=20, help="trickling uploads in the slow case")
    parser.add_argument("--flac-seconds", type=int, default=10, help="length of the 8 x 384 kHz silent FLAC")
    parser.add_argument("--server-option", action="append", default=[], help="passed to serve, e.g. --queue=2")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.wav"
        long_clip(args.clip_seconds, path)
        clip, flac = path.read_bytes(), silent_flac(8, 384000, args.flac_seconds)
        for case in args.cases:
            for clients in args.clients:
                runs.append(run_case(case, clients, args, Path(folder), clip, flac))
                print(f"{case}, {clients} clients: {runs[-1]['statuses']}", flush=True)
    print(
        f"\n{args.seconds:g} s per run on loopback; clips of {args.clip_seconds:g} s (WAV), "
        f"{args.flac_seconds} s of 8 x 384 kHz silence ({len(flac) // 1024} KB FLAC), "
        f"{args.slow_clients} uploads at 1 byte per 2 s in the slow case"
    )
    print_table(
        ["case", "clients", "ok", "req/s", "p50 s", "p95 s", "p99 s", "statuses", "slow", "RSS start/end/peak MiB"],
        [
            [
                run["case"],
                run["clients"],
                run["requests_ok"],
                run["requests_per_second"],
                *run["latency_seconds"].values(),
                " ".join(f"{s}:{n}" for s, n in run["statuses"].items()),
                " ".join(f"{s}:{n}" for s, n in run["slow_client_statuses"].items()) or "-",
                "{start:.0f}/{end:.0f}/{peak:.0f}".format(**run["server_peak_rss_mib_by_third"]),
            ]
            for run in runs
        ],
    )
    held = all(run["only_200_and_503"] and run["rss_flat"] for run in runs)
    print(f"\nonly 200 and 503 (with Retry-After), RSS flat: {'yes' if held else 'NO'}")
    write_results(
        "serve_load",
        {
            "model": args.model,
            "seconds_per_run": args.seconds,
            "clip_seconds": args.clip_seconds,
            "flac": {"channels": 8, "sample_rate": 384000, "seconds": args.flac_seconds, "bytes": len(flac)},
            "server_options": args.server_option,
            "held": held,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
