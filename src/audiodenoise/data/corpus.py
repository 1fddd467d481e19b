"""Corpus readers: Common Voice, VoxCeleb 1/2, UrbanSound8K and plain folders, chosen from the layout."""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from ..audio import AUDIO_SUFFIXES

FORMATS = ("auto", "plain", "commonvoice", "voxceleb", "urbansound8k")
COMMON_VOICE_TABLES = ("validated.tsv", "train.tsv", "dev.tsv", "test.tsv")
URBANSOUND_TABLE = Path("metadata") / "UrbanSound8K.csv"
VOXCELEB_SPEAKER = re.compile(r"id\d+")
LAYOUTS = {
    "commonvoice": "clips/ and validated.tsv, train.tsv, dev.tsv or test.tsv",
    "voxceleb": "wav/idNNNNN/ or aac/idNNNNN/ folders",
    "urbansound8k": f"{URBANSOUND_TABLE} and audio/fold1..fold10",
}


class CorpusError(ValueError):
    pass


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    group: str  # speaker for speech, category (or class) for noise
    fold: str = ""  # UrbanSound8K's fold; splits follow it when set


def detect_format(root: Path) -> str:
    if (root / "clips").is_dir() and any((root / t).is_file() for t in COMMON_VOICE_TABLES):
        return "commonvoice"
    if (root / URBANSOUND_TABLE).is_file():
        return "urbansound8k"
    for top in ("wav", "aac"):
        if (root / top).is_dir() and any(VOXCELEB_SPEAKER.fullmatch(p.name) for p in (root / top).iterdir()):
            return "voxceleb"
    return "plain"


def read_corpus(root: str | Path, format: str = "auto") -> list[CorpusFile]:
    """The corpus's audio files, each tagged with its speaker or category."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: not a folder")
    if format not in FORMATS:
        raise CorpusError(f"unknown corpus format {format!r}; choose from {', '.join(FORMATS)}")
    detected = detect_format(root)
    if format not in ("auto", "plain", detected):
        raise CorpusError(f"{root}: not a {format} corpus (expected {LAYOUTS[format]})")
    format = detected if format == "auto" else format
    files = {"plain": _plain, "commonvoice": _common_voice, "voxceleb": _voxceleb, "urbansound8k": _urbansound}[format](
        root
    )
    if not files:
        raise CorpusError(f"{root}: no audio files found (read as {format})")
    return files


def _plain(root: Path) -> list[CorpusFile]:
    files = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            relative = path.relative_to(root)
            files.append(CorpusFile(path, relative.parts[0] if len(relative.parts) > 1 else ""))
    return files


def _read_table(path: Path, columns: tuple[str, ...], delimiter: str) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(f"{path}: missing column(s) {', '.join(missing)}")
        return list(reader)


def _common_voice(root: Path) -> list[CorpusFile]:
    seen: dict[str, CorpusFile] = {}
    for table in COMMON_VOICE_TABLES:
        if (root / table).is_file():
            for row in _read_table(root / table, ("client_id", "path", "sentence"), "\t"):
                seen.setdefault(row["path"], CorpusFile(root / "clips" / row["path"], row["client_id"]))
    return [seen[key] for key in sorted(seen)]


def _voxceleb(root: Path) -> list[CorpusFile]:
    files = []
    for top, suffix in (("wav", ".wav"), ("aac", ".m4a")):
        for path in sorted((root / top).glob(f"id*/*/*{suffix}")):
            files.append(CorpusFile(path, path.parent.parent.name))
    m4a = [f for f in files if f.path.suffix == ".m4a"]
    if m4a and not _decodable(m4a[0].path):
        print(
            f"audiodenoise: {len(m4a)} VoxCeleb .m4a files skipped: this soundfile cannot decode AAC", file=sys.stderr
        )
        files = [f for f in files if f.path.suffix != ".m4a"]
    return files


def _decodable(path: Path) -> bool:
    try:
        sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return False
    return True


def _urbansound(root: Path) -> list[CorpusFile]:
    rows = _read_table(root / URBANSOUND_TABLE, ("slice_file_name", "fold", "class"), ",")
    return [
        CorpusFile(root / "audio" / f"fold{row['fold']}" / row["slice_file_name"], row["class"], f"fold{row['fold']}")
        for row in rows
    ]
