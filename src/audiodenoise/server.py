"""``audiodenoise serve``: an HTTP API and a web page over the same Denoiser the command line uses.

Uploads are held in memory only (never written to disk) and denoised in a bounded pool of worker threads;
requests beyond the workers and the waiting queue get 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from swagger_ui_bundle import swagger_ui_path

from .audio import (
    READ_BLOCK_FRAMES,
    AudioError,
    AudioInfo,
    UnreadableAudio,
    denoised_name,
    describe,
    inspect_media_file,
    is_media,
    open_audio,
    open_sink,
    output_format,
    over_limits,
    read_blocks,
)
from .checkpoint import CheckpointError
from .denoiser import Denoiser
from .http_guard import NO_FRAMING, Access, GuardMiddleware
from .limits import Limits
from .media import MediaError
from .uploads import Upload, read_upload

WEB_DIR = Path(__file__).parent / "web"
logger = logging.getLogger("audiodenoise.server")
MEDIA_TYPES = {"WAV": "audio/wav", "WAVEX": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg", "MP3": "audio/mpeg"}
MEDIA_TYPES |= {"M4A": "audio/mp4", "MP4": "video/mp4", "MOV": "video/quicktime", "MKV": "video/x-matroska"}
MEDIA_TYPES |= {"WEBM": "video/webm", "AAC": "audio/aac"}
SUFFIXES = {"WAV": ".wav", "WAVEX": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3"}
# 'wasm-unsafe-eval' lets ONNX Runtime Web compile its WebAssembly; nothing else may be evaluated.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; media-src 'self' blob:; img-src 'self' data: blob:; "
    f"object-src 'none'; {NO_FRAMING}"
)
# Cross-origin isolation, which WebAssembly threads need: on the page and on the scripts its workers run.
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
# A worker follows the policy of its own script's response, so the static files carry the page's too.
PAGE_HEADERS = {"Content-Security-Policy": PAGE_POLICY, **ISOLATION}
BINARY = {"type": "string", "format": "binary"}
DENOISE_BODY = {
    "required": True,
    "description": "the audio file, as multipart field `file` or as the raw body with an audio Content-Type",
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": BINARY}}},
        "audio/*": {"schema": BINARY},
        "application/octet-stream": {"schema": BINARY},
    },
}
ERROR_RESPONSES = {
    status: {"description": text, "content": {"application/json": {"example": {"error": "what went wrong"}}}}
    for status, text in {
        400: "unknown model",
        404: "no such model",
        403: "cross-origin request from an origin not allowed",
        408: "upload stalled or slower than the server's minimum rate",
        413: "upload too large, or audio too long or with too many channels",
        415: "not audio",
        421: "a Host name this server does not answer to",
        422: "corrupt or truncated audio, or bad parameters",
        503: "queue full; see Retry-After",
    }.items()
}


class IsolatedStaticFiles(StaticFiles):
    """Static files with the page's headers, so workers started from them are isolated and restricted alike;
    dotfiles (such as the vendor folder's stamp) are not served."""

    async def get_response(self, path: str, scope) -> Response:
        if any(part.startswith(".") for part in re.split(r"[/\\]", path)):
            raise StarletteHTTPException(404)
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


@dataclass
class Load:
    pending: int = 0  # requests admitted and not yet answered
    recent_seconds: float = 1.0  # processing time of the last request, for Retry-After


@dataclass(frozen=True)
class Denoised:
    data: bytes
    format: str
    audio_seconds: float
    processing_seconds: float


def load_models(
    names_or_folders: list[str], threads: int | None = None, engine: str | None = None
) -> dict[str, Denoiser]:
    """The models a server offers, by name (the first is the default); requests can only pick among these."""
    models: dict[str, Denoiser] = {}
    for item in names_or_folders:
        denoiser = Denoiser.from_pretrained(item, threads=threads, engine=engine)
        if denoiser.name in models:
            raise CheckpointError(f"two of the models given are named {denoiser.name!r}; give each a distinct name")
        models[denoiser.name] = denoiser
    return models


def create_app(models: dict[str, Denoiser], limits: Limits = Limits(), access: Access = Access()) -> FastAPI:
    pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="denoise")
    default_model = next(iter(models))
    load = Load()
    onnx_exports: dict[str, bytes] = {}
    export_lock = threading.Lock()  # torch.onnx.export is not re-entrant: each model is exported once

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="audiodenoise",
        summary="Speech denoising with a spectrogram U-Net",
        lifespan=lifespan,
        docs_url=None,  # served below from the packaged Swagger UI, so the docs work offline
        redoc_url=None,
    )
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(access.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
        expose_headers=["X-Model", "X-Processing-Time", "X-Real-Time-Factor", "Content-Disposition"],
    )
    app.add_middleware(GuardMiddleware, access=access)
    app.mount("/static", IsolatedStaticFiles(directory=WEB_DIR), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="audiodenoise API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )
        page.headers["Content-Security-Policy"] = _docs_policy(page.body.decode())
        return page

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/healthz", summary="liveness, load and limits")
    def healthz() -> dict:
        return {
            "status": "ok",
            "busy": load.pending,
            "capacity": limits.workers + limits.queue,
            "max_upload_mb": limits.max_upload_mb,
            "max_seconds": limits.max_seconds,
            "max_channels": limits.max_channels,
            "max_channel_seconds": limits.max_channel_seconds,
        }

    @app.get("/v1/models", summary="the models this server offers, with what denoising them in a browser needs")
    def list_models() -> dict:
        return {"default": default_model, "models": [_describe(name, d) for name, d in models.items()]}

    @app.get(
        "/v1/models/{name}/onnx",
        summary="a model as ONNX (features -> gain, or spectrum and state -> mask), for denoising in the browser",
        description="The settings around the model (STFT, scaling, strength, gain floor) are in /v1/models.",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {"schema": BINARY}}}, 404: ERROR_RESPONSES[404]},
    )
    def model_onnx(name: str) -> Response:
        if name not in models:
            raise HTTPException(404, f"unknown model {name!r}; this server offers {', '.join(models)}")
        with export_lock:
            if name not in onnx_exports:
                onnx_exports[name] = models[name].onnx()
        disposition = f"attachment; filename*=UTF-8''{quote(name)}.onnx"
        return Response(
            onnx_exports[name],
            media_type="application/octet-stream",
            headers={"Content-Disposition": disposition},
        )

    @app.post(
        "/v1/denoise",
        summary="denoise one audio file",
        description="Returns the denoised audio in the input's format, length, sample rate and channels. "
        "X-Processing-Time (seconds) and X-Real-Time-Factor report the work.",
        response_class=Response,
        responses={200: {"content": {"audio/*": {"schema": BINARY}}}, **ERROR_RESPONSES},
        openapi_extra={"requestBody": DENOISE_BODY},
    )
    async def denoise(
        request: Request,
        strength: float | None = Query(None, ge=0.0, le=1.0, description="0 keeps the input, 1 the raw model"),
        model: str | None = Query(None, description="a name from /v1/models (default: the server's first)"),
    ) -> Response:
        denoiser = _pick(models, default_model, model, strength)
        try:
            upload = await read_upload(request, limits.body)  # no worker or queue place is held while it arrives
        except ClientDisconnect:
            logger.warning("a client went away during its upload")
            return Response(status_code=400)
        if load.pending >= limits.workers + limits.queue:
            wait = math.ceil(load.recent_seconds * load.pending / limits.workers)
            raise HTTPException(503, "the server is busy; retry later", headers={"Retry-After": str(max(1, wait))})
        load.pending += 1
        try:
            result = await asyncio.wrap_future(pool.submit(denoise_bytes, denoiser, upload, limits))
        finally:
            load.pending -= 1
        load.recent_seconds = result.processing_seconds
        return Response(
            result.data,
            media_type=MEDIA_TYPES.get(result.format, "application/octet-stream"),
            headers={
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(output_name(upload, result.format))}",
                "X-Model": denoiser.name,
                "X-Processing-Time": f"{result.processing_seconds:.3f}",
                "X-Real-Time-Factor": f"{result.processing_seconds / result.audio_seconds:.4f}",
            },
        )

    return app


def _describe(name: str, denoiser: Denoiser) -> dict:
    """A model's entry in /v1/models: its name and the settings a browser needs to run its ONNX export (``stream``:
    a spectrum network's look-ahead and state shapes, null for a patch-gain network)."""
    return {
        "name": name,
        "sample_rate": denoiser.sample_rate,
        "strength": denoiser.strength,
        "gain_floor": denoiser.gain_floor,
        "spectral": denoiser.spectral.to_dict(),
        "stream": denoiser.stream_settings,
    }


def _pick(models: dict[str, Denoiser], default_model: str, model: str | None, strength: float | None) -> Denoiser:
    """The requested model by name only (never a path), with the request's strength."""
    name = default_model if model in (None, "default") else model
    if name not in models:
        raise HTTPException(400, f"unknown model {model!r}; this server offers {', '.join(models)}")
    if strength is None:
        return models[name]
    return models[name].with_strength(strength)


def denoise_bytes(denoiser: Denoiser, upload: Upload, limits: Limits) -> Denoised:
    """Decode, denoise and encode again in the input's format, block by block; runs in a worker thread.
    A file named as a PyAV container (M4A, WebM, MP4…) is read and written through PyAV, its video copied."""
    started = time.perf_counter()
    label = upload.filename or "upload"
    info = _describe_upload(upload, label)
    problem = over_limits(info, limits.max_seconds, limits.max_channels, limits.max_channel_seconds)
    if problem:
        raise HTTPException(413, problem)
    encoded = io.BytesIO()
    blocks = read_blocks(io.BytesIO(upload.data), READ_BLOCK_FRAMES, label)
    try:
        sink = open_sink(encoded, info.sample_rate, info.channels, output_format(info), io.BytesIO(upload.data))
        with contextlib.closing(sink) as output:
            for block in denoiser.denoise_blocks(blocks, info.sample_rate, info.channels):
                output.write(block)
    except AudioError as error:
        raise HTTPException(422, str(error)) from None
    except MediaError as error:  # PyAV cannot write it
        raise HTTPException(415, f"{label}: {error}") from None
    audio_seconds = info.frames / info.sample_rate
    return Denoised(encoded.getvalue(), info.format, audio_seconds, time.perf_counter() - started)


def _describe_upload(upload: Upload, label: str) -> AudioInfo:
    """The upload's layout: 415 when it is not audio, 422 when it is broken."""
    try:
        if is_media(label):
            return inspect_media_file(io.BytesIO(upload.data), label)
        with open_audio(io.BytesIO(upload.data), label) as handle:
            return describe(handle, label, len(upload.data))
    except UnreadableAudio as error:
        raise HTTPException(415, str(error)) from None
    except AudioError as error:
        raise HTTPException(422, str(error)) from None


def output_name(upload: Upload, audio_format: str) -> str:
    """``<stem>_denoised<suffix>``, the command line's naming, from the uploaded file's name."""
    name = Path(upload.filename or "audio").name
    suffix = Path(name).suffix or SUFFIXES.get(audio_format, f".{audio_format.lower()}")
    return denoised_name(f"{Path(name).stem or 'audio'}{suffix}")


def _docs_policy(page: str) -> str:
    """The API docs' policy: their own inline start-up script by its hash, the packaged assets, nothing else."""
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts)
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data:; object-src 'none'; {NO_FRAMING}"
    )


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in error.errors())
    return JSONResponse({"error": problems}, status_code=422)


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": "internal server error; the server's log has the details"}, status_code=500)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, so that a port in use is a one-line error before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise OSError(f"cannot listen on {host}:{port} ({reason})") from None


def serve(
    models: list[str],
    host: str,
    port: int,
    limits: Limits,
    threads: int | None = None,
    engine: str | None = None,
    allowed_hosts: tuple[str, ...] = (),
    cors_origins: tuple[str, ...] = (),
) -> int:
    import uvicorn

    threads = threads or max(1, (os.cpu_count() or 1) // limits.workers)
    loaded = load_models(models, threads, engine)
    sock = listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    app = create_app(loaded, limits, Access(host, allowed_hosts, cors_origins))
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"audiodenoise: serving on http://{shown_host}:{bound_port}/ (Ctrl-C stops)", flush=True)
    config = uvicorn.Config(app, log_level="info", server_header=False, limit_concurrency=limits.max_connections)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
