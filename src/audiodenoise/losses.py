"""Training losses on magnitude patches and on the waveforms they stand for, and the validation metrics that
pick the best checkpoint."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from .spectral import SpectralConfig, istft, magnitude_to_features

# Each architecture names its default; "hybrid" scores complex spectra, so it needs pairs that carry them.
LOSSES = ("compressed-mse", "magnitude-mse", "log-mse", "huber-db", "hybrid")
# The hybrid loss's weights of the compressed complex and magnitude MSEs (GTCRN's, Xiaobin-Rong/gtcrn loss.py).
HYBRID_COMPLEX_WEIGHT, HYBRID_MAGNITUDE_WEIGHT = 30.0, 70.0
SILENT_PATCH_DB = -30.0  # patches whose clean energy is this far below the noisy one have no SI-SDR
# SI-SDR is soft-limited to about this: otherwise the near-exact patches of clean input (over 100 dB) outweigh
# every noisy one in a mean of decibels.
SI_SDR_CEILING_DB = 30.0
# STOI's measure (Taal et al. 2011): one-third-octave band envelopes from 150 Hz, frames of about 12.8 ms, and an
# estimate clipped at 15 dB above the clean envelope before the two are correlated.
STOI_BANDS = 15
STOI_LOWEST_CENTRE_HZ = 150.0
STOI_FRAME_SECONDS = 0.0128
STOI_CLIP_DB = 15.0


def enhance(
    model: nn.Module, noisy: torch.Tensor, spectral: SpectralConfig, network: nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The enhanced magnitude and its scaled-dB features for a batch of noisy magnitude patches, as the model's
    output contract (``model.enhance``) makes them.

    ``network`` runs the model (a DDP or compiled wrapper of it); by default the model itself."""
    features = magnitude_to_features(noisy, spectral)
    output = (model if network is None else network)(features).float()
    return model.enhance(noisy, features, output, spectral)


def loss_value(
    name: str,
    enhanced: torch.Tensor,
    enhanced_features: torch.Tensor,
    clean: torch.Tensor,
    spectral: SpectralConfig,
    compression: float = 0.3,
) -> torch.Tensor:
    if name == "compressed-mse":
        return torch.mean((enhanced.clamp_min(1e-8) ** compression - clean.clamp_min(1e-8) ** compression) ** 2)
    if name == "magnitude-mse":
        return torch.mean((enhanced - clean) ** 2)
    clean_features = magnitude_to_features(clean, spectral)
    if name == "log-mse":
        return torch.mean((enhanced_features - clean_features) ** 2)
    if name == "huber-db":
        return torch.nn.functional.huber_loss(enhanced_features, clean_features)
    raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")


def compressed(spectrum: torch.Tensor, compression: float) -> torch.Tensor:
    """A complex spectrum with its magnitude raised to ``compression`` and its phase kept."""
    magnitude = spectrum.abs().clamp_min(1e-8)
    return spectrum * (magnitude ** (compression - 1))


def hybrid_loss(enhanced_spec: torch.Tensor, clean_spec: torch.Tensor, compression: float) -> torch.Tensor:
    """Weighted MSEs of the compressed complex spectrum and of the compressed magnitude."""
    enhanced, clean = compressed(enhanced_spec, compression), compressed(clean_spec, compression)
    complex_error = (enhanced - clean).abs().pow(2).mean()
    magnitude_error = (enhanced.abs() - clean.abs()).pow(2).mean()
    return HYBRID_COMPLEX_WEIGHT * complex_error + HYBRID_MAGNITUDE_WEIGHT * magnitude_error


def overattenuation_loss(enhanced: torch.Tensor, clean: torch.Tensor, compression: float) -> torch.Tensor:
    """Mean squared shortfall of the compressed enhanced magnitude below the clean one (bins removed too much)."""
    shortfall = clean.clamp_min(1e-8) ** compression - enhanced.clamp_min(1e-8) ** compression
    return shortfall.clamp_min(0.0).pow(2).mean()


def magnitude_error(enhanced: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """Sums of clean energy and of error energy, for the magnitude SNR of a validation set."""
    return float(torch.sum(clean.double() ** 2)), float(torch.sum((enhanced.double() - clean) ** 2))


def with_noisy_phase(enhanced: torch.Tensor, noisy_spec: torch.Tensor) -> torch.Tensor:
    """The complex spectrum of an enhanced magnitude with the noisy phase."""
    return enhanced * (noisy_spec / noisy_spec.abs().clamp_min(1e-12))


def patch_si_sdr(
    enhanced_spec: torch.Tensor, noisy_spec: torch.Tensor, clean_spec: torch.Tensor, spectral: SpectralConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """SI-SDR (dB, soft-limited to SI_SDR_CEILING_DB) of each patch's waveform, the enhanced complex spectrum's
    against the clean spectrum's, and which patches hold enough speech for it to mean anything.

    Both waveforms are overlap-adds of the same frames without the window-envelope division, so the edges of a
    patch are tapered alike in both."""
    estimate = istft(enhanced_spec.squeeze(1), spectral)[0]
    reference = istft(clean_spec.squeeze(1), spectral)[0]
    reference_energy = reference.pow(2).sum(-1)
    scale = (estimate * reference).sum(-1, keepdim=True) / reference_energy.clamp_min(1e-12).unsqueeze(-1)
    target = scale * reference
    target_energy = target.pow(2).sum(-1)
    error_energy = (estimate - target).pow(2).sum(-1) + 10 ** (-SI_SDR_CEILING_DB / 10) * target_energy
    ratio = target_energy.clamp_min(1e-12) / error_energy.clamp_min(1e-12)
    return 10 * torch.log10(ratio), holds_speech(noisy_spec.abs(), clean_spec.abs())


def holds_speech(noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Which magnitude patches hold speech: clean energy above SILENT_PATCH_DB relative to the noisy one."""
    return clean.pow(2).sum((-3, -2, -1)) > noisy.pow(2).sum((-3, -2, -1)) * 10 ** (SILENT_PATCH_DB / 10)


def waveform_loss(
    enhanced_spec: torch.Tensor, noisy_spec: torch.Tensor, clean_spec: torch.Tensor, spectral: SpectralConfig
) -> torch.Tensor:
    """Negative mean SI-SDR (dB) over the patches that hold speech; 0 for a batch without any."""
    si_sdr, voiced = patch_si_sdr(enhanced_spec, noisy_spec, clean_spec, spectral)
    if not voiced.any():
        return enhanced_spec.real.new_zeros(())
    return -si_sdr[voiced].mean()


@lru_cache(maxsize=8)
def third_octave_bands(spectral: SpectralConfig) -> torch.Tensor:
    """(bands, bins) ones where a bin lies in one of STOI's one-third-octave bands, placed as pystoi places them;
    bands too narrow to hold a bin of this STFT, or above its Nyquist frequency, are left out. Built once per
    STFT setting (every training step asks for it); do not modify the result."""
    frequencies = torch.arange(spectral.n_bins) * spectral.sample_rate / spectral.n_fft
    centres = STOI_LOWEST_CENTRE_HZ * 2 ** (torch.arange(STOI_BANDS) / 3)
    bands = torch.zeros(STOI_BANDS, spectral.n_bins)
    for band, centre in enumerate(centres):
        low, high = (int(torch.argmin((frequencies - centre * 2**edge) ** 2)) for edge in (-1 / 6, 1 / 6))
        if centre * 2 ** (1 / 6) <= spectral.sample_rate / 2:
            bands[band, low:high] = 1.0
    return bands[bands.sum(1) > 0]


def band_envelopes(magnitude: torch.Tensor, spectral: SpectralConfig) -> torch.Tensor:
    """(batch, 1, bins, frames) magnitudes -> (batch, bands, frames') one-third-octave band amplitudes, frames
    pooled to about STOI's 12.8 ms."""
    pool = max(1, round(STOI_FRAME_SECONDS * spectral.sample_rate / spectral.hop_length))
    bands = third_octave_bands(spectral).to(magnitude.device)
    power = torch.einsum("kf,bft->bkt", bands, magnitude.squeeze(1).float() ** 2)
    usable = power.shape[-1] // pool * pool
    return (power[..., :usable].unflatten(-1, (-1, pool)).mean(-1) + 1e-12).sqrt()


def envelope_correlation(enhanced: torch.Tensor, clean: torch.Tensor, spectral: SpectralConfig) -> torch.Tensor:
    """STOI's intermediate measure on each patch: the mean over bands of the correlation between the clean band
    envelope and the enhanced one, scaled to the clean energy and clipped. (batch,) in [-1, 1]."""
    target, estimate = band_envelopes(clean, spectral), band_envelopes(enhanced, spectral)
    scale = target.norm(dim=-1, keepdim=True) / estimate.norm(dim=-1, keepdim=True)
    estimate = torch.minimum(estimate * scale, target * (1 + 10 ** (STOI_CLIP_DB / 20)))
    target = target - target.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    product = (target * estimate).sum(-1)
    return (product / (target.pow(2).sum(-1) * estimate.pow(2).sum(-1) + 1e-12).sqrt()).mean(-1)


def envelope_loss(
    enhanced: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor, spectral: SpectralConfig
) -> torch.Tensor:
    """One minus the mean envelope correlation over the patches that hold speech; 0 for a batch without any."""
    voiced = holds_speech(noisy, clean)
    if not voiced.any():
        return enhanced.new_zeros(())
    return 1 - envelope_correlation(enhanced[voiced], clean[voiced], spectral).mean()
