"""M4A/AAC, WebM/Opus, MKV and the audio of MP4/MOV videos: read, denoised and written back through PyAV.

Every file is made here with PyAV; the model is the identity checkpoint, so the output must match the input."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from conftest import denoise_cli, identity_model

from audiodenoise import Denoiser
from audiodenoise.audio import AudioError, inspect_audio, read_audio
from audiodenoise.spectral import SpectralConfig

SECONDS = 1.0


def make_media(path, muxer: str, codec: str, rate: int, channels: int = 2, video: bool = False) -> np.ndarray:
    """Write a chirp (a different one per channel: no shift matches it but none) with PyAV, and, with ``video``,
    a tiny MPEG-4 video track."""
    t = np.arange(int(SECONDS * rate)) / rate
    chirps = [0.3 * np.sin(2 * np.pi * ((300 + 150 * c) * t + 400 * t**2)) for c in range(channels)]
    signal = np.stack(chirps, 1).astype(np.float32)
    output = av.open(str(path), "w", format=muxer)
    audio = output.add_stream(codec, rate=rate, layout="mono" if channels == 1 else "stereo")
    if video:
        pictures = output.add_stream("mpeg4", rate=25)
        pictures.width, pictures.height, pictures.pix_fmt = 16, 16, "yuv420p"
    for start in range(0, len(signal), 4000):
        frame = av.AudioFrame.from_ndarray(
            signal[start : start + 4000].reshape(1, -1), format="flt", layout=audio.layout
        )
        frame.sample_rate, frame.pts, frame.time_base = rate, start, fractions.Fraction(1, rate)
        output.mux(audio.encode(frame))
    output.mux(audio.encode(None))
    if video:
        for index in range(int(SECONDS * 25)):
            picture = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 10 * index, np.uint8), format="rgb24")
            output.mux(pictures.encode(picture))
        output.mux(pictures.encode(None))
    output.close()
    return signal


def video_packets(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(container.streams.video[0]) if packet.size]


def best_lag(a: np.ndarray, b: np.ndarray, most: int = 2048) -> int:
    """The shift of ``b`` against ``a`` (in samples, within ``most``) that matches them best."""
    middle = slice(most, len(a) - most)
    errors = {lag: np.mean((a[middle] - np.roll(b, -lag)[middle]) ** 2) for lag in range(-most, most + 1)}
    return min(errors, key=errors.get)


@pytest.fixture(scope="module")
def identity():
    return Denoiser(identity_model(), SpectralConfig())


CASES = [
    ("voice.m4a", "mp4", "aac", 44100, "M4A"),
    ("voice.webm", "webm", "libopus", 48000, "WEBM"),
    ("voice.mkv", "matroska", "libopus", 48000, "MKV"),
    ("voice.mov", "mov", "aac", 48000, "MOV"),
]


@pytest.mark.parametrize("name, muxer, codec, rate, container", CASES, ids=[case[0] for case in CASES])
def test_a_media_file_is_read_denoised_and_written_back_in_its_container(
    identity, tmp_path, name, muxer, codec, rate, container
):
    source = tmp_path / name
    make_media(source, muxer, codec, rate)
    info = inspect_audio(source)
    assert (info.sample_rate, info.channels, info.format) == (rate, 2, container)
    before, _ = read_audio(source)
    assert len(before) == info.frames == int(SECONDS * rate)  # priming dropped, padding trimmed
    destination = tmp_path / f"out{source.suffix}"
    identity.denoise_file(source, destination)
    after_info = inspect_audio(destination)
    assert (after_info.frames, after_info.sample_rate, after_info.channels) == (info.frames, rate, 2)
    after, _ = read_audio(destination)
    for channel in range(2):
        assert np.corrcoef(before[:, channel], after[:, channel])[0, 1] > 0.99
    assert best_lag(before[:, 0], after[:, 0]) == 0  # not shifted by the encoder's priming


def test_a_videos_picture_is_copied_unchanged_and_its_audio_denoised(capsys, tmp_path, identity_checkpoint):
    source = tmp_path / "clip.mp4"
    make_media(source, "mp4", "aac", 44100, channels=1, video=True)
    code, _, err = denoise_cli(capsys, source, "--model", identity_checkpoint)
    assert code == 0, err
    output = tmp_path / "clip_denoised.mp4"
    assert video_packets(output) == video_packets(source)
    assert inspect_audio(output).frames == inspect_audio(source).frames


def test_a_media_file_can_be_written_as_wav_and_a_wav_as_m4a(capsys, tmp_path, identity_checkpoint):
    source = tmp_path / "memo.m4a"
    make_media(source, "mp4", "aac", 44100)
    code, _, err = denoise_cli(capsys, source, "-o", tmp_path / "memo.wav", "--model", identity_checkpoint)
    assert code == 0, err
    assert inspect_audio(tmp_path / "memo.wav").format == "WAV"
    code, _, err = denoise_cli(
        capsys, tmp_path / "memo.wav", "-o", tmp_path / "again.m4a", "--model", identity_checkpoint
    )
    assert code == 0, err
    again = inspect_audio(tmp_path / "again.m4a")
    assert (again.format, again.frames) == ("M4A", int(SECONDS * 44100))


def test_raw_aac_is_read_but_not_written_with_a_suggestion(capsys, tmp_path, identity_checkpoint):
    source = tmp_path / "memo.aac"
    make_media(source, "adts", "aac", 44100)
    assert inspect_audio(source).format == "AAC"
    code, _, err = denoise_cli(capsys, source, "--model", identity_checkpoint)
    assert code == 1 and "Traceback" not in err
    assert "write .m4a instead" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memo.aac"]  # nothing partial left


@pytest.mark.parametrize("problem", ["garbage", "truncated", "video only", "empty"])
def test_bad_media_is_one_line_naming_the_file(capsys, tmp_path, identity_checkpoint, problem):
    source = tmp_path / "bad.mp4"
    if problem == "garbage":
        source.write_bytes(b"not a video at all" * 100)
    elif problem == "truncated":
        make_media(source, "mp4", "aac", 44100)
        source.write_bytes(source.read_bytes()[:300])
    elif problem == "video only":
        output = av.open(str(source), "w", format="mp4")
        pictures = output.add_stream("mpeg4", rate=25)
        pictures.width, pictures.height, pictures.pix_fmt = 16, 16, "yuv420p"
        output.mux(pictures.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
        output.mux(pictures.encode(None))
        output.close()
    else:
        source.write_bytes(b"")
    with pytest.raises(AudioError, match="bad.mp4"):
        inspect_audio(source)
    code, _, err = denoise_cli(capsys, source, "--model", identity_checkpoint)
    assert code == 1 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and str(source) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


@pytest.fixture(scope="module")
def client(identity_checkpoint):
    from fastapi.testclient import TestClient

    from audiodenoise.server import create_app, load_models

    with TestClient(create_app(load_models([str(identity_checkpoint)])), base_url="http://127.0.0.1") as client:
        yield client


def test_the_server_denoises_a_voice_memo_and_a_video(client, tmp_path):
    memo, clip = tmp_path / "memo.m4a", tmp_path / "clip.mp4"
    make_media(memo, "mp4", "aac", 44100)
    make_media(clip, "mp4", "aac", 44100, channels=1, video=True)
    for source, media_type in ((memo, "audio/mp4"), (clip, "video/mp4")):
        response = client.post("/v1/denoise", files={"file": (source.name, source.read_bytes(), media_type)})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == media_type
        answer = tmp_path / f"answer{source.suffix}"
        answer.write_bytes(response.content)
        assert inspect_audio(answer).frames == inspect_audio(source).frames
    assert video_packets(answer) == video_packets(clip)


def test_the_server_refuses_raw_aac_and_broken_media_in_one_line(client, tmp_path):
    memo = tmp_path / "memo.aac"
    make_media(memo, "adts", "aac", 44100)
    raw = client.post("/v1/denoise", files={"file": ("memo.aac", memo.read_bytes(), "audio/aac")})
    broken = client.post("/v1/denoise", files={"file": ("memo.m4a", b"not audio" * 50, "audio/mp4")})
    assert raw.status_code == 415 and "write .m4a instead" in raw.json()["error"]
    assert broken.status_code == 415 and broken.json()["error"].startswith("memo.m4a: not a readable")


def test_denoise_server_sends_a_memo_and_writes_what_o_names(capsys, tmp_path, identity_checkpoint):
    from test_server_limits import live

    from audiodenoise.server import create_app, load_models

    memo = tmp_path / "memo.m4a"
    make_media(memo, "mp4", "aac", 44100)
    with live(create_app(load_models([str(identity_checkpoint)]))) as (host, port):
        url = f"http://{host}:{port}"
        for name in ("memo_server.m4a", "memo_server.wav"):
            code, _, err = denoise_cli(capsys, memo, "-o", tmp_path / name, "--server", url)
            assert code == 0, err
            written = inspect_audio(tmp_path / name)
            assert (written.format, written.frames) == (name.split(".")[1].upper(), int(SECONDS * 44100))
