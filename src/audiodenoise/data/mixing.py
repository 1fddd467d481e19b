"""Cleaning and mixing: silent-frame removal, noise looping, SNR mixing and level."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, Settings, setting

CLEAN_TARGETS = ("magnitude", "phase-sensitive")  # what the clean patch of a pair holds (data/pairs.py)


@dataclass(frozen=True)
class MixConfig(Settings):
    max_clean_seconds: float = setting(10.0, "drop longer clean clips", low=0, above=True)
    silence_frame_ms: float = setting(20.0, low=0, above=True)
    silence_threshold_db: float = setting(-40.0, "silent: this far below the peak", high=0)
    max_pause_ms: float = setting(0.0, "keep this much of each pause (0: none, the seed's design)", low=0)
    edge_pause_ms: float = setting(0.0, "add up to this much silence at each end", low=0)
    snr_db: tuple[float, float] = setting((-5.0, 20.0), metavar=("MIN", "MAX"))
    level_db: tuple[float, float] = setting(
        (-35.0, -15.0), "RMS level of the mix, dBFS", high=0, metavar=("MIN", "MAX")
    )
    peak_limit: float = setting(0.99, low=0, high=1, above=True)
    synthetic_noise_fraction: float = setting(0.3, low=0, high=1)
    clean_fraction: float = setting(0.0, "share of mixes with no noise at all", low=0, high=1)
    clean_target: str = setting(
        "magnitude",
        "clean patches hold the magnitude, or the magnitude times the cosine of the noisy phase error",
        choices=CLEAN_TARGETS,
    )

    def check(self) -> None:
        for name in ("snr_db", "level_db"):
            low, high = getattr(self, name)
            if low > high:
                raise ConfigError(f"{name}: the minimum {low} is above the maximum {high}")


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
