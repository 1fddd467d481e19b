"""``audiodenoise denoise --server URL``: files denoised by a running ``audiodenoise serve``, written as locally."""

from __future__ import annotations

import io
import json
import math
import mimetypes
import time
import uuid
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from .atomic import write_atomic
from .audio import (
    READ_BLOCK_FRAMES,
    AtomicWriter,
    AudioError,
    FileResult,
    inspect_audio,
    output_format,
    over_limits,
    read_blocks,
    refuse_overwriting,
)

DEADLINE_SECONDS = 600.0  # per file: upload, waits on a busy server (503) and the answer; --server-deadline
MAX_BUSY_WAIT_SECONDS = 60.0  # ask again at least this often, whatever Retry-After says


class ServerError(Exception):
    """The server cannot be used at all (unreachable, not an audiodenoise server, unknown model)."""


class RemoteDenoiser:
    """The local Denoiser's ``denoise_file`` over HTTP; a failing file raises AudioError and stops nothing else."""

    def __init__(
        self, url: str, model: str = "default", strength: float | None = None, deadline: float = DEADLINE_SECONDS
    ):
        if not url.startswith(("http://", "https://")):
            raise ServerError(f"{url}: the server URL must start with http:// or https://")
        if not deadline > 0:  # inf: no deadline
            raise ValueError(f"the server deadline must be above 0 s, not {deadline}")
        self.url = url.rstrip("/")
        self.deadline = deadline
        health, listing = self._get("/healthz"), self._get("/v1/models")
        try:
            self.max_upload_bytes = health["max_upload_mb"] * 2**20
            self.max_seconds = float(health["max_seconds"])
            # newer servers also limit channels and channels x seconds; older ones leave these out
            self.max_channels = None if health.get("max_channels") is None else int(health["max_channels"])
            limit = health.get("max_channel_seconds")
            self.max_channel_seconds = None if limit is None else float(limit)
            offered = [entry["name"] for entry in listing["models"]]
        except (KeyError, TypeError, ValueError):
            raise ServerError(f"{self.url}: not an audiodenoise server") from None
        if model != "default" and model not in offered:
            raise ServerError(f"unknown model {model!r}: the server at {self.url} offers {', '.join(offered)}")
        chosen = {"model": None if model == "default" else model, "strength": strength}
        self.query = urlencode({key: value for key, value in chosen.items() if value is not None})

    def _get(self, path: str) -> dict:
        try:
            with urlopen(self.url + path, timeout=30) as response:
                return json.load(response)
        except (URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise ServerError(f"cannot use the server at {self.url} ({reason})") from None

    def denoise_file(self, source: str | Path, destination: str | Path, mp3_kbps: int | None = None) -> FileResult:
        """As ``Denoiser.denoise_file``: the server answers in the input's format, converted here when
        ``destination``'s suffix names another (or ``mp3_kbps`` asks for another bit rate)."""
        refuse_overwriting(source, destination)
        info = inspect_audio(source)  # the local command's checks and messages before anything is sent
        data = Path(source).read_bytes()
        if len(data) > self.max_upload_bytes:
            raise AudioError(
                f"{source}: {len(data) / 2**20:.1f} MB is over the server's upload limit "
                f"of {self.max_upload_bytes / 2**20:g} MB"
            )
        problem = over_limits(info, self.max_seconds, self.max_channels, self.max_channel_seconds)
        if problem:
            raise AudioError(f"{source}: {problem}")
        started = time.perf_counter()
        denoised = self._post(source, data)
        seconds = time.perf_counter() - started
        output = output_format(info, destination, mp3_kbps)
        if output != output_format(info):
            with AtomicWriter(destination, info.sample_rate, info.channels, output) as writer:
                for block in read_blocks(io.BytesIO(denoised), READ_BLOCK_FRAMES, source):  # the source's format
                    writer.write(block)
            return FileResult(info.frames / info.sample_rate, seconds)
        try:
            write_atomic(destination, lambda temp: temp.write_bytes(denoised))
        except OSError as error:
            raise AudioError(f"{destination}: cannot write output ({error.strerror or error})") from None
        return FileResult(info.frames / info.sample_rate, seconds)

    def _post(self, source: str | Path, data: bytes) -> bytes:
        """POST ``data`` as the multipart field ``file`` with its name, which tells the server its container."""
        name = Path(source).name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        part_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {part_type}\r\n\r\n"
        )
        body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
        request = Request(
            f"{self.url}/v1/denoise?{self.query}",
            data=body,
            method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        deadline = time.monotonic() + self.deadline
        while True:
            left = deadline - time.monotonic()  # the socket timeout (per connect, send or read)
            try:
                with urlopen(request, timeout=max(0.1, left) if math.isfinite(left) else None) as response:
                    return response.read()
            except HTTPError as error:
                if error.code != 503:
                    raise AudioError(f"{source}: {_message(error)} (HTTP {error.code})") from None
                wait, left = _retry_after(error), deadline - time.monotonic()
                if wait >= left:  # the next try would start at or past the deadline
                    time.sleep(max(0.0, left))
                    raise AudioError(f"{source}: the server stayed busy for {self.deadline:g} s (HTTP 503)") from None
                time.sleep(wait)
            except (URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                if isinstance(reason, TimeoutError):  # the timeout was what was left: the deadline has passed
                    raise AudioError(f"{source}: no answer from {self.url} within {self.deadline:g} s") from None
                raise AudioError(f"{source}: request to {self.url} failed ({reason})") from None


def _retry_after(error: HTTPError, fallback: float = 1.0) -> float:
    """Seconds to wait from a 503's Retry-After (seconds or an HTTP date), within 0 and MAX_BUSY_WAIT_SECONDS."""
    value = (error.headers.get("Retry-After") or "").strip()
    try:
        seconds = float(value)
    except ValueError:
        try:  # an HTTP date (GMT; "-0000" gives a naive datetime)
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):  # missing or malformed
            return fallback
        seconds = when.replace(tzinfo=when.tzinfo or UTC).timestamp() - time.time()
    if math.isnan(seconds):
        return fallback
    return min(MAX_BUSY_WAIT_SECONDS, max(0.0, seconds))


def _message(error: HTTPError) -> str:
    """The server's JSON ``error`` text, or the HTTP reason."""
    try:
        return str(json.loads(error.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return str(error.reason)
