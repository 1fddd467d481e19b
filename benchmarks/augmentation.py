"""Augmentation arms: the same short fine-tune of the shipped weights with each augmentation on, scored alike.

Every arm runs `audiodenoise train --config recipes/augmentation/base.toml` (same seed, steps, split and validation
pairs, which are never augmented) with its own mixing options, then `audiodenoise evaluate` on dev-eval at one
thread. Prints and records, per arm: the best validation SI-SDR and envelope correlation of the run, the run's
validation SI-SDR at each validation (does it still rise at the end?), dev-eval PESQ, STOI and SI-SDR overall and
per input SNR, and the training time. A finished arm is not run again (its run folder is reused)."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from common import CORPUS, ROOT, print_table, write_results

BASE = ROOT / "recipes" / "augmentation" / "base.toml"
METRICS = ("pesq", "stoi", "si_sdr")
SPEECH = ["--speech-speed", "0.85", "1.15", "--speech-eq-db", "6", "--band-limit-fraction", "0.3"]
NOISE = ["--noise-speed", "0.8", "1.2", "--noise-eq-db", "6", "--second-noise-fraction", "0.3", "--noise-drift-db", "6"]
ARMS = {
    "none": [],
    "speech": SPEECH,
    "noise": NOISE,
    "speech+noise": SPEECH + NOISE,
    "speech+noise+reverb": SPEECH + NOISE + ["--reverb-fraction", "0.2"],
}


def run_arm(name: str, options: list[str], runs: Path, steps: int | None) -> dict:
    run = runs / name.replace("+", "-")
    started = time.perf_counter()
    if not (run / "best" / "config.json").is_file():
        command = [sys.executable, "-m", "audiodenoise", "train", "--config", str(BASE), str(run), *options]
        if steps:
            command += ["--max-steps", str(steps)]
        subprocess.run(command, check=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    history = list(csv.DictReader((run / "history.csv").open()))
    report = run / "dev-eval"
    if not (report / "report.json").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "audiodenoise",
                "evaluate",
                "--pairs",
                str(CORPUS / "dev-eval" / "pairs.csv"),
                "--systems",
                str(run / "best"),
                "--threads",
                "1",
                "-o",
                str(report),
            ],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
    scores = json.loads((report / "report.json").read_text())
    system = str(run / "best")
    means = {m: s["mean"] for m, s in scores["systems"][system]["metrics"].items() if m in METRICS}
    per_snr = {snr: bucket[system]["si_sdr"]["mean"] for snr, bucket in scores["snr_buckets"].items()}
    return {
        "arm": name,
        "options": options,
        "train_seconds": round(seconds),
        "steps": [int(r["step"]) for r in history],
        "val_si_sdr_db": [float(r["val_si_sdr_db"]) for r in history],
        "val_envelope_corr": [float(r["val_envelope_corr"]) for r in history],
        "dev_eval": means,
        "dev_eval_si_sdr_by_snr": per_snr,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "augmentation"), help="folder of the arms' runs")
    parser.add_argument("--steps", type=int, help="override the base config's max_steps")
    args = parser.parse_args()
    results = [run_arm(name, ARMS[name], Path(args.runs), args.steps) for name in args.arms]
    snrs = list(results[0]["dev_eval_si_sdr_by_snr"])
    rows = [
        [r["arm"], max(r["val_si_sdr_db"]), r["val_si_sdr_db"][-1], *(r["dev_eval"][m] for m in METRICS)]
        + [r["dev_eval_si_sdr_by_snr"][snr] for snr in snrs]
        + [r["train_seconds"]]
        for r in results
    ]
    headers = ["arm", "val SI-SDR best", "last", "PESQ", "STOI", "SI-SDR"] + [f"@{snr} dB" for snr in snrs]
    print_table(headers + ["train s"], rows)
    write_results("augmentation", {"base": str(BASE.relative_to(ROOT)), "arms": results})


if __name__ == "__main__":
    main()
