"""Quality on the held-out dev-eval set: PESQ (wb, 16 kHz), STOI and SI-SDR for the input and a model."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from common import CORPUS, print_table, write_results

from audiodenoise import Denoiser
from audiodenoise.audio import read_audio
from audiodenoise.metrics import score

METRICS = ("pesq", "stoi", "si_sdr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--dev-eval", default=str(CORPUS / "dev-eval"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    dev = Path(args.dev_eval)
    if not (dev / "pairs.csv").is_file():
        sys.exit(f"quality benchmark: {dev} has no pairs.csv (set AUDIODENOISE_CORPUS)")
    denoiser = Denoiser.from_pretrained(args.model, threads=args.threads)
    rows = list(csv.DictReader((dev / "pairs.csv").open()))
    scores = {"noisy": [], denoiser.name: []}
    for row in rows:
        clean, rate = read_audio(dev / "clean" / f"{row['id']}.wav")
        noisy, _ = read_audio(dev / "noisy" / f"{row['id']}.wav")
        clean, noisy = clean[:, 0], noisy[:, 0]
        scores["noisy"].append(score(clean, noisy, rate))
        scores[denoiser.name].append(score(clean, denoiser(noisy, rate), rate))
    table, summary = [], {}
    for system, values in scores.items():
        means = {m: float(np.nanmean([v[m] for v in values])) for m in METRICS}
        summary[system] = means
        table.append([system, *(means[m] for m in METRICS)])
    print(f"dev-eval: {len(rows)} pairs")
    print_table(["system", "PESQ wb", "STOI", "SI-SDR dB"], table)
    by_snr = {}
    for system, values in scores.items():
        for row, value in zip(rows, values):
            by_snr.setdefault(row["snr_db"], {}).setdefault(system, []).append(value)
    print()
    print_table(
        ["input SNR", *(f"{s} {m}" for s in scores for m in ("PESQ", "SI-SDR"))],
        [
            [snr, *(float(np.nanmean([v[m] for v in by_system[s]])) for s in scores for m in ("pesq", "si_sdr"))]
            for snr, by_system in sorted(by_snr.items(), key=lambda item: float(item[0]))
        ],
    )
    write_results("quality", {"model": args.model, "pairs": len(rows), "threads": args.threads, "mean": summary})


if __name__ == "__main__":
    main()
