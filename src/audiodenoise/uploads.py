"""Reading an upload's body for the server: in memory, size-capped, and cut off when it stalls or trickles."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import HTTPException, Request
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from .limits import BodyLimits

# An answer sent before the whole body was read closes the connection, so the rest is never read.
CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None


async def read_upload(request: Request, limits: BodyLimits) -> Upload:
    """The audio bytes of a multipart field ``file`` or of a raw body, refused past ``limits``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(limits)
    content_type = request.headers.get("content-type", "")
    mime, options = parse_options_header(content_type)
    if mime == b"multipart/form-data":
        return await _read_multipart(request, limits, options.get(b"boundary"))
    if mime.startswith(b"audio/") or mime == b"application/octet-stream":
        return _non_empty(Upload(b"".join([chunk async for chunk in _body(request, limits)]), None))
    raise HTTPException(
        415, f"unsupported Content-Type {content_type!r}: send multipart field 'file' or raw audio/* bytes"
    )


async def _read_multipart(request: Request, limits: BodyLimits, boundary: bytes | None) -> Upload:
    if not boundary:
        raise HTTPException(422, "malformed multipart body (no boundary in its Content-Type)")
    files, fields = [], []
    parser = FormParser(
        "multipart/form-data",
        on_field=lambda field: fields.append(field) if field.field_name == b"file" else None,
        on_file=lambda file: files.append(file) if file.field_name == b"file" else None,
        boundary=boundary,
        config={"MAX_MEMORY_FILE_SIZE": limits.max_bytes + 1},  # keeps every part in memory
    )
    try:
        async for chunk in _body(request, limits):
            parser.write(chunk)
        parser.finalize()
    except FormParserError as error:
        raise HTTPException(422, f"malformed multipart body ({error})") from None
    if len(files) + len(fields) > 1:
        raise HTTPException(422, "the multipart body has more than one field 'file'; send one file per request")
    if files:
        files[0].file_object.seek(0)
        name = (files[0].file_name or b"").decode(errors="replace") or None
        return _non_empty(Upload(files[0].file_object.read(), name))
    if fields:
        return _non_empty(Upload(fields[0].value or b"", None))
    raise HTTPException(422, "the multipart body has no field 'file'")


async def _body(request: Request, limits: BodyLimits) -> AsyncIterator[bytes]:
    """The body's chunks; 408 when none comes for ``limits.timeout`` s or the upload is slower than its minimum."""
    chunks = request.stream().__aiter__()
    started, received = time.monotonic(), 0
    while True:
        try:
            chunk = await asyncio.wait_for(anext(chunks), limits.timeout)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise HTTPException(408, f"no upload data for {limits.timeout:g} s", headers=CLOSE) from None
        received += len(chunk)
        if received > limits.max_bytes:
            raise _too_large(limits)
        elapsed = time.monotonic() - started
        if elapsed > limits.timeout and received < limits.min_rate * elapsed:
            minimum = limits.min_rate / 1024
            raise HTTPException(408, f"upload slower than this server's minimum of {minimum:g} KB/s", headers=CLOSE)
        yield chunk


def _too_large(limits: BodyLimits) -> HTTPException:
    return HTTPException(413, f"upload over this server's limit of {limits.max_bytes / 2**20:g} MB", headers=CLOSE)


def _non_empty(upload: Upload) -> Upload:
    if not upload.data:
        raise HTTPException(422, "empty upload (0 bytes)")
    return upload
