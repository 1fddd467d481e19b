"""On-the-fly mixing: an endless stream of fresh patch pairs from the corpora, with no dataset on disk.

Each pair also carries its complex noisy and clean STFT patches, for losses and metrics on the waveform."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator

import numpy as np
import torch

from ..audio import AudioError
from ..spectral import SpectralConfig
from .mixing import MixConfig
from .pairs import mix_signals, spectrum_patches, target_patches
from .splits import Split

Pair = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # noisy, clean, their spectra


def _mixtures(
    split: Split, spectral: SpectralConfig, mixing: MixConfig, rng: np.random.Generator, endless: bool = True
) -> Iterator[Pair]:
    """(noisy, clean, noisy spectrum, clean spectrum) patches of new mixtures, the clean files in a new order on
    every pass; each is (1, bins, frames)."""
    noises = tuple(f.path for f in split.noise)
    talkers = tuple(f.path for f in split.speech)
    unreadable: set[str] = set()
    while True:
        produced = 0
        clips = talkers + voice_clips(split, mixing.voice_share, rng)
        for index in rng.permutation(len(clips)):
            try:
                signals, errors = mix_signals(clips[index], noises, talkers, rng, spectral, mixing)
                spectra = None if signals is None else spectrum_patches(signals, spectral)
            except AudioError as error:
                spectra, errors = None, [str(error)]
            for line in set(errors) - unreadable:
                print(f"audiodenoise: skipped unreadable file: {line}", file=sys.stderr)
            unreadable.update(errors)
            if spectra is not None:
                produced += len(spectra[0])
                for patch in zip(*target_patches(*spectra, mixing.clean_target), *spectra):
                    yield tuple(part.unsqueeze(0).clone() for part in patch)  # not views of the file
        if not produced:
            raise AudioError(f"no usable clean speech in the {split.name} split")
        if not endless:
            return


def voice_clips(split: Split, share: float, rng: np.random.Generator) -> tuple:
    """Synthetic clips for one pass over the real ones, drawn anew each pass: at most ``share`` of the pass."""
    if not split.voices or not share:
        return ()
    count = min(len(split.voices), round(share / (1 - share) * len(split.speech)))
    return tuple(split.voices[i].path for i in rng.choice(len(split.voices), size=count, replace=False))


class MixingDataset(torch.utils.data.IterableDataset):
    """Endless patch pairs mixed as they are read, shuffled through a buffer.

    Each DataLoader worker mixes its own stream, seeded from ``seed`` and its worker id."""

    def __init__(
        self,
        split: Split,
        spectral: SpectralConfig = SpectralConfig(),
        mixing: MixConfig = MixConfig(),
        seed: int | tuple[int, ...] = 0,
        shuffle_buffer: int = 512,
    ):
        self.split, self.spectral, self.mixing = split, spectral, mixing
        self.seed = (seed,) if isinstance(seed, int) else tuple(seed)
        self.shuffle_buffer = shuffle_buffer

    def __iter__(self) -> Iterator[Pair]:
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([*self.seed, worker.id if worker else 0])
        buffer: list[Pair] = []
        for pair in _mixtures(self.split, self.spectral, self.mixing, rng):
            if len(buffer) < self.shuffle_buffer:
                buffer.append(pair)
                continue
            slot = int(rng.integers(len(buffer)))
            yield buffer[slot]
            buffer[slot] = pair


def fixed_pairs(split: Split, count: int, spectral: SpectralConfig, mixing: MixConfig, seed: int = 0) -> list[Pair]:
    """The same pairs on every call, at most ``count`` from one pass over the files: a validation set."""
    stream = _mixtures(split, spectral, mixing, np.random.default_rng([seed, 2]), endless=False)
    return list(itertools.islice(stream, count))
