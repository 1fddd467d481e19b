"""The dataset on disk: float16 magnitude patch pairs in .npy shards, read row by row, plus a manifest."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..atomic import read_json, write_atomic

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
    manifest = read_json(path, DatasetError, "manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{path}: unsupported dataset format {manifest.get('format_version')!r}")
    return manifest


class ShardFile:
    """Rows of one ``.npy`` shard, each read on demand with one positioned read: nothing stays mapped."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with path.open("rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, fortran_order, self.dtype = read_header(handle)
                self.offset = handle.tell()
        except (OSError, ValueError) as error:
            raise DatasetError(f"{path}: unreadable shard ({error})") from None
        if fortran_order or not shape:
            raise DatasetError(f"{path}: not a shard of patch rows")
        self.rows, self.row_shape = shape[0], shape[1:]
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.row_shape))

    def __getitem__(self, row: int) -> np.ndarray:
        with self.path.open("rb") as handle:
            data = os.pread(handle.fileno(), self.row_bytes, self.offset + row * self.row_bytes)
        if len(data) != self.row_bytes:
            raise DatasetError(f"{self.path}: truncated shard")
        return np.frombuffer(data, self.dtype).reshape(self.row_shape)


class PatchDataset(torch.utils.data.Dataset):
    """Random access to one split's patch pairs, read from the shards as needed, never loaded whole."""

    def __init__(self, folder: str | Path, split: str):
        folder = Path(folder)
        manifest = read_manifest(folder)
        shards = manifest["splits"].get(split, {}).get("shards", [])
        if not shards:
            raise DatasetError(f"{folder}: the dataset has no '{split}' pairs")
        self.noisy = [ShardFile(folder / f"{s['name']}.noisy.npy") for s in shards]
        self.clean = [ShardFile(folder / f"{s['name']}.clean.npy") for s in shards]
        for shard, noisy, clean in zip(shards, self.noisy, self.clean):
            if not noisy.rows == clean.rows == shard["pairs"]:
                raise DatasetError(f"{folder}: shard {shard['name']} does not hold the {shard['pairs']} pairs listed")
        self.offsets = np.cumsum([0] + [s.rows for s in self.noisy])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        shard = int(np.searchsorted(self.offsets, index, side="right")) - 1
        row = index - self.offsets[shard]
        noisy = torch.from_numpy(self.noisy[shard][row].astype(np.float32))
        clean = torch.from_numpy(self.clean[shard][row].astype(np.float32))
        return noisy.unsqueeze(0), clean.unsqueeze(0)
