"""Streaming: algorithmic latency, real-time factor with 10 ms and 20 ms chunks, and the low-latency mode's quality.

Each mode is fed a clip of real noisy speech chunk by chunk through ``Denoiser.stream``, as a call would be; the
worst chunk shows how bursty the work is. Quality is the mean over dev-eval of both modes, same model."""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import CORPUS, print_table, write_results

from audiodenoise import Denoiser
from audiodenoise.audio import read_audio
from audiodenoise.evaluate import find_pairs
from audiodenoise.metrics import score

MODES = {"default": False, "low-latency": True}


def stream_timing(denoiser: Denoiser, audio: np.ndarray, rate: int, chunk_ms: float) -> dict:
    size = round(rate * chunk_ms / 1000)
    stream = denoiser.stream(rate)
    times = []
    for start in range(0, len(audio), size):
        started = time.perf_counter()
        stream.feed(audio[start : start + size, None])
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    stream.flush()
    total = sum(times) + time.perf_counter() - started
    return {
        "real_time_factor": total / (len(audio) / rate),
        "worst_chunk_ms": 1000 * max(times),
        "p99_chunk_ms": 1000 * float(np.percentile(times, 99)),
    }


def quality(denoiser: Denoiser, pairs) -> dict:
    scores = []
    for pair in pairs:
        noisy, rate = read_audio(pair.noisy)
        clean, _ = read_audio(pair.clean)
        scores.append(score(clean[:, 0], denoiser(noisy[:, 0], rate), rate))
    return {metric: float(np.nanmean([s[metric] for s in scores])) for metric in ("pesq", "stoi", "si_sdr")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the streamed clip")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk-ms", type=float, nargs="+", default=[10.0, 20.0])
    parser.add_argument("--no-quality", action="store_true", help="skip the dev-eval quality pass")
    args = parser.parse_args()
    pairs = find_pairs(pairs_csv=str(CORPUS / "dev-eval" / "pairs.csv"))
    parts, rate = [], None
    for pair in pairs:
        audio, rate = read_audio(pair.noisy)
        parts.append(audio[:, 0])
    audio = np.concatenate(parts)
    audio = np.tile(audio, int(np.ceil(args.seconds * rate / len(audio))))[: int(args.seconds * rate)]
    timing_rows, quality_rows, results = [], [], {}
    for mode, low_latency in MODES.items():
        denoiser = Denoiser.from_pretrained(args.model, threads=args.threads, low_latency=low_latency)
        denoiser(audio[:rate], rate)  # warm-up
        entry = {"latency_ms": 1000 * denoiser.latency_seconds, "chunks": {}}
        for chunk_ms in args.chunk_ms:
            timing = stream_timing(denoiser, audio, rate, chunk_ms)
            entry["chunks"][f"{chunk_ms:g}"] = timing
            timing_rows.append(
                [
                    mode,
                    f"{chunk_ms:g}",
                    entry["latency_ms"],
                    timing["real_time_factor"],
                    timing["p99_chunk_ms"],
                    timing["worst_chunk_ms"],
                ]
            )
        if not args.no_quality:
            entry["quality"] = quality(denoiser, pairs)
            quality_rows.append([mode, *entry["quality"].values()])
        results[mode] = entry
    print(f"{args.seconds:g} s clip at {rate} Hz, {args.threads} thread(s)")
    print_table(["mode", "chunk ms", "latency ms", "RTF", "p99 chunk ms", "worst chunk ms"], timing_rows)
    if quality_rows:
        print(f"\nquality on dev-eval ({len(pairs)} pairs)")
        print_table(["mode", "PESQ", "STOI", "SI-SDR (dB)"], quality_rows)
    write_results("streaming", {"model": args.model, "threads": args.threads, "seconds": args.seconds, **results})


if __name__ == "__main__":
    main()
