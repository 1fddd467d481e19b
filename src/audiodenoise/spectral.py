"""The spectral front end: the one place that knows the STFT settings, the scaling and the patch grid.

Frame ``k`` of a signal is centred on sample ``k * hop_length``; samples before 0 and after the end
are zeros. Patches are ``patch_frames`` frames long and start on multiples of ``patch_hop`` frames,
so a block of audio processed anywhere in a file sees exactly the frames the whole file would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .config import ConfigError, Settings, setting

PATCH_WEIGHTINGS = ("hann", "tail")
LOW_LATENCY_PATCH_SECONDS = 0.046  # the low-latency patch hop: 16 frames at the reference settings, 8 for "long"


@dataclass(frozen=True)
class SpectralConfig(Settings):
    sample_rate: int = setting(22050, low=8000)
    n_fft: int = setting(255, "window in samples (n_fft // 2 + 1: a multiple of 16)", low=16)
    hop_length: int = setting(63, "samples between frames", low=1)
    patch_frames: int = setting(128, low=1)
    patch_hop: int = setting(64, low=1)
    # How patch gains combine: "hann" cross-fades overlapping patches (at patch_hop = patch_frames / 2);
    # "tail" takes each frame from the patch whose last patch_hop frames hold it (low latency, no look-ahead).
    patch_weighting: str = setting("hann", choices=PATCH_WEIGHTINGS)
    # Global log-magnitude scaling: feature = (20*log10(max(|X|, amin)) - db_offset) / db_scale.
    amin: float = setting(1e-4, low=0, above=True)
    db_offset: float = -30.0
    db_scale: float = setting(40.0, low=0, above=True)

    def check(self) -> None:
        if self.hop_length > self.n_fft:
            raise ConfigError(f"hop_length: must be at most n_fft ({self.n_fft}), not {self.hop_length}")
        if self.patch_hop > self.patch_frames:
            raise ConfigError(f"patch_hop: must be at most patch_frames ({self.patch_frames}), not {self.patch_hop}")

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1


# Named settings for new datasets and models (a checkpoint always carries its own). "reference" is the seed's
# design's 11.6 ms window; "long" a 23 ms window at the same patch size, which resolves speech harmonics.
STFT_PRESETS = {
    "reference": SpectralConfig(),
    "long": SpectralConfig(n_fft=511, hop_length=128),
}
DEFAULT_STFT = "reference"


def _window(config: SpectralConfig, device=None) -> torch.Tensor:
    return torch.hann_window(config.n_fft, periodic=True, dtype=torch.float32, device=device)


def stft(signal: torch.Tensor, config: SpectralConfig) -> torch.Tensor:
    """Complex frames of ``signal`` (..., samples) -> (..., bins, frames); no padding is added.

    Frame ``i`` covers samples ``[i*hop, i*hop + n_fft)`` of ``signal``.
    """
    frames = signal.unfold(-1, config.n_fft, config.hop_length) * _window(config, signal.device)
    return torch.fft.rfft(frames, n=config.n_fft).transpose(-1, -2)


def istft(spec: torch.Tensor, config: SpectralConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlap-add of (..., bins, frames) -> (signal, window envelope), before envelope division.

    Returns the weighted sum of frames and the summed squared window, so callers divide only where
    every contributing frame is present.
    """
    window = _window(config, spec.device)
    frames = torch.fft.irfft(spec.transpose(-1, -2), n=config.n_fft) * window
    n_frames = frames.shape[-2]
    length = (n_frames - 1) * config.hop_length + config.n_fft
    lead = frames.shape[:-2]
    folded = torch.nn.functional.fold(
        frames.reshape(-1, n_frames, config.n_fft).transpose(1, 2),
        output_size=(1, length),
        kernel_size=(1, config.n_fft),
        stride=(1, config.hop_length),
    ).reshape(*lead, length)
    envelope = torch.nn.functional.fold(
        (window**2).reshape(1, config.n_fft, 1).expand(1, config.n_fft, n_frames),
        output_size=(1, length),
        kernel_size=(1, config.n_fft),
        stride=(1, config.hop_length),
    ).reshape(length)
    return folded, envelope


def magnitude_to_features(magnitude: torch.Tensor, config: SpectralConfig) -> torch.Tensor:
    db = 20.0 * torch.log10(magnitude.clamp_min(config.amin))
    return (db - config.db_offset) / config.db_scale


def patch_weights(config: SpectralConfig, device=None) -> torch.Tensor:
    """Weights over a patch's frames: a Hann cross-fade (summing to one at a 50 % patch hop), or ones on its tail."""
    if config.patch_weighting == "tail":
        weights = torch.zeros(config.patch_frames, device=device)
        weights[-config.patch_hop :] = 1.0
        return weights
    return torch.hann_window(config.patch_frames, periodic=True, dtype=torch.float32, device=device)


def low_latency_settings(config: SpectralConfig) -> SpectralConfig:
    """The same model's settings with each frame taken from the tail of a patch, patches about every
    LOW_LATENCY_PATCH_SECONDS (a power of two of frames, at most a patch)."""
    frames = LOW_LATENCY_PATCH_SECONDS * config.sample_rate / config.hop_length
    patch_hop = min(2 ** max(0, round(math.log2(frames))), config.patch_frames)
    return replace(config, patch_hop=patch_hop, patch_weighting="tail")


def frames_to_patches(spec: torch.Tensor, config: SpectralConfig) -> torch.Tensor:
    """(channels, bins, frames) -> (channels, patches, bins, patch_frames), patches every ``patch_hop`` frames."""
    return spec.unfold(-1, config.patch_frames, config.patch_hop).permute(0, 2, 1, 3)


def overlap_add_patches(patches: torch.Tensor, n_frames: int, config: SpectralConfig) -> torch.Tensor:
    """(channels, patches, bins, patch_frames) -> (channels, bins, frames), cross-faded by ``patch_weights``."""
    channels, n_patches, bins, _ = patches.shape
    weights = patch_weights(config, patches.device)
    weighted = (patches * weights).permute(0, 2, 3, 1).reshape(channels, bins * config.patch_frames, n_patches)
    fold = dict(output_size=(1, n_frames), kernel_size=(1, config.patch_frames), stride=(1, config.patch_hop))
    total = torch.nn.functional.fold(weighted, **fold).reshape(channels, bins, n_frames)
    norm = torch.nn.functional.fold(weights.reshape(1, -1, 1).expand(1, -1, n_patches).contiguous(), **fold)
    return total / norm.reshape(1, 1, n_frames).clamp_min(1e-6)


@dataclass(frozen=True)
class BlockPlan:
    """Which frames and samples one output block of frames ``[first, last)`` needs."""

    first_frame: int  # first output frame (a multiple of patch_hop)
    last_frame: int
    context_first_frame: int  # first frame computed; patches start here
    context_last_frame: int
    n_patches: int

    def input_span(self, config: SpectralConfig) -> tuple[int, int]:
        """Absolute sample range [start, stop) whose frames the block computes."""
        start = self.context_first_frame * config.hop_length - config.n_fft // 2
        stop = (self.context_last_frame - 1) * config.hop_length - config.n_fft // 2 + config.n_fft
        return start, stop

    def output_span(self, config: SpectralConfig) -> tuple[int, int]:
        return self.first_frame * config.hop_length, self.last_frame * config.hop_length


def plan_block(first_frame: int, last_frame: int, config: SpectralConfig) -> BlockPlan:
    """Plan the frames a block needs so that its output equals whole-signal processing."""
    if first_frame % config.patch_hop or last_frame % config.patch_hop:
        raise ValueError("block edges must sit on the patch grid")
    # Output samples of the block depend on frames within this reach of its edges.
    reach = (config.n_fft // 2) // config.hop_length + 1
    lo, hi = first_frame - reach, last_frame + reach
    step, length = config.patch_hop, config.patch_frames
    # Patches whose weighted frames [weighted_from, length) meet frames [lo, hi).
    weighted_from = length - step if config.patch_weighting == "tail" else 0
    first_patch = math.floor((lo - length) / step) + 1
    last_patch = math.floor((hi - 1 - weighted_from) / step)
    return BlockPlan(
        first_frame=first_frame,
        last_frame=last_frame,
        context_first_frame=first_patch * step,
        context_last_frame=last_patch * step + length,
        n_patches=last_patch - first_patch + 1,
    )


def signal_spectrum(signal: torch.Tensor, config: SpectralConfig) -> torch.Tensor:
    """Complex STFT of a whole signal on the frame grid (frame k centred on sample k*hop)."""
    half = config.n_fft // 2
    padded = torch.nn.functional.pad(signal, (half, config.n_fft - half + config.hop_length))
    return stft(padded, config)


def split_patches(spec: torch.Tensor, config: SpectralConfig) -> torch.Tensor:
    """(bins, frames) -> (patches, bins, patch_frames) on the patch grid, zero-padding the end."""
    n_frames = spec.shape[-1]
    n_patches = max(1, math.ceil((n_frames - config.patch_frames) / config.patch_hop) + 1)
    total = (n_patches - 1) * config.patch_hop + config.patch_frames
    spec = torch.nn.functional.pad(spec, (0, total - n_frames))
    return spec.unfold(-1, config.patch_frames, config.patch_hop).permute(1, 0, 2)


def spectrum_parts(spectrum: torch.Tensor) -> torch.Tensor:
    """A complex (batch, bins, frames) spectrum -> its (batch, 2, bins, frames) real and imaginary parts."""
    return torch.stack([spectrum.real, spectrum.imag], dim=1)


def apply_mask(spectrum: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A complex (batch, bins, frames) spectrum times a (batch, 2, bins, frames) real/imag mask."""
    return spectrum * torch.complex(mask[:, 0], mask[:, 1])
