"""Atomic file writes (write a hidden sibling, then rename it onto the target), and reading back the JSON ones."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

TAG_CHARS = 12  # hex digits of the random tag in a temporary name


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name beside ``path``; the file is created by whoever writes it (so the umask applies)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:TAG_CHARS]}.part")


def temporaries(path: str | Path) -> list[Path]:
    """The ``temporary_sibling`` files of ``path`` that exist: what a writer killed part-way leaves behind."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.{'?' * TAG_CHARS}.part"))


def discard(temp: Path) -> None:
    with contextlib.suppress(OSError):
        temp.unlink()


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temp)``, then rename ``temp`` onto ``path``; on any failure remove ``temp``."""
    path = Path(path)
    temp = temporary_sibling(path)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        discard(temp)
        raise


def write_json(path: str | Path, payload: dict) -> None:
    write_atomic(path, lambda temp: temp.write_text(json.dumps(payload, indent=2) + "\n"))


def read_json(path: str | Path, error: type[Exception], what: str) -> dict:
    """The JSON object in ``path``; ``error`` with one line naming the file and ``what`` it should hold if not."""
    try:
        document = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as reason:
        raise error(f"{path}: unreadable {what} ({reason})") from None
    if not isinstance(document, dict):
        raise error(f"{path}: unreadable {what} (not a JSON object)")
    return document
