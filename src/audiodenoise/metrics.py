"""Speech quality metrics: wide-band PESQ and STOI at 16 kHz, SI-SDR and SNR. A library, no CLI."""

from __future__ import annotations

import math

import numpy as np

from .audio import resample

METRIC_RATE = 16000


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (both signals zero-meaned)."""
    reference = reference.astype(np.float64) - np.mean(reference)
    estimate = estimate.astype(np.float64) - np.mean(estimate)
    energy = np.dot(reference, reference)
    if energy <= 0:
        return math.nan
    target = np.dot(estimate, reference) / energy * reference
    residual = estimate - target
    return float(10 * np.log10(np.dot(target, target) / max(np.dot(residual, residual), 1e-20)))


def snr(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = estimate.astype(np.float64) - reference
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(np.sum(noise**2), 1e-20)))


def pesq_wb(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Wide-band PESQ of 16 kHz signals; NaN where PESQ cannot score the file (e.g. silence)."""
    from pesq import PesqError, pesq

    try:
        return float(pesq(METRIC_RATE, reference, estimate, "wb"))
    except PesqError:
        return math.nan


def stoi(reference: np.ndarray, estimate: np.ndarray, extended: bool = False) -> float:
    from pystoi import stoi as _stoi

    return float(_stoi(reference, estimate, METRIC_RATE, extended=extended))


def score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> dict[str, float]:
    """All metrics for one mono pair; lengths are aligned to the shorter signal."""
    length = min(len(reference), len(estimate))
    reference, estimate = reference[:length], estimate[:length]
    ref16 = resample(reference, sample_rate, METRIC_RATE).astype(np.float64)
    est16 = resample(estimate, sample_rate, METRIC_RATE).astype(np.float64)
    return {
        "pesq": pesq_wb(ref16, est16),
        "stoi": stoi(ref16, est16),
        "estoi": stoi(ref16, est16, extended=True),
        "si_sdr": si_sdr(reference, estimate),
        "snr": snr(reference, estimate),
    }
