"""``audiodenoise export``: the U-Net as one self-describing ONNX file, its config in the metadata."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import pretrained
from .atomic import write_atomic
from .checkpoint import CheckpointError, load_checkpoint
from .engine import INPUT_NAME, OUTPUT_NAME, GainNet, OnnxEngine
from .model import UNet
from .spectral import SpectralConfig

if TYPE_CHECKING:
    from .denoiser import Denoiser

CONFIG_KEY = "audiodenoise.config"  # metadata_props entry holding the checkpoint's config.json
OPSET = 17


def onnx_bytes(model: UNet, spectral: SpectralConfig, config: dict | None = None) -> bytes:
    """The model (features -> gain, dynamic batch) as ONNX, with ``config`` embedded as metadata."""
    import onnx

    config = config or {"spectral": spectral.to_dict(), "model": model.config.to_dict()}
    buffer = io.BytesIO()
    example = torch.zeros(1, 1, spectral.n_bins, spectral.patch_frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and folding notes
        torch.onnx.export(
            GainNet(model, spectral.db_scale),
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, {CONFIG_KEY: json.dumps(config)})
    return graph.SerializeToString()


def denoiser_onnx(denoiser: Denoiser) -> bytes:
    """The ONNX model a Denoiser runs: its ONNX Runtime engine's bytes, or its PyTorch U-Net exported now."""
    if isinstance(denoiser.engine, OnnxEngine):
        return denoiser.engine.model
    return onnx_bytes(denoiser.engine.net.model, denoiser.spectral)


def export_onnx(name_or_path: str | Path, destination: str | Path) -> None:
    """Write a bundled model or checkpoint folder as ONNX to ``destination``, atomically."""
    model, spectral, config = load_checkpoint(pretrained.resolve(name_or_path))
    data = onnx_bytes(model, spectral, config)
    try:
        write_atomic(destination, lambda temp: temp.write_bytes(data))
    except OSError as error:
        raise CheckpointError(f"{destination}: cannot write ({error.strerror or error})") from None


def load_onnx(path: str | Path, threads: int | None = None) -> tuple[OnnxEngine, SpectralConfig, dict]:
    """An engine over an exported file, its spectral settings and its embedded config."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    engine = OnnxEngine(path.read_bytes(), threads, source=str(path))
    try:
        config = json.loads(engine.metadata[CONFIG_KEY])
        spectral = SpectralConfig.from_dict(config["spectral"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: not an audiodenoise ONNX export (no valid {CONFIG_KEY}: {error})") from None
    return engine, spectral, config
