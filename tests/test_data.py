"""Cleaning, mixing, synthetic noise, and `prepare` -> `train` -> checkpoint on a corpus made here."""

import json

import numpy as np
import pytest
from conftest import resume_state, speech_like, write_corpus

from audiodenoise.checkpoint import CheckpointError, load_checkpoint
from audiodenoise.cli import main
from audiodenoise.data import synth
from audiodenoise.data.dataset import DatasetError, PatchDataset
from audiodenoise.data.mixing import fit_length, mix, power, remove_silence

RATE = 22050


def test_remove_silence_drops_quiet_frames_only():
    frame = int(RATE * 0.02)
    loud = np.full(10 * frame, 0.5, np.float32)
    signal = np.concatenate([np.zeros(5 * frame, np.float32), loud, np.full(3 * frame, 1e-4, np.float32), loud])
    kept = remove_silence(signal, RATE, 20.0, -40.0)
    assert len(kept) == 20 * frame
    assert np.all(kept == 0.5)


def test_remove_silence_can_keep_part_of_each_pause():
    frame = int(RATE * 0.02)
    loud = np.full(10 * frame, 0.5, np.float32)
    signal = np.concatenate([loud, np.zeros(30 * frame, np.float32), loud])
    kept = remove_silence(signal, RATE, 20.0, -40.0, max_pause_ms=100.0)
    assert len(kept) == 25 * frame  # 5 of the 30 silent frames remain
    assert np.count_nonzero(kept == 0) == 5 * frame


def test_fit_length_loops_and_crops():
    noise = np.arange(10, dtype=np.float32)
    out = fit_length(noise, 25, np.random.default_rng(0))
    assert len(out) == 25
    assert np.all(np.diff(out) % 10 == 1)  # consecutive samples of the looped noise


def test_mix_hits_the_snr_and_never_clips():
    rng = np.random.default_rng(1)
    clean, noise = speech_like(1.0, RATE), rng.normal(size=RATE).astype(np.float32)
    for snr_db in (-5.0, 0.0, 20.0):
        scaled_clean, noisy = mix(clean, noise, snr_db, level_db=-3.0, peak_limit=0.99)
        measured = 10 * np.log10(power(scaled_clean) / power(noisy - scaled_clean))
        assert measured == pytest.approx(snr_db, abs=0.01)
        assert np.max(np.abs(noisy)) <= 0.99 + 1e-6
    # With padding around the speech, the SNR is still measured on the speech itself.
    padded = np.pad(clean, RATE)
    scaled, noisy = mix(padded, rng.normal(size=len(padded)), 5.0, -20.0, 0.99, power(clean))
    speech = slice(RATE, RATE + len(clean))
    assert 10 * np.log10(power(scaled[speech]) / power((noisy - scaled)[speech])) == pytest.approx(5.0, abs=0.3)


@pytest.mark.parametrize("kind", synth.KINDS)
def test_synthetic_noises_have_the_length_and_are_finite(kind):
    rng = np.random.default_rng(2)
    talkers = lambda n: [speech_like(0.7, RATE, seed=i) for i in range(n)]  # noqa: E731
    noise = synth.synthesize(kind, RATE, RATE, rng, talkers)
    assert noise.shape == (RATE,) and np.isfinite(noise).all() and np.std(noise) > 0


def test_siren_sweeps_its_pitch():
    noise = synth.siren("siren_wail", 4 * RATE, RATE, np.random.default_rng(3))
    peaks = [np.argmax(np.abs(np.fft.rfft(noise[i : i + 4096]))) for i in range(0, 3 * RATE, RATE // 2)]
    assert len(set(peaks)) > 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    out = root / "dataset"
    argv = ["prepare", "--speech", str(root / "speech"), "--noise", str(root / "noise"), "-o", str(out)]
    assert main(argv + ["--val-fraction", "0.34", "--workers", "1", "--seed", "7"]) == 0
    return out


def test_prepare_writes_a_dataset_with_disjoint_speakers(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["counts"]["failed"] == 1 and "broken.wav" in manifest["failures"][0]
    train, val = PatchDataset(dataset, "train"), PatchDataset(dataset, "val")
    assert len(train) > 0 and len(val) > 0
    noisy, clean = train[0]
    assert noisy.shape == clean.shape == (1, 128, 128)
    assert manifest["splits"]["train"]["pairs"] == len(train)
    splits = manifest["splits"]
    assert splits["train"]["speakers"] and splits["val"]["speakers"]
    assert not set(splits["train"]["speakers"]) & set(splits["val"]["speakers"])
    assert not set(splits["train"]["noise_files"]) & set(splits["val"]["noise_files"])


def test_train_resumes_and_writes_a_loadable_checkpoint(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", str(dataset), str(run), "--batch-size", "2", "--threads", "1"]
    assert main(base + ["--epochs", "1"]) == 0
    first = resume_state(run)
    assert main(base + ["--epochs", "2", "--resume"]) == 0
    second = resume_state(run)
    assert second["epoch"] == 2 and second["step"] == 2 * first["step"]
    assert (run / "history.csv").read_text().count("\n") >= 3
    model, spectral, config = load_checkpoint(run / "best")
    assert spectral.n_bins == 128 and config["info"]["step"] >= 1
    assert "model.safetensors" in {p.name for p in (run / "best").iterdir()}


def test_bad_dataset_and_corrupt_checkpoint_are_clear_errors(tmp_path, dataset, capsys):
    with pytest.raises(DatasetError, match="not a dataset"):
        PatchDataset(tmp_path, "train")
    assert main(["train", str(tmp_path), str(tmp_path / "run")]) == 2
    assert "not a dataset" in capsys.readouterr().err
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(CheckpointError):
        load_checkpoint(folder)


def test_mix_with_silent_noise_returns_the_clean_signal():
    clean = speech_like(1.0, RATE)
    scaled, noisy = mix(clean, np.zeros_like(clean), 5.0, level_db=-20.0, peak_limit=0.99)
    assert np.array_equal(scaled, noisy) and np.isfinite(noisy).all() and power(noisy) > 0
