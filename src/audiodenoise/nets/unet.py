"""The U-Net over 128x128 log-magnitude patches (the seed's, and the default's with a mask head), and its config.

Input: (batch, 1, bins, frames) scaled log-magnitudes, both sides divisible by 2**depth. Output: a gain on the
noisy magnitude (``target='mask'``), or the scaled-dB noise to subtract from the features (``target='noise'``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigError, Settings, setting
from ..spectral import SpectralConfig, magnitude_to_features

TARGETS = ("mask", "noise")
DEFAULT_LOSS = {"mask": "compressed-mse", "noise": "huber-db"}  # "huber-db" with the noise target: the seed's design
MASK_INITIAL_LOGIT = 2.0


@dataclass(frozen=True)
class UNetConfig(Settings):
    """``target='noise'`` is the seed's design: the net predicts the scaled-dB noise to subtract.
    ``target='mask'`` predicts a bounded gain in [0, 1] on the noisy magnitude."""

    target: str = setting("mask", "'noise' is the seed U-Net's design", choices=TARGETS)
    base_filters: int = setting(16, "filters of the first level, doubling at each", low=1)
    depth: int = setting(4, "down-sampling levels", low=1)
    dropout: float = setting(0.5, low=0, high=1)
    negative_slope: float = setting(0.2, low=0)


class ConvPair(nn.Sequential):
    """Two 3x3 convolutions, each followed by LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.LeakyReLU(negative_slope),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.LeakyReLU(negative_slope),
        )


class UpStep(nn.Module):
    """x2 up-sampling, a 2x2 conv that halves the filters, concat with the skip, two 3x3 convs."""

    def __init__(self, in_channels: int, negative_slope: float):
        super().__init__()
        out_channels = in_channels // 2
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        # 'same' padding for an even kernel, as Keras does it: the extra row/column goes last.
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.up_conv = nn.Conv2d(in_channels, out_channels, 2)
        self.act = nn.LeakyReLU(negative_slope)
        self.convs = ConvPair(in_channels, out_channels, negative_slope)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.act(self.up_conv(self.pad(self.upsample(x))))
        return self.convs(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    config_class = UNetConfig
    input = "magnitude"  # see nets/__init__.py

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        slope = config.negative_slope
        widths = [config.base_filters * 2**i for i in range(config.depth)]
        self.encoder = nn.ModuleList()
        in_channels = 1
        for width in widths:
            self.encoder.append(ConvPair(in_channels, width, slope))
            in_channels = width
        self.encoder_dropout = nn.Dropout(config.dropout)  # before the last pool
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvPair(in_channels, in_channels * 2, slope)
        self.bottleneck_dropout = nn.Dropout(config.dropout)
        self.decoder = nn.ModuleList(UpStep(w * 2, slope) for w in reversed(widths))
        self.head = nn.Sequential(
            nn.Conv2d(widths[0], 2, 3, padding=1),
            nn.LeakyReLU(slope),
            nn.Conv2d(2, 1, 1),
            nn.Sigmoid() if config.target == "mask" else nn.Tanh(),
        )
        if config.target == "mask":
            # Start close to passing the input through (gain 0.88) rather than halving it.
            nn.init.constant_(self.head[2].bias, MASK_INITIAL_LOGIT)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, 1, bins, frames) scaled log-magnitudes -> head output of the same shape."""
        skips = []
        x = features
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level == len(self.encoder) - 1:
                x = self.encoder_dropout(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck_dropout(self.bottleneck(x))
        for step, skip in zip(self.decoder, reversed(skips)):
            x = step(x, skip)
        if torch.is_autocast_enabled(x.device.type):
            # The head in float32: in bfloat16 a sigmoid above a logit of about 6 rounds to exactly 1, its
            # gradient to 0, and a mask saturated there never recovers.
            with torch.autocast(x.device.type, enabled=False):
                return self.head(x.float())
        return self.head(x)

    @staticmethod
    def check_input(config: UNetConfig, spectral: SpectralConfig) -> None:
        """Refuse a patch grid that the pooling cannot halve ``depth`` times."""
        multiple = 2**config.depth
        if spectral.n_bins % multiple or spectral.patch_frames % multiple:
            raise ConfigError(
                f"patches of {spectral.n_bins} bins x {spectral.patch_frames} frames do not halve {config.depth} "
                f"times; use an n_fft whose n_fft // 2 + 1 is a multiple of {multiple} (255, 511)"
            )

    @property
    def default_loss(self) -> str:
        return DEFAULT_LOSS[self.config.target]

    @property
    def summary(self) -> str:
        return f"a U-Net that predicts a {self.config.target}"

    def gain(self, output: torch.Tensor, db_scale: float) -> torch.Tensor:
        """The magnitude gain that the head output stands for."""
        if self.config.target == "mask":
            return output
        # Enhanced dB = noisy dB - output * db_scale.
        return 10.0 ** (-output * (db_scale / 20.0))

    def enhance(
        self, noisy: torch.Tensor, features: torch.Tensor, output: torch.Tensor, spectral: SpectralConfig
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The enhanced magnitude and its scaled-dB features, from the noisy magnitude, its features and the output."""
        if self.config.target == "noise":  # the seed's design subtracts the predicted noise in the scaled-dB domain
            return noisy * self.gain(output, spectral.db_scale), features - output
        enhanced = output * noisy
        return enhanced, magnitude_to_features(enhanced, spectral)
