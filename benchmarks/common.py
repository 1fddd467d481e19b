"""Shared pieces of the benchmarks: where the corpus is, machine description, and result files."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("AUDIODENOISE_CORPUS", ROOT.parent / "shared" / "corpus"))
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> str:
    """The CPU model, family/model numbers and its widest vector extension (they change what is fast)."""
    fields = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    cpu = fields.get("model name", platform.processor())
    flags = set(fields.get("flags", "").split())
    vector = next((name for name in ("avx512_bf16", "avx512f", "avx2") if name in flags), "no AVX2")
    family = f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
    return f"{cpu} ({family}, {vector}), {os.cpu_count()} cores, Python {platform.python_version()}"


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results: {path.relative_to(ROOT)}")
    return path


def print_table(headers: list[str], rows: list[list]) -> None:
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("-|-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
