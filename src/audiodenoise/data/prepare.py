"""``audiodenoise prepare``: mix speech with noise and write patch pairs to disk, resumably and in shards.

The clean files are dealt into fixed chunks. Each chunk is mixed from its own seed and written as one
shard plus a record of what it holds, so a chunk's output never depends on the workers, on the order the
chunks finish, or on which machine made it. A killed run skips the chunks whose record exists.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import read_json, write_atomic, write_json
from ..audio import AudioError
from ..spectral import SpectralConfig
from .dataset import FORMAT_VERSION, MANIFEST, DatasetError, save_shard
from .mixing import MixConfig
from .pairs import mix_signals, patches
from .splits import SPLITS, Split, SplitConfig, corpus_digest, split_corpora

PLAN = "plan.json"


@dataclasses.dataclass(frozen=True)
class Chunk:
    index: int
    split: str
    first_job: int  # job indices seed the mixes
    clean_files: tuple[Path, ...]

    @property
    def name(self) -> str:
        return f"{self.split}/chunk_{self.index:05d}"


def plan_chunks(splits: dict[str, Split], max_files: int | None, files_per_chunk: int, seed: int) -> list[Chunk]:
    """The clean files of each split, shuffled, capped at ``max_files`` in all, and dealt into chunks."""
    rng = np.random.default_rng([seed, 1])
    total = sum(len(s.speech) for s in splits.values())
    chunks, job = [], 0
    for split in splits.values():
        order = rng.permutation(len(split.speech))
        if max_files is not None:
            order = order[: max(1, round(max_files * len(split.speech) / total))]
        paths = [split.speech[i].path for i in order]
        for start in range(0, len(paths), files_per_chunk):
            files = tuple(paths[start : start + files_per_chunk])
            chunks.append(Chunk(len(chunks), split.name, job, files))
            job += len(files)
    return chunks


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), with 1 <= K <= N."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 2/8), not {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard {text}: K must be between 1 and N")
    return k, n


@dataclasses.dataclass(frozen=True)
class PrepareResult:
    manifest: dict | None  # None while other shards' chunks are missing
    chunks_done: int
    chunks: int


_WORKER: dict = {}


def _init_worker(output: Path, splits: dict[str, Split], spectral: SpectralConfig, mixing: MixConfig, seed: int):
    torch.set_num_threads(1)
    _WORKER.update(output=output, splits=splits, spectral=spectral, mixing=mixing, seed=seed)


def _record_path(output: Path, chunk: Chunk) -> Path:
    return output / f"{chunk.name}.json"


def _mix_chunk(chunk: Chunk) -> dict:
    """Mix one chunk, write its shard, then its record; returns the record."""
    output, spectral, mixing = _WORKER["output"], _WORKER["spectral"], _WORKER["mixing"]
    if chunk.split != "train":
        mixing = mixing.unaugmented()
    split = _WORKER["splits"][chunk.split]
    noises = tuple(f.path for f in split.noise)
    talkers = tuple(f.path for f in split.speech)
    pairs, failures, skipped = [], set(), 0
    for offset, clean in enumerate(chunk.clean_files):
        rng = np.random.default_rng([_WORKER["seed"], chunk.first_job + offset])
        try:
            signals, errors = mix_signals(clean, noises, talkers, rng, spectral, mixing)
        except AudioError as error:
            failures.add(str(error))
            continue
        failures.update(errors)
        if signals is None:
            skipped += 1
        else:
            pairs.append(patches(signals, spectral, mixing.clean_target))
    count = sum(len(noisy) for noisy, _ in pairs)
    if count:
        save_shard(output / chunk.name, *(np.concatenate(part) for part in zip(*pairs)))
    record = {
        "chunk": chunk.index,
        "pairs": count,
        "clean_files": len(chunk.clean_files),
        "skipped": skipped,
        "failures": sorted(failures),
    }
    write_json(_record_path(output, chunk), record)
    return record


def _plan_document(splits, spectral, mixing, split_config, max_files, files_per_chunk, speech_dir, noise_dir, chunks):
    return {
        "format_version": FORMAT_VERSION,
        "spectral": spectral.to_dict(),
        "mixing": mixing.to_dict(),
        "split": split_config.to_dict(),
        "max_files": max_files,
        "files_per_chunk": files_per_chunk,
        "chunks": len(chunks),
        "corpus": corpus_digest(splits, speech_dir, noise_dir),
        "splits": {
            name: {
                "speakers": split.speakers,
                "noise_files": sorted(str(f.path.relative_to(noise_dir)) for f in split.noise),
                "chunks": [c.index for c in chunks if c.split == name],
            }
            for name, split in splits.items()
        },
    }


def _comparable(plan: dict) -> dict:
    return json.loads(json.dumps(plan))  # tuples -> lists, as read back from JSON


def _read_plan(folder: Path) -> dict | None:
    path = folder / PLAN
    if not path.is_file():
        return None
    return read_json(path, DatasetError, "dataset plan")


def claim_output(output: Path, plan: dict, overwrite: bool) -> None:
    """Make ``output`` this plan's folder: new, resumed, or (with ``overwrite``) replaced. Refuse anything else."""
    output.mkdir(parents=True, exist_ok=True)
    existing = _read_plan(output)
    if existing is None and any(output.iterdir()):
        raise DatasetError(f"{output}: folder is not empty and holds no dataset; choose an empty or new folder")
    wanted = _comparable(plan)
    if existing is not None and existing != wanted:
        if not overwrite:
            changed = sorted(key for key in wanted if existing.get(key) != wanted[key])
            raise DatasetError(
                f"{output}: holds a dataset made with a different config ({', '.join(changed)}); "
                "use --overwrite to replace it"
            )
        for name in SPLITS:
            shutil.rmtree(output / name, ignore_errors=True)
        (output / MANIFEST).unlink(missing_ok=True)
        existing = None
    for name in SPLITS:
        (output / name).mkdir(exist_ok=True)
    if existing is None:
        write_json(output / PLAN, plan)


def _remove_stale_temporaries(output: Path, chunks: list[Chunk]) -> None:
    """Hidden half-written files of this run's chunks, left by a killed run."""
    for chunk in chunks:
        split, stem = chunk.name.split("/")
        for temp in (output / split).glob(f".{stem}.*.part"):
            temp.unlink(missing_ok=True)


def prepare(
    speech_dir: str | Path,
    noise_dir: str | Path,
    output: str | Path,
    spectral: SpectralConfig = SpectralConfig(),
    mixing: MixConfig = MixConfig(),
    split_config: SplitConfig = SplitConfig(),
    max_files: int | None = None,
    files_per_chunk: int = 32,
    workers: int = 1,
    shard: tuple[int, int] = (1, 1),
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Mix this shard's chunks that are not done yet; the manifest is written once every chunk is in ``output``."""
    output = Path(output)
    splits = split_corpora(speech_dir, noise_dir, split_config)
    chunks = plan_chunks(splits, max_files, files_per_chunk, split_config.seed)
    plan = _plan_document(
        splits, spectral, mixing, split_config, max_files, files_per_chunk, speech_dir, noise_dir, chunks
    )
    claim_output(output, plan, overwrite)
    k, n = shard
    mine = [c for c in chunks if c.index % n == k - 1]
    pending = [c for c in mine if not _record_path(output, c).is_file()]
    _remove_stale_temporaries(output, pending)
    context = multiprocessing.get_context("fork")
    initargs = (output, splits, spectral, mixing, split_config.seed)
    with (
        context.Pool(min(workers, max(1, len(pending))), _init_worker, initargs) as pool,
        tqdm(
            total=sum(len(c.clean_files) for c in mine),
            initial=sum(len(c.clean_files) for c in mine if c not in pending),
            desc="mixing" if n == 1 else f"mixing shard {k}/{n}",
            unit="file",
            disable=not progress or None,
        ) as bar,
    ):
        for record in pool.imap_unordered(_mix_chunk, pending):
            bar.update(record["clean_files"])
    done = sum(_record_path(output, c).is_file() for c in chunks)
    manifest = write_manifest(output, sources=(speech_dir, noise_dir)) if done == len(chunks) else None
    return PrepareResult(manifest, done, len(chunks))


def write_manifest(output: Path, sources: tuple[str | Path, str | Path] | None = None) -> dict:
    """Gather the chunk records of a complete dataset folder into its manifest."""
    plan = _read_plan(output)
    if plan is None:
        raise DatasetError(f"{output}: not a dataset folder (no {PLAN})")
    records = {}
    for name in SPLITS:
        for index in plan["splits"][name]["chunks"]:
            path = output / name / f"chunk_{index:05d}.json"
            if not path.is_file():
                raise DatasetError(f"{output}: chunk {index} is missing; run its shard of 'audiodenoise prepare'")
            records[index] = (name, json.loads(path.read_text()))
    failures = sorted({line for _, record in records.values() for line in record["failures"]})
    manifest = {
        "format_version": FORMAT_VERSION,
        "spectral": plan["spectral"],
        "mixing": plan["mixing"],
        "split": plan["split"],
        "seed": plan["split"]["seed"],
        "corpus": plan["corpus"],
        "counts": {
            "clean_files": sum(r["clean_files"] for _, r in records.values()),
            "skipped": sum(r["skipped"] for _, r in records.values()),
            "failed": len(failures),
        },
        "failures": failures,
        "splits": {
            name: {
                "pairs": sum(r["pairs"] for s, r in records.values() if s == name),
                "shards": [
                    {"name": f"{name}/chunk_{i:05d}", "pairs": r["pairs"]}
                    for i, (s, r) in sorted(records.items())
                    if s == name and r["pairs"]
                ],
                "speakers": plan["splits"][name]["speakers"],
                "noise_files": plan["splits"][name]["noise_files"],
            }
            for name in SPLITS
        },
    }
    if sources is not None:
        manifest["sources"] = {"speech": str(sources[0]), "noise": str(sources[1])}
    write_json(output / MANIFEST, manifest)
    return manifest


def merge(parts: list[str | Path], output: str | Path) -> dict:
    """Copy the chunks of shard folders made with one plan into ``output`` and write its manifest."""
    output = Path(output)
    plans = [(Path(part), _read_plan(Path(part))) for part in parts]
    for part, plan in plans:
        if plan is None:
            raise DatasetError(f"{part}: not a shard of a dataset (no {PLAN})")
        if plan != plans[0][1]:
            raise DatasetError(f"{part}: made with a different config than {plans[0][0]}; cannot merge")
    claim_output(output, plans[0][1], overwrite=False)
    for part, _ in plans:
        if part.resolve() == output.resolve():
            continue
        for name in SPLITS:
            # A chunk's record goes last, so an interrupted merge never shows a chunk without its shard.
            for source in sorted((part / name).glob("chunk_*"), key=lambda p: (p.suffix == ".json", p.name)):
                target = output / name / source.name
                if not target.exists():
                    write_atomic(target, lambda temp, source=source: shutil.copyfile(source, temp))
    return write_manifest(output)
