"""``audiodenoise train``: Adam on patch pairs, resumable from atomic checkpoints."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm import tqdm

from .atomic import write_json
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, save_tensors_atomic
from .data.dataset import PatchDataset, read_manifest
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


@torch.no_grad()
def validate(model: UNet, data: PatchDataset, spectral: SpectralConfig, config: TrainConfig) -> float:
    model.eval()
    count = min(len(data), config.max_val_pairs)
    losses = []
    for start in range(0, count, config.batch_size):
        batch = [data[i] for i in range(start, min(count, start + config.batch_size))]
        noisy, clean = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
        losses.append(loss_fn(model, noisy, clean, spectral, config.compression).item() * len(batch))
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
    dataset: str | Path,
    run_dir: str | Path,
    model_config: ModelConfig = ModelConfig(),
    config: TrainConfig = TrainConfig(),
    resume: bool = False,
    init_from: str | Path | None = None,
) -> dict:
    """Train until ``config.epochs`` are done; returns the final state.

    ``init_from`` starts from a checkpoint's weights (fine-tuning); its model and STFT settings are used."""
    run_dir = Path(run_dir)
    manifest = read_manifest(dataset)
    spectral = SpectralConfig.from_dict(manifest["spectral"])
    train_data, val_data = PatchDataset(dataset, "train"), PatchDataset(dataset, "val")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = UNet(model_config)
    if init_from is not None:
        model, init_spectral, _ = load_checkpoint(init_from)
        if init_spectral != spectral:
            raise TrainingError(f"{dataset}: STFT settings differ from the checkpoint in {init_from}")
        model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    state = {"step": 0, "epoch": 0, "best_val_loss": None, "seconds": 0.0}
    last = run_dir / "last"
    if resume and (last / STATE).is_file():
        model, ckpt_spectral, _ = load_checkpoint(last)
        if ckpt_spectral != spectral:
            raise TrainingError(f"{dataset}: STFT settings differ from the checkpoint in {last}")
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        saved = json.loads((last / STATE).read_text())
        _load_optimizer(optimizer, last, saved["optimizer"])
        state = saved["state"]
    elif resume:
        raise CheckpointError(f"{run_dir}: nothing to resume")
    model.train()
    steps_per_epoch = len(train_data) // config.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"{dataset}: {len(train_data)} training pairs, fewer than one batch of {config.batch_size}")
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    run_dir.mkdir(parents=True, exist_ok=True)
    history = run_dir / "history.csv"
    info = {"train": asdict(config), "dataset": str(dataset), "init_from": str(init_from) if init_from else None}

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
        order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(config.seed + state["epoch"]))
        done_in_epoch = state["step"] - state["epoch"] * steps_per_epoch
        bar = tqdm(range(done_in_epoch, steps_per_epoch), desc=f"epoch {state['epoch'] + 1}/{config.epochs}")
        for batch_index in bar:
            started = time.perf_counter()
            indices = order[batch_index * config.batch_size : (batch_index + 1) * config.batch_size].tolist()
            batch = [train_data[i] for i in indices]
            noisy, clean = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
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
