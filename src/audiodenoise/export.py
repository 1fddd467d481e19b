"""``audiodenoise export``: a model as one self-describing ONNX file, its config in the metadata."""

from __future__ import annotations

from pathlib import Path

from . import pretrained
from .atomic import write_atomic
from .checkpoint import CheckpointError, load_checkpoint
from .engine import onnx_bytes


def export_onnx(name_or_path: str | Path, destination: str | Path) -> None:
    """Write a bundled model or checkpoint folder as ONNX to ``destination``, atomically."""
    model, spectral, config = load_checkpoint(pretrained.resolve(name_or_path))
    data = onnx_bytes(model, spectral, config)
    try:
        write_atomic(destination, lambda temp: temp.write_bytes(data))
    except OSError as error:
        raise CheckpointError(f"{destination}: cannot write ({error.strerror or error})") from None
