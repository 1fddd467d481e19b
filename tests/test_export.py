"""ONNX export: parity with PyTorch, the embedded config, the onnxruntime engine, and bad input."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speech_like

from audiodenoise import Denoiser
from audiodenoise.checkpoint import save_checkpoint, weights_digest
from audiodenoise.cli import main
from audiodenoise.engine import CONFIG_KEY, OnnxEngine, TorchEngine, onnx_bytes
from audiodenoise.nets.unet import UNet, UNetConfig
from audiodenoise.spectral import SpectralConfig

RATE = 16000


def random_model(target: str, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(target=target)).eval()


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("random-model")
    save_checkpoint(folder, random_model("mask", seed=1), SpectralConfig())
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"inference": {"strength": 0.7}}))
    return folder


@pytest.fixture(scope="module")
def exported(random_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    assert main(["export", "--model", str(random_checkpoint), "-o", str(path)]) == 0
    return path


@pytest.mark.parametrize("target", ["mask", "noise"])
def test_onnx_runtime_matches_pytorch_at_any_batch_size(target):
    model = random_model(target)
    spectral = SpectralConfig()
    onnx_engine, torch_engine = OnnxEngine(onnx_bytes(model, spectral)), TorchEngine(model, spectral)
    for batch in (1, 5):
        features = torch.from_numpy(np.random.default_rng(batch).normal(0.5, 0.5, (batch, 1, 128, 128)))
        features = features.float()
        difference = (onnx_engine(features) - torch_engine(features)).abs().max().item()
        assert difference <= 1e-4, difference


def test_bf16_engine_stays_close_to_float32():
    model, spectral = random_model("mask"), SpectralConfig()
    features = torch.from_numpy(np.random.default_rng(0).normal(0.5, 0.5, (3, 1, 128, 128))).float()
    exact = TorchEngine(model, spectral)(features)
    rounded = TorchEngine(copy.deepcopy(model), spectral, bf16=True)(features)
    assert rounded.dtype == torch.float32 and rounded.shape == exact.shape
    difference = (rounded - exact).abs().max().item()
    assert 0 < difference < 0.02, difference  # bfloat16 did run, and its gains stay within 2 % of float32


@pytest.mark.parametrize("native, expected", [(True, "torch-bf16"), (False, "onnxruntime")])
def test_auto_engine_is_bf16_only_where_the_cpu_computes_it(monkeypatch, native, expected):
    from audiodenoise import engine

    monkeypatch.setattr(engine, "bf16_native", lambda device: native)
    assert engine.DEFAULT_ENGINE == "auto" and engine.resolve_engine("auto") == expected
    assert engine.resolve_engine("torch") == "torch"
    denoiser = Denoiser(random_model("mask"), SpectralConfig())
    assert isinstance(denoiser.engine, OnnxEngine) != (expected == "torch-bf16")
    assert getattr(denoiser.engine, "bf16", False) == (expected == "torch-bf16")


def test_export_embeds_the_checkpoint_config_and_writes_atomically(exported, random_checkpoint):
    import onnx

    metadata = {prop.key: prop.value for prop in onnx.load(str(exported)).metadata_props}
    embedded = json.loads(metadata[CONFIG_KEY])
    assert embedded.pop("weights_sha256") == weights_digest(random_checkpoint)
    assert embedded == json.loads((random_checkpoint / "config.json").read_text())
    assert not [p for p in exported.parent.iterdir() if p.name.endswith(".part")]


def test_onnx_file_and_onnxruntime_engine_denoise_like_pytorch(exported, random_checkpoint):
    signal = speech_like(2.0, RATE)[:, None].repeat(2, axis=1)
    reference = Denoiser.from_pretrained(random_checkpoint, engine="torch")(signal, RATE)
    from_file = Denoiser.from_pretrained(exported)
    assert from_file.strength == 0.7  # the inference defaults travel in the metadata
    assert np.max(np.abs(from_file(signal, RATE) - reference)) <= 1e-4
    in_memory = Denoiser.from_pretrained(random_checkpoint, engine="onnxruntime", threads=1)
    assert np.max(np.abs(in_memory(signal, RATE) - reference)) <= 1e-4


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audiodenoise: error: "), lines
    return lines[0]


def test_export_of_a_missing_or_corrupt_checkpoint_is_one_line_exit_2(capsys, tmp_path, random_checkpoint):
    output = tmp_path / "out.onnx"
    assert main(["export", "--model", str(tmp_path / "missing"), "-o", str(output)]) == 2
    assert "missing" in one_error_line(capsys)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((random_checkpoint / "config.json").read_text())
    (corrupt / "model.safetensors").write_bytes(b"not weights")
    assert main(["export", "--model", str(corrupt), "-o", str(output)]) == 2
    assert "corrupt" in one_error_line(capsys)
    assert main(["export", "--model", str(random_checkpoint), "-o", str(tmp_path / "no" / "such" / "out.onnx")]) == 2
    assert "out.onnx: cannot write" in one_error_line(capsys)
    assert list(tmp_path.rglob("*.onnx")) == [] and list(tmp_path.rglob("*.part")) == []


def test_bad_onnx_models_are_one_line_exit_2(capsys, tmp_path, exported):
    wav = tmp_path / "in.wav"
    sf.write(wav, speech_like(0.5, RATE), RATE)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    assert main(["denoise", "-q", str(wav), "--model", str(broken)]) == 2
    assert "broken.onnx" in one_error_line(capsys)
    assert main(["denoise", "-q", str(wav), "--model", str(exported), "--engine", "torch"]) == 2
    assert "onnxruntime" in one_error_line(capsys)


def test_a_shipped_export_of_the_same_weights_is_run_without_exporting_and_a_stale_one_is_not(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    save_checkpoint(folder, random_model("mask", seed=2), SpectralConfig())
    assert main(["export", "--model", str(folder), "-o", str(folder / "model.onnx")]) == 0
    audio = speech_like(0.5, RATE)
    expected = Denoiser.from_pretrained(folder, engine="torch")(audio, RATE)

    def no_export(*args, **kwargs):
        raise AssertionError("exported at load")

    monkeypatch.setattr("audiodenoise.denoiser.onnx_bytes", no_export)
    shipped = Denoiser.from_pretrained(folder, engine="onnxruntime")
    assert isinstance(shipped.engine, OnnxEngine)
    assert np.allclose(shipped(audio, RATE), expected, atol=1e-4)

    save_checkpoint(folder, random_model("mask", seed=3), SpectralConfig())  # new weights, old export
    with pytest.raises(AssertionError, match="exported at load"):
        Denoiser.from_pretrained(folder, engine="onnxruntime")
