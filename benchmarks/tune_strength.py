"""Choose a model's default strength on held-out validation speakers, not on dev-eval.

Mixes pairs from the validation split that training used (same split options and seed), denoises them at
each strength, and prints mean PESQ, STOI and SI-SDR, the mean SI-SDR of the mixtures below LOW_SNR_DB, and the
SI-SDR of the output against the input when the clean speech is given alone ("clean in"); the best strength by
the chosen metric is reported."""

from __future__ import annotations

import argparse

import numpy as np
from common import CORPUS, print_table, write_results

from audiodenoise.data.mixing import MixConfig
from audiodenoise.data.pairs import mix_signals
from audiodenoise.data.splits import SplitConfig, split_corpora
from audiodenoise.denoiser import Denoiser
from audiodenoise.metrics import score, si_sdr, snr
from audiodenoise.spectral import SpectralConfig

LOW_SNR_DB = 5.0  # where the peers are furthest ahead


def validation_pairs(
    count: int, split: SplitConfig, mixing: MixConfig, seed: int, speakers: list[str] | None = None
) -> list[tuple]:
    """Mixtures of the validation split's clean files (only ``speakers``' files, if given)."""
    val = split_corpora(CORPUS / "speech", CORPUS / "noise", split)["val"]
    noises, talkers = tuple(f.path for f in val.noise), tuple(f.path for f in val.speech)
    clean = [f for f in val.speech if speakers is None or f.group in speakers]
    if not clean:
        raise SystemExit(f"no validation files of {speakers}; the split holds {sorted({f.group for f in val.speech})}")
    rng = np.random.default_rng(seed)
    pairs = []
    for index in rng.permutation(len(clean)):
        signals, _ = mix_signals(clean[index].path, noises, talkers, rng, SpectralConfig(), mixing)
        if signals is not None:
            pairs.append(signals)
        if len(pairs) == count:
            break
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.6, 0.7, 0.8, 0.9, 1.0])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--val-fraction", type=float, default=0.06, help="as in training")
    parser.add_argument("--split-seed", type=int, default=0, help="as in training")
    parser.add_argument(
        "--speakers", nargs="+", help="only these validation speakers (e.g. those no stage of a model trained on)"
    )
    parser.add_argument("--select-by", choices=("pesq", "stoi", "si_sdr"), default="pesq")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default="tune_strength", help="name of the results file")
    args = parser.parse_args()
    mixing = MixConfig(max_pause_ms=400, edge_pause_ms=500)
    split = SplitConfig(val_fraction=args.val_fraction, seed=args.split_seed)
    pairs = validation_pairs(args.pairs, split, mixing, seed=1, speakers=args.speakers)
    rate = SpectralConfig().sample_rate
    low_snr = [snr(clean, noisy) < LOW_SNR_DB for noisy, clean in pairs]
    rows, results = [], {}
    for strength in args.strengths:
        denoiser = Denoiser.from_pretrained(args.model, strength=strength, threads=args.threads)
        scores = [score(clean, denoiser(noisy, rate), rate) for noisy, clean in pairs]
        means = {m: float(np.nanmean([s[m] for s in scores])) for m in ("pesq", "stoi", "si_sdr")}
        means["low_snr_si_sdr"] = float(np.mean([s["si_sdr"] for s, low in zip(scores, low_snr) if low]))
        means["clean_input_si_sdr"] = float(np.mean([si_sdr(clean, denoiser(clean, rate)) for _, clean in pairs]))
        results[f"{strength:g}"] = means
        rows.append([f"{strength:g}", *means.values()])
    print_table(["strength", "PESQ", "STOI", "SI-SDR (dB)", f"SI-SDR < {LOW_SNR_DB:g} dB in", "clean in (dB)"], rows)
    best = max(results, key=lambda s: results[s][args.select_by])
    print(f"best strength by {args.select_by}: {best}")
    write_results(
        args.results,
        {"model": args.model, "speakers": args.speakers, "pairs": len(pairs), "low_snr_pairs": sum(low_snr)}
        | {"select_by": args.select_by}
        | {"best": best, "results": results},
    )


if __name__ == "__main__":
    main()
