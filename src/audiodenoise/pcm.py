"""Audio as a stream of bytes: WAV headers and interleaved PCM, for stdin/stdout pipelines."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .audio import AudioError

STREAM_READ_BYTES = 1 << 16
RAW_FORMATS = {"s16le": "<i2", "f32le": "<f4"}
WAV_SAMPLES = {(1, 16): "<i2", (1, 32): "<i4", (3, 32): "<f4"}  # (format tag, bits) -> sample type
SAMPLE_NAMES = {"<i2": "16-bit integer", "<i4": "32-bit integer", "<f4": "32-bit float"}
UNKNOWN_SIZE = 0xFFFFFFFF  # a WAV data size that a pipe cannot know in advance


@dataclass(frozen=True)
class PcmFormat:
    """Interleaved little-endian samples of one numpy type ('<i2', '<i4' or '<f4')."""

    sample_type: str
    sample_rate: int
    channels: int

    @property
    def frame_bytes(self) -> int:
        return np.dtype(self.sample_type).itemsize * self.channels

    @property
    def is_float(self) -> bool:
        return np.dtype(self.sample_type).kind == "f"

    def decode(self, data: bytes) -> np.ndarray:
        """Samples as stored, (frames, channels): the stream scales integers and gives back the same type."""
        samples = np.frombuffer(data, self.sample_type).reshape(-1, self.channels)
        if self.is_float and not np.isfinite(samples).all():
            raise AudioError("stdin: contains NaN or Inf samples")
        return samples

    def encode(self, block: np.ndarray) -> bytes:
        return block.astype(self.sample_type, copy=False).tobytes()

    def wav_header(self, data_bytes: int | None) -> bytes:
        tag = 3 if self.is_float else 1
        width = np.dtype(self.sample_type).itemsize
        fmt = struct.pack(
            "<HHIIHH",
            tag,
            self.channels,
            self.sample_rate,
            self.sample_rate * self.frame_bytes,
            self.frame_bytes,
            8 * width,
        )
        riff_size = UNKNOWN_SIZE if data_bytes is None else 4 + 8 + len(fmt) + 8 + data_bytes
        data_size = UNKNOWN_SIZE if data_bytes is None else data_bytes
        return (
            b"RIFF"
            + struct.pack("<I", riff_size)
            + b"WAVEfmt "
            + struct.pack("<I", len(fmt))
            + fmt
            + b"data"
            + (struct.pack("<I", data_size))
        )


def _read_exact(source, size: int, what: str) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise AudioError(f"stdin: the WAV stream ends inside its {what}")
    return data


def read_wav_header(source) -> tuple[PcmFormat, int | None]:
    """Parse a WAV header up to its data; returns the format and the data size (None when unknown)."""
    riff = source.read(12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:] != b"WAVE":
        raise AudioError("stdin: not a WAV stream (for raw samples give --raw-format, --rate and --channels)")
    pcm = None
    while True:
        chunk, size = struct.unpack("<4sI", _read_exact(source, 8, "header"))
        if chunk == b"data":
            if pcm is None:
                raise AudioError("stdin: the WAV stream has no fmt chunk before its data")
            return pcm, None if size in (0, UNKNOWN_SIZE) else size
        body = _read_exact(source, size + size % 2, "header")
        if chunk == b"fmt ":
            if size < 16:
                raise AudioError("stdin: the WAV stream's fmt chunk is too short")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and size >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format
                tag = struct.unpack("<H", body[24:26])[0]
            if (tag, bits) not in WAV_SAMPLES:
                raise AudioError(
                    f"stdin: unsupported WAV samples ({bits}-bit, format tag {tag}); "
                    "streams take 16/32-bit integer or 32-bit float"
                )
            pcm = PcmFormat(WAV_SAMPLES[tag, bits], rate, channels)


def pump(stream, pcm: PcmFormat, remaining: int | None, source, sink) -> None:
    """Feed ``source``'s samples through ``stream`` and write each output block to ``sink`` as it comes.

    ``remaining`` is the number of data bytes to read (None: to the end of the stream)."""
    pending = b""
    while remaining is None or remaining > 0:
        data = source.read1(STREAM_READ_BYTES if remaining is None else min(STREAM_READ_BYTES, remaining))
        if not data:
            break
        remaining = None if remaining is None else remaining - len(data)
        pending += data
        whole = len(pending) - len(pending) % pcm.frame_bytes
        sink.write(pcm.encode(stream.feed(pcm.decode(pending[:whole]))))
        sink.flush()
        pending = pending[whole:]
    if pending or remaining:
        where = "inside a frame" if pending else "before its declared WAV data size"
        frame = f"{pcm.frame_bytes}-byte frames of {pcm.channels} channel(s) of {SAMPLE_NAMES[pcm.sample_type]}"
        raise AudioError(f"stdin: the stream ends {where} ({frame} samples)")
    sink.write(pcm.encode(stream.flush()))
    sink.flush()
