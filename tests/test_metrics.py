"""Metrics: known values, resampling and alignment, and failures reported per metric instead of raised."""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import solve_toeplitz

from audiodenoise import metrics
from audiodenoise.audio import read_mono, resample

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


@pytest.fixture(scope="module")
def pair():
    """Real speech (a committed golden clip) with noise below 6 kHz at about 24 dB SNR."""
    clean = read_mono(GOLDEN / "clean" / "dev_016.flac", 16000).astype(np.float64)
    white = np.random.default_rng(1).normal(scale=0.003, size=len(clean))
    noise = resample(white, 12000, 16000)[: len(clean)]  # band-limited: survives resampling to 48 kHz and back
    return clean, clean + noise


def test_snr_and_si_sdr_of_added_noise():
    rng = np.random.default_rng(0)
    clean, noise = rng.normal(size=16000), 0.1 * rng.normal(size=16000)
    expected = 10 * np.log10(np.sum(clean**2) / np.sum(noise**2))
    assert metrics.snr(clean, clean + noise) == pytest.approx(expected, abs=1e-9)
    assert metrics.si_sdr(clean, clean + noise) == pytest.approx(expected, abs=0.1)


def test_si_sdr_ignores_scale_and_snr_does_not(pair):
    clean, noisy = pair
    assert metrics.si_sdr(clean, 0.25 * noisy) == pytest.approx(metrics.si_sdr(clean, noisy))
    assert metrics.snr(clean, 0.25 * noisy) < metrics.snr(clean, noisy) - 1


def test_silent_reference_gives_nan_not_infinity():
    silence = np.zeros(16000)
    assert math.isnan(metrics.snr(silence, silence + 0.1))
    assert math.isnan(metrics.si_sdr(silence, silence + 0.1))


def test_more_noise_scores_lower_on_every_metric(pair):
    clean, noisy = pair
    noisier = clean + 4 * (noisy - clean)
    better, worse = metrics.score(clean, noisy, 16000), metrics.score(clean, noisier, 16000)
    assert set(better.values) == set(metrics.METRICS)
    assert np.isnan(better["top_band_lsd"])  # a distance, and 16 kHz has no band above 11 kHz: test_fullband.py
    for metric in set(metrics.METRICS) - {"top_band_lsd"}:
        assert better[metric] > worse[metric], metric


def test_clean_against_itself_scores_the_maximum(pair):
    clean, _ = pair
    scores = metrics.score(clean, clean, 16000)
    assert scores["pesq"] > 4.5
    assert scores["stoi"] == pytest.approx(1.0)
    assert scores["csig"] == scores["covl"] == 5.0
    assert scores["cbak"] > 4.5


def test_segmental_snr_is_clipped_to_its_range():
    signal = np.random.default_rng(3).normal(size=16000)
    assert metrics.segmental_snr(signal, signal) == 35.0
    assert metrics.segmental_snr(signal, -3 * signal) == -10.0


def test_scores_do_not_depend_on_the_sample_rate(pair):
    clean, noisy = pair
    at_16k = metrics.score(clean, noisy, 16000)
    at_48k = metrics.score(resample(clean, 16000, 48000), resample(noisy, 16000, 48000), 48000)
    for metric, tolerance in {"pesq": 0.05, "stoi": 0.01, "estoi": 0.01, "csig": 0.1}.items():
        assert at_48k[metric] == pytest.approx(at_16k[metric], abs=tolerance), metric


def test_lengths_are_aligned_to_the_shorter_signal(pair):
    clean, noisy = pair
    longer = np.concatenate([noisy, np.ones(500)])
    aligned = metrics.score(clean, longer, 16000).values
    assert aligned == pytest.approx(metrics.score(clean, noisy, 16000).values, nan_ok=True)


def test_pesq_failure_on_silence_is_reported_not_raised():
    silence = np.zeros(32000)
    scores = metrics.score(silence, silence, 16000)
    assert math.isnan(scores["pesq"]) and math.isnan(scores["csig"])
    assert scores.problems["pesq"] == "PESQ: no utterances detected"
    assert scores.problems["si_sdr"] == "the clean signal is silent"
    with pytest.raises(metrics.MetricError):
        metrics.pesq_wb(silence, silence)


def test_levinson_matches_a_toeplitz_solve():
    frames = np.random.default_rng(2).normal(size=(4, 480))
    autocorrelation = np.fft.irfft(np.abs(np.fft.rfft(frames, 960)) ** 2)[:, :17]
    filters = metrics._lpc(autocorrelation)
    for r, a in zip(autocorrelation, filters):
        assert a[0] == 1
        np.testing.assert_allclose(-a[1:], solve_toeplitz(r[:16], r[1:17]), atol=1e-10)


@pytest.mark.parametrize("shift", [0, 37, -120])
def test_estimate_delay_finds_a_shift(pair, shift):
    clean, _ = pair
    shifted = np.roll(clean, shift)
    assert metrics.estimate_delay(clean, shifted, max_delay=400) == shift
