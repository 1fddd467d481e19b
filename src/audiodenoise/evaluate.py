"""Score systems on paired noisy and clean recordings: pairing, running each system, and aggregation.

``find_pairs`` reads a folder pair or a pairs CSV, ``run`` processes every pair with every system through
the same pipeline and returns a ``Report`` (written to a folder by ``report.write_report``).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import metrics
from .audio import AUDIO_SUFFIXES, AudioError, inspect_audio, read_audio, read_mono
from .peers import INSTALL_PEERS, System, make_system

DEFAULT_SYSTEMS = ("noisy", "default")
LENGTH_TOLERANCE = 0.01  # clean and noisy may differ in duration by this share
BUCKET_DB = 5.0  # width of the input-SNR buckets
LISTED = 5  # names shown in an error before "and N more"


class EvaluationError(ValueError):
    """Pairs or systems that cannot be evaluated, worded for the user."""


@dataclass(frozen=True)
class Pair:
    id: str
    noisy: Path
    clean: Path
    snr_db: float | None = None  # input SNR where the pairs CSV gives it


@dataclass
class FileScore:
    pair: str
    system: str
    snr_db: float  # input SNR: given, or measured from noisy against clean; NaN when unreadable
    values: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # why the file failed; its values are then empty
    problems: dict[str, str] = field(default_factory=dict)  # metric -> why it is NaN


@dataclass
class SystemRun:
    name: str
    load_seconds: float
    processing_seconds: float = 0.0
    audio_seconds: float = 0.0

    @property
    def real_time_factor(self) -> float:
        return self.processing_seconds / self.audio_seconds if self.audio_seconds else math.nan


@dataclass(frozen=True)
class Stat:
    mean: float
    ci95: float  # half-width of the 95% confidence interval of the mean (Student's t)
    n: int


@dataclass
class Example:
    """Signals of one pair kept for the spectrogram plots: 'clean' and each system's output."""

    pair: str
    rate: int
    signals: dict[str, np.ndarray]


@dataclass
class Report:
    pairs: int
    threads: int | None
    systems: list[SystemRun]
    scores: list[FileScore]
    skipped: dict[str, str] = field(default_factory=dict)  # system -> one line on why it did not run
    examples: list[Example] = field(default_factory=list)
    workers: int = 1  # processes that shared out the pairs, each running every system at ``threads``

    @property
    def failures(self) -> list[FileScore]:
        return [s for s in self.scores if s.error]

    def summary(self, scores: Iterable[FileScore] | None = None) -> dict[str, dict[str, Stat]]:
        """Per system and metric: mean and 95% CI over the files it scored."""
        scores = list(self.scores if scores is None else scores)
        return {
            run.name: {
                metric: mean_ci([s.values[metric] for s in scores if s.system == run.name and not s.error])
                for metric in metrics.METRICS
            }
            for run in self.systems
        }

    def buckets(self) -> dict[float, list[FileScore]]:
        """Scores grouped by input SNR, rounded to the nearest 5 dB."""
        grouped: dict[float, list[FileScore]] = {}
        for s in self.scores:
            if math.isfinite(s.snr_db):
                grouped.setdefault(BUCKET_DB * round(s.snr_db / BUCKET_DB) + 0.0, []).append(s)
        return dict(sorted(grouped.items()))


def mean_ci(values: Iterable[float]) -> Stat:
    finite = np.array([v for v in values if math.isfinite(v)], dtype=np.float64)
    if len(finite) < 2:
        return Stat(float(finite[0]) if len(finite) else math.nan, math.nan, len(finite))
    from scipy.stats import t

    half = t.ppf(0.975, len(finite) - 1) * finite.std(ddof=1) / math.sqrt(len(finite))
    return Stat(float(finite.mean()), float(half), len(finite))


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
    return ", ".join(names[:LISTED]) + more


def _audio_files(folder: Path) -> dict[str, Path]:
    """Audio files under ``folder`` keyed by relative path without suffix."""
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES:
            key = path.relative_to(folder).with_suffix("").as_posix()
            if key in found:
                raise EvaluationError(f"{folder}: {found[key].name} and {path.name} share a name; keep one")
            found[key] = path
    if not found:
        raise EvaluationError(f"{folder}: holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    return found


def pairs_from_folders(noisy_dir: str | Path, clean_dir: str | Path) -> list[Pair]:
    """Files matched by their path under each folder, the suffix aside (noisy/a.wav with clean/a.flac)."""
    noisy, clean = _audio_files(Path(noisy_dir)), _audio_files(Path(clean_dir))
    lonely = [f"{noisy[k]} (no clean file)" for k in noisy if k not in clean]
    lonely += [f"{clean[k]} (no noisy file)" for k in clean if k not in noisy]
    if lonely:
        raise EvaluationError(f"the folders do not match, {len(lonely)} files without a partner: {_listed(lonely)}")
    return [Pair(key, noisy[key], clean[key]) for key in noisy]


def _find_audio(folder: Path, stem: str) -> Path:
    candidates = [folder / f"{stem}{suffix}" for suffix in sorted(AUDIO_SUFFIXES)]
    return next((path for path in candidates if path.is_file()), folder / f"{stem}.wav")


def pairs_from_csv(path: str | Path) -> list[Pair]:
    """Pairs from a CSV with columns noisy,clean (paths relative to the CSV) and optional snr_db and id, or
    the dev-eval layout: columns id and snr_db, files in noisy/ and clean/ beside the CSV. A folder means
    its pairs.csv."""
    path = Path(path)
    if path.is_dir():
        path = path / "pairs.csv"
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
        columns = {c.strip().lower() for c in reader.fieldnames or []}
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise EvaluationError(f"{path}: cannot read the pairs CSV ({error})") from None
    base = path.parent
    if not {"noisy", "clean"} <= columns and "id" not in columns:
        raise EvaluationError(f"{path}: needs columns noisy,clean or id (found: {', '.join(sorted(columns))})")
    pairs = []
    for line, raw in enumerate(rows, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        try:
            snr_db = float(row["snr_db"]) if row.get("snr_db") else None
        except ValueError:
            raise EvaluationError(f"{path}, line {line}: snr_db {row['snr_db']!r} is not a number") from None
        if {"noisy", "clean"} <= columns:
            noisy, clean = base / row["noisy"], base / row["clean"]
            pairs.append(Pair(row.get("id") or row["noisy"], noisy, clean, snr_db))
        else:
            pairs.append(
                Pair(row["id"], _find_audio(base / "noisy", row["id"]), _find_audio(base / "clean", row["id"]), snr_db)
            )
    if not pairs:
        raise EvaluationError(f"{path}: lists no pairs")
    return pairs


def find_pairs(noisy: str | None = None, clean: str | None = None, pairs_csv: str | None = None) -> list[Pair]:
    """Pairs from a noisy and a clean folder (or file), or from a pairs CSV."""
    if pairs_csv and not (noisy or clean):
        return pairs_from_csv(pairs_csv)
    if not (noisy and clean) or pairs_csv:
        raise EvaluationError("give either a noisy and a clean folder, or a pairs CSV")
    if Path(noisy).is_file() and Path(clean).is_file():
        return [Pair(Path(noisy).stem, Path(noisy), Path(clean))]
    return pairs_from_folders(noisy, clean)


def check_lengths(pairs: list[Pair]) -> None:
    """Raise if a readable pair's clean and noisy durations differ by more than 1%."""
    mismatched = []
    for pair in pairs:
        try:
            noisy, clean = inspect_audio(pair.noisy), inspect_audio(pair.clean)
        except AudioError:
            continue  # unreadable: that pair fails on its own when it is run
        noisy_s, clean_s = noisy.frames / noisy.sample_rate, clean.frames / clean.sample_rate
        if abs(noisy_s - clean_s) > LENGTH_TOLERANCE * max(noisy_s, clean_s):
            mismatched.append(f"{pair.id} (noisy {noisy_s:.2f} s, clean {clean_s:.2f} s)")
    if mismatched:
        raise EvaluationError(
            f"clean and noisy lengths differ by more than {LENGTH_TOLERANCE:.0%} in {len(mismatched)} pairs: "
            f"{_listed(mismatched)}"
        )


def _example_ids(pairs: list[Pair], count: int) -> set[str]:
    """Pairs spread over the input SNR range (or over the list where no SNR is given)."""
    ordered = sorted(pairs, key=lambda p: -math.inf if p.snr_db is None else p.snr_db)
    picks = np.linspace(0, len(ordered) - 1, min(count, len(ordered))).round().astype(int)
    return {ordered[i].id for i in picks}


def _load(systems: list[System]) -> tuple[list[tuple[System, SystemRun]], dict[str, str]]:
    """Load each system, timed; those not installed are skipped, each with one line on why."""
    loaded, skipped = [], {}
    for system in systems:
        started = time.perf_counter()
        try:
            system.load()
        except ImportError as error:
            package = system.package or error.name
            skipped[system.name] = f"{system.name}: skipped, {package} is not installed; {INSTALL_PEERS}"
            continue
        loaded.append((system, SystemRun(system.name, time.perf_counter() - started)))
    return loaded, skipped


def _read_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray, int]:
    """Mono clean at its own rate and noisy resampled to it."""
    clean, rate = read_audio(pair.clean)
    return clean.mean(axis=1), read_mono(pair.noisy, rate), rate


def _process(system: System, noisy: np.ndarray, rate: int, run: SystemRun) -> np.ndarray:
    system.reset()
    started = time.perf_counter()
    out = np.asarray(system.process(noisy, rate), dtype=np.float32)
    run.processing_seconds += time.perf_counter() - started
    run.audio_seconds += len(noisy) / rate
    if out.shape != noisy.shape:
        raise AudioError(f"output has shape {out.shape}, expected {noisy.shape}")
    if not np.isfinite(out).all():
        raise AudioError("output contains NaN or Inf samples")
    return out


def run(
    pairs: list[Pair],
    systems: Iterable[str] = DEFAULT_SYSTEMS,
    threads: int | None = 1,
    examples: int = 3,
    progress: bool = False,
    log: Callable[[str], None] = lambda line: None,
    engine: str | None = None,
    jobs: int = 1,
) -> Report:
    """Run every system on every pair and score it (``report.write_report`` writes the result to a folder).

    'noisy' (the input, unprocessed) is always included as the reference. ``jobs`` worker processes (``batch``)
    share out the pairs, each loading every system once and running each pair through all of them, so that every
    system is timed on the same workers at ``threads`` CPU threads (the previous setting is restored afterwards).
    A peer that is not installed is skipped with one line to ``log``; a pair that cannot be read, a system that
    fails on a file or a worker that dies on it is recorded as a failure of that file, and the run goes on.
    ``engine`` runs our models (default: the Denoiser's)."""
    import torch
    from tqdm import tqdm

    from . import batch

    if not pairs:
        raise EvaluationError("no pairs to evaluate")
    built: dict[str, System] = {}
    for spec in ["noisy", *systems]:
        system = make_system(spec, threads, engine)
        built.setdefault(system.name, system)
    check_lengths(pairs)
    work = Evaluation(list(built.values()), threads, _example_ids(pairs, examples))
    report = Report(len(pairs), threads, [], [], workers=min(jobs, len(pairs)))
    runs: dict[str, SystemRun] = {}
    previous = torch.get_num_threads()
    try:
        results = batch.run(work, pairs, jobs)
        for result in tqdm(
            results, total=len(pairs), desc="evaluating", unit="pair", disable=None if progress else True
        ):
            for name, line in result.skipped.items():
                if name not in report.skipped:
                    report.skipped[name] = line
                    log(line)
            for timed in result.runs:
                total = runs.setdefault(timed.name, SystemRun(timed.name, timed.load_seconds))
                total.load_seconds = max(total.load_seconds, timed.load_seconds)  # the slowest worker's
                total.processing_seconds += timed.processing_seconds
                total.audio_seconds += timed.audio_seconds
            report.scores += result.scores
            report.examples += [result.example] if result.example else []
    finally:
        torch.set_num_threads(previous)
    order = {pair.id: index for index, pair in enumerate(pairs)}  # workers finish in any order
    report.scores.sort(key=lambda score: order[score.pair])
    report.examples.sort(key=lambda example: order[example.pair])
    report.systems = list(runs.values())
    return report


@dataclass
class PairResult:
    """One pair through every loaded system: its scores, its signals if kept, and each system's time on it
    (with the load time of the worker that ran it); the systems that worker skipped."""

    scores: list[FileScore]
    example: Example | None
    runs: list[SystemRun]
    skipped: dict[str, str]


@dataclass
class Evaluation:
    """The work of an evaluation (``batch``): each worker loads the systems once, at ``threads`` threads."""

    systems: list[System]
    threads: int | None
    keep: set[str]  # pairs whose signals are kept for the plots

    @contextmanager
    def worker(self) -> Iterator[Callable[[Pair], PairResult]]:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        active, skipped = _load(self.systems)
        try:
            yield lambda pair: _evaluate_pair(pair, active, pair.id in self.keep, skipped)
        finally:
            for system, _ in active:
                system.close()

    def died(self, pair: Pair) -> PairResult:
        given = math.nan if pair.snr_db is None else pair.snr_db
        reason = "its worker died (killed, or out of memory)"
        return PairResult(
            [FileScore(pair.id, system.name, given, error=reason) for system in self.systems], None, [], {}
        )

    def abandoned(self, pair: Pair) -> None:
        """Nothing to clean up: an evaluation writes no file per pair."""


def _evaluate_pair(
    pair: Pair, active: list[tuple[System, SystemRun]], keep: bool, skipped: dict[str, str]
) -> PairResult:
    given = math.nan if pair.snr_db is None else pair.snr_db
    runs = [SystemRun(loaded.name, loaded.load_seconds) for _, loaded in active]
    try:
        clean, noisy, rate = _read_pair(pair)
    except AudioError as error:
        return PairResult([FileScore(pair.id, run.name, given, error=str(error)) for run in runs], None, runs, skipped)
    length = min(len(clean), len(noisy))
    snr_db = metrics.snr(clean[:length], noisy[:length]) if pair.snr_db is None else pair.snr_db
    signals = {"clean": clean}
    scores = []
    for (system, _), run in zip(active, runs):
        try:
            out = _process(system, noisy, rate, run)
            scored = metrics.score(clean, out, rate)
        except Exception as error:  # any system's failure on one file is that file's failure, not the run's
            reason = str(error) if isinstance(error, AudioError) else f"{type(error).__name__}: {error}"
            scores.append(FileScore(pair.id, run.name, snr_db, error=reason))
            continue
        scores.append(FileScore(pair.id, run.name, snr_db, scored.values, problems=scored.problems))
        signals[run.name] = out
    return PairResult(scores, Example(pair.id, rate, signals) if keep else None, runs, skipped)
