"""Augmentation and synthetic voices: each transform does what it says, mixes are reproducible, validation is never
augmented nor synthetic, the settings reach the checkpoints, and bad values are one line."""

import json

import numpy as np
import pytest
import torch
from conftest import on_the_fly_train, write_corpus

from audiodenoise.cli import main
from audiodenoise.data import augment
from audiodenoise.data.mixing import UNAUGMENTED, MixConfig
from audiodenoise.data.onthefly import voice_clips
from audiodenoise.data.pairs import mix_signals
from audiodenoise.data.sources import OnTheFly
from audiodenoise.data.splits import SplitConfig
from audiodenoise.spectral import SpectralConfig

RATE = 22050
EVERYTHING = MixConfig(
    speech_speed=(0.85, 1.15),
    speech_eq_db=6,
    band_limit_fraction=0.5,
    reverb_fraction=0.5,
    noise_speed=(0.8, 1.2),
    noise_eq_db=6,
    second_noise_fraction=0.5,
    noise_drift_db=6,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("augment-corpus")
    write_corpus(root, ("alice", "bob", "carol", "dave"), files_per_speaker=2)
    return root


def peak_hz(signal: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / RATE)[np.argmax(spectrum)])


def band_db(signal: np.ndarray, low: float, high: float) -> float:
    frequencies = np.fft.rfftfreq(len(signal), 1 / RATE)
    power = np.abs(np.fft.rfft(signal)) ** 2
    return float(10 * np.log10(power[(frequencies >= low) & (frequencies < high)].sum() + 1e-20))


def test_speed_change_shortens_and_raises_the_pitch():
    tone = np.sin(2 * np.pi * 200 * np.arange(RATE) / RATE).astype(np.float32)
    faster = augment.change_speed(tone, 1.25, RATE)
    assert abs(len(faster) - RATE / 1.25) <= 2
    assert peak_hz(faster) == pytest.approx(250, abs=2)


def test_a_flat_curve_leaves_the_signal_alone_and_a_random_equaliser_stays_within_its_range():
    signal = np.random.default_rng(0).normal(size=RATE).astype(np.float32)
    np.testing.assert_allclose(augment.filtered(signal, RATE, lambda f: np.zeros_like(f)), signal, atol=1e-5)
    curve = augment.random_equaliser(np.random.default_rng(1), 6.0)
    gains = curve(np.linspace(20, RATE / 2, 2000))
    assert np.abs(gains).max() <= 4 * 6.0 and np.ptp(gains) > 1.0  # 2 shelves and up to 2 peaks, not flat


def test_band_limit_removes_the_band_above_its_cutoff_and_keeps_the_one_below():
    signal = np.random.default_rng(0).normal(size=2 * RATE).astype(np.float32)
    limited = augment.filtered(signal, RATE, augment.random_band_limit(np.random.default_rng(2), (4000.0, 4000.0)))
    assert band_db(limited, 100, 3500) == pytest.approx(band_db(signal, 100, 3500), abs=0.1)
    assert band_db(limited, 8000, 11000) < band_db(signal, 8000, 11000) - 40


def test_reverberation_keeps_the_direct_sound_in_the_target_and_the_late_part_out():
    click = np.zeros(RATE, np.float32)
    click[1000] = 1.0
    target, late = augment.reverberate(click, np.random.default_rng(3), MixConfig(reverb_rt60=(0.5, 0.5)), RATE)
    early = int(augment.EARLY_SECONDS * RATE)
    assert target[1000] == pytest.approx(1.0, abs=1e-5) and np.abs(target[1000 + early :]).max() < 1e-6
    assert np.abs(late[: 1000 + early]).max() < 1e-6 and np.abs(late[1000 + early :]).max() > 1e-3


def test_noise_level_drifts_within_its_range():
    noise = np.ones(3 * RATE, np.float32)
    drifted = augment.drift_level(noise, np.random.default_rng(4), 6.0, RATE)
    gain_db = 20 * np.log10(drifted)
    assert gain_db.max() <= 6.0 + 1e-4 and gain_db.min() >= -6.0 - 1e-4 and np.ptp(gain_db) > 1.0


def test_augmented_mixes_are_reproducible_and_differ_from_plain_ones(corpus):
    speech = sorted((corpus / "speech").rglob("*.wav"))
    good = [p for p in speech if p.name != "broken.wav"]
    noises = tuple(sorted((corpus / "noise").rglob("*.wav")))
    spectral = SpectralConfig()

    def signals(mixing):
        return mix_signals(good[0], noises, tuple(good), np.random.default_rng(7), spectral, mixing)[0]

    first, again, plain = signals(EVERYTHING), signals(EVERYTHING), signals(MixConfig())
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert len(first[0]) != len(plain[0]) or not np.array_equal(first[0], plain[0])
    assert all(np.isfinite(s).all() for s in first)


def test_unaugmented_turns_every_augmentation_off_and_validation_pairs_are_never_augmented(corpus):
    assert all(getattr(EVERYTHING.unaugmented(), name) == value for name, value in UNAUGMENTED.items())
    assert EVERYTHING.unaugmented().clean_fraction == EVERYTHING.clean_fraction
    split = SplitConfig(val_speakers=1)
    plain = OnTheFly(corpus / "speech", corpus / "noise", MixConfig(), split, epoch_pairs=4, workers=0)
    augmented = OnTheFly(corpus / "speech", corpus / "noise", EVERYTHING, split, epoch_pairs=4, workers=0)
    for a, b in zip(plain.validation(6), augmented.validation(6), strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    first = next(augmented.epoch(0, 0, 2, 0))
    assert not torch.equal(first[0], next(plain.epoch(0, 0, 2, 0))[0])


def test_augmentation_settings_reach_the_checkpoint(corpus, tmp_path):
    run = tmp_path / "run"
    options = ("--max-steps", "2", "--speech-speed", "0.9", "1.1", "--noise-drift-db", "3")
    assert main(on_the_fly_train(corpus, run, *options)) == 0
    info = json.loads((run / "best" / "config.json").read_text())["info"]
    assert info["mixing"]["speech_speed"] == [0.9, 1.1] and info["mixing"]["noise_drift_db"] == 3.0
    assert info["speakers"] == 3


@pytest.mark.parametrize(
    "option, message",
    [
        (["--speech-speed", "0.1", "1"], "must be at least 0.5"),
        (["--speech-speed", "1.2", "0.9"], "speech_speed: the minimum 1.2 is above the maximum 0.9"),
        (["--band-limit-fraction", "2"], "must be at most 1"),
        (["--noise-drift-db", "-1"], "must be at least 0"),
    ],
)
def test_bad_augmentation_values_are_one_line_exit_2(corpus, tmp_path, capsys, option, message):
    argv = ["prepare", "--speech", str(corpus / "speech"), "--noise", str(corpus / "noise"), "-o", str(tmp_path / "d")]
    with pytest.raises(SystemExit) as stop:
        code = main(argv + option)
        raise SystemExit(code)
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert message in error[-1] and not (tmp_path / "d").exists()


def test_synthetic_voices_join_training_only_up_to_their_share(corpus, tmp_path_factory, tmp_path):
    synthetic = tmp_path_factory.mktemp("voices")
    write_corpus(synthetic, ("robot-a", "robot-b", "robot-c"), files_per_speaker=4)
    split = SplitConfig(val_speakers=1)
    source = OnTheFly(
        corpus / "speech", corpus / "noise", MixConfig(voice_share=0.5), split, voices=synthetic / "speech"
    )
    assert source.synthetic_voices == ["robot-a", "robot-b", "robot-c"]
    assert not source.splits["val"].voices
    train = source.splits["train"]
    drawn = voice_clips(train, 0.5, np.random.default_rng(0))
    assert len(drawn) == min(len(train.voices), len(train.speech)) and set(drawn) <= {f.path for f in train.voices}
    assert voice_clips(train, 0.0, np.random.default_rng(0)) == ()
    run = tmp_path / "run"
    argv = on_the_fly_train(
        corpus, run, "--max-steps", "2", "--voices", str(synthetic / "speech"), "--voice-share", "0.5"
    )
    assert main(argv) == 0
    info = json.loads((run / "best" / "config.json").read_text())["info"]
    assert (info["speakers"], info["synthetic_voices"], info["mixing"]["voice_share"]) == (3, 3, 0.5)


def test_voices_with_a_prepared_dataset_are_refused_in_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "data"), str(tmp_path / "run"), "--voices", str(tmp_path)]) == 2
    assert "voices: synthetic voices are mixed on the fly only" in capsys.readouterr().err
