"""Frame-by-frame denoising of spectrum networks (framestream.py): chunking, engines, latency, strength and state."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch
from conftest import speech_like
from test_crunet import trained_looking
from test_evaluate import write_pair

from audiodenoise.checkpoint import CheckpointError, save_checkpoint
from audiodenoise.cli import main
from audiodenoise.denoiser import Denoiser
from audiodenoise.engine import CONFIG_KEY, OnnxEngine, load_onnx, onnx_bytes
from audiodenoise.framestream import FrameStream, strengthened
from audiodenoise.nets.crunet import CRUNetConfig
from audiodenoise.spectral import SpectralConfig, istft, signal_spectrum

SPECTRAL = SpectralConfig(n_fft=255, hop_length=64, patch_frames=256, patch_hop=256)
RATE = SPECTRAL.sample_rate
MODEL = trained_looking()


@pytest.fixture(scope="module")
def noisy() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (speech_like(1.5, RATE) + 0.05 * rng.standard_normal(int(1.5 * RATE))).astype(np.float32)


def denoiser(**options) -> Denoiser:
    return Denoiser(MODEL, SPECTRAL, engine=options.pop("engine", "torch"), **options)


def chunked(stream, audio: np.ndarray, sizes) -> np.ndarray:
    out, start = [], 0
    for size in sizes:
        out.append(stream.feed(audio[start : start + size]))
        start += size
    out.append(stream.feed(audio[start:]))
    return np.concatenate([*out, stream.flush()])


def test_any_chunking_gives_the_whole_signals_output(noisy):
    whole = denoiser()(noisy, RATE)
    assert whole.shape == noisy.shape and not np.allclose(whole, noisy)
    rng = np.random.default_rng(1)
    for sizes in ([1] * 300, [220] * 40, rng.integers(1, 3000, 20)):  # samples, 10 ms, random
        assert np.allclose(chunked(denoiser().stream(RATE), noisy, sizes), whole, atol=1e-5)


def test_the_output_is_the_networks_whole_signal_enhancement_away_from_the_end(noisy):
    spectrum = signal_spectrum(torch.from_numpy(noisy)[None], SPECTRAL)
    with torch.no_grad():
        signal, envelope = istft(MODEL.enhance_spectrum(spectrum), SPECTRAL)
    half = SPECTRAL.n_fft // 2
    expected = (signal / envelope)[0, half : half + len(noisy)].numpy()
    ends = SPECTRAL.n_fft + MODEL.config.lookahead_frames * SPECTRAL.hop_length
    assert np.allclose(denoiser()(noisy, RATE)[:-ends], expected[:-ends], atol=1e-5)


def test_each_channel_is_denoised_as_its_own_mono_signal(noisy):
    stereo = np.stack([noisy, noisy[::-1].copy()], axis=1)
    out = denoiser(block_frames=7)(stereo, RATE)
    for channel in range(2):
        assert np.allclose(out[:, channel], denoiser()(stereo[:, channel].copy(), RATE), atol=1e-5)


def test_onnxruntime_gives_torchs_output_and_its_graph_runs_frame_by_frame(noisy):
    expected = denoiser()(noisy, RATE)
    assert np.allclose(denoiser(engine="onnxruntime", threads=1)(noisy, RATE), expected, atol=1e-4)
    engine = OnnxEngine(onnx_bytes(MODEL, SPECTRAL))
    parts = torch.randn(1, 2, SPECTRAL.n_bins, 6)
    whole, *_ = engine(parts, *engine.initial_state(1))
    state, masks = engine.initial_state(1), []
    for frame in range(6):  # as the browser runs it
        mask, *state = engine(parts[..., frame : frame + 1], *state)
        masks.append(mask)
    assert np.allclose(torch.cat(masks, dim=-1), whole, atol=1e-5)


def test_the_latency_is_the_window_and_the_lookahead_and_no_sample_waits_longer(noisy):
    model = denoiser()
    assert model.latency_samples == SPECTRAL.n_fft - 1 + 2 * SPECTRAL.hop_length
    stream, fed, emitted, longest = model.stream(RATE), 0, 0, 0
    for sample in noisy[:1000]:
        emitted += len(stream.feed(np.array([sample])))
        fed += 1
        longest = max(longest, fed - emitted)
    assert longest == model.latency_samples
    long = Denoiser(
        trained_looking(CRUNetConfig(channels=(4, 8), hidden=8, blocks=1)), SpectralConfig(n_fft=511, hop_length=128)
    )
    assert long.latency_seconds <= 0.040


def test_low_latency_is_the_same_native_streaming(noisy):
    assert np.array_equal(denoiser(low_latency=True)(noisy, RATE), denoiser()(noisy, RATE))


def test_strength_blends_the_mask_with_one_and_the_limit_floors_its_magnitude(noisy):
    mask = torch.randn(1, 2, 5, 7) * 0.3
    assert torch.equal(strengthened(mask, 1.0, 0.0), mask)
    assert torch.equal(strengthened(mask, 0.0, 0.0), torch.stack([torch.ones(1, 5, 7), torch.zeros(1, 5, 7)], 1))
    floored = strengthened(mask, 1.0, 0.5)
    assert (floored.pow(2).sum(1).sqrt() >= 0.5 - 1e-6).all()
    kept = mask.pow(2).sum(1, keepdim=True).sqrt() >= 0.5
    assert torch.equal(floored[kept.expand_as(mask)], mask[kept.expand_as(mask)])
    assert np.array_equal(denoiser(strength=0.0)(noisy, RATE), noisy)
    half = denoiser(strength=0.5)(noisy, RATE)
    assert np.abs(half - noisy).max() < np.abs(denoiser()(noisy, RATE) - noisy).max()


def test_a_state_that_is_not_the_models_is_refused():
    stream = denoiser().stream(RATE, 2).core
    assert isinstance(stream, FrameStream)
    stream.state = denoiser().engine.initial_state(1)  # one channel's state for two channels
    with pytest.raises(ValueError, match=r"streaming state: this model's for 2 channel\(s\) has shapes"):
        stream.feed(np.zeros((1000, 2), np.float32))


def test_an_exported_file_runs_as_the_checkpoint_does_and_an_unknown_architecture_is_one_line(tmp_path, noisy, capsys):
    save_checkpoint(tmp_path / "ckpt", MODEL, SPECTRAL)
    assert main(["export", "--model", str(tmp_path / "ckpt"), "-o", str(tmp_path / "model.onnx")]) == 0
    exported = Denoiser.from_pretrained(tmp_path / "model.onnx")
    assert exported.latency_samples == denoiser().latency_samples
    assert np.allclose(exported(noisy, RATE), denoiser()(noisy, RATE), atol=1e-4)

    graph = onnx.load(tmp_path / "model.onnx")
    config = json.loads(graph.metadata_props[0].value) | {"architecture": "tomorrownet"}
    onnx.helper.set_model_props(graph, {CONFIG_KEY: json.dumps(config)})
    onnx.save(graph, tmp_path / "future.onnx")
    with pytest.raises(CheckpointError, match="unknown 'tomorrownet'; this version knows unet, crunet"):
        load_onnx(tmp_path / "future.onnx")
    wav = tmp_path / "x.wav"
    sf.write(wav, noisy, RATE)
    capsys.readouterr()
    assert main(["denoise", "--model", str(tmp_path / "future.onnx"), str(wav), "-o", str(tmp_path / "y.wav")]) == 2
    err = capsys.readouterr().err.strip()
    assert "tomorrownet" in err and len(err.splitlines()) == 1 and not (tmp_path / "y.wav").exists()


def test_models_gives_a_frame_streaming_models_latency_in_milliseconds(tmp_path, monkeypatch, capsys):
    save_checkpoint(tmp_path / "crunet-test", MODEL, SPECTRAL)
    monkeypatch.setattr("audiodenoise.pretrained.MODELS_DIR", tmp_path)
    monkeypatch.setattr("audiodenoise.pretrained.DEFAULT_MODEL", "crunet-test")
    assert main(["models"]) == 0
    latency = denoiser().latency_seconds * 1000
    assert f"latency {latency:.0f} ms (streams frame by frame)" in capsys.readouterr().out


def test_evaluate_scores_a_frame_streaming_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "crunet", MODEL, SPECTRAL)
    for name, snr in [("low", 0.0), ("high", 10.0)]:
        write_pair(tmp_path, name, snr)
    out = tmp_path / "report"
    argv = ["evaluate", "--noisy", str(tmp_path / "noisy"), "--clean", str(tmp_path / "clean"), "-o", str(out)]
    assert main([*argv, "--systems", "noisy", str(tmp_path / "crunet")]) == 0
    report = json.loads((out / "report.json").read_text())
    scored = report["systems"][str(tmp_path / "crunet")]
    assert scored["failed_files"] == 0 and scored["audio_seconds"] == report["systems"]["noisy"]["audio_seconds"]
    assert all(np.isfinite(scored["metrics"][name]["mean"]) for name in ("pesq", "stoi", "si_sdr"))
