"""Train/validation splits that share no speaker and no noise file (or UrbanSound8K fold)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Settings, setting
from .corpus import FORMATS, CorpusError, CorpusFile, read_corpus

SPLITS = ("train", "val")


@dataclass(frozen=True)
class SplitConfig(Settings):
    val_fraction: float = setting(0.05, "share of the clean files held out, by whole speakers", low=0, high=1)
    val_speakers: int | None = setting(None, "hold out this many speakers instead", low=1)
    noise_val_folds: tuple[int, ...] = setting((10,), "UrbanSound8K validation folds")
    speech_format: str = setting("auto", "default: from the folder's layout", choices=FORMATS)
    noise_format: str = setting("auto", "default: from the folder's layout", choices=FORMATS)
    seed: int = setting(0, "of the split and the mixes")


@dataclass(frozen=True)
class Split:
    name: str
    speech: tuple[CorpusFile, ...]
    noise: tuple[CorpusFile, ...]
    voices: tuple[CorpusFile, ...] = ()  # synthetic speech, each group a voice; only ever in training

    @property
    def speakers(self) -> list[str]:
        return sorted({f.group for f in self.speech})


def _group_key(f: CorpusFile, by_file: bool) -> str:
    return str(f.path) if by_file or not f.group else f.group


def _split_groups(
    files: list[CorpusFile], rng: np.random.Generator, by_file: bool, fraction: float, count: int | None = None
) -> tuple[list, list]:
    """Hold out ``count`` groups, or else shuffled groups until they hold ``fraction`` of the files (at least one
    group, and never every group)."""
    sizes: dict[str, int] = {}
    for f in files:
        sizes[_group_key(f, by_file)] = sizes.get(_group_key(f, by_file), 0) + 1
    groups = sorted(sizes)
    rng.shuffle(groups)
    if count is None:
        count, held = 0, 0
        while count < len(groups) - 1 and (count == 0 or held < fraction * len(files)):
            held += sizes[groups[count]]
            count += 1
    val_groups = set(groups[:count])
    train = [f for f in files if _group_key(f, by_file) not in val_groups]
    return train, [f for f in files if _group_key(f, by_file) in val_groups]


def split_corpora(speech_dir: str | Path, noise_dir: str | Path, config: SplitConfig) -> dict[str, Split]:
    """Read both corpora and split them; the same corpora and seed give the same split."""
    rng = np.random.default_rng(config.seed)
    speech = read_corpus(speech_dir, config.speech_format)
    noise = read_corpus(noise_dir, config.noise_format)
    n_speakers = len({_group_key(f, False) for f in speech})
    if config.val_speakers is not None and not 0 < config.val_speakers < n_speakers:
        raise CorpusError(f"{speech_dir}: cannot hold out {config.val_speakers} of {n_speakers} speakers")
    speech_train, speech_val = _split_groups(speech, rng, False, config.val_fraction, config.val_speakers)
    if any(f.fold for f in noise):
        val_folds = {f"fold{k}" for k in config.noise_val_folds}
        noise_train = [f for f in noise if f.fold not in val_folds]
        noise_val = [f for f in noise if f.fold in val_folds]
    else:
        noise_train, noise_val = _split_groups(noise, rng, True, len(speech_val) / len(speech))
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
