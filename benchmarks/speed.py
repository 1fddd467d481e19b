"""Real-time factor on a 60 s file of real noisy speech, per engine at 1 and 2 threads (model load timed apart)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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
    args = parser.parse_args()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "speech.wav"
        long_clip(args.seconds, clip)
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
