"""Augmentation arms: the same short fine-tune of the shipped weights with each augmentation on, scored alike.

Every arm runs `audiodenoise train --config recipes/augmentation/base.toml` (same seed, steps, split and validation
pairs, which are never augmented) with its own mixing options. Its best checkpoint is scored at strength 0.9 (the
shipped model's) on the held-out pairs of tune_strength.py from the three validation speakers that no stage of
the shipped model trained on, and by `audiodenoise evaluate` on dev-eval, at one thread. Prints and records, per
arm: the run's validation SI-SDR at each validation (does it still rise at the end?), held-out and dev-eval PESQ,
STOI and SI-SDR overall and per input SNR, held-out clean-input SI-SDR, and the training time. A finished arm is
not trained again (its run folder is reused)."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from common import CORPUS, ROOT, print_table, write_results
from tune_strength import heldout_pairs, summarise

from audiodenoise import pretrained
from audiodenoise.checkpoint import set_inference_defaults
from audiodenoise.data.splits import SplitConfig
from audiodenoise.denoiser import Denoiser

BASE = ROOT / "recipes" / "augmentation" / "base.toml"
METRICS = ("pesq", "stoi", "si_sdr")
HELD_OUT_SPEAKERS = ("hedgewars-ru-default", "klettres-lt-all", "tuxpaint-nl-all")  # no stage trained on them
STRENGTH = 0.9
SPEECH = ["--speech-speed", "0.85", "1.15", "--speech-eq-db", "6", "--band-limit-fraction", "0.3"]
NOISE = ["--noise-speed", "0.8", "1.2", "--noise-eq-db", "6", "--second-noise-fraction", "0.3", "--noise-drift-db", "6"]
VOICES = ["--voices", "runs/voices", "--voice-share", "0.2"]  # scripts/synthesize_voices.py -o runs/voices
ARMS = {
    "none": [],
    "speech": SPEECH,
    "speech-mild": ["--speech-speed", "0.92", "1.08", "--speech-eq-db", "3"],
    "noise": NOISE,
    "voices": VOICES,
    "reverb": ["--reverb-fraction", "0.2"],
    "speech+noise": SPEECH + NOISE,
    "noise+voices": NOISE + VOICES,
    "speech+noise+reverb": SPEECH + NOISE + ["--reverb-fraction", "0.2"],
}


def train_arm(name: str, options: list[str], runs: Path, steps: int | None) -> dict:
    """Train the arm (unless its run folder holds its run) and return its validation history."""
    run = runs / name.replace("+", "-")
    if not (run / "best" / "config.json").is_file():
        command = [sys.executable, "-m", "audiodenoise", "train", "--config", str(BASE), str(run), *options]
        subprocess.run(command + (["--max-steps", str(steps)] if steps else []), check=True, cwd=ROOT)
    set_inference_defaults(run / "best", strength=STRENGTH)  # as the shipped model's, for evaluate too
    history = list(csv.DictReader((run / "history.csv").open()))
    return {
        "arm": name,
        "options": options,
        "train_seconds": int(history[-1]["seconds"]),
        "steps": [int(r["step"]) for r in history],
        "val_si_sdr_db": [float(r["val_si_sdr_db"]) for r in history],
        "val_envelope_corr": [float(r["val_envelope_corr"]) for r in history],
    }


def scores(model: str, report: Path, held_out: list) -> dict:
    """Held-out and dev-eval scores of a checkpoint folder or bundled model (its inference strength is STRENGTH)."""
    if not (report / "report.json").is_file():
        command = [sys.executable, "-m", "audiodenoise", "evaluate", "--pairs", str(CORPUS / "dev-eval" / "pairs.csv")]
        command += ["--systems", model, "--threads", "1", "-o", str(report)]
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    evaluation = json.loads((report / "report.json").read_text())
    system = next(name for name in evaluation["systems"] if name != "noisy")
    denoiser = Denoiser.from_pretrained(model, strength=STRENGTH, threads=1)
    return {
        "held_out": summarise(denoiser, held_out, denoiser.sample_rate),
        "dev_eval": {m: s["mean"] for m, s in evaluation["systems"][system]["metrics"].items() if m in METRICS},
        "dev_eval_si_sdr_by_snr": {snr: b[system]["si_sdr"]["mean"] for snr, b in evaluation["snr_buckets"].items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "augmentation"), help="folder of the arms' runs")
    parser.add_argument("--steps", type=int, help="override the base config's max_steps")
    args = parser.parse_args()
    held_out = heldout_pairs(96, SplitConfig(val_fraction=0.06), seed=1, speakers=list(HELD_OUT_SPEAKERS))
    runs = Path(args.runs)
    shipped = {"arm": "shipped (no fine-tune)", "options": [], "train_seconds": 0, "val_si_sdr_db": [float("nan")]}
    results = [shipped | scores(pretrained.DEFAULT_MODEL, runs / "shipped-dev-eval", held_out)]
    for name in args.arms:
        arm = train_arm(name, ARMS[name], runs, args.steps)
        results.append(arm | scores(str(runs / name.replace("+", "-") / "best"), runs / f"{name}-dev-eval", held_out))
    print_table(
        ["arm", "val SI-SDR best", "last", "held-out PESQ", "STOI", "SI-SDR", "clean in", "train s"],
        [
            [r["arm"], max(r["val_si_sdr_db"]), r["val_si_sdr_db"][-1]]
            + [r["held_out"][m] for m in (*METRICS, "clean_input_si_sdr")]
            + [r["train_seconds"]]
            for r in results
        ],
    )
    snrs = list(results[0]["dev_eval_si_sdr_by_snr"])
    print_table(
        ["arm", "dev-eval PESQ", "STOI", "SI-SDR", *(f"@{snr} dB" for snr in snrs)],
        [[r["arm"], *(r["dev_eval"][m] for m in METRICS), *r["dev_eval_si_sdr_by_snr"].values()] for r in results],
    )
    write_results(
        "augmentation",
        {"base": str(BASE.relative_to(ROOT)), "strength": STRENGTH, "held_out_speakers": HELD_OUT_SPEAKERS}
        | {"arms": results},
    )


if __name__ == "__main__":
    main()
