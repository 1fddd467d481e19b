"""A causal recurrent U-Net over the complex STFT: strided-frequency convolutions down to a few bands, dual-path
GRUs (across bands within a frame, and over time per band), transposed convolutions back up with additive skips,
and a bounded complex ratio mask out.

Input: (batch, 3, bins, frames) compressed real, imaginary and magnitude (``features``). Output: the mask's real
and imaginary parts (batch, 2, bins, frames), ``|mask| <= 1``. Every layer is causal over frames: the only context
from the future is ``lookahead_frames``, given by running the network that many frames ahead of the mask it emits
(``enhance_spectrum``; the streaming engines do the same). ``forward`` takes and returns the recurrent state (the
encoder convolutions' last input frames and the GRUs' hidden states), so blocks of any length, down to one frame,
give the output of the whole signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigError, Settings, setting
from ..spectral import SpectralConfig, apply_mask, spectrum_parts

State = list[torch.Tensor]
NEGATIVE_SLOPE = 0.1


@dataclass(frozen=True)
class CRUNetConfig(Settings):
    channels: tuple[int, ...] = setting((16, 32, 48, 64), "encoder widths; each level halves the bins", low=1)
    hidden: int = setting(64, "GRU width over time (and, split in two directions, across bands)", low=2)
    blocks: int = setting(2, "dual-path GRU blocks in the bottleneck", low=1)
    time_kernel: int = setting(2, "frames each encoder convolution sees (causal)", low=1)
    lookahead_frames: int = setting(2, "future frames the mask of a frame may use", low=0)
    input_compression: float = setting(0.3, "magnitude exponent of the input features", low=0, above=True)


class CausalConv(nn.Module):
    """A convolution strided by two along frequency, causal over frames through a cache of past input frames,
    then batch norm and a leaky ReLU (PReLU's backward pass costs several times more on CPUs)."""

    def __init__(self, in_channels: int, out_channels: int, frequency_kernel: int, time_kernel: int):
        super().__init__()
        self.time_kernel = time_kernel
        kernel, padding = (frequency_kernel, time_kernel), (frequency_kernel // 2, 0)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=(2, 1), padding=padding)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE)

    def forward(self, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([cache, x], dim=-1)
        return self.act(self.norm(self.conv(x))), x[..., x.shape[-1] - (self.time_kernel - 1) :]


class DualPath(nn.Module):
    """A bidirectional GRU across the bands of each frame, then a GRU over time for each band, each residual and
    layer-normed."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.across = nn.GRU(channels, hidden // 2, batch_first=True, bidirectional=True)
        self.across_out = nn.Linear(hidden // 2 * 2, channels)
        self.across_norm = nn.LayerNorm(channels)
        self.over_time = nn.GRU(channels, hidden, batch_first=True)
        self.over_time_out = nn.Linear(hidden, channels)
        self.over_time_norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, channels, bands, frames = x.shape
        frame_major = x.permute(0, 3, 2, 1).reshape(batch * frames, bands, channels)
        frame_major = frame_major + self.across_norm(self.across_out(self.across(frame_major)[0]))
        band_major = frame_major.reshape(batch, frames, bands, channels).transpose(1, 2).reshape(-1, frames, channels)
        output, hidden = self.over_time(band_major, hidden)
        band_major = band_major + self.over_time_norm(self.over_time_out(output))
        return band_major.reshape(batch, bands, frames, channels).permute(0, 3, 1, 2), hidden


class CRUNet(nn.Module):
    config_class = CRUNetConfig
    default_loss = "hybrid"
    input = "spectrum"  # see nets/__init__.py

    def __init__(self, config: CRUNetConfig):
        super().__init__()
        self.config = config
        widths = config.channels
        self.encoder = nn.ModuleList(
            CausalConv(3 if level == 0 else widths[level - 1], width, 5 if level == 0 else 3, config.time_kernel)
            for level, width in enumerate(widths)
        )
        self.bottleneck = nn.ModuleList(DualPath(widths[-1], config.hidden) for _ in range(config.blocks))
        self.decoder = nn.ModuleList()
        for level in reversed(range(len(widths))):
            out_channels = 2 if level == 0 else widths[level - 1]
            up = nn.ConvTranspose2d(widths[level], out_channels, (4, 1), stride=(2, 1), padding=(1, 0))
            if level:
                up = nn.Sequential(up, nn.BatchNorm2d(out_channels), nn.LeakyReLU(NEGATIVE_SLOPE))
            self.decoder.append(up)

    @staticmethod
    def check_input(config: CRUNetConfig, spectral: SpectralConfig) -> None:
        multiple = 2 ** len(config.channels)
        if spectral.n_bins % multiple:
            raise ConfigError(
                f"{spectral.n_bins} bins do not halve {len(config.channels)} times; use an n_fft whose "
                f"n_fft // 2 + 1 is a multiple of {multiple} (255, 511)"
            )

    @property
    def summary(self) -> str:
        return "a causal recurrent U-Net that predicts a complex mask"

    def features(self, parts: torch.Tensor) -> torch.Tensor:
        """(batch, 2, bins, frames) real and imaginary parts -> (batch, 3, bins, frames) compressed real, imaginary
        and magnitude (real parts in, so that the ONNX graph can take them)."""
        magnitude = (parts.pow(2).sum(1, keepdim=True) + 1e-16).sqrt()
        compressed = magnitude**self.config.input_compression
        return torch.cat([parts * (compressed / magnitude), compressed], dim=1)

    def initial_state(self, batch: int, bins: int) -> State:
        """Zeros: the state before the first frame."""
        state, channels = [], 3
        for level, conv in enumerate(self.encoder):
            state.append(torch.zeros(batch, channels, bins >> level, conv.time_kernel - 1))
            channels = self.config.channels[level]
        bands = bins >> len(self.encoder)
        state += [torch.zeros(1, batch * bands, self.config.hidden) for _ in self.bottleneck]
        return state

    def forward(self, features: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """``features`` of some frames and the state before them -> the mask's (real, imag) and the state after."""
        skips, new_state = [], []
        x = features
        for conv, cache in zip(self.encoder, state):
            x, cache = conv(x, cache)
            skips.append(x)
            new_state.append(cache)
        for block, hidden in zip(self.bottleneck, state[len(self.encoder) :]):
            x, hidden = block(x, hidden)
            new_state.append(hidden)
        for up, skip in zip(self.decoder, reversed(skips)):
            x = up(x + skip)
        return bounded_mask(x.float()), new_state

    def enhance_spectrum(self, spectrum: torch.Tensor, network: nn.Module | None = None) -> torch.Tensor:
        """The enhanced complex spectrum of whole (batch, bins, frames) signals, each frame's mask from the
        network run ``lookahead_frames`` ahead (the last frames see zeros beyond the end)."""
        ahead = self.config.lookahead_frames
        features = self.features(nn.functional.pad(spectrum_parts(spectrum), (0, ahead)))
        state = [s.to(spectrum.device) for s in self.initial_state(spectrum.shape[0], spectrum.shape[1])]
        mask, _ = (self if network is None else network)(features, state)
        return apply_mask(spectrum, mask[..., ahead:])


def bounded_mask(output: torch.Tensor) -> torch.Tensor:
    """(batch, 2, ...) unbounded (real, imag) -> the same direction with magnitude tanh(|output|) <= 1."""
    magnitude = (output.pow(2).sum(1, keepdim=True) + 1e-8).sqrt()
    return output * (torch.tanh(magnitude) / magnitude)
