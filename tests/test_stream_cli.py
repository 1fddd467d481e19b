"""``audiodenoise denoise --stream -``: stdin to stdout in WAV or raw PCM, bad streams, broken pipes, latency."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import halving_model, speech_like

from audiodenoise import Denoiser
from audiodenoise.cli import main
from audiodenoise.denoiser import ModelRateStream
from audiodenoise.spectral import SpectralConfig

RATE = 16000


class Stdin:
    def __init__(self, data: bytes):
        self.buffer = io.BufferedReader(io.BytesIO(data))


def run_stream(monkeypatch, capsysbinary, data: bytes, checkpoint, *options) -> tuple[int, bytes, str]:
    monkeypatch.setattr(sys, "stdin", Stdin(data))
    code = main(["denoise", "--stream", "-", "--model", str(checkpoint), *options])
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err.decode()


def wav_bytes(signal: np.ndarray, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, signal, RATE, format="WAV", subtype=subtype)
    return buffer.getvalue()


def expected(checkpoint, signal: np.ndarray) -> np.ndarray:
    return Denoiser.from_pretrained(checkpoint)(signal, RATE)


@pytest.mark.parametrize("subtype, tolerance", [("PCM_16", 1.5 / 32768), ("FLOAT", 1e-6)])
def test_wav_in_wav_out_in_the_same_format(monkeypatch, capsysbinary, halving_checkpoint, subtype, tolerance):
    signal = speech_like(1.5, RATE)[:, None].repeat(2, axis=1) * [1.0, 0.5]
    source = wav_bytes(signal, subtype)
    code, out, err = run_stream(monkeypatch, capsysbinary, source, halving_checkpoint)
    assert code == 0 and err == ""
    denoised, rate = sf.read(io.BytesIO(out), dtype="float32")
    assert rate == RATE and sf.info(io.BytesIO(out)).subtype == subtype
    reference = expected(halving_checkpoint, sf.read(io.BytesIO(source), dtype="float32")[0])
    assert denoised.shape == signal.shape
    assert np.max(np.abs(denoised - reference)) <= tolerance


def test_raw_float_samples(monkeypatch, capsysbinary, halving_checkpoint):
    signal = speech_like(1.0, RATE, seed=2)
    options = ("--raw-format", "f32le", "--rate", str(RATE), "--channels", "1")
    code, out, err = run_stream(monkeypatch, capsysbinary, signal.astype("<f4").tobytes(), halving_checkpoint, *options)
    assert code == 0 and err == ""
    denoised = np.frombuffer(out, "<f4")
    assert np.max(np.abs(denoised - expected(halving_checkpoint, signal))) <= 1e-6


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("audiodenoise: error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    "data, options, mentions",
    [
        (b"\x01\x00" * 301, ("--raw-format", "s16le", "--rate", "8000", "--channels", "2"), "inside a frame"),
        (b"hello", (), "not a WAV stream"),
        (wav_bytes(np.zeros(4000, np.float32), "PCM_16")[:3000], (), "declared WAV data size"),
        (wav_bytes(np.zeros(4000, np.float32), "PCM_24"), (), "24-bit"),
        (b"", ("--raw-format", "s16le"), "all of --raw-format, --rate and --channels"),
        (
            np.array([0.0, np.nan], "<f4").tobytes(),
            ("--raw-format", "f32le", "--rate", "8000", "--channels", "1"),
            "NaN",
        ),
    ],
)
def test_bad_streams_are_one_line_exit_2(monkeypatch, capsysbinary, identity_checkpoint, data, options, mentions):
    code, _, err = run_stream(monkeypatch, capsysbinary, data, identity_checkpoint, *options)
    assert code == 2
    assert mentions in one_error_line(err)


@pytest.mark.parametrize("options", [(), ("--raw-format", "s16le", "--rate", str(RATE), "--channels", "1")])
def test_a_closed_stdout_ends_quietly(identity_checkpoint, options):
    source = wav_bytes(speech_like(0.5, RATE), "PCM_16")
    command = [sys.executable, "-m", "audiodenoise", "denoise", "--stream", "-", "--model", str(identity_checkpoint)]
    process = subprocess.Popen(
        [*command, *options], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()  # the reader is gone before anything is written
    _, err = process.communicate(source, timeout=120)
    assert process.returncode == 0
    assert err.decode() == ""


@pytest.mark.parametrize("options", [{"block_frames": 128}, {"low_latency": True}])
def test_latency_is_when_the_first_sample_of_each_block_comes_out(options):
    denoiser = Denoiser(halving_model(), SpectralConfig(), **options)
    block_samples = denoiser.block_frames * SpectralConfig().hop_length
    assert denoiser.latency_samples > block_samples
    assert denoiser.latency_seconds == denoiser.latency_samples / denoiser.sample_rate
    stream = ModelRateStream(denoiser, channels=1)
    signal = speech_like(3.0, denoiser.sample_rate)[:, None]
    fed = 0
    for expected_samples in (denoiser.latency_samples, denoiser.latency_samples + block_samples):
        assert len(stream.feed(signal[fed : expected_samples - 1])) == 0
        assert len(stream.feed(signal[expected_samples - 1 : expected_samples])) == block_samples
        fed = expected_samples


def test_default_latency_is_about_one_block_plus_context():
    denoiser = Denoiser(halving_model(), SpectralConfig())
    block_seconds = denoiser.block_frames * denoiser.spectral.hop_length / denoiser.sample_rate
    assert block_seconds < denoiser.latency_seconds < block_seconds + 0.5
