"""``audiodenoise denoise --server URL``: files denoised by a running ``audiodenoise serve``, written as locally."""

from __future__ import annotations

import json
import mimetypes
import time
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from .atomic import write_atomic
from .audio import AudioError, inspect_audio
from .denoiser import FileResult

BUSY_RETRIES = 5
TIMEOUT_SECONDS = 600


class ServerError(Exception):
    """The server cannot be used at all (unreachable, not an audiodenoise server, unknown model)."""


class RemoteDenoiser:
    """The local Denoiser's ``denoise_file`` over HTTP; a failing file raises AudioError and stops nothing else."""

    def __init__(self, url: str, model: str = "default", strength: float | None = None):
        if not url.startswith(("http://", "https://")):
            raise ServerError(f"{url}: the server URL must start with http:// or https://")
        self.url = url.rstrip("/")
        health, listing = self._get("/healthz"), self._get("/v1/models")
        try:
            self.max_upload_bytes = health["max_upload_mb"] * 2**20
            self.max_seconds = float(health["max_seconds"])
            offered = [entry["name"] for entry in listing["models"]]
        except (KeyError, TypeError):
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

    def denoise_file(self, source: str | Path, destination: str | Path) -> FileResult:
        info = inspect_audio(source)  # the local command's checks and messages before anything is sent
        data = Path(source).read_bytes()
        if len(data) > self.max_upload_bytes:
            raise AudioError(
                f"{source}: {len(data) / 2**20:.1f} MB is over the server's upload limit "
                f"of {self.max_upload_bytes / 2**20:g} MB"
            )
        duration = info.frames / info.sample_rate
        if duration > self.max_seconds:
            raise AudioError(f"{source}: {duration:.1f} s is over the server's limit of {self.max_seconds:g} s")
        started = time.perf_counter()
        denoised = self._post(source, data)
        seconds = time.perf_counter() - started
        try:
            write_atomic(destination, lambda temp: temp.write_bytes(denoised))
        except OSError as error:
            raise AudioError(f"{destination}: cannot write output ({error.strerror or error})") from None
        return FileResult(duration, seconds)

    def _post(self, source: str | Path, data: bytes) -> bytes:
        guessed = mimetypes.guess_type(Path(source).name)[0] or ""
        content_type = guessed if guessed.startswith("audio/") else "application/octet-stream"
        request = Request(
            f"{self.url}/v1/denoise?{self.query}", data=data, method="POST", headers={"Content-Type": content_type}
        )
        retries = BUSY_RETRIES
        while True:
            try:
                with urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                    return response.read()
            except HTTPError as error:
                if error.code != 503 or not retries:
                    raise AudioError(f"{source}: {_message(error)} (HTTP {error.code})") from None
                retries -= 1
                time.sleep(_retry_after(error))
            except (URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise AudioError(f"{source}: request to {self.url} failed ({reason})") from None


def _retry_after(error: HTTPError) -> float:
    try:
        return min(60.0, max(0.0, float(error.headers.get("Retry-After", 1))))
    except ValueError:  # an HTTP date instead of seconds
        return 1.0


def _message(error: HTTPError) -> str:
    """The server's JSON ``error`` text, or the HTTP reason."""
    try:
        return str(json.loads(error.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return str(error.reason)
