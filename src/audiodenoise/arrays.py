"""Audio arrays as users hold them, (samples,), (samples, channels) or (channels, samples), float or integer,
turned into float32 (frames, channels) and given back the way they came."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import MAX_CHANNELS, AudioError


@dataclass(frozen=True)
class ArrayLayout:
    """How an array held its audio: the output is given back in the same shape and sample type."""

    one_dimensional: bool
    channels_first: bool
    dtype: np.dtype


def to_frames(audio: object, label: str = "audio", channels: int | None = None) -> tuple[np.ndarray, ArrayLayout]:
    """Float32 (frames, channels) samples from ``audio``, and its layout.

    A 2-D array's shorter axis holds the channels (a square one is (samples, channels)); with ``channels``
    known (a stream, whose chunks may be empty) the axis of that length does. Integer samples are scaled to
    [-1, 1) as soundfile reads them (int16 / 32768; unsigned types are offset binary, as 8-bit WAV). NaN, Inf,
    empty arrays, more than MAX_CHANNELS channels and other sample types raise AudioError naming the shape
    or type."""
    array = np.asarray(audio)
    if array.dtype.kind not in "fiu":
        raise AudioError(f"{label}: samples must be floats or integers, not {array.dtype}")
    if array.ndim not in (1, 2) or (array.size == 0 and channels is None):
        raise AudioError(f"{label}: expected a non-empty (samples,) or (samples, channels) array, not {array.shape}")
    if array.ndim == 1:
        if channels not in (None, 1):
            raise AudioError(f"{label}: a 1-D chunk for a {channels}-channel stream; pass (samples, {channels})")
        frames, channels_first = array[:, None], False
    else:
        rows, columns = array.shape
        if channels is None:
            channels_first = columns > rows
        elif channels in (rows, columns):
            channels_first = columns != channels
        else:
            raise AudioError(f"{label}: an array of shape {array.shape} for a {channels}-channel stream")
        frames = array.T if channels_first else array
        if frames.shape[1] > MAX_CHANNELS:
            raise AudioError(
                f"{label}: an array of shape {array.shape} has over {MAX_CHANNELS} channels either way; "
                "pass (samples, channels)"
            )
    samples = _as_float(frames)
    if array.dtype.kind == "f" and not np.isfinite(samples).all():  # integers are always finite
        raise AudioError(f"{label}: contains NaN or Inf samples")
    return samples, ArrayLayout(array.ndim == 1, channels_first, array.dtype)


def from_frames(frames: np.ndarray, layout: ArrayLayout) -> np.ndarray:
    """``frames`` (frames, channels) float32 in ``layout``'s shape; integer types rounded and clipped to range."""
    out = frames
    if layout.dtype.kind in "iu":
        full_scale, offset = _integer_scale(layout.dtype)
        limits = np.iinfo(layout.dtype)
        out = np.clip(np.round(frames.astype(np.float64) * full_scale + offset), limits.min, limits.max)
        out = out.astype(layout.dtype)
    if layout.one_dimensional:
        return out[:, 0]
    return np.ascontiguousarray(out.T) if layout.channels_first else out


def _as_float(frames: np.ndarray) -> np.ndarray:
    if frames.dtype.kind == "f":
        return np.ascontiguousarray(frames, dtype=np.float32)
    full_scale, offset = _integer_scale(frames.dtype)
    return np.ascontiguousarray((frames.astype(np.float64) - offset) / full_scale, dtype=np.float32)


def _integer_scale(dtype: np.dtype) -> tuple[float, float]:
    """Full scale and zero of an integer sample type: int16 (32768, 0), uint8 (128, 128)."""
    full_scale = 2.0 ** (8 * dtype.itemsize - 1)
    return full_scale, full_scale if dtype.kind == "u" else 0.0
