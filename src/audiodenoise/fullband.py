"""The band above the model's Nyquist, for inputs at higher rates than the model's: split off exactly and attenuated
by the model's own estimate.

The model sees the input resampled to its rate. The top band is the input less that band brought back to the input's
rate, ``x - up(down(x))``, so the two bands add up to the input exactly: no seam and no phase smear at the crossover.
The top band is scaled by the gain the model applied to its own highest bands (output over input energy in
GAIN_BAND_HZ, frames of GAIN_FRAME samples at the model's rate every GAIN_HOP), with an instant attack and a release of
RELEASE_SECONDS, ramped from frame to frame. A sample's gain comes from frames that end before it, so the latency is
unchanged. The model's output has its strength and attenuation floor applied already, and so has that gain.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .audio import ResampleStream, fit_frames

GAIN_BAND_HZ = (7000.0, 10000.0)
GAIN_FRAME = 128  # samples at the model's rate (5.8 ms at 22050 Hz)
GAIN_HOP = 64
GAIN_BATCH = 512  # frames measured at once, bounding memory
COMBINE_SAMPLES = 65536  # output samples given their gain at once, bounding memory
RELEASE_SECONDS = 0.05
SILENCE = 1e-12  # energy added to both sides of the ratio: silence in, silence out is a gain of one


class TopBand:
    """``__call__`` with each chunk of input, its model-rate version, the model's output for it so far and that output
    at the input's rate; returns the full-band output, in order (its length lags the input's, like the model path)."""

    def __init__(self, model_rate: int, rate: int, channels: int):
        self.positions_per_sample = model_rate / rate  # model-rate position of an input sample
        self.lowpass = ResampleStream(model_rate, rate, channels)
        self.channels = channels
        self.window = np.hanning(GAIN_FRAME + 1)[:-1].astype(np.float32)  # periodic Hann
        frequencies = np.fft.rfftfreq(GAIN_FRAME, 1 / model_rate)
        self.band = (frequencies >= GAIN_BAND_HZ[0]) & (frequencies <= GAIN_BAND_HZ[1])
        self.release = math.exp(-GAIN_HOP / (RELEASE_SECONDS * model_rate))
        empty = np.zeros((0, channels), np.float32)
        self.model_in, self.model_out = empty, empty  # model-rate samples from model_start on
        self.model_start = 0
        self.inputs = empty  # input samples whose low band has not come back yet
        self.tops, self.outputs = empty, empty  # the top band and the model's output, from sample ``start`` on
        self.start = 0
        self.gains = np.zeros((0, channels), np.float32)  # smoothed gain of each frame from gains_first on
        self.gains_first = 0
        self.fed = 0

    def __call__(
        self, chunk: np.ndarray, model_in: np.ndarray, model_out: np.ndarray, low: np.ndarray, last: bool = False
    ) -> np.ndarray:
        self.fed += len(chunk)
        self.inputs = np.concatenate([self.inputs, chunk])
        lows = self.lowpass(model_in, last=last)  # never ahead of the input: the resampler waits for its filter
        if last:
            lows = fit_frames(lows, len(self.inputs))
        self.tops = np.concatenate([self.tops, self.inputs[: len(lows)] - lows])
        self.inputs = self.inputs[len(lows) :]
        self.outputs = np.concatenate([self.outputs, low])
        self.model_in = np.concatenate([self.model_in, model_in])
        self.model_out = np.concatenate([self.model_out, model_out])
        if last:
            self._pad_to_the_end()
        self._measure_frames()
        ready = min(len(self.tops), len(self.outputs), self._samples_with_a_gain())
        out = self._combine(ready)
        self._drop_model_samples()
        return out

    def _pad_to_the_end(self) -> None:
        """At the end: the output to the input's length, and the model-rate samples to whole frames."""
        self.outputs = fit_frames(self.outputs, self.fed - self.start)
        end = self.model_start + len(self.model_out)
        frames = max(1, -(-(end - GAIN_FRAME) // GAIN_HOP) + 1)
        padded = (frames - 1) * GAIN_HOP + GAIN_FRAME - self.model_start
        self.model_in, self.model_out = fit_frames(self.model_in, padded), fit_frames(self.model_out, padded)

    def _measure_frames(self) -> None:
        """The smoothed gain of every frame whose model-rate input and output are both in."""
        have = self.model_start + min(len(self.model_in), len(self.model_out))
        first = self.gains_first + len(self.gains)  # the next frame
        count = (have - GAIN_FRAME) // GAIN_HOP + 1 - first
        if count <= 0:
            return
        offset = first * GAIN_HOP - self.model_start
        energies = []
        for signal in (self.model_in, self.model_out):
            frames = sliding_window_view(signal[offset:], GAIN_FRAME, axis=0)[: count * GAIN_HOP : GAIN_HOP]
            energies.append(
                np.concatenate(
                    [
                        (np.abs(np.fft.rfft(part * self.window, axis=-1)) ** 2)[..., self.band].sum(-1)
                        for part in np.array_split(frames, -(-count // GAIN_BATCH))
                    ]
                )
            )  # (frames, channels)
        raw = np.sqrt((energies[1] + SILENCE) / (energies[0] + SILENCE)).clip(max=1.0)
        smoothed = np.empty_like(raw)
        previous = self.gains[-1] if len(self.gains) else raw[0]
        for i, gain in enumerate(raw):
            previous = smoothed[i] = np.maximum(gain, previous * self.release)
        self.gains = np.concatenate([self.gains, smoothed.astype(np.float32)])

    def _frame_points(self) -> np.ndarray:
        """Model-rate positions where each kept frame's gain is reached: a hop after its end."""
        return (self.gains_first + np.arange(len(self.gains))) * GAIN_HOP + GAIN_FRAME + GAIN_HOP

    def _samples_with_a_gain(self) -> int:
        """How many buffered input samples lie before the last frame's point (their ramps are all known)."""
        if not len(self.gains):
            return 0
        return max(0, math.ceil(self._frame_points()[-1] / self.positions_per_sample) - self.start)

    def _combine(self, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros((0, self.channels), np.float32)
        points = self._frame_points()
        out = self.outputs[:count].copy()
        for first in range(0, count, COMBINE_SAMPLES):  # in pieces: the gains' float64 stays small
            piece = slice(first, min(first + COMBINE_SAMPLES, count))
            positions = (self.start + np.arange(piece.start, piece.stop)) * self.positions_per_sample
            for channel in range(self.channels):
                gain = np.interp(positions, points, self.gains[:, channel]).astype(np.float32)
                out[piece, channel] += gain * self.tops[piece, channel]
        self.tops, self.outputs = self.tops[count:], self.outputs[count:]
        self.start += count
        stale = np.searchsorted(points, self.start * self.positions_per_sample) - 1  # before the next sample's ramp
        if stale > 0:
            self.gains, self.gains_first = self.gains[stale:], self.gains_first + stale
        return out

    def _drop_model_samples(self) -> None:
        """Forget model-rate samples that no frame still to come reads."""
        drop = (self.gains_first + len(self.gains)) * GAIN_HOP - self.model_start
        drop = max(0, min(drop, len(self.model_in), len(self.model_out)))
        self.model_in, self.model_out = self.model_in[drop:], self.model_out[drop:]
        self.model_start += drop
