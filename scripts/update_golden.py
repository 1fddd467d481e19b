"""Rewrite tests/data/golden/expected.json with the current default model's metrics (after shipping a new one).

Keeps the stored tolerances; runs at the thread count and on the engine the file names (float32 ONNX Runtime, the
same on every CPU), and commit the result with the model."""

from __future__ import annotations

import json
from pathlib import Path

from audiodenoise import evaluate
from audiodenoise.atomic import write_json

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden"


def main() -> None:
    path = GOLDEN / "expected.json"
    expected = json.loads(path.read_text())
    pairs = evaluate.find_pairs(pairs_csv=str(GOLDEN / "pairs.csv"))
    report = evaluate.run(pairs, ["default"], threads=expected["threads"], engine=expected["engine"])
    scores: dict[str, dict] = {}
    for score in report.scores:
        if score.error:
            raise SystemExit(f"{score.pair} ({score.system}) failed: {score.error}")
        values = {metric: round(value, 6) for metric, value in score.values.items()}
        scores.setdefault(score.pair, {})[score.system] = values
    write_json(path, expected | {"scores": scores})
    print(f"{path}: {len(scores)} pairs rewritten")


if __name__ == "__main__":
    main()
