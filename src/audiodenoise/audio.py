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

# What libsndfile reads and writes, then the containers that PyAV does (media.py, imported when one is used).
SUFFIX_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".opus": "OGG", ".mp3": "MP3"}
MEDIA_SUFFIXES = {".m4a": "M4A", ".mp4": "MP4", ".mov": "MOV", ".mkv": "MKV", ".mka": "MKV", ".webm": "WEBM"}
MEDIA_SUFFIXES[".aac"] = "AAC"  # raw ADTS: read, not written
SUFFIX_FORMATS |= MEDIA_SUFFIXES
MEDIA_FORMATS = set(MEDIA_SUFFIXES.values())
AUDIO_SUFFIXES = set(SUFFIX_FORMATS)
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 384000
MAX_CHANNELS = 64  # no recording holds more; a (channels, samples) array read the other way round would
LOSSY_SUBTYPES = {"VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"}
# libsndfile's constant MP3 bit rates per MPEG version, chosen by the sample rate (kbps, lowest to highest)
MP3_KBPS_RANGES = ((32000, 32, 320), (16000, 8, 160), (0, 8, 64))
# Below this LAME's gapless header does not fit in a frame: the file reads back ~1,700 samples longer.
MIN_MP3_KBPS = 56
DEFAULT_MP3_KBPS = 128  # an MP3 written from another format
READ_BLOCK_FRAMES = 1 << 16  # frames per read of a file: bounds memory whatever its length
OUTPUT_MARK = "_denoised"  # <stem>_denoised<suffix>: the output's name beside its input, and for downloads
# WAV data sizes that streaming writers (sox and ffmpeg to a pipe) put in a header: "until the end".
STREAMED_DATA_SIZE = 0xFFFFFFFF


class AudioError(Exception):
    """A problem with an input or output file, worded for the user."""


class UnreadableAudio(AudioError):
    """Not audio at all, as opposed to audio that is broken or out of range (the server's 415 against 422)."""


@dataclass(frozen=True)
class AudioInfo:
    frames: int
    sample_rate: int
    channels: int
    format: str
    subtype: str
    kbps: float | None = None  # the encoded bit rate of a lossy file, where its size is known


@dataclass(frozen=True)
class FileResult:
    audio_seconds: float
    processing_seconds: float

    @property
    def real_time_factor(self) -> float:
        return self.processing_seconds / max(self.audio_seconds, 1e-9)


def denoised_name(name: str) -> str:
    """``talk.wav`` -> ``talk_denoised.wav``."""
    path = Path(name)
    return f"{path.stem}{OUTPUT_MARK}{path.suffix}"


def is_denoised(path: Path) -> bool:
    return path.stem.endswith(OUTPUT_MARK)


@dataclass(frozen=True)
class OutputFormat:
    format: str
    subtype: str
    mp3_kbps: int | None = None


def check_sample_rate(sample_rate: object, label: object) -> int:
    """``sample_rate`` as an int, or AudioError unless it is a whole number of Hz within the supported range."""
    whole = isinstance(sample_rate, int | np.integer) or (isinstance(sample_rate, float) and sample_rate.is_integer())
    if isinstance(sample_rate, bool) or not whole:
        raise AudioError(f"{label}: the sample rate must be a whole number of Hz, not {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{label}: unsupported sample rate {int(sample_rate)} Hz "
            f"(supported: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
        )
    return int(sample_rate)


def check_channels(channels: int, label: object) -> int:
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{label}: {channels} channels (supported: 1 to {MAX_CHANNELS})")
    return channels


def refuse_overwriting(source: str | Path, destination: str | Path) -> None:
    """AudioError when ``destination`` is ``source`` (the same path, a link to it, or the same inode)."""
    source, destination = Path(source), Path(destination)
    if destination.resolve() == source.resolve() or (
        source.exists() and destination.exists() and os.path.samefile(source, destination)
    ):
        raise AudioError(f"{source}: the output path is the input; refusing to overwrite it")


def output_format(info: AudioInfo, destination: str | Path | None = None, mp3_kbps: int | None = None) -> OutputFormat:
    """How the denoised ``info`` is written: in the format ``destination``'s suffix names (else the input's), in
    the input's sample format where that format holds it (else the nearest), and an MP3 at ``mp3_kbps``, else
    the input MP3's bit rate, else DEFAULT_MP3_KBPS."""
    suffix = Path(destination).suffix.lower() if destination else ""
    format = SUFFIX_FORMATS.get(suffix, info.format)
    if format in MEDIA_FORMATS:
        return OutputFormat(format, "")  # the codec is the container's (media.MediaWriter)
    if suffix == ".opus" and info.subtype != "OPUS":
        from .media import OPUS_RATES

        if info.sample_rate not in OPUS_RATES:
            raise AudioError(f"{destination}: Opus cannot keep {info.sample_rate} Hz; write .ogg or .m4a instead")
        return OutputFormat("OGG", "OPUS")
    if format == info.format:
        subtype = info.subtype
    elif format in ("WAV", "FLAC"):
        holds = info.subtype not in LOSSY_SUBTYPES and sf.check_format(format, info.subtype)
        wide = info.subtype in ("PCM_32", "FLOAT", "DOUBLE")
        subtype = info.subtype if holds else "PCM_24" if wide else "PCM_16"
    else:
        subtype = sf.default_subtype(format)
    if format != "MP3":
        return OutputFormat(format, subtype)
    kept = info.kbps if info.format == "MP3" else None
    return OutputFormat(format, subtype, round(mp3_kbps or kept or DEFAULT_MP3_KBPS))


def open_output(target: str | Path | BinaryIO, sample_rate: int, channels: int, output: OutputFormat) -> sf.SoundFile:
    """A SoundFile for writing ``output``; MP3s at a constant bit rate within MIN_MP3_KBPS and the highest the
    sample rate allows (libsndfile maps it to a compression level)."""
    options = {}
    if output.mp3_kbps is not None:
        low, high = next((low, high) for floor, low, high in MP3_KBPS_RANGES if sample_rate >= floor)
        kbps = min(high, max(MIN_MP3_KBPS, output.mp3_kbps))
        options = {"bitrate_mode": "CONSTANT", "compression_level": (high - kbps) / (high - low)}
    return sf.SoundFile(target, "w", sample_rate, channels, output.subtype, format=output.format, **options)


def open_sink(
    target: str | Path | BinaryIO,
    sample_rate: int,
    channels: int,
    output: OutputFormat,
    source: str | Path | BinaryIO | None = None,
):
    """A writer (``write(block)``, ``close()``) of ``output`` into ``target``: libsndfile's, or PyAV's for its
    containers, which copy ``source``'s video. MediaError (a RuntimeError) where PyAV cannot write it."""
    if output.format in MEDIA_FORMATS:
        from .media import MediaWriter

        return MediaWriter(target, sample_rate, channels, output.format, source)
    return AudioSink(target, sample_rate, channels, output)


class AudioSink:
    """Float blocks written into ``target`` in ``output``'s format, clipped to full scale where it needs that."""

    def __init__(self, target: str | Path | BinaryIO, sample_rate: int, channels: int, output: OutputFormat):
        self.handle = open_output(target, sample_rate, channels, output)
        self.clip = needs_clipping(output.format, output.subtype)

    def write(self, block: np.ndarray) -> None:
        self.handle.write(np.clip(block, -1.0, 1.0) if self.clip else block)

    def close(self) -> None:
        self.handle.close()


def inspect_audio(path: str | Path) -> AudioInfo:
    """Validate that ``path`` is a readable, complete, non-empty audio file and describe it."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    if is_media(path):
        return inspect_media_file(path, path)
    with open_audio(path, path) as handle:
        return describe(handle, path, size)


def is_media(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MEDIA_SUFFIXES


def inspect_media_file(source: str | Path | BinaryIO, label: object) -> AudioInfo:
    """``inspect_audio`` for a PyAV container (``is_media(label)``), a path or a file object."""
    from . import media

    try:
        found = media.inspect_media(source)
    except media.UnreadableMedia as error:
        raise UnreadableAudio(f"{label}: {error}") from None
    except media.MediaError as error:
        raise AudioError(f"{label}: {error}") from None
    if found.frames <= 0:
        raise AudioError(f"{label}: contains no audio samples")
    check_sample_rate(found.sample_rate, label)
    check_channels(found.channels, label)
    container = MEDIA_SUFFIXES[Path(str(label)).suffix.lower()]
    return AudioInfo(found.frames, found.sample_rate, found.channels, container, found.codec)


def open_audio(source: str | Path | BinaryIO, label: object) -> sf.SoundFile:
    """``source`` (a path or a binary file object) opened for reading; ``label`` names it in errors."""
    try:
        return sf.SoundFile(source if hasattr(source, "read") else str(source))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise UnreadableAudio(f"{label}: not a readable audio file ({_reason(error)})") from None


def describe(handle: sf.SoundFile, label: object, size_bytes: int | None = None) -> AudioInfo:
    """An open file's layout, refused when it is empty, at an unsupported rate or channel count, or shorter than
    its header says; ``size_bytes`` (the file's) gives a lossy file's bit rate."""
    if handle.frames <= 0:
        raise AudioError(f"{label}: contains no audio samples")
    check_sample_rate(handle.samplerate, label)
    check_channels(handle.channels, label)
    # libsndfile reads a cut-off WAV's frames silently; its log says "data : <header> (should be <found>)".
    cut = re.search(r"^data : (\d+) \(should be (\d+)\)", handle.extra_info, re.MULTILINE)
    if cut and int(cut[1]) != STREAMED_DATA_SIZE and int(cut[1]) > int(cut[2]):
        held = handle.frames / handle.samplerate
        promised = held * int(cut[1]) / max(1, int(cut[2]))
        raise AudioError(
            f"{label}: truncated audio (the header promises {promised:.2f} s, the file holds {held:.2f} s)"
        )
    lossy = size_bytes is not None and handle.subtype in LOSSY_SUBTYPES
    kbps = size_bytes * 8 / 1000 / (handle.frames / handle.samplerate) if lossy else None
    return AudioInfo(handle.frames, handle.samplerate, handle.channels, handle.format, handle.subtype, kbps)


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
    """Float32 blocks of shape (frames, channels); corrupt, truncated data and NaN/Inf raise AudioError.
    ``label`` (default: ``source``) names the file: a PyAV container's suffix there reads it through PyAV."""
    label = source if label is None else label
    if is_media(str(label)):
        yield from _read_media_blocks(source, block_frames, label)
        return
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


def _read_media_blocks(source: str | Path | BinaryIO, block_frames: int, label: object) -> Iterator[np.ndarray]:
    from . import media

    try:
        for block in media.read_media_blocks(source, block_frames):
            if not np.isfinite(block).all():
                raise AudioError(f"{label}: contains NaN or Inf samples")
            yield block
    except media.MediaError as error:
        raise AudioError(f"{label}: {error}") from None


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

    def __init__(
        self, path: str | Path, sample_rate: int, channels: int, output: OutputFormat, source: Path | None = None
    ):
        """``source``: for a video container, the file whose other streams (video) are copied in."""
        self.path = Path(path)
        self.temp_path = temporary_sibling(self.path)
        try:
            self.sink = open_sink(self.temp_path, sample_rate, channels, output, source)
        except (OSError, sf.LibsndfileError, RuntimeError) as error:
            discard(self.temp_path)
            raise AudioError(f"{self.path}: cannot write output ({_reason(error)})") from None

    def write(self, block: np.ndarray) -> None:
        self.sink.write(block)

    def commit(self) -> None:
        try:
            self.sink.close()
            os.replace(self.temp_path, self.path)
        except (OSError, sf.LibsndfileError, RuntimeError) as error:  # media.MediaError is a RuntimeError
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
                self.sink.close()
            discard(self.temp_path)
