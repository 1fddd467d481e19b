"""Full band at 48 kHz: the top band's level on clean speech (output against input), its noise reduction on noisy
speech where nobody speaks, and full-band SI-SDR, for our model and the 48 kHz peers; and the top band's cost (time and
peak traced memory of a file three times as long, block by block) against the same model with it left out, as before.

No Debian package the corpus leaves unused has 44.1/48 kHz speech that we found (warzone2100-data's voice lines are
11025 Hz), so the speech is a documented synthetic stand-in: a voiced source with a moving pitch and harmonics up to
20 kHz (1/k^1.2 tilt) under a syllable envelope, plus fricatives (4-18 kHz noise) between the syllables, at -20 dBFS.
The noise is white at -40 dBFS, full band, as a microphone's hiss."""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile as sf
from common import print_table, write_results
from scipy.signal import butter, sosfilt

from audiodenoise import Denoiser
from audiodenoise.audio import READ_BLOCK_FRAMES, read_blocks
from audiodenoise.metrics import si_sdr
from audiodenoise.peers import make_system

RATE = 48000
TOP_BAND_HZ = (12000.0, 20000.0)
PEERS_AT_48K = ("deepfilternet3", "rnnoise")


def stand_in_speech(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic 48 kHz speech and a mask of its pauses (neither voiced nor fricative)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voiced = (
        sum(np.sin(k * phase) / k**1.2 for k in range(1, 140)) * np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    )
    fricative_envelope = np.clip(np.sin(2 * np.pi * 2.5 * t + 2.0), 0, None) ** 4
    fricative = sosfilt(butter(4, [4000, 18000], "bandpass", fs=RATE, output="sos"), rng.standard_normal(len(t)))
    speech = voiced + 0.5 * fricative * fricative_envelope
    speech = 0.1 * speech / np.sqrt(np.mean(speech**2))
    pauses = (np.sin(2 * np.pi * 2.5 * t) < -0.2) & (fricative_envelope < 1e-3)
    return speech.astype(np.float32), pauses


def top_band(audio: np.ndarray) -> np.ndarray:
    return sosfilt(butter(8, TOP_BAND_HZ, "bandpass", fs=RATE, output="sos"), audio)


def level_db(audio: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(audio, dtype=np.float64)) + 1e-20)


def scores(process, clean: np.ndarray, noisy: np.ndarray, pauses: np.ndarray) -> dict:
    from_clean, from_noisy = process(clean), process(noisy)
    return {
        "clean_top_band_db": level_db(top_band(from_clean)) - level_db(top_band(clean)),
        "clean_si_sdr_db": si_sdr(clean, from_clean),
        "noisy_top_band_cut_db": level_db(top_band(from_noisy)[pauses]) - level_db(top_band(noisy)[pauses]),
        "noisy_si_sdr_db": si_sdr(clean, from_noisy),
        "input_si_sdr_db": si_sdr(clean, noisy),
    }


def cost(denoiser: Denoiser, source: Path, keep_top_band: bool) -> dict:
    """Seconds and peak traced memory of denoising a file block by block as ``denoise`` reads it, the top band kept
    or left out (as before)."""
    tracemalloc.start()
    started = time.perf_counter()
    stream = denoiser.stream(RATE)
    if not keep_top_band:
        stream.top_band = None
    for block in read_blocks(source, READ_BLOCK_FRAMES):
        stream.feed(block)
    stream.flush()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": seconds, "peak_traced_mib": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-peers", action="store_true", help="our model only (the peers need the peers extra)")
    args = parser.parse_args()
    clean, pauses = stand_in_speech(args.seconds)
    noisy = clean + 0.01 * np.random.default_rng(1).standard_normal(len(clean)).astype(np.float32)
    denoiser = Denoiser.from_pretrained(args.model, threads=args.threads)
    systems = {args.model: lambda audio: denoiser(audio, RATE)}
    for name in () if args.no_peers else PEERS_AT_48K:
        peer = make_system(name)
        peer.load()

        def run(audio, peer=peer):
            peer.reset()
            return peer.process(audio, RATE)

        systems[name] = run
    results = {name: scores(process, clean, noisy, pauses) for name, process in systems.items()}
    rows = [[name, *result.values()] for name, result in results.items()]
    print_table(
        ["system", "clean top band dB", "clean SI-SDR", "noise cut in pauses dB", "noisy SI-SDR", "input SI-SDR"], rows
    )
    costs = {}
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "noisy.wav"
        sf.write(source, np.tile(noisy, 3), RATE, subtype="FLOAT")
        for kept in (False, True, False, True):  # the second run of each counts (warm)
            costs["kept" if kept else "left out"] = cost(denoiser, source, kept)
    print_table(["top band", "seconds", "peak traced MiB"], [[name, *run.values()] for name, run in costs.items()])
    write_results("fullband", {"model": args.model, "seconds": args.seconds, "quality": results, "cost": costs})


if __name__ == "__main__":
    main()
