"""Inputs above the model's rate keep their top band (fullband.py): exact crossover, the model's gain, chunking."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import halving_model, identity_model

from audiodenoise import metrics
from audiodenoise.audio import resample
from audiodenoise.denoiser import Denoiser
from audiodenoise.spectral import SpectralConfig


def white(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


def band_level_db(audio: np.ndarray, rate: int, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    frequencies = np.fft.rfftfreq(len(audio), 1 / rate)
    return 10 * np.log10(spectrum[(frequencies >= low) & (frequencies < high)].sum())


@pytest.mark.parametrize("rate", [32000, 44100, 48000, 96000])
def test_a_model_that_changes_nothing_gives_back_the_whole_band(rate):
    audio = white(1.0, rate)
    out = Denoiser(identity_model(), SpectralConfig(), engine="torch")(audio, rate)
    assert np.abs(out - audio).max() < 1e-5  # measured 1.8e-7 at 48 kHz; the top band was lost before
    assert abs(band_level_db(out, rate, 12000, rate / 2) - band_level_db(audio, rate, 12000, rate / 2)) < 0.01


def test_the_top_band_takes_the_models_gain_and_its_floor():
    rate, audio = 48000, white(2.0, 48000)
    halved = Denoiser(halving_model(), SpectralConfig(), engine="torch")(audio, rate)
    for low, high in [(200, 8000), (12000, 20000)]:  # the model's band and the one above it: both -6 dB
        assert band_level_db(halved, rate, low, high) - band_level_db(audio, rate, low, high) == pytest.approx(
            -6.02, abs=0.3
        )
    floored = Denoiser(halving_model(), SpectralConfig(), engine="torch", atten_lim_db=3.0)(audio, rate)
    assert band_level_db(floored, rate, 12000, 20000) - band_level_db(audio, rate, 12000, 20000) == pytest.approx(
        -3.0, abs=0.3
    )
    gentle = Denoiser(halving_model(), SpectralConfig(), engine="torch", strength=0.5)(audio, rate)
    assert band_level_db(gentle, rate, 12000, 20000) - band_level_db(audio, rate, 12000, 20000) == pytest.approx(
        20 * np.log10(0.75), abs=0.3
    )


def test_any_chunking_gives_the_same_full_band_output():
    rate, audio = 48000, np.stack([white(1.5, 48000), white(1.5, 48000, seed=1)], axis=1)
    model = Denoiser(halving_model(), SpectralConfig(), engine="torch")
    whole = model(audio, rate)
    stream, out, start = model.stream(rate, 2), [], 0
    for size in np.random.default_rng(2).integers(1, 6000, 40):
        out.append(stream.feed(audio[start : start + size]))
        start += size
    out += [stream.feed(audio[start:]), stream.flush()]
    assert np.array_equal(np.concatenate(out), whole)


def test_the_top_bands_log_spectral_distance_sees_a_lost_top_band_and_only_above_32_khz():
    rate, audio = 48000, white(1.0, 48000)
    assert metrics.top_band_lsd(audio, audio, rate) == 0
    cut = resample(resample(audio, rate, 22050), 22050, rate)
    assert metrics.top_band_lsd(audio, cut, rate) > 30  # the band is gone: about 100 dB down
    assert metrics.top_band_lsd(audio, 0.5 * audio, rate) == pytest.approx(6.02, abs=0.01)
    assert np.isnan(metrics.top_band_lsd(audio, audio, 22050))
    assert np.isnan(metrics.score(audio[:22050], audio[:22050], 22050)["top_band_lsd"])
    assert metrics.score(audio, audio, rate)["top_band_lsd"] == 0
