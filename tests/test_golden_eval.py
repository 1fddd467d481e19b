"""The shipped default model's metrics on the committed golden pairs stay at their stored values."""

import json
from pathlib import Path

import pytest

from audiodenoise import evaluate

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())


@pytest.fixture(scope="module")
def report():
    pairs = evaluate.find_pairs(pairs_csv=str(GOLDEN / "pairs.csv"))
    return evaluate.run(pairs, ["default"], threads=EXPECTED["threads"], engine=EXPECTED["engine"])


def test_every_golden_pair_is_scored_without_failures(report):
    assert {(s.pair, s.system) for s in report.scores} == {
        (pair, system) for pair, systems in EXPECTED["scores"].items() for system in systems
    }
    assert not report.failures
    assert all(not s.problems for s in report.scores)


def test_metrics_match_the_stored_values(report):
    tolerance = EXPECTED["tolerance"]
    off = [
        f"{s.pair} {s.system} {metric}: {value:.4f}, stored {stored:.4f}"
        for s in report.scores
        for metric, stored in EXPECTED["scores"][s.pair][s.system].items()
        if abs((value := s.values[metric]) - stored) > tolerance[metric]
    ]
    assert not off, "; ".join(off)


def test_the_model_improves_the_mean_pesq_and_si_sdr(report):
    summary = report.summary()
    for metric in ("pesq", "si_sdr"):
        assert summary[f"unet-mask ({EXPECTED['engine']})"][metric].mean > summary["noisy"][metric].mean
