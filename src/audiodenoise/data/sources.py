"""Where the trainer's batches come from: a prepared dataset, or corpora mixed on the fly. Both are a BatchSource."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Protocol

import torch

from ..spectral import SpectralConfig
from .corpus import read_corpus
from .dataset import PatchDataset, read_manifest
from .mixing import MixConfig
from .onthefly import MixingDataset, fixed_pairs
from .splits import Split, SplitConfig, split_corpora

Batch = tuple[torch.Tensor, ...]  # noisy and clean magnitudes; on the fly also their complex spectra


def collate(pairs: list[Batch]) -> Batch:
    return tuple(torch.stack(parts) for parts in zip(*pairs))


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (torchrun); each reads its own share of every batch."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


class BatchSource(Protocol):
    name: str  # for messages and the checkpoints' info
    spectral: SpectralConfig
    mixing: MixConfig | None  # None: a dataset prepared before its manifest recorded them
    carries_spectra: bool  # whether pairs hold the complex spectra too (waveform loss, val_si_sdr_db)
    speakers: Sequence[str]  # of the training split
    synthetic_voices: Sequence[str]  # synthetic speakers of the training split

    def steps_per_epoch(self, batch_size: int, ranks: Ranks) -> int: ...

    def epoch(self, epoch: int, start: int, batch_size: int, seed: int, ranks: Ranks) -> Iterator[Batch]:
        """Batches ``start`` to the end of ``epoch``: the same ones for the same arguments (resume relies on it)."""

    def validation(self, count: int) -> Sequence[Batch]:
        """At most ``count`` validation pairs, the same on every call."""


class PreparedSource:
    """The shuffled training split of a prepared dataset; its spectral and mixing settings come from its manifest."""

    carries_spectra = False

    def __init__(self, folder: str | Path):
        manifest = read_manifest(folder)
        self.folder, self.name = folder, str(folder)
        self.spectral = SpectralConfig.from_dict(manifest["spectral"], prefix=f"{folder}: spectral.")
        mixing = manifest.get("mixing")
        self.mixing = None if mixing is None else MixConfig.from_dict(mixing, prefix=f"{folder}: mixing.")
        self.speakers = manifest["splits"]["train"]["speakers"]
        self.synthetic_voices = ()

    @cached_property
    def pairs(self) -> PatchDataset:
        return PatchDataset(self.folder, "train")

    def steps_per_epoch(self, batch_size: int, ranks: Ranks) -> int:
        return len(self.pairs) // (batch_size * ranks.world)

    def epoch(self, epoch: int, start: int, batch_size: int, seed: int, ranks: Ranks = Ranks()) -> Iterator[Batch]:
        order = torch.randperm(len(self.pairs), generator=torch.Generator().manual_seed(seed + epoch))
        for step in range(start, self.steps_per_epoch(batch_size, ranks)):
            first = (step * ranks.world + ranks.rank) * batch_size
            yield collate([self.pairs[i] for i in order[first : first + batch_size].tolist()])

    def validation(self, count: int) -> Sequence[Batch]:
        pairs = PatchDataset(self.folder, "val")
        return torch.utils.data.Subset(pairs, range(min(count, len(pairs))))


def _single_thread(_: int) -> None:
    torch.set_num_threads(1)


@dataclass(frozen=True)
class OnTheFly:
    """Pairs mixed as they are read from these corpora, new ones every epoch: ``epoch_pairs`` per epoch, and every
    (epoch, start, rank) draws new mixes; ``workers`` DataLoader processes mix them. Clips of ``voices`` (one
    folder per voice) join the training clips, up to ``mixing.voice_share`` of them."""

    speech: str | Path
    noise: str | Path
    mixing: MixConfig = MixConfig()
    split: SplitConfig = SplitConfig()
    spectral: SpectralConfig = SpectralConfig()
    epoch_pairs: int = 20000
    workers: int = 1
    voices: str | Path | None = None  # synthetic speech (scripts/synthesize_voices.py), for training only

    carries_spectra = True

    @property
    def name(self) -> str:
        return f"on the fly: {self.speech} + {self.noise}"

    @cached_property
    def splits(self) -> dict[str, Split]:
        splits = split_corpora(self.speech, self.noise, self.split)
        if self.voices is not None:
            splits["train"] = replace(splits["train"], voices=tuple(read_corpus(self.voices, "plain")))
        return splits

    @property
    def speakers(self) -> list[str]:
        return self.splits["train"].speakers

    @property
    def synthetic_voices(self) -> list[str]:
        return sorted({f.group for f in self.splits["train"].voices})

    def steps_per_epoch(self, batch_size: int, ranks: Ranks) -> int:
        return self.epoch_pairs // (batch_size * ranks.world)

    def epoch(self, epoch: int, start: int, batch_size: int, seed: int, ranks: Ranks = Ranks()) -> Iterator[Batch]:
        data = MixingDataset(self.splits["train"], self.spectral, self.mixing, seed=(seed, epoch, start, ranks.rank))
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=batch_size,
            num_workers=self.workers,
            worker_init_fn=_single_thread if self.workers else None,
            multiprocessing_context="fork" if self.workers else None,
        )
        yield from itertools.islice(loader, self.steps_per_epoch(batch_size, ranks) - start)

    def validation(self, count: int) -> Sequence[Batch]:
        return fixed_pairs(self.splits["val"], count, self.spectral, self.mixing.unaugmented())
