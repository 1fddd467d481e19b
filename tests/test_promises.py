"""What users pass every day: channels-first and integer arrays, odd sample rates, 1-D stream chunks, an output
named in another format, one output file for many inputs, MP3 bit rates, -q, strength 0, and the help texts."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import soundfile as sf
from conftest import denoise_cli, halving_model, identity_model, speech_like

from audiodenoise import Denoiser
from audiodenoise.audio import AudioError, inspect_audio
from audiodenoise.cli import build_parser, low_latency_cost, main
from audiodenoise.limits import Limits
from audiodenoise.spectral import SpectralConfig

RATE = SpectralConfig().sample_rate


@pytest.fixture(scope="module")
def halving():
    return Denoiser(halving_model(), SpectralConfig(), block_frames=128)


@pytest.fixture(scope="module")
def identity():
    return Denoiser(identity_model(), SpectralConfig(), block_frames=128)


# --- arrays ---------------------------------------------------------------------------------------


def test_a_channels_first_array_is_read_as_channels_and_given_back_so(halving):
    left, right = speech_like(1.0, RATE, seed=1), speech_like(1.0, RATE, seed=2)
    channels_last = halving(np.stack([left, right], axis=1), RATE)
    channels_first = halving(np.stack([left, right]), RATE)
    assert channels_first.shape == (2, len(left))
    assert np.max(np.abs(channels_first - channels_last.T)) < 1e-6


@pytest.mark.parametrize("shape", [(100, 200), (200, 100), (65, 65)])
def test_more_channels_than_any_recording_holds_are_refused_naming_the_shape(halving, shape):
    with pytest.raises(AudioError, match=rf"\({shape[0]}, {shape[1]}\).*over 64 channels"):
        halving(np.zeros(shape, np.float32), RATE)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8])
def test_integer_arrays_are_scaled_as_soundfile_reads_them(identity, dtype):
    signal = 0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)
    stored = {np.int16: signal * 32768, np.int32: signal * 2**31, np.uint8: signal * 128 + 128}[dtype]
    raw = np.round(stored).astype(dtype)
    out = identity(raw, RATE)
    assert out.dtype == dtype and out.shape == raw.shape
    step = {np.int16: 1, np.int32: 2**16, np.uint8: 1}[dtype]
    assert np.max(np.abs(out.astype(np.int64) - raw.astype(np.int64))) <= 4 * step  # same level, not 87 dB up


@pytest.mark.parametrize("rate", [0, 3000, -16000, 16000.5, True, 500000])
def test_unsupported_sample_rates_are_one_clear_error(identity, rate):
    with pytest.raises(AudioError, match="sample_rate: .*(sample rate|whole number)"):
        identity(np.zeros(1000, np.float32), rate)
    with pytest.raises(AudioError, match="sample_rate"):
        identity.stream(rate, 1)


def test_the_cli_and_the_api_refuse_the_same_rate(capsys, tmp_path, identity_checkpoint):
    source = tmp_path / "low.wav"
    sf.write(source, np.zeros(3000, np.float32), 3000)
    with pytest.raises(AudioError) as api:
        inspect_audio(source)
    code, _, err = denoise_cli(capsys, source, "--model", identity_checkpoint)
    assert code == 1 and "unsupported sample rate 3000 Hz (supported: 4000 to 384000 Hz)" in err
    assert str(api.value) in err


def test_the_server_refuses_that_rate_with_the_same_words(identity_checkpoint):
    from fastapi.testclient import TestClient

    from audiodenoise.server import create_app, load_models

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(3000, np.float32), 3000, format="WAV")
    with TestClient(create_app(load_models([str(identity_checkpoint)])), base_url="http://127.0.0.1") as client:
        response = client.post("/v1/denoise", content=buffer.getvalue(), headers={"Content-Type": "audio/wav"})
    assert response.status_code == 422
    assert "unsupported sample rate 3000 Hz (supported: 4000 to 384000 Hz)" in response.json()["error"]


# --- streams --------------------------------------------------------------------------------------


def test_a_mono_stream_takes_1d_chunks_and_gives_1d_chunks(halving):
    signal = speech_like(1.5, 16000, seed=4)
    stream = halving.stream(16000)
    pieces = [stream.feed(chunk) for chunk in np.array_split(signal, 7)] + [stream.flush()]
    assert all(piece.ndim == 1 for piece in pieces)
    assert np.max(np.abs(np.concatenate(pieces) - halving(signal, 16000))) < 1e-5


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_stream_chunk_with_nan_or_inf_is_refused(halving, bad):
    chunk = np.zeros(1000, np.float32)
    chunk[10] = bad
    with pytest.raises(AudioError, match="NaN or Inf"):
        halving.stream(RATE).feed(chunk)


def test_a_stereo_stream_refuses_a_chunk_of_another_width(halving):
    with pytest.raises(AudioError, match=r"shape \(100, 3\) for a 2-channel stream"):
        halving.stream(RATE, 2).feed(np.zeros((100, 3), np.float32))


# --- files: never the input, the output's format from its name ------------------------------------


@pytest.mark.parametrize("link", ["same", "hard link"])
def test_denoise_file_refuses_to_write_its_input(identity, tmp_path, link):
    source = tmp_path / "talk.wav"
    sf.write(source, speech_like(0.5, RATE), RATE, subtype="PCM_16")
    before = source.read_bytes()
    destination = source
    if link == "hard link":
        destination = tmp_path / "other.wav"
        os.link(source, destination)
    with pytest.raises(AudioError, match="refusing to overwrite"):
        identity.denoise_file(source, destination)
    assert source.read_bytes() == before


@pytest.mark.parametrize(
    "subtype, name, expected",
    [
        ("PCM_16", "out.flac", ("FLAC", "PCM_16")),
        ("FLOAT", "out.flac", ("FLAC", "PCM_24")),
        ("PCM_24", "out.ogg", ("OGG", "VORBIS")),
        ("PCM_16", "out.mp3", ("MP3", "MPEG_LAYER_III")),
        ("PCM_16", "out.opus", ("OGG", "OPUS")),
        ("PCM_16", "out.WAV", ("WAV", "PCM_16")),
        ("PCM_16", "no_suffix", ("WAV", "PCM_16")),
    ],
)
def test_the_output_format_follows_the_output_name(capsys, tmp_path, identity_checkpoint, subtype, name, expected):
    source = tmp_path / "talk.wav"
    sf.write(source, speech_like(1.0, 16000), 16000, subtype=subtype)
    code, _, err = denoise_cli(capsys, source, "-o", tmp_path / name, "--model", identity_checkpoint)
    assert code == 0, err
    written = sf.info(str(tmp_path / name))
    assert (written.format, written.subtype, written.samplerate, written.channels) == (*expected, 16000, 1)
    assert abs(written.frames - 16000) <= (1152 if expected[0] == "MP3" else 0)


def test_one_output_file_for_several_inputs_is_a_usage_error(capsys, tmp_path, identity_checkpoint):
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, speech_like(0.3, 16000), 16000)
    code, _, err = denoise_cli(
        capsys, tmp_path / "a.wav", tmp_path / "b.wav", "-o", tmp_path / "single.wav", "--model", identity_checkpoint
    )
    assert code == 2 and "single.wav: names one file" in err and "Traceback" not in err
    assert not (tmp_path / "single.wav").exists()


def write_mp3(path, kbps: int, rate: int = 44100, seconds: float = 3.0) -> None:
    signal = np.random.default_rng(0).normal(0, 0.1, (int(rate * seconds), 2)).astype(np.float32)
    with sf.SoundFile(
        path,
        "w",
        rate,
        2,
        "MPEG_LAYER_III",
        format="MP3",
        bitrate_mode="CONSTANT",
        compression_level=(320 - kbps) / 288,
    ) as output:
        output.write(signal)


def kbps(path) -> float:
    return path.stat().st_size * 8 / 1000 / sf.info(str(path)).duration


@pytest.mark.parametrize("option, expected", [([], 192), (["--mp3-bitrate", "96"], 96)])
def test_mp3_output_keeps_the_input_bit_rate_or_takes_the_asked_one(
    capsys, tmp_path, identity_checkpoint, option, expected
):
    source = tmp_path / "song.mp3"
    write_mp3(source, 192)
    assert abs(kbps(source) - 192) < 15
    code, _, err = denoise_cli(capsys, source, *option, "--model", identity_checkpoint)
    assert code == 0, err
    assert abs(kbps(tmp_path / "song_denoised.mp3") - expected) < 15


# --- small things ---------------------------------------------------------------------------------


def test_quiet_prints_nothing_but_errors(capsys, tmp_path, identity_checkpoint):
    sf.write(tmp_path / "a.wav", speech_like(0.3, 16000), 16000)
    code, out, err = denoise_cli(
        capsys, tmp_path / "a.wav", tmp_path / "missing.wav", "-q", "--model", identity_checkpoint
    )
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [f"audiodenoise: error: {tmp_path / 'missing.wav'}: no such file"]


@pytest.mark.parametrize("rate", [16000, 44100, RATE])
def test_strength_zero_gives_the_input_back_exactly(tmp_path, rate):
    denoiser = Denoiser(halving_model(), SpectralConfig(), strength=0.0)
    signal = speech_like(1.0, rate, seed=5)
    assert np.array_equal(denoiser(signal, rate), signal)
    source, destination = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(source, signal, rate, subtype="PCM_16")
    denoiser.denoise_file(source, destination)
    assert np.array_equal(sf.read(destination, dtype="int16")[0], sf.read(source, dtype="int16")[0])


def help_text(*command: str) -> str:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[command[0]].format_help()


def test_help_shows_each_options_default():
    serve = " ".join(help_text("serve").split())
    assert f"larger uploads get 413 (default: {Limits.max_upload_mb:g})" in serve
    assert f"requests denoised at once (default: {Limits.workers})" in serve
    train = " ".join(help_text("train").split())
    assert "--batch-size BATCH_SIZE pairs per step and process (default: 16)" in train


def test_the_low_latency_help_gives_the_default_models_cost():
    spectral = Denoiser.from_pretrained("default", engine="torch").spectral
    assert f"for {low_latency_cost(spectral):g}x the default model's compute" in " ".join(help_text("denoise").split())


def test_models_says_a_line_about_each_model(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 2 and any("(default)" in line for line in lines)
    for line in lines:
        assert all(word in line for word in ("predicts a", "STFT n_fft", "latency", "M parameters", "MiB")), line


def test_export_says_what_it_wrote(capsys, tmp_path, identity_checkpoint):
    target = tmp_path / "model.onnx"
    assert main(["export", "--model", str(identity_checkpoint), "-o", str(target)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{target}: ") and "ONNX" in out and f"{target.stat().st_size / 2**20:.1f} MiB" in out


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan")])
def test_another_strength_is_checked_as_the_constructor_checks_it(halving, strength):
    with pytest.raises(ValueError, match="strength must be within"):
        halving.with_strength(strength)


def test_opus_at_a_rate_it_cannot_keep_is_refused_with_a_suggestion(capsys, tmp_path, identity_checkpoint):
    sf.write(tmp_path / "talk.wav", speech_like(0.5, 44100), 44100)
    code, _, err = denoise_cli(
        capsys, tmp_path / "talk.wav", "-o", tmp_path / "talk.opus", "--model", identity_checkpoint
    )
    assert code == 1 and "Opus cannot keep 44100 Hz; write .ogg or .m4a instead" in err
    assert not (tmp_path / "talk.opus").exists()
