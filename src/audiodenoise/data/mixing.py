"""Cleaning and mixing: silent-frame removal, noise looping, SNR mixing and level."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLEAN_TARGETS = ("magnitude", "phase-sensitive")  # what the clean patch of a pair holds (data/pairs.py)


@dataclass(frozen=True)
class MixConfig:
    max_clean_seconds: float = 10.0
    silence_frame_ms: float = 20.0
    silence_threshold_db: float = -40.0  # frames this far below the loudest frame are silent
    max_pause_ms: float = 0.0  # of each silent run, keep this much; 0 removes every silent frame (the reference)
    edge_pause_ms: float = 0.0  # up to this much silence is added before and after the speech (0: none)
    snr_db: tuple[float, float] = (-5.0, 20.0)
    level_db: tuple[float, float] = (-35.0, -15.0)  # RMS of the noisy mix, dBFS
    peak_limit: float = 0.99
    synthetic_noise_fraction: float = 0.3
    clean_fraction: float = 0.0  # share of mixes left without noise, to learn to pass clean speech through
    clean_target: str = "magnitude"

    def __post_init__(self):
        if self.clean_target not in CLEAN_TARGETS:
            raise ValueError(f"unknown clean target {self.clean_target!r}; choose from {', '.join(CLEAN_TARGETS)}")


def remove_silence(
    signal: np.ndarray, sample_rate: int, frame_ms: float, threshold_db: float, max_pause_ms: float = 0.0
) -> np.ndarray:
    """Drop frames whose energy is ``threshold_db`` below the loudest frame, keeping ``max_pause_ms`` of each pause."""
    frame = max(1, int(sample_rate * frame_ms / 1000))
    n_frames = -(-len(signal) // frame)
    padded = np.zeros(n_frames * frame, dtype=signal.dtype)
    padded[: len(signal)] = signal
    frames = padded.reshape(n_frames, frame)
    energy = np.mean(frames.astype(np.float64) ** 2, axis=1)
    if energy.max() <= 0:
        return signal[:0]
    keep = 10 * np.log10(energy / energy.max() + 1e-20) > threshold_db
    pause_frames = int(max_pause_ms / frame_ms)
    if pause_frames:
        # Position of each frame within its run of silent frames.
        run_start = np.maximum.accumulate(np.where(keep, np.arange(n_frames), -1))
        keep |= np.arange(n_frames) - run_start <= pause_frames
    kept = frames[keep].reshape(-1)
    # The last frame may be zero-padded; trim that padding off again.
    if keep[-1]:
        kept = kept[: len(kept) - (n_frames * frame - len(signal))]
    return kept


def fit_length(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Loop or crop ``noise`` to ``length`` samples, starting at a random offset."""
    start = int(rng.integers(len(noise)))
    repeats = -(-(start + length) // len(noise))
    return np.tile(noise, repeats)[start : start + length]


def power(signal: np.ndarray) -> float:
    return float(np.mean(signal.astype(np.float64) ** 2))


def mix(
    clean: np.ndarray,
    noise: np.ndarray,
    snr_db: float,
    level_db: float,
    peak_limit: float,
    speech_power: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mix at ``snr_db`` against ``speech_power`` (that of active speech; by default all of ``clean``),
    set the mix level, and scale both so nothing clips."""
    speech_power = power(clean) if speech_power is None else speech_power
    noise_power = power(noise)
    noise_gain = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10))) if noise_power > 0 else 0.0
    noisy = clean + noise_gain * noise
    gain = 10 ** (level_db / 20) / np.sqrt(power(noisy) + 1e-20)
    peak = np.max(np.abs(noisy)) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return (clean * gain).astype(np.float32), (noisy * gain).astype(np.float32)
