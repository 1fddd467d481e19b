"""The dataset on disk: float16 magnitude patch pairs in memory-mapped shards, plus a manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_atomic

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class DatasetError(Exception):
    pass


def save_shard(stem: Path, noisy: np.ndarray, clean: np.ndarray) -> None:
    """Write ``stem.noisy.npy`` and ``stem.clean.npy`` as float16, each atomically."""

    def write(temp: Path, array: np.ndarray) -> None:
        with temp.open("wb") as handle:  # a path would get ".npy" appended
            np.save(handle, array.astype(np.float16))

    for kind, array in (("noisy", noisy), ("clean", clean)):
        write_atomic(stem.with_name(f"{stem.name}.{kind}.npy"), lambda temp, array=array: write(temp, array))


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{folder}: not a dataset (no {MANIFEST}); make one with 'audiodenoise prepare'")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: unreadable manifest ({error})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{path}: unsupported dataset format {manifest.get('format_version')!r}")
    return manifest


class PatchDataset(torch.utils.data.Dataset):
    """Random access to one split's patch pairs without loading them into memory."""

    def __init__(self, folder: str | Path, split: str):
        folder = Path(folder)
        manifest = read_manifest(folder)
        shards = manifest["splits"].get(split, {}).get("shards", [])
        if not shards:
            raise DatasetError(f"{folder}: the dataset has no '{split}' pairs")
        self.noisy = [np.load(folder / f"{s['name']}.noisy.npy", mmap_mode="r") for s in shards]
        self.clean = [np.load(folder / f"{s['name']}.clean.npy", mmap_mode="r") for s in shards]
        self.offsets = np.cumsum([0] + [len(a) for a in self.noisy])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        shard = int(np.searchsorted(self.offsets, index, side="right")) - 1
        row = index - self.offsets[shard]
        noisy = torch.from_numpy(np.asarray(self.noisy[shard][row], dtype=np.float32))
        clean = torch.from_numpy(np.asarray(self.clean[shard][row], dtype=np.float32))
        return noisy.unsqueeze(0), clean.unsqueeze(0)
