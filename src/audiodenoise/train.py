"""``audiodenoise train``: Adam on patch pairs, resumable after ``kill -9`` at any moment, on one or many processes.

Everything a resume needs (weights, their running average, optimizer, RNG, step) is one safetensors file written
atomically, so a kill can never leave a half-new checkpoint. Validation and the checkpoints use the exponential
moving average of the weights (EMA), which is smoother than any one step's weights. Under ``torchrun`` each
rank reads its own share of every batch and rank 0 writes the checkpoints.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from .atomic import write_atomic, write_json
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, Settings, setting
from .data.dataset import PatchDataset, read_manifest
from .data.mixing import MixConfig
from .data.onthefly import MixingDataset, fixed_pairs
from .data.splits import Split, SplitConfig, split_corpora
from .engine import bf16_native
from .losses import (
    DEFAULT_LOSS,
    LOSSES,
    enhance,
    envelope_correlation,
    envelope_loss,
    holds_speech,
    loss_value,
    magnitude_error,
    patch_si_sdr,
    waveform_loss,
)
from .model import ModelConfig, UNet
from .spectral import SpectralConfig

RESUME = "training.safetensors"
RUN_CONFIG, RUN_CONFIG_VERSION = "config.json", 1
HISTORY_COLUMNS = [
    "step",
    "epoch",
    "train_loss",
    "val_loss",
    "val_snr_db",
    "learning_rate",
    "seconds",
    "val_si_sdr_db",
    "val_envelope_corr",
]
SELECTION = ("val_snr_db", "val_loss", "val_si_sdr_db", "val_envelope_corr")  # val_si_sdr_db: on the fly only
HIGHER_IS_BETTER = {"val_snr_db", "val_si_sdr_db", "val_envelope_corr"}


class TrainingError(Exception):
    pass


@dataclass(frozen=True)
class TrainConfig(Settings):
    epochs: int = setting(10, low=1)
    max_steps: int | None = setting(None, "stop after this many steps; the schedule ends here too", low=1)
    stop_after: int | None = setting(
        None,
        "end the run at this step, with the learning-rate schedule still planned to the end (resume goes on)",
        low=1,
        metavar="STEP",
    )
    batch_size: int = setting(16, "pairs per step and process", low=1)
    learning_rate: float = setting(1e-3, "after the warm-up, falling along a cosine", low=0)
    final_learning_rate: float = setting(5e-5, "where the cosine ends", low=0)
    warmup_steps: int = setting(200, "steps of linear warm-up", low=0)
    loss: str | None = setting(None, "default: the target's (losses.DEFAULT_LOSS)", choices=LOSSES)
    compression: float = setting(0.3, "magnitude exponent of compressed-mse", low=0, above=True)
    waveform_weight: float = setting(
        0.0, "add this times the negative SI-SDR (dB) of the patch waveforms to the loss (on the fly only)", low=0
    )
    envelope_weight: float = setting(
        0.0, "add this times one minus STOI's band-envelope correlation of the patches to the loss", low=0
    )
    ema_decay: float = setting(
        0.999, "decay of the weights' moving average that is validated and saved (0: the raw weights)", low=0, high=1
    )
    select_by: str = setting(
        "val_snr_db", "metric that picks best/ (val_si_sdr_db: on the fly only)", choices=SELECTION
    )
    patience: int | None = setting(None, "stop after N validations not improving", low=1)
    checkpoint_every: int = setting(200, "steps between checkpoints", low=1)
    validate_every: int | None = setting(500, "steps, and at the end of each epoch (0: only then)", low=0)
    max_val_pairs: int = setting(512, "validation pairs scored", low=1)
    seed: int = setting(0, "of the weights, the batches and (on the fly) the split")
    threads: int | None = setting(None, "CPU threads (default: every core)", low=1)
    device: str = setting("auto", "auto (CUDA when present), cpu, cuda, cuda:N")
    bf16: bool | None = setting(None, "autocast to bfloat16 (default: where the GPU or CPU computes in it natively)")
    channels_last: bool = setting(True, "channels-last memory format (benchmarks/train_speed.py measures it)")
    compile: bool = setting(False, "torch.compile the model")
    tensorboard: bool = setting(False, "also log to RUN_DIR/tensorboard")

    def check(self) -> None:
        if self.ema_decay == 1:
            raise ConfigError("ema_decay: must be below 1 (the average would never move)")


@dataclass(frozen=True)
class OnTheFly:
    """Train on pairs mixed as they are read from these corpora, new ones every epoch."""

    speech: str | Path
    noise: str | Path
    mixing: MixConfig = MixConfig()
    split: SplitConfig = SplitConfig()
    spectral: SpectralConfig = SpectralConfig()
    epoch_pairs: int = 20000
    workers: int = 1  # DataLoader processes that mix


@dataclass(frozen=True)
class RunConfig(Settings):
    """Everything ``audiodenoise train`` reads from ``--config`` (JSON or TOML) and writes to RUN_DIR/config.json:
    the data, and one section per config. A prepared dataset brings its own spectral and mixing settings."""

    version: int = setting(RUN_CONFIG_VERSION, choices=(RUN_CONFIG_VERSION,))
    dataset: str | None = None
    speech: str | None = setting(None, "mix on the fly from this speech corpus (no DATASET)")
    noise: str | None = setting(None, "mix on the fly from this noise corpus (no DATASET)")
    epoch_pairs: int = setting(20000, "pairs per on-the-fly epoch", low=1)
    loader_workers: int = setting(1, "processes that mix on the fly", low=0)
    init_from: str | None = setting(None, "start from this checkpoint's weights (fine-tuning; its STFT may differ)")
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    mixing: MixConfig = MixConfig()
    split: SplitConfig = SplitConfig()
    spectral: SpectralConfig = SpectralConfig()

    def check(self) -> None:
        if (self.speech is None) != (self.noise is None):
            raise ConfigError("speech, noise: on-the-fly training needs both --speech and --noise")
        if self.dataset is not None and self.speech is not None:
            raise ConfigError("dataset: mixing on the fly from --speech/--noise takes RUN_DIR alone, no DATASET")
        if self.dataset is None and self.speech is None:
            raise ConfigError("dataset: give DATASET RUN_DIR, or --speech and --noise (in options or --config)")

    @property
    def data(self) -> str | OnTheFly:
        if self.dataset is not None:
            return self.dataset
        return OnTheFly(
            self.speech, self.noise, self.mixing, self.split, self.spectral, self.epoch_pairs, self.loader_workers
        )


def train_run(run: RunConfig, run_dir: str | Path, resume: bool = False) -> dict:
    """``train`` as RUN_DIR/config.json describes it, after writing that file with the data's own settings
    (``train --config RUN_DIR/config.json`` runs it again)."""
    spectral, mixing = source_settings(run.data)
    resolved = replace(run, spectral=spectral)
    if mixing is not None:
        resolved = replace(resolved, mixing=MixConfig.from_dict(mixing, prefix=f"{run.dataset}: mixing."))
    return train(run.data, run_dir, run.model, run.train, resume, run.init_from, record=resolved)


Batch = tuple[torch.Tensor, ...]  # noisy and clean magnitudes; on the fly also their complex spectra


def collate(pairs: list[Batch]) -> Batch:
    return tuple(torch.stack(parts) for parts in zip(*pairs))


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


class PreparedBatches:
    """Shuffled batches of a prepared dataset's training split; rank r takes every world-th batch."""

    def __init__(self, folder: str | Path, batch_size: int, seed: int, ranks: Ranks = Ranks()):
        self.data = PatchDataset(folder, "train")
        self.batch_size, self.seed, self.ranks = batch_size, seed, ranks
        self.steps_per_epoch = len(self.data) // (batch_size * ranks.world)

    def epoch(self, epoch: int, start: int) -> Iterator[Batch]:
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(self.seed + epoch))
        for step in range(start, self.steps_per_epoch):
            first = (step * self.ranks.world + self.ranks.rank) * self.batch_size
            yield collate([self.data[i] for i in order[first : first + self.batch_size].tolist()])


def _single_thread(_: int) -> None:
    torch.set_num_threads(1)


class MixedBatches:
    """Batches mixed on the fly; an epoch is ``epoch_pairs`` pairs, and every (epoch, start, rank) draws new mixes."""

    def __init__(self, source: OnTheFly, split: Split, spectral: SpectralConfig, batch_size: int, seed: int, ranks):
        self.source, self.split, self.spectral = source, split, spectral
        self.batch_size, self.seed, self.ranks = batch_size, seed, ranks
        self.steps_per_epoch = source.epoch_pairs // (batch_size * ranks.world)

    def epoch(self, epoch: int, start: int) -> Iterator[Batch]:
        seed = (self.seed, epoch, start, self.ranks.rank)
        data = MixingDataset(self.split, self.spectral, self.source.mixing, seed=seed)
        workers = self.source.workers
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=self.batch_size,
            num_workers=workers,
            worker_init_fn=_single_thread if workers else None,
            multiprocessing_context="fork" if workers else None,
        )
        yield from itertools.islice(loader, self.steps_per_epoch - start)


def source_settings(data: str | Path | OnTheFly) -> tuple[SpectralConfig, dict | None]:
    """The STFT and mixing settings of a prepared dataset (from its manifest) or an on-the-fly source."""
    if isinstance(data, OnTheFly):
        return data.spectral, data.mixing.to_dict()
    manifest = read_manifest(data)
    return SpectralConfig.from_dict(manifest["spectral"]), manifest.get("mixing")


def open_source(data: str | Path | OnTheFly, spectral: SpectralConfig, config: TrainConfig, ranks: Ranks = Ranks()):
    """(training batches, validation pairs) of a prepared dataset or an on-the-fly source."""
    if isinstance(data, OnTheFly):
        splits = split_corpora(data.speech, data.noise, data.split)
        batches = MixedBatches(data, splits["train"], spectral, config.batch_size, config.seed, ranks)
        return batches, fixed_pairs(splits["val"], config.max_val_pairs, spectral, data.mixing)
    if config.waveform_weight or config.select_by == "val_si_sdr_db":
        raise TrainingError(
            f"{data}: a prepared dataset holds magnitudes only; the waveform loss and val_si_sdr_db need "
            "on-the-fly mixing (--speech/--noise)"
        )
    return PreparedBatches(data, config.batch_size, config.seed, ranks), PatchDataset(data, "val")


def learning_rate(step: int, total: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    low, high = config.final_learning_rate, config.learning_rate
    return low + 0.5 * (high - low) * (1 + math.cos(math.pi * progress))


def _moving_average(decay: float):
    """An EMA update whose decay rises as (1 + n) / (10 + n) to ``decay`` over the first n updates, so that the
    average of a short run is not held back by the weights it started from."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        rate = min(decay, (1 + int(updates)) / (10 + int(updates)))
        torch.optim.swa_utils.get_ema_multi_avg_fn(rate)(averaged, current, updates)

    return update


class Trainer:
    """One model, its optimizer, the moving average of its weights and the run's state; ``train`` drives it."""

    def __init__(self, model: UNet, spectral: SpectralConfig, config: TrainConfig, device: torch.device):
        if config.bf16 is None:
            config = replace(config, bf16=bf16_native(device))
        self.model, self.spectral, self.config, self.device = model.to(device), spectral, config, device
        self.loss_name = config.loss or DEFAULT_LOSS[model.config.target]
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self.moving_average = (
            torch.optim.swa_utils.AveragedModel(self.model, multi_avg_fn=_moving_average(config.ema_decay))
            if config.ema_decay
            else None
        )
        self.network = self.model  # what the steps call: wrapped for DDP, compiled on request
        self.state = {"step": 0, "epoch": 0, "best": None, "stale": 0, "seconds": 0.0}

    def _autocast(self):
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    @property
    def validated_model(self) -> UNet:
        """The weights that are validated and saved: the moving average, or the raw weights without one."""
        return self.model if self.moving_average is None else self.moving_average.module

    def batch_loss(self, batch: Batch, network=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of (noisy, clean[, noisy spectrum, clean spectrum]) patches, and the enhanced magnitudes."""
        noisy, clean, *spectra = batch
        noisy, clean = self._to_device(noisy), self._to_device(clean)
        with self._autocast():
            network = self.network if network is None else network
            enhanced, features = enhance(self.model, noisy, self.spectral, network)
        loss = loss_value(self.loss_name, enhanced, features, clean, self.spectral, self.config.compression)
        if self.config.waveform_weight:  # the spectra go to the device only for it
            spectra = [self._to_device(spectrum) for spectrum in spectra]
            loss = loss + self.config.waveform_weight * waveform_loss(enhanced, *spectra, self.spectral)
        if self.config.envelope_weight:
            loss = loss + self.config.envelope_weight * envelope_loss(enhanced, noisy, clean, self.spectral)
        return loss, enhanced

    @torch.no_grad()
    def validate(self, data: Sequence[Batch]) -> dict[str, float]:
        """Loss, magnitude SNR and band-envelope correlation of the validation pairs, and their mean waveform SI-SDR
        where they carry spectra."""
        model = self.validated_model
        model.eval()
        count = min(len(data), self.config.max_val_pairs)
        loss_sum, clean_energy, error_energy, si_sdrs, correlations = 0.0, 0.0, 0.0, [], []
        for start in range(0, count, self.config.batch_size):
            batch = collate([data[i] for i in range(start, min(count, start + self.config.batch_size))])
            loss, enhanced = self.batch_loss(batch, network=model)
            enhanced = enhanced.cpu()
            loss_sum += loss.item() * len(batch[0])
            energy, error = magnitude_error(enhanced, batch[1])
            clean_energy, error_energy = clean_energy + energy, error_energy + error
            voiced = holds_speech(batch[0], batch[1])
            correlations.append(envelope_correlation(enhanced[voiced], batch[1][voiced], self.spectral))
            if len(batch) == 4:
                si_sdr, voiced = patch_si_sdr(enhanced, batch[2], batch[3], self.spectral)
                si_sdrs.append(si_sdr[voiced])
        model.train()
        metrics = {
            "val_loss": loss_sum / count,
            "val_snr_db": 10 * math.log10(clean_energy / max(error_energy, 1e-20)),
            "val_envelope_corr": float(torch.cat(correlations).mean()),
        }
        if si_sdrs:
            metrics["val_si_sdr_db"] = float(torch.cat(si_sdrs).mean())
        return metrics

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.moving_average is not None:
            self.moving_average.update_parameters(self.model)

    def improved(self, metrics: dict[str, float]) -> bool:
        value = metrics[self.config.select_by]
        sign = 1 if self.config.select_by in HIGHER_IS_BETTER else -1
        if self.state["best"] is None or sign * value > sign * self.state["best"]:
            self.state["best"], self.state["stale"] = value, 0
            return True
        self.state["stale"] += 1
        return False

    def save_resume_point(self, path: Path, info: dict) -> None:
        """Weights, their moving average, optimizer, RNG and state in one file, replaced atomically."""
        optimizer = self.optimizer.state_dict()
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if self.moving_average is not None:
            tensors |= {
                f"average.{k}": v.detach().cpu().contiguous() for k, v in self.moving_average.state_dict().items()
            }
        for index, values in optimizer["state"].items():
            tensors |= {f"optimizer.{index}.{name}": v.detach().cpu().contiguous() for name, v in values.items()}
        tensors["rng.cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        metadata = {
            "state": json.dumps(self.state),
            "param_groups": json.dumps(optimizer["param_groups"]),
            "model": json.dumps(self.model.config.to_dict()),
            "spectral": json.dumps(self.spectral.to_dict()),
            "info": json.dumps(info),
        }
        write_atomic(path, lambda temp: save_file(tensors, temp, metadata=metadata))

    def load_resume_point(self, path: Path) -> None:
        try:
            with safe_open(path, "pt") as handle:
                metadata = handle.metadata()
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            spectral = SpectralConfig.from_dict(json.loads(metadata["spectral"]))
            model_config = json.loads(metadata["model"])
        except (SafetensorError, OSError, KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: corrupt resume checkpoint ({str(error).splitlines()[0]})") from None
        if spectral != self.spectral:
            raise TrainingError(f"{path}: the checkpoint's STFT settings differ from the training data's")
        if model_config != self.model.config.to_dict():
            raise TrainingError(f"{path}: the checkpoint's model settings differ from this run's ({model_config})")
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        average = {k[8:]: v for k, v in tensors.items() if k.startswith("average.")}
        if average and self.moving_average is not None:  # resume points from before the moving average start it afresh
            self.moving_average.load_state_dict(average)
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value.to(self.device)
        self.optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
        torch.set_rng_state(tensors["rng.cpu"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.state = json.loads(metadata["state"])


def _history_rows(path: Path, up_to_step: int) -> list[list[str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return [row for row in rows if int(row[0]) <= up_to_step]


def write_history(path: Path, rows: list[list[str]]) -> None:
    def write(temp: Path) -> None:
        with temp.open("w", newline="") as handle:
            csv.writer(handle).writerows([HISTORY_COLUMNS, *rows])

    write_atomic(path, write)


def plot_history(rows: list[list[str]], path: Path) -> None:
    """Training and validation loss, and validation SNR (and SI-SDR), against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r[0]) for r in rows]
    figure, (losses, snr) = plt.subplots(1, 2, figsize=(10, 3.5))
    train_loss, val_loss = [float(r[2]) for r in rows], [float(r[3]) for r in rows]
    losses.plot(steps, train_loss, label="train (running)")
    losses.plot(steps, val_loss, label="validation")
    positive = min(train_loss + val_loss, default=1) > 0  # a waveform loss in dB can be negative
    losses.set(xlabel="step", ylabel="loss", yscale="log" if positive else "linear")
    losses.legend()
    snr.plot(steps, [float(r[4]) for r in rows], color="tab:green", label="magnitude SNR")
    waveform = [(int(r[0]), float(r[7])) for r in rows if len(r) > 7 and r[7]]
    if waveform:
        snr.plot(*zip(*waveform), color="tab:purple", label="waveform SI-SDR")
        snr.legend()
    snr.set(xlabel="step", ylabel="validation (dB)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_atomic(path, lambda temp: temp.write_bytes(buffer.getvalue()))


def _ranks_from_environment(device: torch.device) -> Ranks:
    """Under torchrun: join the process group (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(torch.distributed.get_rank(), world)


def _device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: no CUDA device is available")
    return torch.device(name)


def train(
    data: str | Path | OnTheFly,
    run_dir: str | Path,
    model_config: ModelConfig = ModelConfig(),
    config: TrainConfig = TrainConfig(),
    resume: bool = False,
    init_from: str | Path | None = None,
    record: RunConfig | None = None,
) -> dict:
    """Train until ``config.epochs`` are done (or early stopping) on a prepared dataset folder or an on-the-fly
    source; returns the final state. ``init_from`` starts from a checkpoint's weights (fine-tuning); ``record``
    is written to RUN_DIR/config.json once the run is under way."""
    run_dir = Path(run_dir)
    device = _device(config.device)
    ranks = _ranks_from_environment(device)
    spectral, mixing = source_settings(data)
    source_name = str(data) if not isinstance(data, OnTheFly) else f"on the fly: {data.speech} + {data.noise}"
    multiple = 2**model_config.depth
    if spectral.n_bins % multiple or spectral.patch_frames % multiple:  # checked before any mixing
        raise TrainingError(
            f"{source_name}: patches of {spectral.n_bins} bins x {spectral.patch_frames} frames do not halve "
            f"{model_config.depth} times; use an n_fft whose n_fft // 2 + 1 is a multiple of {multiple} (255, 511)"
        )
    batches, val_data = open_source(data, spectral, config, ranks)
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    model = UNet(model_config)
    if init_from is not None:
        model, init_spectral, _ = load_checkpoint(init_from)
        if init_spectral.sample_rate != spectral.sample_rate:
            raise TrainingError(
                f"{source_name}: {spectral.sample_rate} Hz, but the checkpoint in {init_from} is for "
                f"{init_spectral.sample_rate} Hz"
            )
        before = init_spectral.to_dict()
        changes = [
            f"{name} {before[name]} -> {value}" for name, value in spectral.to_dict().items() if before[name] != value
        ]
        if changes:  # the U-Net is fully convolutional, so its weights fit any patch grid
            tqdm.write(f"{init_from}: its weights start a model with other STFT settings: {', '.join(changes)}")
    model.train()
    trainer = Trainer(model, spectral, config, device)
    last, best = run_dir / "last", run_dir / "best"
    if resume:
        if not (last / RESUME).is_file():
            raise CheckpointError(f"{run_dir}: nothing to resume (no {last / RESUME})")
        trainer.load_resume_point(last / RESUME)
    state = trainer.state
    if ranks.world > 1:
        trainer.network = torch.nn.parallel.DistributedDataParallel(
            trainer.model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        trainer.network = torch.compile(trainer.network)
    steps_per_epoch = batches.steps_per_epoch
    if steps_per_epoch == 0:
        raise TrainingError(f"{source_name}: an epoch holds fewer pairs than one batch of {config.batch_size}")
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    end_step = total_steps if config.stop_after is None else min(total_steps, config.stop_after)
    history = run_dir / "history.csv"
    rows = _history_rows(history, state["step"]) if ranks.main else []
    if ranks.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_history(history, rows)  # drops rows logged after the checkpoint a resume starts from
        if record is not None:
            write_json(run_dir / RUN_CONFIG, record.to_dict())
    info = {
        "train": trainer.config.to_dict() | {"loss": trainer.loss_name, "processes": ranks.world},
        "dataset": source_name,
        "mixing": mixing,
        "init_from": str(init_from) if init_from else None,
    }
    board = _tensorboard(run_dir) if config.tensorboard and ranks.main else None

    def checkpoint() -> None:
        if ranks.main:
            save_checkpoint(last, trainer.validated_model, spectral, info | {"step": state["step"]})
            trainer.save_resume_point(last / RESUME, info)

    def log_validation() -> None:
        metrics = trainer.validate(val_data)
        if trainer.improved(metrics) and ranks.main:
            save_checkpoint(best, trainer.validated_model, spectral, info | {"step": state["step"], **metrics})
        if not ranks.main:
            return
        rows.append(
            [
                str(state["step"]),
                str(state["epoch"]),
                f"{running:.6f}",
                f"{metrics['val_loss']:.6f}",
                f"{metrics['val_snr_db']:.3f}",
                f"{lr:.3e}",
                f"{state['seconds']:.0f}",
                f"{metrics['val_si_sdr_db']:.3f}" if "val_si_sdr_db" in metrics else "",
                f"{metrics['val_envelope_corr']:.4f}",
            ]
        )
        write_history(history, rows)
        plot_history(rows, run_dir / "history.png")
        waveform = f", SI-SDR {metrics['val_si_sdr_db']:.2f} dB" if "val_si_sdr_db" in metrics else ""
        tqdm.write(
            f"step {state['step']}: train loss {running:.5f}, validation loss {metrics['val_loss']:.5f}, "
            f"validation SNR {metrics['val_snr_db']:.2f} dB{waveform}, envelope correlation "
            f"{metrics['val_envelope_corr']:.4f}"
        )
        if board is not None:
            for name, value in metrics.items():
                board.add_scalar(name, value, state["step"])
            board.add_scalar("train_loss", running, state["step"])
            board.flush()

    def validation_due() -> bool:
        return bool(config.validate_every) and state["step"] % config.validate_every == 0

    def should_stop() -> bool:
        return config.patience is not None and state["stale"] >= config.patience

    running, lr = state.get("running_loss", float("nan")), config.learning_rate
    while state["epoch"] < config.epochs and state["step"] < end_step and not should_stop():
        done_in_epoch = state["step"] - state["epoch"] * steps_per_epoch
        bar = tqdm(
            batches.epoch(state["epoch"], done_in_epoch),
            initial=done_in_epoch,
            total=steps_per_epoch,
            desc=f"epoch {state['epoch'] + 1}/{config.epochs}",
            disable=not ranks.main or None,
        )
        started = time.perf_counter()
        for batch in bar:
            lr = learning_rate(state["step"], total_steps, config)
            for group in trainer.optimizer.param_groups:
                group["lr"] = lr
            loss, _ = trainer.batch_loss(batch)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at step {state['step']}; the last good checkpoint is in {last}"
                )
            trainer.step(loss)
            running = loss.item() if math.isnan(running) else 0.98 * running + 0.02 * loss.item()
            state["running_loss"] = running
            state["step"] += 1
            state["seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.1e}")
            if validation_due():
                log_validation()
            if state["step"] % config.checkpoint_every == 0:
                checkpoint()
            if state["step"] >= end_step or should_stop():
                break
        if state["step"] >= (state["epoch"] + 1) * steps_per_epoch:
            state["epoch"] += 1
        if not should_stop() and not validation_due():  # either has just validated
            log_validation()
        checkpoint()
    if board is not None:
        board.close()
    return state | {"weights_sha256": _weights_digest(trainer.model)}


def _weights_digest(model: UNet) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainingError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(run_dir / "tensorboard"))
