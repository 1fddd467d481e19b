"""Choose a model's default strength on held-out validation speakers, not on dev-eval.

Builds pairs the way dev-eval is built (see the corpus README), from the validation split that training used
(same split options and seed): clips of 3-8 s of one speaker's consecutive utterances with short silences,
set to -26 dBFS active-speech level and mixed with a whole validation noise file at fixed SNRs, the same
number at each level. Denoises them at each strength, and prints mean PESQ, STOI and SI-SDR, the mean SI-SDR
at each input SNR, and the SI-SDR of the output against the input when the clean speech is given alone
("clean in"); the best strength by the chosen metric is reported."""

from __future__ import annotations

import argparse

import numpy as np
from common import CORPUS, print_table, write_results

from audiodenoise import pretrained
from audiodenoise.audio import read_mono
from audiodenoise.checkpoint import CONFIG, set_inference_defaults
from audiodenoise.data.mixing import fit_length, power, remove_silence
from audiodenoise.data.splits import SplitConfig, split_corpora
from audiodenoise.denoiser import Denoiser
from audiodenoise.metrics import score, si_sdr
from audiodenoise.peers import make_system
from audiodenoise.spectral import SpectralConfig

SNR_LEVELS_DB = (-5, 0, 5, 10, 15, 20)  # dev-eval's
SPEECH_LEVEL_DBFS = -26.0
CLIP_SECONDS = (3.0, 8.0)
GAP_SECONDS = (0.15, 0.35)
ACTIVE_RANGE_DB = 40.0  # active speech: 20 ms frames within this of the loudest
PEAK_LIMIT = 0.99


def active_speech_power(signal: np.ndarray, rate: int) -> float:
    """Mean power of the 20 ms frames within ACTIVE_RANGE_DB of the loudest."""
    return power(remove_silence(signal, rate, frame_ms=20.0, threshold_db=-ACTIVE_RANGE_DB))


def speaker_clip(files: list, rng: np.random.Generator, rate: int) -> np.ndarray:
    """Consecutive utterances of one speaker from a random start, with short silences, until 3-8 s."""
    target, longest = rng.uniform(*CLIP_SECONDS) * rate, CLIP_SECONDS[1] * rate
    start = int(rng.integers(len(files)))
    parts = [read_mono(files[start].path, rate)]
    for offset in range(1, len(files)):
        length = sum(map(len, parts))
        utterance = read_mono(files[(start + offset) % len(files)].path, rate)
        gap = np.zeros(int(rng.uniform(*GAP_SECONDS) * rate), np.float32)
        if length >= target or length + len(gap) + len(utterance) > longest:
            break
        parts += [gap, utterance]
    clip = np.concatenate(parts)
    return clip * np.sqrt(10 ** (SPEECH_LEVEL_DBFS / 10) / active_speech_power(clip, rate))


def heldout_pairs(count: int, split: SplitConfig, seed: int, speakers: list[str] | None = None) -> list[tuple]:
    """(noisy, clean, input SNR) made like dev-eval from the validation split (only ``speakers``, if given)."""
    val = split_corpora(CORPUS / "speech", CORPUS / "noise", split)["val"]
    groups = sorted({f.group for f in val.speech if speakers is None or f.group in speakers})
    if not groups:
        raise SystemExit(f"no validation files of {speakers}; the split holds {sorted({f.group for f in val.speech})}")
    by_speaker = {g: sorted((f for f in val.speech if f.group == g), key=lambda f: f.path.name) for g in groups}
    rate = SpectralConfig().sample_rate
    rng = np.random.default_rng(seed)
    noise_order = rng.permutation(len(val.noise))
    pairs = []
    for index in range(count):
        snr_db = SNR_LEVELS_DB[index % len(SNR_LEVELS_DB)]
        clean = speaker_clip(by_speaker[groups[index % len(groups)]], rng, rate)
        noise = fit_length(read_mono(val.noise[noise_order[index % len(noise_order)]].path, rate), len(clean), rng)
        noise *= np.sqrt(active_speech_power(clean, rate) / (power(noise) * 10 ** (snr_db / 10)))
        noisy = clean + noise
        scale = min(1.0, PEAK_LIMIT / np.max(np.abs(noisy)))
        pairs.append(((noisy * scale).astype(np.float32), (clean * scale).astype(np.float32), snr_db))
    return pairs


def summarise(process, pairs: list[tuple], rate: int) -> dict:
    """Mean PESQ, STOI, SI-SDR and clean-input SI-SDR of ``process`` (signal, rate -> denoised) on the pairs, and the
    mean SI-SDR at each input SNR."""
    scores = [score(clean, process(noisy, rate), rate) for noisy, clean, _ in pairs]
    means = {m: float(np.nanmean([s[m] for s in scores])) for m in ("pesq", "stoi", "si_sdr")}
    means["clean_input_si_sdr"] = float(np.mean([si_sdr(clean, process(clean, rate)) for _, clean, _ in pairs]))
    by_snr = {
        f"{level:g}": float(np.mean([s["si_sdr"] for s, (*_, snr_db) in zip(scores, pairs) if snr_db == level]))
        for level in SNR_LEVELS_DB
    }
    return means | {"si_sdr_by_input_snr": by_snr}


def peer_process(name: str, threads: int):
    system = make_system(name, threads=threads)
    system.load()

    def process(signal: np.ndarray, rate: int) -> np.ndarray:
        system.reset()
        return system.process(signal, rate)

    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.6, 0.7, 0.8, 0.9, 1.0])
    parser.add_argument("--pairs", type=int, default=96, help="spread evenly over the SNR levels")
    parser.add_argument("--val-fraction", type=float, default=0.06, help="as in training")
    parser.add_argument("--split-seed", type=int, default=0, help="as in training")
    parser.add_argument(
        "--speakers", nargs="+", help="only these validation speakers (e.g. those no stage of a model trained on)"
    )
    parser.add_argument("--peers", nargs="*", default=[], help="also score these systems (e.g. deepfilternet3)")
    parser.add_argument("--select-by", choices=("pesq", "stoi", "si_sdr"), default="pesq")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default="tune_strength", help="name of the results file")
    parser.add_argument(
        "--write", action="store_true", help="record the best strength as the checkpoint folder's inference default"
    )
    args = parser.parse_args()
    split = SplitConfig(val_fraction=args.val_fraction, seed=args.split_seed)
    pairs = heldout_pairs(args.pairs, split, seed=1, speakers=args.speakers)
    rate = SpectralConfig().sample_rate
    results, peers = {}, {}
    for strength in args.strengths:
        denoiser = Denoiser.from_pretrained(args.model, strength=strength, threads=args.threads)
        results[f"{strength:g}"] = summarise(denoiser, pairs, rate)
    for name in args.peers:
        peers[name] = summarise(peer_process(name, args.threads), pairs, rate)

    def row(label: str, result: dict) -> list:
        return [label, *(result[m] for m in ("pesq", "stoi", "si_sdr", "clean_input_si_sdr"))] + list(
            result["si_sdr_by_input_snr"].values()
        )

    by_snr_headers = [f"SI-SDR @{level:g}" for level in SNR_LEVELS_DB]
    print_table(
        ["strength / peer", "PESQ", "STOI", "SI-SDR (dB)", "clean in (dB)", *by_snr_headers],
        [row(s, r) for s, r in results.items()] + [row(n, r) for n, r in peers.items()],
    )
    best = max(results, key=lambda s: results[s][args.select_by])
    print(f"best strength by {args.select_by}: {best}")
    if args.write:
        folder = pretrained.resolve(args.model)
        set_inference_defaults(folder, strength=float(best))
        print(f"{folder / CONFIG}: inference strength {best}")
    write_results(
        args.results,
        {"model": args.model, "speakers": args.speakers, "pairs": len(pairs), "threads": args.threads}
        | {"select_by": args.select_by}
        | {"best": best, "results": results, "peers": peers},
    )


if __name__ == "__main__":
    main()
