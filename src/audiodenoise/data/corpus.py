"""Plain-folder corpora: audio files found recursively, grouped by their first-level subfolder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..audio import AUDIO_SUFFIXES


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    group: str  # speaker for speech, category for noise


def scan_folder(root: str | Path) -> list[CorpusFile]:
    """All audio files under ``root``, sorted, each tagged with its first-level subfolder."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    files = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            relative = path.relative_to(root)
            group = relative.parts[0] if len(relative.parts) > 1 else ""
            files.append(CorpusFile(path, group))
    if not files:
        raise ValueError(f"{root}: no audio files found")
    return files
