"""Augmentation of one training mixture: speed, random equalisation, band limits and room reverberation of the
speech; speed, equalisation, a second noise and a wandering level of the noise.

Every draw comes from the mixture's own generator, and a setting at its ``mixing.UNAUGMENTED`` value draws
nothing, so mixes without augmentation are exactly those of before."""

from __future__ import annotations

import numpy as np
import soxr

from .mixing import MixConfig, fit_length, power

SHELF_HZ = {"low": (80.0, 500.0), "high": (2000.0, 8000.0)}  # corner frequencies of the random shelves
PEAK_HZ = (150.0, 7000.0)  # centres of the random peaks
PEAK_OCTAVES = (0.3, 1.5)  # their widths
BAND_LIMIT_DB_PER_OCTAVE = (48.0, 96.0)  # how steeply a band limit falls above its cutoff
EARLY_SECONDS = 0.05  # the part of a room's response that the target keeps
SECOND_NOISE_DB = (-10.0, 0.0)  # a second noise's level against the first
DRIFT_SECONDS = (0.3, 2.0)  # how fast a noise level wanders
FILTER_PAD = 2048  # zeros each side of a signal filtered in the frequency domain, so its filter does not wrap


def change_speed(signal: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """``signal`` played ``factor`` times faster (pitch and formants move with it)."""
    return soxr.resample(signal, sample_rate * factor, sample_rate).astype(np.float32)


def filtered(signal: np.ndarray, sample_rate: int, curve_db) -> np.ndarray:
    """``signal`` through the zero-phase filter whose gain in dB at frequency f (Hz) is ``curve_db(f)``."""
    padded = np.pad(signal.astype(np.float64), FILTER_PAD)
    spectrum = np.fft.rfft(padded)
    frequencies = np.fft.rfftfreq(len(padded), 1 / sample_rate)
    spectrum *= 10 ** (curve_db(frequencies) / 20)
    return np.fft.irfft(spectrum, n=len(padded))[FILTER_PAD:-FILTER_PAD].astype(np.float32)


def random_equaliser(rng: np.random.Generator, max_db: float):
    """A gain curve (dB against Hz) of a low and a high shelf and one or two peaks, each within +-``max_db``."""
    octave = lambda f, centre: np.log2(np.maximum(f, 1.0) / centre)  # noqa: E731
    low, high = (float(np.exp(rng.uniform(*np.log(SHELF_HZ[side])))) for side in ("low", "high"))
    low_db, high_db = rng.uniform(-max_db, max_db, size=2)
    peaks = [
        (float(np.exp(rng.uniform(*np.log(PEAK_HZ)))), rng.uniform(*PEAK_OCTAVES), rng.uniform(-max_db, max_db))
        for _ in range(int(rng.integers(1, 3)))
    ]

    def curve(f: np.ndarray) -> np.ndarray:
        gain = low_db / (1 + np.exp(4 * octave(f, low))) + high_db / (1 + np.exp(-4 * octave(f, high)))
        for centre, width, peak_db in peaks:
            gain = gain + peak_db * np.exp(-0.5 * (octave(f, centre) / (width / 2)) ** 2)
        return gain

    return curve


def random_band_limit(rng: np.random.Generator, cutoff_hz: tuple[float, float]):
    """A low-pass gain curve: flat to a cutoff in ``cutoff_hz``, then falling steeply (to -100 dB at most)."""
    cutoff = float(np.exp(rng.uniform(*np.log(cutoff_hz))))
    slope = rng.uniform(*BAND_LIMIT_DB_PER_OCTAVE)
    return lambda f: np.maximum(-slope * np.log2(np.maximum(f, cutoff) / cutoff), -100.0)


def room_response(rng: np.random.Generator, rt60_range: tuple[float, float], sample_rate: int) -> np.ndarray:
    """A synthetic room impulse response: the direct sound, then exponentially decaying noise (60 dB in RT60)."""
    rt60 = rng.uniform(*rt60_range)
    t = np.arange(1, int(rt60 * sample_rate)) / sample_rate
    tail = rng.normal(size=len(t)) * np.exp(-3 * np.log(10) * t / rt60)
    tail *= rng.uniform(0.5, 2.0) / np.sqrt(np.sum(tail**2) + 1e-20)  # direct-to-reverberant ratio of -6 to 6 dB
    return np.concatenate([[1.0], tail])


def _convolve(signal: np.ndarray, response: np.ndarray) -> np.ndarray:
    n = len(signal) + len(response) - 1
    size = 1 << (n - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(signal, size) * np.fft.rfft(response, size), size)
    return wet[: len(signal)].astype(np.float32)


def reverberate(clean: np.ndarray, rng: np.random.Generator, mixing: MixConfig, sample_rate: int):
    """(target, late reverberation) of ``clean`` in a random room: the target holds the direct sound and the early
    reflections, and the noisy mix gets the late part on top."""
    response = room_response(rng, mixing.reverb_rt60, sample_rate)
    early = int(EARLY_SECONDS * sample_rate)
    target = _convolve(clean, response[:early])
    return target, _convolve(clean, response) - target


def speed_and_equalise(
    signal: np.ndarray, rng: np.random.Generator, speed: tuple[float, float], eq_db: float, sample_rate: int
) -> np.ndarray:
    """``signal`` at a speed drawn from ``speed`` through a random equaliser of up to ``eq_db`` dB (each left out
    at its neutral value: speed (1, 1), 0 dB)."""
    if speed != (1.0, 1.0):
        signal = change_speed(signal, rng.uniform(*speed), sample_rate)
    if eq_db:
        signal = filtered(signal, sample_rate, random_equaliser(rng, eq_db))
    return signal


def add_second_noise(noise: np.ndarray, second: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``noise`` with ``second`` looped to its length and summed in at a random level under it."""
    second = fit_length(second, len(noise), rng)
    gain = np.sqrt(power(noise) / max(power(second), 1e-20) * 10 ** (rng.uniform(*SECOND_NOISE_DB) / 10))
    return (noise + gain * second).astype(np.float32)


def drift_level(noise: np.ndarray, rng: np.random.Generator, max_db: float, sample_rate: int) -> np.ndarray:
    """``noise`` under a gain that wanders smoothly within +-``max_db`` dB."""
    step = max(1, int(rng.uniform(*DRIFT_SECONDS) * sample_rate))
    points = rng.uniform(-max_db, max_db, size=len(noise) // step + 2)
    position = np.arange(len(noise)) / step
    index = position.astype(int)
    blend = 0.5 - 0.5 * np.cos(np.pi * (position - index))  # cosine between the points: no corners
    gain_db = points[index] * (1 - blend) + points[index + 1] * blend
    return (noise * 10 ** (gain_db / 20)).astype(np.float32)
