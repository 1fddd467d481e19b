"""Speech quality metrics: wide-band PESQ, STOI, ESTOI and the composite measures at 16 kHz, SI-SDR and SNR at
the file's rate (full band), and the log-spectral distance of the band above 11 kHz where the file has one.

A library, no CLI. ``score`` runs them all on one pair; a metric that cannot score a file (PESQ on silence)
gives NaN and a note instead of an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .audio import resample

METRIC_RATE = 16000
METRICS = ("pesq", "stoi", "estoi", "si_sdr", "snr", "csig", "cbak", "covl", "top_band_lsd")
TOP_BAND_HZ = (11025.0, 20000.0)  # above the models' 22050 Hz Nyquist, up to where hearing ends
LSD_FRAME_SECONDS = 0.032


@dataclass(frozen=True)
class Scores:
    values: dict[str, float]
    problems: dict[str, str] = field(default_factory=dict)  # metric -> why it is NaN

    def __getitem__(self, metric: str) -> float:
        return self.values[metric]


class MetricError(ValueError):
    """A metric cannot score this pair (e.g. PESQ finds no speech in it)."""


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
    reference = reference.astype(np.float64)
    energy = np.sum(reference**2)
    if energy <= 0:
        return math.nan
    return float(10 * np.log10(energy / max(np.sum((estimate - reference) ** 2), 1e-20)))


def pesq_wb(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Wide-band PESQ of 16 kHz signals; raises MetricError where PESQ cannot score them (e.g. silence)."""
    from pesq import PesqError, pesq

    try:
        with np.errstate(divide="ignore", invalid="ignore"):  # pesq normalises silence by its zero peak
            return float(pesq(METRIC_RATE, reference, estimate, "wb"))
    except PesqError as error:
        reason = error.args[0] if error.args else type(error).__name__
        reason = reason.decode() if isinstance(reason, bytes) else str(reason)
        raise MetricError(f"PESQ: {reason[:1].lower()}{reason[1:]}") from None


def stoi(reference: np.ndarray, estimate: np.ndarray, extended: bool = False) -> float:
    from pystoi import stoi as _stoi

    return float(_stoi(reference, estimate, METRIC_RATE, extended=extended))


# Composite measures (Hu & Loizou 2008), following the reference implementation (Loizou's composite.m):
# 30 ms Hann frames with a quarter-frame hop at 16 kHz, the wide-band PESQ in place of the reference's PESQ.
_FRAME = 480
_HOP = 120
_LPC_ORDER = 16
# Klatt's 25 critical bands for the weighted spectral slope: centres and bandwidths in Hz.
_BAND_CENTRES = np.array(
    [50, 120, 190, 260, 330, 400, 470, 540, 617.372, 703.378, 798.717, 904.128, 1020.38, 1148.30, 1288.72]
    + [1442.54, 1610.70, 1794.16, 1993.93, 2211.08, 2446.71, 2701.97, 2978.04, 3276.17, 3597.63]
)
_BANDWIDTHS = np.array(
    [70, 70, 70, 70, 70, 70, 70, 77.3724, 86.0056, 95.3398, 105.411, 116.256, 127.914, 140.423, 153.823]
    + [168.154, 183.457, 199.776, 217.153, 235.631, 255.255, 276.072, 298.126, 321.465, 346.136]
)


def _frames(signal: np.ndarray) -> np.ndarray:
    """Hann-windowed (frames, 480) view of a 16 kHz signal."""
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, _FRAME + 1) / (_FRAME + 1)))
    count = max(0, (len(signal) - _FRAME) // _HOP + 1)
    index = np.arange(_FRAME)[None, :] + _HOP * np.arange(count)[:, None]
    return signal[index] * window


def top_band_lsd(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Log-spectral distance (dB) over TOP_BAND_HZ: per frame, the RMS over bins of the difference of the power
    spectra in dB, averaged over frames; NaN when the rate leaves no such band (below 32 kHz)."""
    top = min(TOP_BAND_HZ[1], 0.95 * sample_rate / 2)
    if top <= TOP_BAND_HZ[0] + 1000:
        return math.nan
    length = 2 ** math.ceil(math.log2(LSD_FRAME_SECONDS * sample_rate))
    frequencies = np.fft.rfftfreq(length, 1 / sample_rate)
    band = (frequencies >= TOP_BAND_HZ[0]) & (frequencies < top)
    window = np.hanning(length)
    spectra = [
        np.abs(np.fft.rfft(_padded_frames(signal, length) * window, axis=-1)[:, band]) ** 2
        for signal in (reference, estimate)
    ]
    floor = 1e-10 * max(spectra[0].max(), 1e-20)  # 100 dB below the reference's peak
    difference = 10 * np.log10(spectra[0] + floor) - 10 * np.log10(spectra[1] + floor)
    return float(np.mean(np.sqrt(np.mean(difference**2, axis=-1))))


def _padded_frames(signal: np.ndarray, length: int) -> np.ndarray:
    """Frames of ``length`` every ``length // 2`` samples, the last one zero-padded."""
    hop = length // 2
    count = max(1, math.ceil((len(signal) - length) / hop) + 1)
    padded = np.pad(np.asarray(signal, dtype=np.float64), (0, (count - 1) * hop + length - len(signal)))
    return np.lib.stride_tricks.sliding_window_view(padded, length)[::hop]


def segmental_snr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean frame SNR in dB, each frame clipped to [-10, 35] dB."""
    clean, noise = _frames(reference), _frames(reference) - _frames(estimate)
    eps = np.finfo(np.float64).eps
    frame_snr = 10 * np.log10(np.sum(clean**2, axis=1) / (np.sum(noise**2, axis=1) + eps) + eps)
    return float(np.mean(np.clip(frame_snr, -10, 35)))


def _lpc(autocorrelation: np.ndarray) -> np.ndarray:
    """Prediction-error filters [1, -a1, ..., -ap] of (frames, p + 1) autocorrelations (Levinson-Durbin)."""
    frames, order = autocorrelation.shape[0], autocorrelation.shape[1] - 1
    a = np.zeros((frames, order))
    error = autocorrelation[:, 0].copy()
    for i in range(order):
        k = (autocorrelation[:, i + 1] - np.sum(a[:, :i] * autocorrelation[:, i:0:-1], axis=1)) / error
        a[:, :i] = a[:, :i] - k[:, None] * a[:, i - 1 :: -1][:, :i]
        a[:, i] = k
        error = error * (1 - k**2)
    return np.concatenate([np.ones((frames, 1)), -a], axis=1)


def log_likelihood_ratio(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-frame LLR of the estimate's LPC model against the reference's (order 16)."""

    def autocorrelation(frames: np.ndarray) -> np.ndarray:
        power = np.abs(np.fft.rfft(frames, 2 * _FRAME, axis=1)) ** 2
        r = np.fft.irfft(power, axis=1)[:, : _LPC_ORDER + 1]
        r[:, 0] += 1e-10  # a faint white floor keeps digitally silent frames solvable
        return r

    r_ref, r_est = autocorrelation(_frames(reference)), autocorrelation(_frames(estimate))
    a_ref, a_est = _lpc(r_ref), _lpc(r_est)
    lags = np.abs(np.subtract.outer(np.arange(_LPC_ORDER + 1), np.arange(_LPC_ORDER + 1)))
    toeplitz = r_ref[:, lags]
    numerator = np.einsum("fi,fij,fj->f", a_est, toeplitz, a_est)
    denominator = np.einsum("fi,fij,fj->f", a_ref, toeplitz, a_ref)
    return np.log(numerator / denominator)


def _band_filters() -> np.ndarray:
    half = 512  # half of the 1024-point FFT
    nyquist = METRIC_RATE / 2
    centres = np.floor(_BAND_CENTRES / nyquist * half)
    widths = _BANDWIDTHS / nyquist * half
    norm = np.log(_BANDWIDTHS[0]) - np.log(_BANDWIDTHS)
    bins = np.arange(half)
    filters = np.exp(-11 * ((bins[None, :] - centres[:, None]) / widths[:, None]) ** 2 + norm[:, None])
    return np.where(filters > math.exp(-30 / (2 * 2.303)), filters, 0.0)


def weighted_spectral_slope(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-frame Klatt weighted spectral slope distance over 25 critical bands."""
    filters = _band_filters()

    def bands(signal: np.ndarray) -> np.ndarray:
        power = np.abs(np.fft.fft(_frames(signal), 1024, axis=1)[:, :512]) ** 2
        return 10 * np.log10(np.maximum(power @ filters.T, 1e-10))

    def weights(energy: np.ndarray, slope: np.ndarray) -> np.ndarray:
        # The nearest local peak of each band, indexed as in the reference implementation.
        frames, last = np.arange(len(energy)), slope.shape[1] - 1
        up = np.empty(slope.shape, dtype=int)
        down = np.empty(slope.shape, dtype=int)
        up[:, last] = last
        for i in range(last - 1, -1, -1):
            up[:, i] = np.where(slope[:, i] <= 0, i, up[:, i + 1])
        down[:, 0] = np.where(slope[:, 0] > 0, 0, -1)
        for i in range(1, last + 1):
            down[:, i] = np.where(slope[:, i] > 0, i, down[:, i - 1])
        peak_index = np.where(slope > 0, up - 1, down + 1)
        peak = energy[frames[:, None], peak_index]
        below_max = energy.max(axis=1, keepdims=True) - energy[:, :-1]
        return 20 / (20 + below_max) / (1 + peak - energy[:, :-1])

    e_ref, e_est = bands(reference), bands(estimate)
    s_ref, s_est = np.diff(e_ref, axis=1), np.diff(e_est, axis=1)
    w = (weights(e_ref, s_ref) + weights(e_est, s_est)) / 2
    return np.sum(w * (s_ref - s_est) ** 2, axis=1) / np.sum(w, axis=1)


def _mean_of_best(values: np.ndarray, share: float = 0.95) -> float:
    return float(np.mean(np.sort(values)[: max(1, round(len(values) * share))]))


def composite(reference: np.ndarray, estimate: np.ndarray, pesq_score: float) -> dict[str, float]:
    """CSIG, CBAK and COVL (each within [1, 5]) of 16 kHz signals, given their PESQ."""
    llr = _mean_of_best(log_likelihood_ratio(reference, estimate))
    wss = _mean_of_best(weighted_spectral_slope(reference, estimate))
    seg = segmental_snr(reference, estimate)
    raw = {
        "csig": 3.093 - 1.029 * llr + 0.603 * pesq_score - 0.009 * wss,
        "cbak": 1.634 + 0.478 * pesq_score - 0.007 * wss + 0.063 * seg,
        "covl": 1.594 + 0.805 * pesq_score - 0.512 * llr - 0.007 * wss,
    }
    return {name: float(np.clip(value, 1, 5)) for name, value in raw.items()}


def score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> Scores:
    """All metrics for one mono pair at ``sample_rate``; lengths are aligned to the shorter signal.

    PESQ, STOI and the composite measures are computed at 16 kHz, SI-SDR, SNR and the top band's LSD at
    ``sample_rate`` (the LSD is NaN, without a note, where the rate has no band above 11 kHz)."""
    length = min(len(reference), len(estimate))
    if length == 0:
        raise MetricError("nothing to score: a signal is empty")
    reference, estimate = reference[:length], estimate[:length]
    ref16 = resample(reference, sample_rate, METRIC_RATE).astype(np.float64)
    est16 = resample(estimate, sample_rate, METRIC_RATE).astype(np.float64)
    values = {
        "stoi": stoi(ref16, est16),
        "estoi": stoi(ref16, est16, extended=True),
        "si_sdr": si_sdr(reference, estimate),
        "snr": snr(reference, estimate),
        "top_band_lsd": top_band_lsd(reference, estimate, sample_rate),
    }
    problems = {}
    if not np.any(reference):
        problems["si_sdr"] = problems["snr"] = "the clean signal is silent"
    try:
        values["pesq"] = pesq_wb(ref16, est16)
        values.update(composite(ref16, est16, values["pesq"]))
    except MetricError as error:
        for name in ("pesq", "csig", "cbak", "covl"):
            values[name], problems[name] = math.nan, str(error)
    return Scores({name: values[name] for name in METRICS}, problems)


def estimate_delay(reference: np.ndarray, signal: np.ndarray, max_delay: int) -> int:
    """How many samples ``signal`` lags ``reference`` (negative: it leads), by cross-correlation."""
    from scipy.signal import correlate

    length = min(len(reference), len(signal))
    correlation = correlate(signal[:length], reference[:length], mode="full", method="fft")
    lags = np.arange(-length + 1, length)
    window = np.abs(lags) <= max_delay
    return int(lags[window][np.argmax(correlation[window])])
