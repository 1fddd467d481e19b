"""What one server request may cost: every limit's default, in one place (the CLI's serve options show them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int
    timeout: float  # seconds without a byte of body
    min_rate: float  # bytes per second over the whole body, once it has taken ``timeout`` seconds


@dataclass(frozen=True)
class Limits:
    max_upload_mb: float = 50.0
    max_seconds: float = 600.0
    max_channels: int = 8
    max_channel_seconds: float = 1200.0  # work: channels x seconds of audio
    workers: int = 2
    queue: int = 16  # requests that may wait for a worker
    max_connections: int = 64  # open connections; more get 503
    body_timeout: float = 30.0  # seconds without upload data
    min_upload_kbps: float = 16.0  # KB/s over an upload that has taken body_timeout seconds

    @property
    def body(self) -> BodyLimits:
        return BodyLimits(int(self.max_upload_mb * 2**20), self.body_timeout, self.min_upload_kbps * 1024)
