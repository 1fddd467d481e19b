"""``audiodenoise train``: Adam on patch pairs, resumable from atomic checkpoints."""

from __future__ import annotations

import csv
import itertools
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm import tqdm

from .atomic import write_json
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, save_tensors_atomic
from .data.dataset import PatchDataset, read_manifest
from .data.mixing import MixConfig
from .data.onthefly import MixingDataset, fixed_pairs
from .data.splits import Split, SplitConfig, split_corpora
from .model import ModelConfig, UNet
from .spectral import SpectralConfig, magnitude_to_features

STATE = "state.json"
OPTIMIZER = "optimizer.safetensors"


class TrainingError(Exception):
    pass


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None  # stop early; the schedule ends here too
    batch_size: int = 16
    learning_rate: float = 1e-3
    final_learning_rate: float = 5e-5
    warmup_steps: int = 200
    checkpoint_every: int = 200
    validate_every: int = 500
    max_val_pairs: int = 512
    compression: float = 0.3  # magnitude exponent of the mask loss
    seed: int = 0
    threads: int = 2


def loss_fn(model: UNet, noisy: torch.Tensor, clean: torch.Tensor, spectral: SpectralConfig, compression: float):
    """Mask target: MSE of compressed magnitudes. Noise target (reference): Huber on scaled dB noise."""
    features = magnitude_to_features(noisy, spectral)
    output = model(features)
    if model.config.target == "mask":
        enhanced = output * noisy
        return torch.mean((enhanced.clamp_min(1e-8) ** compression - clean.clamp_min(1e-8) ** compression) ** 2)
    target = features - magnitude_to_features(clean, spectral)
    return torch.nn.functional.huber_loss(output, target)


def learning_rate(step: int, total: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    low, high = config.final_learning_rate, config.learning_rate
    return low + 0.5 * (high - low) * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class OnTheFly:
    """Train on pairs mixed as they are read from these corpora, new ones every epoch."""

    speech: str | Path
    noise: str | Path
    mixing: MixConfig = MixConfig()
    split: SplitConfig = SplitConfig()
    epoch_pairs: int = 20000
    workers: int = 1  # DataLoader processes that mix


Batch = tuple[torch.Tensor, torch.Tensor]


def collate(pairs: list[Batch]) -> Batch:
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


class PreparedBatches:
    """Shuffled batches of a prepared dataset's training split; an epoch can start at any batch."""

    def __init__(self, folder: str | Path, batch_size: int, seed: int):
        self.data = PatchDataset(folder, "train")
        self.batch_size, self.seed = batch_size, seed
        self.steps_per_epoch = len(self.data) // batch_size

    def epoch(self, epoch: int, start: int) -> Iterator[Batch]:
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(self.seed + epoch))
        for batch in range(start, self.steps_per_epoch):
            indices = order[batch * self.batch_size : (batch + 1) * self.batch_size].tolist()
            yield collate([self.data[i] for i in indices])


def _single_thread(_: int) -> None:
    torch.set_num_threads(1)


class MixedBatches:
    """Batches mixed on the fly; an epoch is ``epoch_pairs`` pairs, and every (epoch, start) draws new mixes."""

    def __init__(self, source: OnTheFly, split: Split, spectral: SpectralConfig, batch_size: int, seed: int):
        self.source, self.split, self.spectral = source, split, spectral
        self.batch_size, self.seed = batch_size, seed
        self.steps_per_epoch = source.epoch_pairs // batch_size

    def epoch(self, epoch: int, start: int) -> Iterator[Batch]:
        data = MixingDataset(self.split, self.spectral, self.source.mixing, seed=(self.seed, epoch, start))
        workers = self.source.workers
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=self.batch_size,
            num_workers=workers,
            worker_init_fn=_single_thread if workers else None,
            multiprocessing_context="fork" if workers else None,
        )
        yield from itertools.islice(loader, self.steps_per_epoch - start)


def open_source(data: str | Path | OnTheFly, config: TrainConfig):
    """(STFT settings, training batches, validation pairs) of a prepared dataset or an on-the-fly source."""
    if isinstance(data, OnTheFly):
        spectral = SpectralConfig()
        splits = split_corpora(data.speech, data.noise, data.split)
        batches = MixedBatches(data, splits["train"], spectral, config.batch_size, config.seed)
        return spectral, batches, fixed_pairs(splits["val"], config.max_val_pairs, spectral, data.mixing)
    spectral = SpectralConfig.from_dict(read_manifest(data)["spectral"])
    return spectral, PreparedBatches(data, config.batch_size, config.seed), PatchDataset(data, "val")


@torch.no_grad()
def validate(model: UNet, data: Sequence[Batch], spectral: SpectralConfig, config: TrainConfig) -> float:
    model.eval()
    count = min(len(data), config.max_val_pairs)
    losses = []
    for start in range(0, count, config.batch_size):
        noisy, clean = collate([data[i] for i in range(start, min(count, start + config.batch_size))])
        losses.append(loss_fn(model, noisy, clean, spectral, config.compression).item() * len(noisy))
    model.train()
    return sum(losses) / count


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors = {f"{index}.{name}": value for index, s in state["state"].items() for name, value in s.items()}
    return tensors, {"param_groups": state["param_groups"]}


def _load_optimizer(optimizer: torch.optim.Optimizer, folder: Path, groups: dict) -> None:
    tensors = load_file(folder / OPTIMIZER)
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups["param_groups"]})


def train(
    data: str | Path | OnTheFly,
    run_dir: str | Path,
    model_config: ModelConfig = ModelConfig(),
    config: TrainConfig = TrainConfig(),
    resume: bool = False,
    init_from: str | Path | None = None,
) -> dict:
    """Train until ``config.epochs`` are done on a prepared dataset folder or an on-the-fly source; returns
    the final state. ``init_from`` starts from a checkpoint's weights (fine-tuning)."""
    run_dir = Path(run_dir)
    spectral, batches, val_data = open_source(data, config)
    source_name = str(data) if not isinstance(data, OnTheFly) else f"on the fly: {data.speech} + {data.noise}"
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = UNet(model_config)
    if init_from is not None:
        model, init_spectral, _ = load_checkpoint(init_from)
        if init_spectral != spectral:
            raise TrainingError(f"{source_name}: STFT settings differ from the checkpoint in {init_from}")
        model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    state = {"step": 0, "epoch": 0, "best_val_loss": None, "seconds": 0.0}
    last = run_dir / "last"
    if resume and (last / STATE).is_file():
        model, ckpt_spectral, _ = load_checkpoint(last)
        if ckpt_spectral != spectral:
            raise TrainingError(f"{source_name}: STFT settings differ from the checkpoint in {last}")
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        saved = json.loads((last / STATE).read_text())
        _load_optimizer(optimizer, last, saved["optimizer"])
        state = saved["state"]
    elif resume:
        raise CheckpointError(f"{run_dir}: nothing to resume")
    model.train()
    steps_per_epoch = batches.steps_per_epoch
    if steps_per_epoch == 0:
        raise TrainingError(f"{source_name}: an epoch holds fewer pairs than one batch of {config.batch_size}")
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    run_dir.mkdir(parents=True, exist_ok=True)
    history = run_dir / "history.csv"
    info = {"train": asdict(config), "dataset": source_name, "init_from": str(init_from) if init_from else None}

    def checkpoint() -> None:
        save_checkpoint(last, model, spectral, info | {"step": state["step"]})
        tensors, groups = _optimizer_tensors(optimizer)
        save_tensors_atomic(last / OPTIMIZER, tensors)
        write_json(last / STATE, {"state": state, "optimizer": groups})

    def log_validation() -> None:
        val_loss = validate(model, val_data, spectral, config)
        new_file = not history.exists()
        with history.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new_file:
                writer.writerow(["step", "epoch", "train_loss", "val_loss", "learning_rate", "seconds"])
            writer.writerow(
                [
                    state["step"],
                    state["epoch"],
                    f"{running:.6f}",
                    f"{val_loss:.6f}",
                    f"{lr:.3e}",
                    f"{state['seconds']:.0f}",
                ]
            )
        if state["best_val_loss"] is None or val_loss < state["best_val_loss"]:
            state["best_val_loss"] = val_loss
            save_checkpoint(run_dir / "best", model, spectral, info | {"step": state["step"], "val_loss": val_loss})

    running, lr = float("nan"), config.learning_rate
    while state["epoch"] < config.epochs and state["step"] < total_steps:
        done_in_epoch = state["step"] - state["epoch"] * steps_per_epoch
        bar = tqdm(
            batches.epoch(state["epoch"], done_in_epoch),
            initial=done_in_epoch,
            total=steps_per_epoch,
            desc=f"epoch {state['epoch'] + 1}/{config.epochs}",
        )
        started = time.perf_counter()
        for noisy, clean in bar:
            lr = learning_rate(state["step"], total_steps, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = loss_fn(model, noisy, clean, spectral, config.compression)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at step {state['step']}; the last good checkpoint is in {last}"
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running = loss.item() if math.isnan(running) else 0.98 * running + 0.02 * loss.item()
            state["step"] += 1
            state["seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.1e}")
            if state["step"] % config.validate_every == 0:
                log_validation()
            if state["step"] % config.checkpoint_every == 0:
                checkpoint()
            if state["step"] >= total_steps:
                break
        if state["step"] >= (state["epoch"] + 1) * steps_per_epoch:
            state["epoch"] += 1
        log_validation()
        checkpoint()
    return state
