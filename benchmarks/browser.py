"""In-browser denoising speed: a 10 s clip of real noisy speech through the web page's in-browser path
(ONNX Runtime Web and dsp.js) in headless Chromium, per stage and at 1 and 2 WebAssembly threads, with the
server's own time for the same clip beside it. Model loading (fetching the ONNX, creating the session) is
timed apart; each figure is the median of --runs runs after a first one.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

from common import ROOT, print_table, write_results
from serve_load import start_server
from speed import long_clip

from audiodenoise.server import WEB_DIR

CHROMIUM = "/usr/bin/chromium"  # launched as tests/test_browser.py launches it
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
STAGES = {"decode": "decode s", "stft": "STFT+features s", "model": "model s", "istft": "iSTFT s", "total": "total s"}

# In a fresh page: set the thread count before the first session, run once (loading the model), then time.
RUN = """async ([data, threads, runs]) => {
  const here = await import(new URL("static/inbrowser.js", document.baseURI));
  await here.checkRuntime();
  const listing = await (await fetch("v1/models")).json();
  const model = listing.models.find((entry) => entry.name === listing.default);
  const blob = new Blob([Uint8Array.from(atob(data), (char) => char.charCodeAt(0))], { type: "audio/wav" });
  const first = await here.denoiseInBrowser(blob, model, model.strength, { threads });
  const timings = [];
  for (let i = 0; i < runs; i++) timings.push((await here.denoiseInBrowser(blob, model, model.strength)).timings);
  return { load: first.timings.load, threads: first.threads, seconds: first.seconds, timings };
}"""


def server_seconds(url: str, body: bytes, runs: int) -> float:
    """Median X-Processing-Time of the same clip posted to /v1/denoise, after one warm-up request."""
    times = []
    for _ in range(runs + 1):
        request = urllib.request.Request(url + "v1/denoise", data=body, headers={"Content-Type": "audio/wav"})
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
            times.append(float(response.headers["X-Processing-Time"]))
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="WebAssembly threads to measure")
    args = parser.parse_args()
    if not (WEB_DIR / "vendor" / ".stamp").is_file():
        sys.exit("ONNX Runtime Web is not vendored: run make web")
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.wav"
        long_clip(args.clip_seconds, clip)
        body = clip.read_bytes()
        server, url = start_server(Path(folder), ["--model", args.model, "--threads", "1"])
        try:
            reference = server_seconds(url, body, args.runs)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                measured = {}
                for threads in args.threads:
                    page = browser.new_page()
                    page.goto(url)
                    measured[threads] = page.evaluate(RUN, [base64.b64encode(body).decode(), threads, args.runs])
                    page.close()
                chromium = browser.version
                browser.close()
        finally:
            server.terminate()
            server.wait(30)

    rows, results = [], {}
    for threads, run in measured.items():
        medians = {stage: statistics.median(t[stage] for t in run["timings"]) for stage in STAGES}
        rows.append(
            [
                f"browser, {run['threads']} thread{'s' * (run['threads'] > 1)}",
                *medians.values(),
                medians["total"] / run["seconds"],
                run["load"],
            ]
        )
        results[f"threads_{threads}"] = {"median_seconds": medians, **run}
    rows.append(["server, 1 thread", *["–"] * (len(STAGES) - 1), reference, reference / args.clip_seconds, "–"])
    ort_web = json.loads((ROOT / "web-build" / "package.json").read_text())["dependencies"]["onnxruntime-web"]
    print(
        f"{args.clip_seconds:g} s clip, Chromium {chromium}, onnxruntime-web {ort_web}; load average {load_before:.1f}"
    )
    print_table(["", *STAGES.values(), "real-time factor", "model load s"], rows)
    write_results(
        "browser",
        {
            "model": args.model,
            "clip_seconds": args.clip_seconds,
            "runs": args.runs,
            "chromium": chromium,
            "onnxruntime_web": ort_web,
            "load_average_at_start": load_before,
            "browser": results,
            "server_median_seconds_1_thread": reference,
        },
    )


if __name__ == "__main__":
    main()
