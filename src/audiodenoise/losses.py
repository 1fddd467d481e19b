"""Training losses on magnitude patches, and the validation metric that picks the best checkpoint."""

from __future__ import annotations

import torch

from .model import UNet
from .spectral import SpectralConfig, magnitude_to_features

LOSSES = ("compressed-mse", "magnitude-mse", "log-mse", "huber-db")
DEFAULT_LOSS = {"mask": "compressed-mse", "noise": "huber-db"}  # "huber-db" with the noise target is the reference


def enhance(
    model: UNet, noisy: torch.Tensor, spectral: SpectralConfig, network: torch.nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The enhanced magnitude and its scaled-dB features for a batch of noisy magnitude patches.

    ``network`` runs the model (a DDP or compiled wrapper of it); by default the model itself."""
    features = magnitude_to_features(noisy, spectral)
    output = (model if network is None else network)(features).float()
    if model.config.target == "noise":  # the reference subtracts the predicted noise in the scaled-dB domain
        enhanced_features = features - output
        return noisy * model.gain(output, spectral.db_scale), enhanced_features
    enhanced = output * noisy
    return enhanced, magnitude_to_features(enhanced, spectral)


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


def magnitude_error(enhanced: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """Sums of clean energy and of error energy, for the magnitude SNR of a validation set."""
    return float(torch.sum(clean.double() ** 2)), float(torch.sum((enhanced.double() - clean) ** 2))
