"""The architecture registry and the batch-source protocol: a new architecture is one class and one registry line,
and goes through training, checkpoints, both engines and the CLI; checkpoints name their architecture, and older
ones still load; the trainer takes any batch source."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from conftest import on_the_fly_train, speech_like, write_corpus
from torch import nn

from audiodenoise.checkpoint import CONFIG, load_checkpoint, save_checkpoint
from audiodenoise.cli import main
from audiodenoise.config import ConfigError, Settings, setting
from audiodenoise.data.sources import collate
from audiodenoise.denoiser import Denoiser
from audiodenoise.nets import ARCHITECTURES
from audiodenoise.nets.unet import UNet, UNetConfig
from audiodenoise.spectral import SpectralConfig, magnitude_to_features
from audiodenoise.train import TrainConfig, train


@dataclass(frozen=True)
class BinGainConfig(Settings):
    frames: int = setting(128, "the only patch length it takes", low=1)


class BinGain(nn.Module):
    """A toy architecture: a sigmoid gain from a 1x1 convolution of each bin's feature."""

    config_class = BinGainConfig

    def __init__(self, config: BinGainConfig):
        super().__init__()
        self.config = config
        self.conv = nn.Conv2d(1, 1, 1)

    @staticmethod
    def check_input(config: BinGainConfig, spectral: SpectralConfig) -> None:
        if spectral.patch_frames != config.frames:
            raise ConfigError(f"patches of {spectral.patch_frames} frames, not {config.frames}")

    default_loss = "magnitude-mse"
    summary = "a gain per bin"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(features))

    def gain(self, output: torch.Tensor, db_scale: float) -> torch.Tensor:
        return output

    def enhance(self, noisy, features, output, spectral):
        return output * noisy, magnitude_to_features(output * noisy, spectral)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "bingain", BinGain)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry-corpus")
    write_corpus(root, ("alice", "bob", "carol"), files_per_speaker=2)
    return root


def test_a_registered_architecture_trains_saves_loads_and_runs_on_both_engines(registered, corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(on_the_fly_train(corpus, run, "--architecture", "bingain", "--frames", "128", "--max-steps", "2")) == 0
    config = json.loads((run / "best" / CONFIG).read_text())
    assert (config["architecture"], config["model"]) == ("bingain", {"frames": 128})
    assert config["info"]["train"]["loss"] == "magnitude-mse"
    assert json.loads((run / "config.json").read_text())["architecture"] == "bingain"
    model, spectral, _ = load_checkpoint(run / "best")
    assert isinstance(model, BinGain)
    audio = speech_like(2.0, 22050)
    torch_out = Denoiser(model, spectral, engine="torch")(audio, 22050)
    onnx_out = Denoiser(model, spectral, engine="onnxruntime")(audio, 22050)
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-5)
    assert main(on_the_fly_train(corpus, tmp_path / "again", "--config", str(run / "config.json"))) == 0
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == json.loads((run / "config.json").read_text())


def test_an_architecture_refuses_a_patch_grid_it_cannot_take_before_any_mixing(registered, corpus, tmp_path, capsys):
    assert main(on_the_fly_train(corpus, tmp_path / "run", "--architecture", "bingain", "--frames", "64")) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith("patches of 128 frames, not 64") and len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_unknown_architecture_in_a_run_config_is_one_line_naming_the_known_ones(corpus, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('architecture = "transformer"\n')
    assert main(on_the_fly_train(corpus, tmp_path / "run", "--config", str(config))) == 2
    error = capsys.readouterr().err.strip()
    assert "architecture: unknown 'transformer'; this version knows unet, crunet" in error and str(config) in error
    assert len(error.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_settings_of_another_architecture_are_refused_by_name(registered, corpus, tmp_path, capsys):
    assert main(on_the_fly_train(corpus, tmp_path / "run", "--architecture", "bingain", "--depth", "3")) == 2
    assert "unknown setting model.depth" in capsys.readouterr().err


def test_checkpoint_naming_an_unknown_architecture_is_one_line_naming_the_known_ones(tmp_path, capsys):
    folder = tmp_path / "model"
    save_checkpoint(folder, UNet(UNetConfig(base_filters=4, depth=2)), SpectralConfig())
    config = json.loads((folder / CONFIG).read_text())
    (folder / CONFIG).write_text(json.dumps(config | {"architecture": "transformer"}))
    output = tmp_path / "out.wav"
    assert main(["denoise", "examples/water_noisy.wav", "-o", str(output), "--model", str(folder)]) == 2
    error = capsys.readouterr().err.strip()
    assert "unknown 'transformer'; this version knows unet, crunet" in error and len(error.splitlines()) == 1
    assert not output.exists()


def test_version_1_checkpoints_load_as_the_u_net_they_are(tmp_path):
    model = UNet(UNetConfig(base_filters=4, depth=2)).eval()
    save_checkpoint(tmp_path, model, SpectralConfig())
    config = json.loads((tmp_path / CONFIG).read_text())
    assert (config["version"], config["architecture"]) == (2, "unet")
    del config["architecture"]
    (tmp_path / CONFIG).write_text(json.dumps(config | {"version": 1}))
    loaded, _, read = load_checkpoint(tmp_path)
    assert isinstance(loaded, UNet) and read["architecture"] == "unet"
    features = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        assert torch.equal(loaded(features), model(features))


class RepeatingSource:
    """A batch source of its own (not a prepared dataset, not on-the-fly mixing): the same pairs, in order."""

    name, spectral, mixing, carries_spectra = "repeating pairs", SpectralConfig(), None, False
    speakers, synthetic_voices = ("a", "b"), ()

    def __init__(self, pairs):
        self.pairs = pairs

    def steps_per_epoch(self, batch_size, ranks):
        return len(self.pairs) // (batch_size * ranks.world)

    def epoch(self, epoch, start, batch_size, seed, ranks):
        for step in range(start, self.steps_per_epoch(batch_size, ranks)):
            yield collate(self.pairs[step * batch_size : (step + 1) * batch_size])

    def validation(self, count):
        return self.pairs[:count]


def test_any_batch_source_trains(tmp_path):
    rng = torch.Generator().manual_seed(0)
    clean = [torch.rand(1, 128, 128, generator=rng) for _ in range(6)]
    pairs = [(c + 0.1 * torch.rand(1, 128, 128, generator=rng), c) for c in clean]
    config = TrainConfig(epochs=2, batch_size=2, threads=1, validate_every=0)
    state = train(RepeatingSource(pairs), tmp_path, UNetConfig(base_filters=4, depth=2), config)
    assert (state["step"], state["epoch"]) == (6, 2)
    info = json.loads((tmp_path / "best" / CONFIG).read_text())["info"]
    assert (info["dataset"], info["mixing"], info["speakers"]) == ("repeating pairs", None, 2)
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 1 + 2  # a validation per epoch
