"""What one server request may cost: every limit's default, in one place (the CLI's serve options show them)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Settings, setting


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int
    timeout: float  # seconds without a byte of body
    min_rate: float  # bytes per second over the whole body, once it has taken ``timeout`` seconds


@dataclass(frozen=True)
class Limits(Settings):
    max_upload_mb: float = setting(50.0, "larger uploads get 413", low=0, above=True)
    max_seconds: float = setting(600.0, "longer audio gets 413", low=0, above=True)
    max_channels: int = setting(8, "audio with more channels gets 413", low=1)
    max_channel_seconds: float = setting(1200.0, "more channels x seconds get 413", low=0, above=True)
    workers: int = setting(2, "requests denoised at once", low=1)
    queue: int = setting(16, "requests that may wait for a worker; more get 503", low=0)
    max_connections: int = setting(64, "open connections; more get 503", low=1)
    body_timeout: float = setting(30.0, "seconds without upload data before a 408", low=0, above=True)
    min_upload_kbps: float = setting(
        16.0, "KB/s an upload must average once it has taken --body-timeout s, or 408", low=0
    )

    @property
    def body(self) -> BodyLimits:
        return BodyLimits(int(self.max_upload_mb * 2**20), self.body_timeout, self.min_upload_kbps * 1024)
