"""The models shipped inside the package, found by name."""

from __future__ import annotations

from pathlib import Path

from .checkpoint import CONFIG, CheckpointError

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "unet-mask"


def available() -> list[str]:
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / CONFIG).is_file())


def resolve(name_or_path: str | Path) -> Path:
    """A bundled model's folder by name ('default' included), or a checkpoint folder by path."""
    name = DEFAULT_MODEL if str(name_or_path) == "default" else str(name_or_path)
    if (MODELS_DIR / name / CONFIG).is_file():
        return MODELS_DIR / name
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.is_file() and path.parent.joinpath(CONFIG).is_file():
        return path.parent
    raise CheckpointError(
        f"unknown model {str(name_or_path)!r}: not a bundled model ({', '.join(available())}) nor a checkpoint folder"
    )
