"""Frame-by-frame denoising at the model's rate for spectrum networks (``nets``: causal, recurrent, a complex mask).

Each STFT frame (``spectral.py``'s grid: frame ``k`` centred on sample ``k * hop_length``) is analysed as soon
as its samples are in, and the network, its recurrent state carried from call to call, returns the mask of the
frame ``lookahead_frames`` earlier; masked frames are overlap-added, and samples that no later frame touches come
out. So any split of the input into chunks gives the same output, and the latency is the window plus the
look-ahead (``latency_samples``).
"""

from __future__ import annotations

import numpy as np
import torch

from .engine import Engine
from .spectral import SpectralConfig, apply_mask, istft, spectrum_parts, stft


def latency_samples(spectral: SpectralConfig, lookahead_frames: int) -> int:
    """Samples from one coming in to its coming out, at most: the first sample of a frame waits for the rest of
    the window and for the look-ahead frames."""
    return spectral.n_fft - 1 + lookahead_frames * spectral.hop_length


def strengthened(mask: torch.Tensor, strength: float, floor: float) -> torch.Tensor:
    """The (channels, 2, bins, frames) mask at ``strength`` (1 - s (1 - M)), its magnitude kept at least ``floor``."""
    mask = mask * strength
    mask[:, 0] += 1.0 - strength
    if floor > 0:
        magnitude = mask.pow(2).sum(1, keepdim=True).sqrt().clamp_min(1e-12)
        mask = mask * (floor / magnitude).clamp_min(1.0)
    return mask


class FrameStream:
    """``feed`` (samples, channels) float32 chunks at the model's rate, then ``flush``; outputs together have the
    input's length."""

    def __init__(
        self, engine: Engine, spectral: SpectralConfig, channels: int, strength: float, floor: float, max_frames: int
    ):
        self.engine, self.cfg, self.channels = engine, spectral, channels
        self.strength, self.floor, self.max_frames = strength, floor, max_frames
        self.lookahead = engine.lookahead_frames
        half = spectral.n_fft // 2
        self.buffer = np.zeros((half, channels), np.float32)  # the zeros before sample 0
        self.buffer_start = -half  # absolute sample of buffer[0]
        self.next_frame = 0  # the next frame to analyse
        self.state = engine.initial_state(channels)
        self.waiting = torch.zeros(channels, spectral.n_bins, 0, dtype=torch.complex64)  # frames without a mask
        self.synthesised = 0  # frames overlap-added so far
        tail = spectral.n_fft - spectral.hop_length
        self.sum = torch.zeros(channels, tail)  # overlap-add of frames, from sample frame_start(synthesised)
        self.envelope = torch.zeros(tail)
        self.fed = 0
        self.emitted = 0

    def _frame_start(self, frame: int) -> int:
        return frame * self.cfg.hop_length - self.cfg.n_fft // 2

    def feed(self, chunk: np.ndarray) -> np.ndarray:
        self.fed += len(chunk)
        self.buffer = np.concatenate([self.buffer, chunk.astype(np.float32, copy=False)])
        return self._analyse_available()

    def flush(self) -> np.ndarray:
        """The rest: frames up to the last one touching the input, then look-ahead frames of silence."""
        if self.fed == 0:
            return np.zeros((0, self.channels), np.float32)
        last_frame = (self.fed - 1 + self.cfg.n_fft // 2) // self.cfg.hop_length
        missing = self._frame_start(last_frame) + self.cfg.n_fft - (self.buffer_start + len(self.buffer))
        if missing > 0:
            self.buffer = np.concatenate([self.buffer, np.zeros((missing, self.channels), np.float32)])
        out = [self._analyse_available(until=last_frame + 1)]
        if self.lookahead:
            silence = torch.zeros(self.channels, self.cfg.n_bins, self.lookahead, dtype=torch.complex64)
            out.append(self._advance(silence))
        joined = np.concatenate(out)
        return joined[: len(joined) - max(0, self.emitted - self.fed)]

    def _analyse_available(self, until: int | None = None) -> np.ndarray:
        cfg, out = self.cfg, []
        end = self.buffer_start + len(self.buffer)
        available = (end - self._frame_start(self.next_frame) - cfg.n_fft) // cfg.hop_length + 1
        if until is not None:
            available = min(available, until - self.next_frame)
        while available > 0:
            count = min(available, self.max_frames)
            first = self._frame_start(self.next_frame) - self.buffer_start
            excerpt = self.buffer[first : first + (count - 1) * cfg.hop_length + cfg.n_fft]
            spectrum = stft(torch.from_numpy(np.ascontiguousarray(excerpt.T)), cfg)
            out.append(self._advance(spectrum))
            available -= count
        drop = self._frame_start(self.next_frame) - self.buffer_start
        self.buffer, self.buffer_start = self.buffer[drop:], self.buffer_start + drop
        return np.concatenate(out) if out else np.zeros((0, self.channels), np.float32)

    @torch.inference_mode()
    def _advance(self, spectrum: torch.Tensor) -> np.ndarray:
        """Run the network over the next frames' (channels, bins, count) spectrum; synthesise the frames it masks."""
        count = spectrum.shape[-1]
        self.engine.check_state(self.state, self.channels)
        mask, *self.state = self.engine(spectrum_parts(spectrum), *self.state)
        self.next_frame += count
        self.waiting = torch.cat([self.waiting, spectrum], dim=-1)
        masked_until = self.next_frame - self.lookahead  # masks are for frames [masked_until - count, masked_until)
        mask = mask[..., mask.shape[-1] - max(0, masked_until - self.synthesised) :]
        if mask.shape[-1] == 0:
            return np.zeros((0, self.channels), np.float32)
        frames = mask.shape[-1]
        masked = apply_mask(self.waiting[..., :frames], strengthened(mask, self.strength, self.floor))
        self.waiting = self.waiting[..., frames:]
        return self._synthesise(masked)

    def _synthesise(self, masked: torch.Tensor) -> np.ndarray:
        """Overlap-add masked frames; give out the samples at or after 0 that no later frame touches."""
        cfg, frames = self.cfg, masked.shape[-1]
        signal, envelope = istft(masked, cfg)
        tail = self.sum.shape[-1]
        signal[:, :tail] += self.sum
        envelope[:tail] += self.envelope
        done = frames * cfg.hop_length  # samples before the next frame's start
        self.sum, self.envelope = signal[:, done:], envelope[done:]
        start = self._frame_start(self.synthesised)
        self.synthesised += frames
        skip = max(0, -start)
        out = (signal[:, skip:done] / envelope[skip:done]).T.numpy()
        self.emitted += len(out)
        return out
