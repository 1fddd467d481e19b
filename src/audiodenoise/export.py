"""``audiodenoise export``: a model as one self-describing ONNX file, its config in the metadata."""

from __future__ import annotations

from pathlib import Path

from . import pretrained
from .atomic import write_atomic
from .checkpoint import CheckpointError, load_checkpoint, weights_digest
from .engine import onnx_bytes


def export_onnx(name_or_path: str | Path, destination: str | Path) -> None:
    """Write a bundled model or checkpoint folder as ONNX to ``destination``, atomically, with the weights' digest
    (so that, written into the folder as ``checkpoint.SHIPPED_ONNX``, the Denoiser runs it instead of exporting)."""
    folder = pretrained.resolve(name_or_path)
    model, spectral, config = load_checkpoint(folder)
    data = onnx_bytes(model, spectral, config | {"weights_sha256": weights_digest(folder)})
    try:
        write_atomic(destination, lambda temp: temp.write_bytes(data))
    except OSError as error:
        raise CheckpointError(f"{destination}: cannot write ({error.strerror or error})") from None
