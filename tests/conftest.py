"""Shared fixtures: checkpoints and audio made in code, so tests need no corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodenoise.checkpoint import save_checkpoint
from audiodenoise.nets.unet import UNet, UNetConfig
from audiodenoise.spectral import SpectralConfig


def zeroed_head_model(target: str) -> UNet:
    """A U-Net whose output conv is zeroed: a constant head output whatever the input."""
    model = UNet(UNetConfig(target=target))
    with torch.no_grad():
        model.head[2].weight.zero_()
        model.head[2].bias.zero_()
    return model.eval()


def identity_model() -> UNet:
    """The reference (noise target) predicts no noise: it changes nothing."""
    return zeroed_head_model("noise")


def halving_model() -> UNet:
    """The mask target outputs sigmoid(0) = 0.5 everywhere: a fixed -6 dB gain."""
    return zeroed_head_model("mask")


@pytest.fixture(scope="session")
def identity_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("identity-model")
    save_checkpoint(folder, identity_model(), SpectralConfig())
    return folder


@pytest.fixture(scope="session")
def halving_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("halving-model")
    save_checkpoint(folder, halving_model(), SpectralConfig())
    return folder


def speech_like(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-paced harmonic signal with a moving pitch, at about -20 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    signal = voiced * envelope
    return (0.1 * signal / (np.sqrt(np.mean(signal**2)) + 1e-9)).astype(np.float32)


def write_corpus(root, speakers=("alice", "bob", "carol"), files_per_speaker=3):
    """Speakers and two noise categories of short generated clips, plus one corrupt speech file."""
    rng = np.random.default_rng(4)
    for speaker in speakers:
        for i in range(files_per_speaker):
            path = root / "speech" / speaker / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, speech_like(1.2, 16000, seed=i + len(speaker)), 16000)
    for category in ("hiss", "rumble"):
        for i in range(2):
            path = root / "noise" / category / f"{i}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.1 * rng.normal(size=22050).astype(np.float32), 22050)
    (root / "speech" / speakers[1] / "broken.wav").write_bytes(b"not audio")


def resume_state(run) -> dict:
    """The step, epoch… stored in a run's resume checkpoint."""
    from safetensors import safe_open

    with safe_open(run / "last" / "training.safetensors", "pt") as handle:
        return json.loads(handle.metadata()["state"])


def denoise_cli(capsys, *args) -> tuple[int, str, str]:
    """``audiodenoise denoise ARGS`` in-process: exit code, stdout, stderr (tqdm stays off: not a TTY)."""
    from audiodenoise.cli import main

    code = main(["denoise", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def on_the_fly_train(corpus, run, *options) -> list[str]:
    """``train`` arguments for a tiny on-the-fly run on a ``write_corpus`` corpus, one speaker held out."""
    return ["train", "--speech", str(corpus / "speech"), "--noise", str(corpus / "noise"), str(run)] + [
        *("--val-speakers", "1", "--epoch-pairs", "4", "--batch-size", "2", "--threads", "1", "--loader-workers", "0"),
        *options,
    ]
