"""One training mixture: read a clean clip and a noise, clean them, mix, and cut magnitude patch pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..audio import AudioError, read_mono
from ..spectral import SpectralConfig, signal_spectrum, split_patches
from . import augment, synth
from .mixing import MixConfig, fit_length, mix, power, remove_silence

PatchPair = tuple[np.ndarray, np.ndarray]  # (noisy, clean) magnitudes, each (patches, bins, frames)


def without_silence(signal: np.ndarray, spectral: SpectralConfig, mixing: MixConfig) -> np.ndarray:
    return remove_silence(
        signal, spectral.sample_rate, mixing.silence_frame_ms, mixing.silence_threshold_db, mixing.max_pause_ms
    )


def _cleaned(path: Path, spectral: SpectralConfig, mixing: MixConfig) -> np.ndarray:
    return without_silence(read_mono(path, spectral.sample_rate), spectral, mixing)


def mix_signals(
    clean_path: Path,
    noises: tuple[Path, ...],
    talkers: tuple[Path, ...],
    rng: np.random.Generator,
    spectral: SpectralConfig,
    mixing: MixConfig,
) -> tuple[tuple[np.ndarray, np.ndarray] | None, list[str]]:
    """One mixture's (noisy, clean) signals (None if the clean clip is too long or silent), and the errors of
    unreadable sources.

    ``noises`` and ``talkers`` (speech for babble) are the split's own files. An unreadable clean clip raises
    AudioError; an unreadable noise or talker is reported and replaced by synthetic noise or left out."""
    rate = spectral.sample_rate
    errors: list[str] = []
    clean = read_mono(clean_path, rate)
    if len(clean) > mixing.max_clean_seconds * rate:
        return None, errors
    clean = without_silence(clean, spectral, mixing)
    clean = augment.speed_and_equalise(clean, rng, mixing.speech_speed, mixing.speech_eq_db, rate)
    if len(clean) < spectral.n_fft:
        return None, errors

    def noise_file() -> np.ndarray | None:
        try:
            return _cleaned(noises[int(rng.integers(len(noises)))], spectral, mixing)
        except AudioError as error:
            errors.append(str(error))
            return None

    def noise_variant(noise: np.ndarray) -> np.ndarray:
        return augment.speed_and_equalise(noise, rng, mixing.noise_speed, mixing.noise_eq_db, rate)

    noise = None
    if mixing.clean_fraction and rng.uniform() < mixing.clean_fraction:
        noise = np.zeros(len(clean), np.float32)
    elif noises and rng.uniform() >= mixing.synthetic_noise_fraction:
        noise = noise_file()
    if noise is None or len(noise) < spectral.n_fft:  # no noise file, or one too short once cleaned
        kind = synth.KINDS[int(rng.integers(len(synth.KINDS)))]

        def babble_talkers(n: int) -> list[np.ndarray]:
            picks = rng.choice(len(talkers), size=min(n, len(talkers)), replace=False)
            voices = []
            for index in picks:
                try:
                    voices.append(_cleaned(talkers[index], spectral, mixing))
                except AudioError as error:
                    errors.append(str(error))
            return [voice for voice in voices if len(voice)]

        noise = synth.synthesize(kind, len(clean), rate, rng, babble_talkers)
    speech_power = power(clean)
    edge = int(mixing.edge_pause_ms * rate / 1000)
    if edge:
        clean = np.pad(clean, (int(rng.integers(edge + 1)), int(rng.integers(edge + 1))))
    noise = fit_length(noise_variant(noise), len(clean), rng)
    if noises and mixing.second_noise_fraction and rng.uniform() < mixing.second_noise_fraction:
        second = noise_file()
        if second is not None and len(second):
            noise = augment.add_second_noise(noise, noise_variant(second), rng)
    if mixing.noise_drift_db:
        noise = augment.drift_level(noise, rng, mixing.noise_drift_db, rate)
    reverberation = None
    if mixing.reverb_fraction and rng.uniform() < mixing.reverb_fraction:
        clean, reverberation = augment.reverberate(clean, rng, mixing, rate)
    if mixing.band_limit_fraction and rng.uniform() < mixing.band_limit_fraction:  # as a phone would, on all of it
        curve = augment.random_band_limit(rng, mixing.band_limit_hz)
        clean, noise = augment.filtered(clean, rate, curve), augment.filtered(noise, rate, curve)
        if reverberation is not None:
            reverberation = augment.filtered(reverberation, rate, curve)
    clean, noisy = mix(
        clean,
        noise,
        snr_db=rng.uniform(*mixing.snr_db),
        level_db=rng.uniform(*mixing.level_db),
        peak_limit=mixing.peak_limit,
        speech_power=speech_power,
        reverberation=reverberation,
    )
    return (noisy, clean), errors


def spectrum_patches(signals: tuple[np.ndarray, np.ndarray], spectral: SpectralConfig) -> tuple[torch.Tensor, ...]:
    """The complex (noisy, clean) STFT patches of a (noisy, clean) mixture, each (patches, bins, frames)."""
    noisy_spec, clean_spec = signal_spectrum(torch.from_numpy(np.stack(signals)), spectral)
    return split_patches(noisy_spec, spectral), split_patches(clean_spec, spectral)


def target_patches(noisy_spec: torch.Tensor, clean_spec: torch.Tensor, clean_target: str) -> tuple[torch.Tensor, ...]:
    """(noisy magnitude, clean target) patches from complex ones.

    The "phase-sensitive" target is the clean magnitude times the cosine of its phase error against the noisy
    phase, floored at 0: a mask that reaches it minimises the complex STFT error of the output, which keeps the
    noisy phase, rather than the magnitude error alone."""
    noisy = noisy_spec.abs()
    if clean_target == "magnitude":
        clean = clean_spec.abs()
    else:
        clean = ((clean_spec * noisy_spec.conj()).real / noisy.clamp_min(1e-12)).clamp_min(0.0)
    return noisy, clean


def patches(signals: tuple[np.ndarray, np.ndarray], spectral: SpectralConfig, clean_target: str) -> PatchPair:
    """The (noisy magnitude, clean target) patches of a (noisy, clean) mixture."""
    noisy, clean = target_patches(*spectrum_patches(signals, spectral), clean_target)
    return noisy.numpy(), clean.numpy()
