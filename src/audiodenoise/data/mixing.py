"""Cleaning and mixing: silent-frame removal, noise looping, SNR mixing and level, and the augmentation settings
(data/augment.py applies them)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..config import ConfigError, Settings, setting

CLEAN_TARGETS = ("magnitude", "phase-sensitive")  # what the clean patch of a pair holds (data/pairs.py)
# The augmentation settings at the values that leave a mixture alone: validation mixes use them.
UNAUGMENTED = {
    "speech_speed": (1.0, 1.0),
    "speech_eq_db": 0.0,
    "band_limit_fraction": 0.0,
    "reverb_fraction": 0.0,
    "noise_speed": (1.0, 1.0),
    "noise_eq_db": 0.0,
    "second_noise_fraction": 0.0,
    "noise_drift_db": 0.0,
}


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
    # Augmentation of the training mixes (never of validation ones); each draws nothing from the mixture's
    # generator at its UNAUGMENTED value.
    speech_speed: tuple[float, float] = setting(
        (1.0, 1.0),
        "speed factors of the speech, by resampling (moves pitch and formants)",
        low=0.5,
        high=2,
        metavar=("MIN", "MAX"),
    )
    speech_eq_db: float = setting(0.0, "random shelves and peaks of up to this many dB on the speech", low=0, high=24)
    band_limit_fraction: float = setting(
        0.0, "share of mixes low-passed (speech, noise and target) at a cutoff in band_limit_hz", low=0, high=1
    )
    band_limit_hz: tuple[float, float] = setting((3400.0, 11000.0), low=1000, metavar=("MIN", "MAX"))
    reverb_fraction: float = setting(
        0.0, "share of mixes whose speech is in a synthetic room; the target keeps the first 50 ms", low=0, high=1
    )
    reverb_rt60: tuple[float, float] = setting(
        (0.2, 1.0), "reverberation times, seconds", low=0.05, high=3, metavar=("MIN", "MAX")
    )
    noise_speed: tuple[float, float] = setting(
        (1.0, 1.0), "speed factors of the noise, by resampling", low=0.5, high=2, metavar=("MIN", "MAX")
    )
    noise_eq_db: float = setting(0.0, "random shelves and peaks of up to this many dB on the noise", low=0, high=24)
    second_noise_fraction: float = setting(
        0.0, "share of mixes with a second noise file summed in, 0-10 dB under the first", low=0, high=1
    )
    noise_drift_db: float = setting(0.0, "the noise level wanders by up to this many dB within a mix", low=0, high=30)
    voice_share: float = setting(
        0.2, "at most this share of the training clips is synthetic speech (when voices are given)", low=0, high=0.9
    )

    def check(self) -> None:
        for name in ("snr_db", "level_db", "speech_speed", "band_limit_hz", "reverb_rt60", "noise_speed"):
            low, high = getattr(self, name)
            if low > high:
                raise ConfigError(f"{name}: the minimum {low} is above the maximum {high}")

    def unaugmented(self) -> MixConfig:
        """These settings with every augmentation off: how validation pairs are mixed."""
        return replace(self, **UNAUGMENTED)


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
    reverberation: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mix at ``snr_db`` against ``speech_power`` (that of active speech; by default all of ``clean``),
    set the mix level, and scale both so nothing clips. ``reverberation`` (the speech's late reverberation) is
    part of the noisy mix but not of the clean target."""
    speech_power = power(clean) if speech_power is None else speech_power
    noise_power = power(noise)
    noise_gain = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10))) if noise_power > 0 else 0.0
    noisy = clean + noise_gain * noise
    if reverberation is not None:
        noisy = noisy + reverberation
    gain = 10 ** (level_db / 20) / np.sqrt(power(noisy) + 1e-20)
    peak = np.max(np.abs(noisy)) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return (clean * gain).astype(np.float32), (noisy * gain).astype(np.float32)
