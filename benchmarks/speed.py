"""Speed on a 60 s file of real noisy speech: the real-time factor per engine at 1 and 2 threads (model load timed
apart), and whole processes at 1 thread, start-up included, as a CLI user pays them: ``audiodenoise denoise``
against the peers run from Python on the same file, side by side (wall time and peak RSS of each process)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CORPUS, print_table, write_results

from audiodenoise.audio import read_audio
from audiodenoise.engine import ENGINES

TIMER = """
import json, sys, time
started = time.perf_counter()
from audiodenoise import Denoiser
from audiodenoise.audio import read_audio
denoiser = Denoiser.from_pretrained(sys.argv[1], threads=int(sys.argv[2]), engine=sys.argv[3])
load = time.perf_counter() - started
audio, rate = read_audio(sys.argv[4])
denoiser(audio[: rate], rate)  # warm-up
runs = []
for _ in range(int(sys.argv[5])):
    started = time.perf_counter()
    denoiser(audio, rate)
    runs.append(time.perf_counter() - started)
print(json.dumps({"load_seconds": load, "seconds": min(runs), "audio_seconds": len(audio) / rate}))
"""

# A peer's whole process: read, load, denoise, write; audiodenoise.peers imports without PyTorch.
PEER_PROCESS = """
import sys
import soundfile as sf
from audiodenoise.peers import make_system
audio, rate = sf.read(sys.argv[2], dtype="float32")
peer = make_system(sys.argv[1])
peer.load()
peer.reset()
sf.write(sys.argv[3], peer.process(audio, rate), rate)
"""
PEERS = ("deepfilternet3", "rnnoise")


def whole_process(command: list[str]) -> dict:
    """Wall seconds and peak RSS of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status:
        sys.exit(f"{' '.join(command[:4])}…: failed ({process.stderr.read().decode().strip()})")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}


def whole_processes(model: str, clip: Path, folder: Path, repeats: int) -> dict:
    """The fastest of ``repeats`` whole processes of each system, taking turns."""
    commands = {
        model: [sys.executable, "-m", "audiodenoise", "denoise", "--model", model, "--threads", "1", str(clip)]
        + ["-o", str(folder / "ours.wav")],
        **{peer: [sys.executable, "-c", PEER_PROCESS, peer, str(clip), str(folder / f"{peer}.wav")] for peer in PEERS},
    }
    runs = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            Path(command[-1]).unlink(missing_ok=True)  # the output of the last turn
            runs[name].append(whole_process(command))
    return {name: min(found, key=lambda run: run["seconds"]) for name, found in runs.items()}


def long_clip(seconds: float, path: Path) -> None:
    """Concatenate dev-eval noisy clips into one file of ``seconds``."""
    import numpy as np
    import soundfile as sf

    parts, total, rate = [], 0, 22050
    clips = sorted((CORPUS / "dev-eval" / "noisy").glob("*.wav"))
    if not clips:
        sys.exit(f"{CORPUS / 'dev-eval'}: no clips (set AUDIODENOISE_CORPUS)")
    while total < seconds * rate:
        for clip in clips:
            audio, rate = read_audio(clip)
            parts.append(audio[:, 0])
            total += len(audio)
    sf.write(path, np.concatenate(parts)[: int(seconds * rate)], rate, subtype="PCM_16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=[e for e in ENGINES if e != "auto"])
    parser.add_argument("--no-peers", action="store_true", help="skip the whole processes (they need the peers extra)")
    args = parser.parse_args()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "speech.wav"
        long_clip(args.seconds, clip)
        if not args.no_peers:
            processes = whole_processes(args.model, clip, Path(folder), args.repeats)
            reference = processes["deepfilternet3"]["seconds"]
            table = [
                [name, run["seconds"], run["seconds"] / reference, run["peak_rss_mib"]]
                for name, run in processes.items()
            ]
            print_table(["whole process, 1 thread", "seconds", "x deepfilternet3", "peak RSS MiB"], table)
            results["whole_process"] = processes
        for engine in args.engines:
            for threads in (1, 2):
                command = [sys.executable, "-c", TIMER, args.model, str(threads), engine, str(clip), str(args.repeats)]
                run = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                rtf = run["seconds"] / run["audio_seconds"]
                results[f"{engine}_threads_{threads}"] = run | {"real_time_factor": rtf}
                rows.append([engine, threads, run["audio_seconds"], run["seconds"], rtf, run["load_seconds"]])
    print_table(["engine", "threads", "audio s", "processing s", "RTF", "model load s"], rows)
    write_results("speed", {"model": args.model, "results": results})


if __name__ == "__main__":
    main()
