"""Train/validation splits that share no speaker and no noise file (or UrbanSound8K fold)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corpus import CorpusError, CorpusFile, read_corpus

SPLITS = ("train", "val")


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float = 0.05
    val_speakers: int | None = None  # a count of validation speakers instead of the fraction
    noise_val_folds: tuple[int, ...] = (10,)  # UrbanSound8K
    speech_format: str = "auto"
    noise_format: str = "auto"
    seed: int = 0


@dataclass(frozen=True)
class Split:
    name: str
    speech: tuple[CorpusFile, ...]
    noise: tuple[CorpusFile, ...]

    @property
    def speakers(self) -> list[str]:
        return sorted({f.group for f in self.speech})


def _split_groups(files: list[CorpusFile], n_val: int, rng: np.random.Generator, by_file: bool) -> tuple[list, list]:
    def key(f: CorpusFile) -> str:
        return str(f.path) if by_file or not f.group else f.group

    groups = sorted({key(f) for f in files})
    rng.shuffle(groups)
    val_groups = set(groups[:n_val])
    return [f for f in files if key(f) not in val_groups], [f for f in files if key(f) in val_groups]


def _val_count(n_groups: int, fraction: float) -> int:
    return min(n_groups - 1, max(1, round(n_groups * fraction))) if n_groups > 1 else 0


def split_corpora(speech_dir: str | Path, noise_dir: str | Path, config: SplitConfig) -> dict[str, Split]:
    """Read both corpora and split them; the same corpora and seed give the same split."""
    rng = np.random.default_rng(config.seed)
    speech = read_corpus(speech_dir, config.speech_format)
    noise = read_corpus(noise_dir, config.noise_format)
    n_speakers = len({f.group or str(f.path) for f in speech})
    if config.val_speakers is not None and not 0 < config.val_speakers < n_speakers:
        raise CorpusError(f"{speech_dir}: cannot hold out {config.val_speakers} of {n_speakers} speakers")
    n_val = config.val_speakers if config.val_speakers is not None else _val_count(n_speakers, config.val_fraction)
    speech_train, speech_val = _split_groups(speech, n_val, rng, by_file=False)
    if any(f.fold for f in noise):
        val_folds = {f"fold{k}" for k in config.noise_val_folds}
        noise_train = [f for f in noise if f.fold not in val_folds]
        noise_val = [f for f in noise if f.fold in val_folds]
    else:
        noise_fraction = n_val / n_speakers if n_speakers else config.val_fraction
        noise_train, noise_val = _split_groups(noise, _val_count(len(noise), noise_fraction), rng, by_file=True)
    return {
        "train": Split("train", tuple(speech_train), tuple(noise_train)),
        "val": Split("val", tuple(speech_val), tuple(noise_val)),
    }


def corpus_digest(splits: dict[str, Split], speech_dir: str | Path, noise_dir: str | Path) -> str:
    """A fingerprint of which files went where, independent of where the corpora are mounted."""
    digest = hashlib.sha256()
    for split in splits.values():
        for root, files in ((Path(speech_dir), split.speech), (Path(noise_dir), split.noise)):
            for f in files:
                digest.update(f"{split.name}\t{f.path.relative_to(root)}\t{f.group}\t{f.fold}\n".encode())
    return digest.hexdigest()
