"""Noises the corpus lacks, made in code: sirens, hum, coloured noise and babble."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .mixing import fit_length

KINDS = ("siren_wail", "siren_yelp", "siren_hilo", "hum", "coloured", "babble")


def _harmonic_tone(freq: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    n_harmonics = int(rng.integers(2, 6))
    tone = sum(np.sin(k * phase) / k ** rng.uniform(1.0, 2.0) for k in range(1, n_harmonics + 1))
    return tone


def siren(kind: str, length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / sample_rate
    low = rng.uniform(500, 900)
    high = low + rng.uniform(300, 900)
    if kind == "siren_wail":
        period = rng.uniform(2.0, 6.0)
        sweep = 0.5 - 0.5 * np.cos(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    elif kind == "siren_yelp":
        period = rng.uniform(0.15, 0.4)
        sweep = ((t / period + rng.uniform()) % 1.0) ** 0.7
    else:
        period = rng.uniform(0.8, 1.6)
        sweep = (((t / period) + rng.uniform()) % 1.0 < 0.5).astype(np.float64)
    tone = _harmonic_tone(low + (high - low) * sweep, sample_rate, rng)
    # A slow level drift, as a passing vehicle would give.
    drift = 1 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(4, 12) + rng.uniform(0, 2 * np.pi))
    return tone * drift


def hum(length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    mains = rng.choice([50.0, 60.0])
    t = np.arange(length) / sample_rate
    harmonics = range(1, int(rng.integers(4, 16)))
    return sum(rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6.3)) for k in harmonics)


def coloured_noise(length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a 1/f**exponent power spectrum: white 0, pink 1, brown 2, blue -1."""
    exponent = rng.choice([-1.0, 0.0, 1.0, 2.0])
    spectrum = rng.normal(size=length // 2 + 1) + 1j * rng.normal(size=length // 2 + 1)
    freqs = np.fft.rfftfreq(length, 1 / sample_rate)
    freqs[0] = freqs[1] if length > 1 else 1.0
    return np.fft.irfft(spectrum / freqs ** (exponent / 2), n=length)


def babble(length: int, talkers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return sum(fit_length(t, length, rng) / (np.std(t) + 1e-9) for t in talkers)


def synthesize(
    kind: str,
    length: int,
    sample_rate: int,
    rng: np.random.Generator,
    babble_talkers: Callable[[int], list[np.ndarray]] | None = None,
) -> np.ndarray:
    """One synthetic noise of ``kind``; ``babble_talkers(n)`` supplies n speech clips for babble."""
    if kind.startswith("siren"):
        noise = siren(kind, length, sample_rate, rng)
    elif kind == "hum":
        noise = hum(length, sample_rate, rng)
    elif kind == "coloured":
        noise = coloured_noise(length, sample_rate, rng)
    elif kind == "babble":
        talkers = babble_talkers(int(rng.integers(3, 8))) if babble_talkers else []
        # Without readable talkers, babble falls back to coloured noise.
        noise = babble(length, talkers, rng) if talkers else coloured_noise(length, sample_rate, rng)
    else:
        raise ValueError(f"unknown synthetic noise {kind!r}; choose from {KINDS}")
    return np.asarray(noise, dtype=np.float32)
