"""Reading and writing audio files, resampling, and input validation."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from .atomic import discard, temporary_sibling

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3"}
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 384000
# WAV data sizes that streaming writers (sox and ffmpeg to a pipe) put in a header: "until the end".
STREAMED_DATA_SIZE = 0xFFFFFFFF


class AudioError(Exception):
    """A problem with an input or output file, worded for the user."""


@dataclass(frozen=True)
class AudioInfo:
    frames: int
    sample_rate: int
    channels: int
    format: str
    subtype: str


def inspect_audio(path: str | Path) -> AudioInfo:
    """Validate that ``path`` is a readable, complete, non-empty audio file and describe it."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    with open_audio(path, path) as handle:
        return describe(handle, path)


def open_audio(source: str | Path | BinaryIO, label: object) -> sf.SoundFile:
    """``source`` (a path or a binary file object) opened for reading; ``label`` names it in errors."""
    try:
        return sf.SoundFile(source if hasattr(source, "read") else str(source))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"{label}: not a readable audio file ({_reason(error)})") from None


def describe(handle: sf.SoundFile, label: object) -> AudioInfo:
    """An open file's layout, refused when it is empty, at an unsupported rate, or shorter than its header says."""
    if handle.frames <= 0:
        raise AudioError(f"{label}: contains no audio samples")
    if not MIN_SAMPLE_RATE <= handle.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{label}: unsupported sample rate {handle.samplerate} Hz")
    # libsndfile reads a cut-off WAV's frames silently; its log says "data : <header> (should be <found>)".
    cut = re.search(r"^data : (\d+) \(should be (\d+)\)", handle.extra_info, re.MULTILINE)
    if cut and int(cut[1]) != STREAMED_DATA_SIZE and int(cut[1]) > int(cut[2]):
        held = handle.frames / handle.samplerate
        promised = held * int(cut[1]) / max(1, int(cut[2]))
        raise AudioError(
            f"{label}: truncated audio (the header promises {promised:.2f} s, the file holds {held:.2f} s)"
        )
    return AudioInfo(handle.frames, handle.samplerate, handle.channels, handle.format, handle.subtype)


def over_limits(
    info: AudioInfo, max_seconds: float, max_channels: int | None = None, max_channel_seconds: float | None = None
) -> str | None:
    """Which of a server's limits (seconds, channels, channels x seconds) ``info`` is over, in words; None if none."""
    seconds = info.frames / info.sample_rate
    if seconds > max_seconds:
        return f"{seconds:.1f} s of audio is over the server's limit of {max_seconds:g} s"
    if max_channels is not None and info.channels > max_channels:
        return f"{info.channels} channels is over the server's limit of {max_channels} channels"
    if max_channel_seconds is not None and info.channels * seconds > max_channel_seconds:
        return (
            f"{info.channels} channels x {seconds:.1f} s is over the server's limit of "
            f"{max_channel_seconds:g} channel-seconds"
        )
    return None


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text


def read_blocks(source: str | Path | BinaryIO, block_frames: int, label: object = None) -> Iterator[np.ndarray]:
    """Float32 blocks of shape (frames, channels); corrupt, truncated data and NaN/Inf raise AudioError."""
    label = source if label is None else label
    with open_audio(source, label) as handle:
        declared, read = handle.frames, 0
        try:
            while len(block := handle.read(block_frames, dtype="float32", always_2d=True)):
                if not np.isfinite(block).all():
                    raise AudioError(f"{label}: contains NaN or Inf samples")
                read += len(block)
                yield block
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"{label}: corrupt or truncated audio ({_reason(error)})") from None
        # An MP3's frame count can be an estimate; other formats know theirs exactly.
        if declared - read > (declared // 100 if handle.format == "MP3" else 0):
            raise AudioError(
                f"{label}: truncated audio (the header promises {declared / handle.samplerate:.2f} s, "
                f"the file holds {read / handle.samplerate:.2f} s)"
            )


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """The whole file as float32 (frames, channels) and its sample rate."""
    info = inspect_audio(path)
    blocks = list(read_blocks(path, 1 << 20))
    return np.concatenate(blocks), info.sample_rate


def read_mono(path: str | Path, sample_rate: int) -> np.ndarray:
    """The file as mono float32 at ``sample_rate``."""
    audio, rate = read_audio(path)
    return resample(audio.mean(axis=1), rate, sample_rate)


def resample(signal: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return np.asarray(signal, dtype=np.float32)
    return soxr.resample(signal, from_rate, to_rate, quality="HQ").astype(np.float32)


class ResampleStream:
    """Chunked resampling whose concatenated output has exactly round(n * to / from) samples."""

    def __init__(self, from_rate: int, to_rate: int, channels: int):
        self.identity = from_rate == to_rate
        self.ratio = to_rate / from_rate
        self.stream = None if self.identity else soxr.ResampleStream(from_rate, to_rate, channels, "float32", "HQ")
        self.fed = 0
        self.emitted = 0

    def __call__(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        self.fed += len(chunk)
        if self.identity:
            return chunk
        out = self.stream.resample_chunk(np.ascontiguousarray(chunk, dtype=np.float32), last=last)
        if last:
            want = round(self.fed * self.ratio) - self.emitted
            out = fit_frames(out, want)
        self.emitted += len(out)
        return out


def fit_frames(block: np.ndarray, frames: int) -> np.ndarray:
    """Crop or zero-pad ``block`` (frames, ...) to ``frames`` rows."""
    if len(block) >= frames:
        return block[:frames]
    pad = np.zeros((frames - len(block), *block.shape[1:]), dtype=block.dtype)
    return np.concatenate([block, pad])


def needs_clipping(format: str, subtype: str) -> bool:
    """Integer formats and lossy codecs need samples within full scale."""
    return subtype.startswith(("PCM", "ULAW", "ALAW", "DPCM", "DWVW")) or format in ("OGG", "MP3")


class AtomicWriter:
    """Writes an audio file through a temporary sibling that is renamed into place only on success."""

    def __init__(self, path: str | Path, sample_rate: int, channels: int, format: str, subtype: str):
        self.path = Path(path)
        self.temp_path = temporary_sibling(self.path)
        self.clip = needs_clipping(format, subtype)
        try:
            self.handle = sf.SoundFile(
                self.temp_path, "w", samplerate=sample_rate, channels=channels, format=format, subtype=subtype
            )
        except (OSError, sf.LibsndfileError, RuntimeError) as error:
            discard(self.temp_path)
            raise AudioError(f"{self.path}: cannot write output ({_reason(error)})") from None

    def write(self, block: np.ndarray) -> None:
        self.handle.write(np.clip(block, -1.0, 1.0) if self.clip else block)

    def commit(self) -> None:
        try:
            self.handle.close()
            os.replace(self.temp_path, self.path)
        except (OSError, sf.LibsndfileError, RuntimeError) as error:
            discard(self.temp_path)
            reason = error.strerror if isinstance(error, OSError) and error.strerror else _reason(error)
            raise AudioError(f"{self.path}: cannot write output ({reason})") from None

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            with contextlib.suppress(Exception):
                self.handle.close()
            discard(self.temp_path)
