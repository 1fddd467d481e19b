"""What libsndfile cannot read: M4A/AAC, WebM/Opus and the audio of MP4/MOV/MKV videos, through PyAV (FFmpeg).

Audio is decoded as float32 at the stream's own rate. It is written back in the same container: AAC in
MP4/M4A/MOV (an edit list drops the encoder's priming, so the length is kept exactly), Opus in WebM and in
Matroska where the rate is one Opus takes (8, 12, 16, 24 or 48 kHz; exact length too), AAC in Matroska
otherwise. Raw AAC (.aac, ADTS) is read but not written: it keeps no priming information, so its audio would
shift. A video's video and subtitle streams are copied unchanged. Errors are MediaError, worded for the user
without the file's name.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

# audio.MEDIA_SUFFIXES' container names -> FFmpeg muxers
MUXERS = {"M4A": "mp4", "MP4": "mp4", "MOV": "mov", "MKV": "matroska", "WEBM": "webm", "AAC": "adts"}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}  # FFmpeg's defaults
KBPS_PER_CHANNEL = {"aac": 64, "libopus": 48}  # 128 and 96 kbps for stereo


class MediaError(RuntimeError):
    """A media file that cannot be read or written, in words for the user."""


class UnreadableMedia(MediaError):
    """Not a container FFmpeg can open at all (rather than a broken one)."""


@dataclass(frozen=True)
class MediaInfo:
    frames: int
    sample_rate: int
    channels: int
    codec: str  # the audio codec, e.g. "aac"


def inspect_media(source: str | Path | BinaryIO) -> MediaInfo:
    """The first audio stream's layout; its frames are counted by decoding, so they are exact."""
    with _open(source) as container:
        stream = _audio_stream(container)
        frames = sum(len(block) for block in _decoded_blocks(container, stream, 1 << 16))
        return MediaInfo(frames, stream.rate, stream.channels, stream.codec_context.name)


def read_media_blocks(source: str | Path | BinaryIO, block_frames: int) -> Iterator[np.ndarray]:
    """Float32 (frames, channels) blocks of the first audio stream, trimmed to the length the container states."""
    with _open(source) as container:
        yield from _decoded_blocks(container, _audio_stream(container), block_frames)


def _decoded_blocks(container, stream, block_frames: int) -> Iterator[np.ndarray]:
    declared = None
    if stream.duration is not None and stream.time_base is not None:
        declared = round(stream.duration * stream.time_base * stream.rate)
    resampler = av.AudioResampler(format="flt", layout=stream.layout, rate=stream.rate)
    pending, held, emitted = [], 0, 0

    def trimmed(block: np.ndarray) -> np.ndarray:
        return block if declared is None else block[: max(0, declared - emitted)]

    try:
        for frame in container.decode(stream):
            for packed in resampler.resample(frame):
                pending.append(packed.to_ndarray().reshape(-1, stream.channels))
                held += len(pending[-1])
            while held >= block_frames:
                joined = np.concatenate(pending)
                block, pending, held = trimmed(joined[:block_frames]), [joined[block_frames:]], held - block_frames
                emitted += len(block)
                if len(block):
                    yield block
    except av.FFmpegError as error:
        raise MediaError(f"corrupt or truncated audio ({error.strerror or error})") from None
    if held and len(block := trimmed(np.concatenate(pending))):
        yield block


class MediaWriter:
    """Encodes float32 (frames, channels) blocks into ``path`` (the caller's temporary file) in ``container``
    (a MUXERS name), copying the video and subtitle streams of ``source`` when it is given; ``close``
    finishes the file."""

    def __init__(
        self,
        target: str | Path | BinaryIO,
        sample_rate: int,
        channels: int,
        container: str,
        source: str | Path | BinaryIO | None,
    ):
        muxer = MUXERS[container]
        if muxer == "adts":
            raise MediaError("raw AAC (.aac) keeps no timing, so its audio would shift; write .m4a instead")
        codec = "libopus" if muxer == "webm" or (muxer == "matroska" and sample_rate in OPUS_RATES) else "aac"
        if codec == "libopus" and sample_rate not in OPUS_RATES:
            raise MediaError(f"Opus (the codec WebM holds) cannot keep {sample_rate} Hz; write .m4a or .wav instead")
        if channels not in LAYOUTS:
            raise MediaError(f"{container} output takes at most 8 channels, not {channels}; write .wav instead")
        self.output = av.open(_openable(target), "w", format=muxer)
        try:
            self.audio = self.output.add_stream(codec, rate=sample_rate, layout=LAYOUTS[channels])
            self.audio.bit_rate = KBPS_PER_CHANNEL[codec] * 1000 * channels
            self.source = av.open(_openable(source)) if source is not None else None
            self.copies = {}
            if self.source is not None:
                for stream in self.source.streams:
                    if stream.type in ("video", "subtitle"):
                        self.copies[stream.index] = self.output.add_stream_from_template(stream)
        except (av.FFmpegError, ValueError) as error:
            self._release()
            raise MediaError(f"cannot write {container} ({error})") from None
        self.time_base = fractions.Fraction(1, sample_rate)
        self.written = 0

    def write(self, block: np.ndarray) -> None:
        if not len(block):
            return
        samples = np.ascontiguousarray(np.clip(block, -1.0, 1.0), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout=self.audio.layout.name)
        frame.sample_rate, frame.pts, frame.time_base = self.audio.rate, self.written, self.time_base
        self.written += len(samples)
        self.output.mux(self.audio.encode(frame))

    def close(self) -> None:
        """Flush the encoder, copy the source's other streams, and close the files."""
        try:
            self.output.mux(self.audio.encode(None))
            if self.copies:
                for packet in self.source.demux(*(self.source.streams[i] for i in self.copies)):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.stream = self.copies[packet.stream.index]
                    self.output.mux(packet)
        except av.FFmpegError as error:
            raise MediaError(f"cannot write ({error})") from None
        finally:
            self._release()

    def _release(self) -> None:
        for container in (self.output, getattr(self, "source", None)):
            if container is not None:
                container.close()


def _openable(source: str | Path | BinaryIO) -> str | BinaryIO:
    return source if hasattr(source, "read") or hasattr(source, "write") else str(source)


def _open(source: str | Path | BinaryIO):
    try:
        return av.open(_openable(source))
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise UnreadableMedia(
            f"not a readable audio or video file ({getattr(error, 'strerror', None) or error})"
        ) from None


def _audio_stream(container):
    if not container.streams.audio:
        kinds = ", ".join(sorted({stream.type for stream in container.streams})) or "nothing"
        raise MediaError(f"holds no audio stream (only {kinds})")
    return container.streams.audio[0]
