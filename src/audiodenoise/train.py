"""``audiodenoise train``: Adam on patch pairs, resumable after ``kill -9`` at any moment, on one or many processes.

Everything a resume needs (weights, their running average, optimizer, RNG, step) is one safetensors file written
atomically, so a kill can never leave a half-new checkpoint. Validation and the checkpoints use the exponential
moving average of the weights (EMA), which is smoother than any one step's weights. Under ``torchrun`` each
rank reads its own share of every batch and rank 0 writes the checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from .atomic import write_atomic, write_json
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, Settings, setting
from .data.mixing import MixConfig
from .data.sources import Batch, BatchSource, OnTheFly, PreparedSource, Ranks, collate
from .data.splits import SplitConfig
from .engine import bf16_native
from .losses import (
    LOSSES,
    enhance,
    envelope_correlation,
    envelope_loss,
    holds_speech,
    hybrid_loss,
    loss_value,
    magnitude_error,
    overattenuation_loss,
    patch_si_sdr,
    waveform_loss,
    with_noisy_phase,
)
from .nets import (
    DEFAULT_ARCHITECTURE,
    architecture_name,
    build,
    default_settings,
    network_class,
    network_input,
    read_settings,
)
from .spectral import SpectralConfig, magnitude_to_features
from .training_log import TrainingLog

RESUME = "training.safetensors"
RUN_CONFIG, RUN_CONFIG_VERSION = "config.json", 1
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
    loss: str | None = setting(None, "default: the architecture's (model.default_loss)", choices=LOSSES)
    compression: float = setting(0.3, "magnitude exponent of compressed-mse", low=0, above=True)
    waveform_weight: float = setting(
        0.0, "add this times the negative SI-SDR (dB) of the patch waveforms to the loss (on the fly only)", low=0
    )
    envelope_weight: float = setting(
        0.0, "add this times one minus STOI's band-envelope correlation of the patches to the loss", low=0
    )
    overattenuation_weight: float = setting(
        0.0, "add this times the mean squared compressed-magnitude shortfall below the clean speech", low=0
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
    voices: str | None = setting(None, "synthetic speech to mix in on the fly (scripts/synthesize_voices.py)")
    architecture: str = setting(DEFAULT_ARCHITECTURE, "the network: a name in nets.ARCHITECTURES")
    model: Settings = default_settings()  # the architecture's
    train: TrainConfig = TrainConfig()
    mixing: MixConfig = MixConfig()
    split: SplitConfig = SplitConfig()
    spectral: SpectralConfig = SpectralConfig()

    def __post_init__(self):
        if isinstance(self.model, dict) and isinstance(self.architecture, str):
            object.__setattr__(self, "model", read_settings(self.architecture, self.model))
        super().__post_init__()

    def check(self) -> None:
        network_class(self.architecture)  # a known one
        if architecture_name(self.model) != self.architecture:
            raise ConfigError(f"model: settings of {architecture_name(self.model)}, not of {self.architecture}")
        if (self.speech is None) != (self.noise is None):
            raise ConfigError("speech, noise: on-the-fly training needs both --speech and --noise")
        if self.voices is not None and self.speech is None:
            raise ConfigError("voices: synthetic voices are mixed on the fly only (--speech/--noise)")
        if self.dataset is not None and self.speech is not None:
            raise ConfigError("dataset: mixing on the fly from --speech/--noise takes RUN_DIR alone, no DATASET")
        if self.dataset is None and self.speech is None:
            raise ConfigError("dataset: give DATASET RUN_DIR, or --speech and --noise (in options or --config)")

    @property
    def source(self) -> BatchSource:
        if self.dataset is not None:
            return PreparedSource(self.dataset)
        return OnTheFly(
            self.speech,
            self.noise,
            self.mixing,
            self.split,
            self.spectral,
            self.epoch_pairs,
            self.loader_workers,
            self.voices,
        )


def train_run(run: RunConfig, run_dir: str | Path, resume: bool = False) -> dict:
    """``train`` as RUN_DIR/config.json describes it, after writing that file with the data's own settings
    (``train --config RUN_DIR/config.json`` runs it again)."""
    source = run.source
    resolved = replace(run, spectral=source.spectral, mixing=source.mixing or run.mixing)
    return train(source, run_dir, run.model, run.train, resume, run.init_from, record=resolved)


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
    """One model, its optimizer, the moving average of its weights and the run's state; ``fit`` runs the loop."""

    def __init__(self, model: nn.Module, spectral: SpectralConfig, config: TrainConfig, device: torch.device):
        if config.bf16 is None:
            config = replace(config, bf16=bf16_native(device))
        self.model, self.spectral, self.config, self.device = model.to(device), spectral, config, device
        self.loss_name = config.loss or model.default_loss
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
    def validated_model(self) -> nn.Module:
        """The weights that are validated and saved: the moving average, or the raw weights without one."""
        return self.model if self.moving_average is None else self.moving_average.module

    def batch_loss(self, batch: Batch, network=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The loss of (noisy, clean[, noisy spectrum, clean spectrum]) patches, the enhanced magnitudes, and the
        enhanced complex spectra where the pairs carry spectra."""
        noisy, clean, *spectra = batch
        noisy, clean = self._to_device(noisy), self._to_device(clean)
        spectra = [self._to_device(spectrum) for spectrum in spectra]
        network = self.network if network is None else network
        with self._autocast():
            if network_input(self.model) == "spectrum":
                enhanced_spec = self.model.enhance_spectrum(spectra[0].squeeze(1), network).unsqueeze(1)
                enhanced = enhanced_spec.abs()
                features = magnitude_to_features(enhanced, self.spectral)
            else:
                enhanced, features = enhance(self.model, noisy, self.spectral, network)
                enhanced_spec = with_noisy_phase(enhanced, spectra[0]) if spectra else None
        if self.loss_name == "hybrid":
            loss = hybrid_loss(enhanced_spec, spectra[1], self.config.compression)
        else:
            loss = loss_value(self.loss_name, enhanced, features, clean, self.spectral, self.config.compression)
        if self.config.waveform_weight:
            loss = loss + self.config.waveform_weight * waveform_loss(enhanced_spec, *spectra, self.spectral)
        if self.config.envelope_weight:
            loss = loss + self.config.envelope_weight * envelope_loss(enhanced, noisy, clean, self.spectral)
        if self.config.overattenuation_weight:
            shortfall = overattenuation_loss(enhanced, clean, self.config.compression)
            loss = loss + self.config.overattenuation_weight * shortfall
        return loss, enhanced, enhanced_spec

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
            loss, enhanced, enhanced_spec = self.batch_loss(batch, network=model)
            enhanced = enhanced.cpu()
            loss_sum += loss.item() * len(batch[0])
            energy, error = magnitude_error(enhanced, batch[1])
            clean_energy, error_energy = clean_energy + energy, error_energy + error
            voiced = holds_speech(batch[0], batch[1])
            correlations.append(envelope_correlation(enhanced[voiced], batch[1][voiced], self.spectral))
            if enhanced_spec is not None:
                si_sdr, voiced = patch_si_sdr(enhanced_spec.cpu(), batch[2], batch[3], self.spectral)
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

    def schedule(self, steps_per_epoch: int) -> tuple[int, int]:
        """(steps the learning-rate schedule plans for, the step this run ends at)."""
        total = steps_per_epoch * self.config.epochs
        if self.config.max_steps is not None:
            total = min(total, self.config.max_steps)
        return total, total if self.config.stop_after is None else min(total, self.config.stop_after)

    def fit(
        self,
        source: BatchSource,
        val_data: Sequence[Batch],
        run_dir: Path,
        info: dict,
        ranks: Ranks = Ranks(),
        log: TrainingLog | None = None,
    ) -> None:
        """Train from ``state`` to the end of the schedule (or early stopping): checkpoints and resume points in
        RUN_DIR/last every ``checkpoint_every`` steps and at each epoch's end, the best validated weights in
        RUN_DIR/best. Only the main rank writes; ``log`` gets every validation."""
        config, state = self.config, self.state
        steps_per_epoch = source.steps_per_epoch(config.batch_size, ranks)
        total_steps, end_step = self.schedule(steps_per_epoch)
        state.setdefault("running_loss", math.nan)
        lr = config.learning_rate
        while state["epoch"] < config.epochs and state["step"] < end_step and not self._out_of_patience():
            done_in_epoch = state["step"] - state["epoch"] * steps_per_epoch
            bar = tqdm(
                source.epoch(state["epoch"], done_in_epoch, config.batch_size, config.seed, ranks),
                initial=done_in_epoch,
                total=steps_per_epoch,
                desc=f"epoch {state['epoch'] + 1}/{config.epochs}",
                disable=not ranks.main or None,
            )
            started = time.perf_counter()
            for batch in bar:
                lr = learning_rate(state["step"], total_steps, config)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss, *_ = self.batch_loss(batch)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at step {state['step']}; the last good checkpoint is in "
                        f"{run_dir / 'last'}"
                    )
                self.step(loss)
                running = state["running_loss"]
                state["running_loss"] = loss.item() if math.isnan(running) else 0.98 * running + 0.02 * loss.item()
                state["step"] += 1
                state["seconds"] += time.perf_counter() - started
                started = time.perf_counter()
                bar.set_postfix(loss=f"{state['running_loss']:.4f}", lr=f"{lr:.1e}")
                if self._validation_due():
                    self._validate_and_log(val_data, run_dir, info, ranks, log, lr)
                if state["step"] % config.checkpoint_every == 0:
                    self._checkpoint(run_dir, info, ranks)
                if state["step"] >= end_step or self._out_of_patience():
                    break
            if state["step"] >= (state["epoch"] + 1) * steps_per_epoch:
                state["epoch"] += 1
            if not self._out_of_patience() and not self._validation_due():  # either has just validated
                self._validate_and_log(val_data, run_dir, info, ranks, log, lr)
            self._checkpoint(run_dir, info, ranks)

    def _validation_due(self) -> bool:
        return bool(self.config.validate_every) and self.state["step"] % self.config.validate_every == 0

    def _out_of_patience(self) -> bool:
        return self.config.patience is not None and self.state["stale"] >= self.config.patience

    def _validate_and_log(self, val_data, run_dir: Path, info: dict, ranks: Ranks, log, lr: float) -> None:
        metrics = self.validate(val_data)
        if self.improved(metrics) and ranks.main:
            checkpoint_info = info | {"step": self.state["step"], **metrics}
            save_checkpoint(run_dir / "best", self.validated_model, self.spectral, checkpoint_info)
        if log is not None:
            log.validation(self.state, lr, metrics)

    def _checkpoint(self, run_dir: Path, info: dict, ranks: Ranks) -> None:
        if ranks.main:
            last = run_dir / "last"
            save_checkpoint(last, self.validated_model, self.spectral, info | {"step": self.state["step"]})
            self.save_resume_point(last / RESUME, info)

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
            "architecture": architecture_name(self.model),
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
            architecture = metadata.get("architecture", "unet")  # resume points of version 1 checkpoints' time
        except (SafetensorError, OSError, KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: corrupt resume checkpoint ({str(error).splitlines()[0]})") from None
        if spectral != self.spectral:
            raise TrainingError(f"{path}: the checkpoint's STFT settings differ from the training data's")
        if (
            architecture != architecture_name(self.model)
            or read_settings(architecture, model_config) != self.model.config
        ):
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
    data: str | Path | BatchSource,
    run_dir: str | Path,
    model_config: Settings | None = None,
    config: TrainConfig = TrainConfig(),
    resume: bool = False,
    init_from: str | Path | None = None,
    record: RunConfig | None = None,
) -> dict:
    """Train a network of ``model_config``'s architecture (default: a U-Net of the default settings) until
    ``config.epochs`` are done (or early stopping) on a prepared dataset folder or another batch source; returns
    the final state. ``init_from`` starts from a checkpoint's weights (fine-tuning); ``record`` is written to
    RUN_DIR/config.json once the run is under way."""
    run_dir = Path(run_dir)
    source = PreparedSource(data) if isinstance(data, str | Path) else data
    spectral = source.spectral
    device = _device(config.device)
    ranks = _ranks_from_environment(device)
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    model = build(model_config or default_settings())
    if init_from is not None:
        model = _initial_weights(init_from, spectral, source.name)
    try:
        type(model).check_input(model.config, spectral)  # before any mixing
    except ConfigError as error:
        raise TrainingError(f"{source.name}: {error}") from None
    needs_spectra = [
        need
        for need, wanted in (
            (f"a {architecture_name(model)} network", network_input(model) == "spectrum"),
            ("the hybrid loss", (config.loss or model.default_loss) == "hybrid"),
            ("the waveform loss", bool(config.waveform_weight)),
            ("val_si_sdr_db", config.select_by == "val_si_sdr_db"),
        )
        if wanted
    ]
    if not source.carries_spectra and needs_spectra:
        raise TrainingError(
            f"{source.name}: a prepared dataset holds magnitudes only; {needs_spectra[0]} needs on-the-fly mixing "
            "(--speech/--noise)"
        )
    if source.steps_per_epoch(config.batch_size, ranks) == 0:
        raise TrainingError(f"{source.name}: an epoch holds fewer pairs than one batch of {config.batch_size}")
    val_data = source.validation(config.max_val_pairs)
    model.train()
    trainer = Trainer(model, spectral, config, device)
    if resume:
        if not (run_dir / "last" / RESUME).is_file():
            raise CheckpointError(f"{run_dir}: nothing to resume (no {run_dir / 'last' / RESUME})")
        trainer.load_resume_point(run_dir / "last" / RESUME)
    if ranks.world > 1:
        trainer.network = torch.nn.parallel.DistributedDataParallel(
            trainer.model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        trainer.network = torch.compile(trainer.network)
    log = None
    if ranks.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        board = _tensorboard(run_dir) if config.tensorboard else None
        log = TrainingLog(run_dir, trainer.state["step"], board)  # drops rows logged after the resumed step
        if record is not None:
            record = replace(record, architecture=architecture_name(model), model=model.config)
            write_json(run_dir / RUN_CONFIG, record.to_dict())
    info = {
        "train": trainer.config.to_dict() | {"loss": trainer.loss_name, "processes": ranks.world},
        "dataset": source.name,
        "mixing": None if source.mixing is None else source.mixing.to_dict(),
        "speakers": len(source.speakers),
        "synthetic_voices": len(source.synthetic_voices),
        "init_from": str(init_from) if init_from else None,
    }
    trainer.fit(source, val_data, run_dir, info, ranks, log)
    if log is not None:
        log.close()
    return trainer.state | {"weights_sha256": _weights_digest(trainer.model)}


def _initial_weights(folder: str | Path, spectral: SpectralConfig, source_name: str) -> nn.Module:
    """The model of the checkpoint in ``folder``, to start from; it may have other STFT settings at the same rate."""
    model, init_spectral, _ = load_checkpoint(folder)
    if init_spectral.sample_rate != spectral.sample_rate:
        raise TrainingError(
            f"{source_name}: {spectral.sample_rate} Hz, but the checkpoint in {folder} is for "
            f"{init_spectral.sample_rate} Hz"
        )
    before = init_spectral.to_dict()
    changes = [
        f"{name} {before[name]} -> {value}" for name, value in spectral.to_dict().items() if before[name] != value
    ]
    if changes:
        tqdm.write(f"{folder}: its weights start a model with other STFT settings: {', '.join(changes)}")
    return model


def _weights_digest(model: nn.Module) -> str:
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
