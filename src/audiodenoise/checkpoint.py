"""Self-describing checkpoints: ``model.safetensors`` beside a ``config.json`` that names the architecture and holds
every setting. Version 1 configs (before the registry) name no architecture: they are U-Nets."""

from __future__ import annotations

import hashlib
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .atomic import read_json, write_atomic, write_json
from .nets import architecture_name, build, read_settings
from .spectral import SpectralConfig

CHECKPOINT_FORMAT = "audiodenoise-checkpoint"
CHECKPOINT_VERSION = 2
READABLE_VERSIONS = (1, 2)
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
SHIPPED_ONNX = "model.onnx"  # optional: the weights' export, run instead of exporting at load (``audiodenoise export``)


class CheckpointError(Exception):
    pass


def save_checkpoint(folder: str | Path, model: nn.Module, spectral: SpectralConfig, info: dict | None = None) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    config = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "architecture": architecture_name(model),
        "spectral": spectral.to_dict(),
        "model": model.config.to_dict(),
        "info": info or {},
    }
    write_atomic(folder / WEIGHTS, lambda temp: save_file(state, temp))
    write_json(folder / CONFIG, config)


def weights_digest(folder: str | Path) -> str:
    """SHA-256 of a checkpoint's weights, which an export records so that a stale shipped ONNX file is not run."""
    return hashlib.sha256((Path(folder) / WEIGHTS).read_bytes()).hexdigest()


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{folder}: not a checkpoint (no {CONFIG})")
    config = read_json(path, CheckpointError, "config")
    if config.get("format") != CHECKPOINT_FORMAT or config.get("version") not in READABLE_VERSIONS:
        versions = " or ".join(map(str, READABLE_VERSIONS))
        raise CheckpointError(f"{path}: not an audiodenoise checkpoint config of version {versions}")
    if config["version"] == 1:
        config = config | {"version": CHECKPOINT_VERSION, "architecture": "unet"}
    return config


def set_inference_defaults(folder: str | Path, **defaults) -> None:
    """Record defaults the Denoiser takes when the caller gives none (e.g. a tuned ``strength``) in the config."""
    config = read_config(folder)
    config["inference"] = config.get("inference", {}) | defaults
    write_json(Path(folder) / CONFIG, config)


def load_checkpoint(folder: str | Path) -> tuple[nn.Module, SpectralConfig, dict]:
    """The model (in eval mode), its spectral settings, and the whole config (``info``, ``inference``…)."""
    folder = Path(folder)
    config = read_config(folder)
    try:
        spectral = SpectralConfig.from_dict(config["spectral"])
        model = build(read_settings(config.get("architecture"), config["model"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{folder / CONFIG}: invalid settings ({error})") from None
    try:
        state = load_file(folder / WEIGHTS)
        model.load_state_dict(state)
    except (FileNotFoundError, SafetensorError, RuntimeError, OSError) as error:
        reason = str(error).splitlines()[0]
        raise CheckpointError(f"{folder / WEIGHTS}: corrupt or incompatible weights ({reason})") from None
    model.eval()
    return model, spectral, config
