"""``audiodenoise prepare``: mix speech with noise and write patch pairs to disk."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import write_json
from ..audio import AudioError, read_mono
from ..spectral import SpectralConfig, signal_magnitude, split_patches
from . import synth
from .corpus import CorpusFile, read_corpus
from .dataset import FORMAT_VERSION, MANIFEST, ShardWriter
from .mixing import MixConfig, fit_length, mix, power, remove_silence


@dataclasses.dataclass(frozen=True)
class MixJob:
    index: int
    clean: Path
    noises: tuple[Path, ...]  # this split's noise files
    talkers: tuple[Path, ...]  # this split's speech, for babble
    seed: int


def split_groups(
    files: list[CorpusFile], val_fraction: float, rng: np.random.Generator, by_file: bool = False
) -> tuple[list, list]:
    """Split so that no group (a speaker; with ``by_file``, each file) is in both parts."""

    def key(f: CorpusFile) -> str:
        return str(f.path) if by_file or not f.group else f.group

    groups = sorted({key(f) for f in files})
    rng.shuffle(groups)
    n_val = max(1, round(len(groups) * val_fraction)) if len(groups) > 1 else 0
    val_groups = set(groups[:n_val])
    return [f for f in files if key(f) not in val_groups], [f for f in files if key(f) in val_groups]


def _clean_signal(path: Path, spectral: SpectralConfig, mixing: MixConfig) -> np.ndarray:
    signal = read_mono(path, spectral.sample_rate)
    return _remove_silence(signal, spectral, mixing)


def _remove_silence(signal: np.ndarray, spectral: SpectralConfig, mixing: MixConfig) -> np.ndarray:
    return remove_silence(
        signal, spectral.sample_rate, mixing.silence_frame_ms, mixing.silence_threshold_db, mixing.max_pause_ms
    )


def _readable_speech(path: Path, spectral: SpectralConfig, mixing: MixConfig) -> np.ndarray:
    """A babble talker; an unreadable one contributes nothing rather than failing the mix."""
    try:
        return _clean_signal(path, spectral, mixing)
    except AudioError:
        return np.zeros(0, np.float32)


def make_pair(job: MixJob, spectral: SpectralConfig, mixing: MixConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """One mixture's (noisy, clean) magnitude patches, or None if the clean clip is unusable."""
    rng = np.random.default_rng([job.seed, job.index])
    rate = spectral.sample_rate
    clean = read_mono(job.clean, rate)
    if len(clean) > mixing.max_clean_seconds * rate:
        return None
    clean = _remove_silence(clean, spectral, mixing)
    if len(clean) < spectral.n_fft:
        return None
    noise = None
    if rng.uniform() >= mixing.synthetic_noise_fraction:
        noise_path = job.noises[int(rng.integers(len(job.noises)))]
        noise = _clean_signal(noise_path, spectral, mixing)
    if noise is None or len(noise) < spectral.n_fft:
        kind = synth.KINDS[int(rng.integers(len(synth.KINDS)))]

        def talkers(n: int) -> list[np.ndarray]:
            picks = rng.choice(len(job.talkers), size=min(n, len(job.talkers)), replace=False)
            return [s for s in (_readable_speech(job.talkers[i], spectral, mixing) for i in picks) if len(s)]

        noise = synth.synthesize(kind, len(clean), rate, rng, talkers)
    speech_power = power(clean)
    edge = int(mixing.edge_pause_ms * rate / 1000)
    if edge:
        clean = np.pad(clean, (int(rng.integers(edge + 1)), int(rng.integers(edge + 1))))
    noise = fit_length(noise, len(clean), rng)
    clean, noisy = mix(
        clean,
        noise,
        snr_db=rng.uniform(*mixing.snr_db),
        level_db=rng.uniform(*mixing.level_db),
        peak_limit=mixing.peak_limit,
        speech_power=speech_power,
    )
    mags = signal_magnitude(torch.from_numpy(np.stack([noisy, clean])), spectral)
    noisy_patches = split_patches(mags[0], spectral).numpy()
    clean_patches = split_patches(mags[1], spectral).numpy()
    return noisy_patches, clean_patches


_WORKER_CONFIG: tuple[SpectralConfig, MixConfig] | None = None


def _init_worker(spectral: SpectralConfig, mixing: MixConfig) -> None:
    global _WORKER_CONFIG
    _WORKER_CONFIG = (spectral, mixing)
    torch.set_num_threads(1)


def _run_job(job: MixJob):
    try:
        return job, make_pair(job, *_WORKER_CONFIG), None
    except AudioError as error:
        return job, None, str(error)


def prepare(
    speech_dir: str | Path,
    noise_dir: str | Path,
    output: str | Path,
    spectral: SpectralConfig = SpectralConfig(),
    mixing: MixConfig = MixConfig(),
    max_files: int | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    workers: int = 1,
    shard_size: int = 1024,
    speech_format: str = "auto",
    noise_format: str = "auto",
    noise_val_folds: tuple[int, ...] = (10,),
) -> dict:
    """Build the dataset; returns its manifest."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    speech = read_corpus(speech_dir, speech_format)
    noise = read_corpus(noise_dir, noise_format)
    speech_train, speech_val = split_groups(speech, val_fraction, rng)
    if any(f.fold for f in noise):  # UrbanSound8K: validation is whole folds
        val_folds = {f"fold{k}" for k in noise_val_folds}
        noise_train = [f for f in noise if f.fold not in val_folds]
        noise_val = [f for f in noise if f.fold in val_folds]
    else:
        noise_train, noise_val = split_groups(noise, val_fraction, rng, by_file=True)
    jobs, groups = [], {}
    for split, clean_files, noise_files in (("train", speech_train, noise_train), ("val", speech_val, noise_val)):
        groups[split] = {
            "speakers": sorted({f.group for f in clean_files}),
            "noise_files": sorted(str(f.path.relative_to(noise_dir)) for f in noise_files),
        }
        order = rng.permutation(len(clean_files))
        if max_files is not None:
            order = order[: max(1, round(max_files * len(clean_files) / len(speech)))]
        noises = tuple(f.path for f in noise_files)
        talkers = tuple(f.path for f in clean_files)
        jobs += [
            (split, MixJob(len(jobs) + i, clean_files[j].path, noises, talkers, seed)) for i, j in enumerate(order)
        ]
    writers = {split: ShardWriter(output, split, shard_size) for split in ("train", "val")}
    split_of = {job.index: split for split, job in jobs}
    failures, skipped = [], 0
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_init_worker, initargs=(spectral, mixing)) as pool:
        results = pool.imap(_run_job, [job for _, job in jobs], chunksize=4)
        for job, pair, error in tqdm(results, total=len(jobs), desc="mixing", unit="file"):
            if error:
                failures.append(error)
            elif pair is None:
                skipped += 1
            else:
                writers[split_of[job.index]].add(*pair)
    for writer in writers.values():
        writer.flush()
    manifest = {
        "format_version": FORMAT_VERSION,
        "spectral": spectral.to_dict(),
        "mixing": dataclasses.asdict(mixing),
        "seed": seed,
        "sources": {"speech": str(speech_dir), "noise": str(noise_dir)},
        "counts": {"clean_files": len(jobs), "skipped": skipped, "failed": len(failures)},
        "failures": failures,
        "splits": {
            split: {"pairs": sum(s["pairs"] for s in w.shards), "shards": w.shards, **groups[split]}
            for split, w in writers.items()
        },
    }
    write_json(output / MANIFEST, manifest)
    return manifest
