"""Audio I/O: format round trips through ``Denoiser.denoise_file``, input validation and atomic writes.

Every fixture is generated in code into ``tmp_path``; the identity checkpoint changes nothing at the
model's 22050 Hz, so lossless round trips must come back within quantisation error.
"""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import soundfile as sf

from audiodenoise.audio import AtomicWriter, AudioError, OutputFormat, inspect_audio, read_blocks
from audiodenoise.denoiser import Denoiser

MODEL_RATE = 22050


@pytest.fixture(scope="module")
def identity(identity_checkpoint) -> Denoiser:
    return Denoiser.from_pretrained(str(identity_checkpoint))


@pytest.fixture(scope="module")
def halving(halving_checkpoint) -> Denoiser:
    return Denoiser.from_pretrained(str(halving_checkpoint))


def tone_mix(seconds: float, sample_rate: int, channels: int = 1, amplitude: float = 0.3) -> np.ndarray:
    """(frames, channels) float32: per channel a different pair of tones, all below 3 kHz."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    columns = [
        amplitude * (0.6 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.4 * np.sin(2 * np.pi * (1300 + 170 * c) * t + c))
        for c in range(channels)
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def assert_same_layout(source, destination) -> None:
    before, after = sf.info(str(source)), sf.info(str(destination))
    assert (after.format, after.subtype) == (before.format, before.subtype)
    assert after.samplerate == before.samplerate
    assert after.channels == before.channels
    assert after.frames == before.frames


# (format, subtype, suffix, tolerance of the identity round trip at 22050 Hz; None for lossy codecs)
FORMATS = [
    ("WAV", "PCM_16", "wav", 1.01 / 2**15),
    ("WAV", "PCM_24", "wav", 1.01 / 2**23),
    ("WAV", "PCM_32", "wav", 1e-6),  # the pipeline runs in float32, so 32-bit PCM keeps ~24 bits
    ("WAV", "FLOAT", "wav", 1e-6),
    ("WAV", "PCM_U8", "wav", 1.01 / 2**7),
    ("FLAC", "PCM_16", "flac", 1.01 / 2**15),
    ("FLAC", "PCM_24", "flac", 1.01 / 2**23),
    ("OGG", "VORBIS", "ogg", None),
    ("MP3", "MPEG_LAYER_III", "mp3", None),
]


@pytest.mark.parametrize(
    ("file_format", "subtype", "suffix", "tolerance"), FORMATS, ids=[f"{f[0]}-{f[1]}" for f in FORMATS]
)
def test_format_round_trip_keeps_layout_and_samples(identity, tmp_path, file_format, subtype, suffix, tolerance):
    source, destination = tmp_path / f"in.{suffix}", tmp_path / f"out.{suffix}"
    signal = tone_mix(0.5, MODEL_RATE)
    sf.write(source, signal, MODEL_RATE, format=file_format, subtype=subtype)

    result = identity.denoise_file(source, destination)

    assert_same_layout(source, destination)
    assert result.audio_seconds == pytest.approx(sf.info(str(source)).frames / MODEL_RATE)
    before, _ = sf.read(source, dtype="float64", always_2d=True)
    after, _ = sf.read(destination, dtype="float64", always_2d=True)
    assert np.isfinite(after).all()
    if tolerance is None:  # lossy: re-encoding changes samples, but it must still be the same signal
        correlation = np.corrcoef(before[:, 0], after[:, 0])[0, 1]
        assert correlation > 0.95
        assert np.sqrt(np.mean(after**2)) == pytest.approx(np.sqrt(np.mean(before**2)), rel=0.2)
    else:
        assert np.abs(after - before).max() <= tolerance
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


@pytest.mark.parametrize(
    ("sample_rate", "channels", "seconds"),
    [(8000, 1, 0.5), (16000, 2, 0.5), (44100, 1, 0.5), (48000, 6, 0.3), (96000, 2, 0.5)],
)
def test_sample_rates_and_channels_are_preserved(identity, tmp_path, sample_rate, channels, seconds):
    source, destination = tmp_path / "in.wav", tmp_path / "out.wav"
    signal = tone_mix(seconds, sample_rate, channels)
    sf.write(source, signal, sample_rate, subtype="FLOAT")

    identity.denoise_file(source, destination)

    assert_same_layout(source, destination)
    out, rate = sf.read(destination, dtype="float32", always_2d=True)
    assert rate == sample_rate
    assert out.shape == signal.shape
    edge = int(0.05 * sample_rate)  # resampling to and from the model rate smears the very ends
    np.testing.assert_allclose(out[edge:-edge], signal[edge:-edge], rtol=0, atol=1e-3)


def test_channels_are_processed_independently(halving, tmp_path):
    source, destination = tmp_path / "in.wav", tmp_path / "out.wav"
    signal = tone_mix(0.5, MODEL_RATE, channels=2)
    signal[:, 0] = 0.0
    sf.write(source, signal, MODEL_RATE, subtype="FLOAT")

    halving.denoise_file(source, destination)

    out, _ = sf.read(destination, dtype="float32", always_2d=True)
    assert out.shape == signal.shape
    assert np.abs(out[:, 0]).max() < 1e-6
    middle = slice(int(0.05 * MODEL_RATE), -int(0.05 * MODEL_RATE))
    ratio = np.sqrt(np.mean(out[middle, 1] ** 2) / np.mean(signal[middle, 1] ** 2))
    assert ratio == pytest.approx(0.5, abs=0.05)  # the model really ran on the other channel


def test_atomic_writer_leaves_nothing_behind_on_error(tmp_path):
    destination = tmp_path / "out.wav"
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicWriter(destination, 16000, 1, OutputFormat("WAV", "PCM_16")) as writer:
            writer.write(np.zeros((1600, 1), np.float32))
            assert any(p.name.endswith(".part") for p in tmp_path.iterdir())  # it is writing somewhere
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_writer_leaves_nothing_behind_when_the_rename_fails(tmp_path):
    destination = tmp_path / "out.wav"
    destination.mkdir()
    with pytest.raises(Exception) as caught:  # noqa: B017 - the type is asserted below, after the leftovers
        with AtomicWriter(destination, 16000, 1, OutputFormat("WAV", "PCM_16")) as writer:
            writer.write(np.zeros((1600, 1), np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
    assert isinstance(caught.value, AudioError)
    assert str(destination) in str(caught.value)


def test_atomic_writer_output_has_ordinary_permissions(tmp_path):
    destination = tmp_path / "out.wav"
    previous = os.umask(0o022)
    try:
        with AtomicWriter(destination, 16000, 1, OutputFormat("WAV", "PCM_16")) as writer:
            writer.write(np.zeros((160, 1), np.float32))
        sf.write(tmp_path / "plain.wav", np.zeros(160), 16000)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "plain.wav").stat().st_mode) == 0o644
    assert stat.S_IMODE(destination.stat().st_mode) == 0o644


def test_atomic_writer_renames_into_place_on_success(tmp_path):
    destination = tmp_path / "out.wav"
    with AtomicWriter(destination, 16000, 1, OutputFormat("WAV", "PCM_16")) as writer:
        writer.write(np.full((1600, 1), 0.25, np.float32))
        assert not destination.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
    data, rate = sf.read(destination, dtype="float32")
    assert rate == 16000 and len(data) == 1600
    assert data == pytest.approx(0.25, abs=1 / 2**15)


def test_atomic_writer_clips_integer_output(tmp_path):
    destination = tmp_path / "out.wav"
    with AtomicWriter(destination, 16000, 1, OutputFormat("WAV", "PCM_16")) as writer:
        writer.write(np.array([[1.5], [-1.5], [0.5]], np.float32))
    data, _ = sf.read(destination, dtype="float64")
    assert data[0] == pytest.approx(1.0, abs=1 / 2**14) and data[1] == pytest.approx(-1.0, abs=1 / 2**14)
    assert data[2] == pytest.approx(0.5, abs=1 / 2**15)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_read_blocks_rejects_non_finite_samples(tmp_path, bad):
    path = tmp_path / "bad.wav"
    signal = tone_mix(0.5, 16000)
    signal[3000, 0] = bad
    sf.write(path, signal, 16000, subtype="FLOAT")
    assert not np.isfinite(sf.read(path)[0]).all()  # the file really holds the bad value

    with pytest.raises(AudioError, match="NaN or Inf") as caught:
        for _ in read_blocks(path, 1024):
            pass
    assert str(path) in str(caught.value)


def test_read_blocks_yields_all_frames_in_blocks(tmp_path):
    path = tmp_path / "good.wav"
    signal = tone_mix(0.5, 16000, channels=2)
    sf.write(path, signal, 16000, subtype="FLOAT")
    blocks = list(read_blocks(path, 1000))
    assert all(b.dtype == np.float32 and b.shape[1] == 2 for b in blocks)
    assert max(len(b) for b in blocks) == 1000
    np.testing.assert_array_equal(np.concatenate(blocks), signal)


def _write_text_wav(path):
    path.write_text("this is a text file, not a RIFF/WAVE file\n" * 20)


def _write_empty(path):
    path.write_bytes(b"")


def _write_header_fragment(path):
    sf.write(path, tone_mix(0.5, 16000), 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:30])  # cut inside the header: no data chunk


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (None, "no such file"),
        (_write_empty, "empty file"),
        (_write_text_wav, "not a readable audio file"),
        (_write_header_fragment, "not a readable audio file"),
    ],
    ids=["missing", "zero-length", "text-renamed-wav", "truncated-header"],
)
def test_inspect_audio_rejects_unusable_files(tmp_path, make, reason):
    path = tmp_path / "input.wav"
    if make is not None:
        make(path)
    with pytest.raises(AudioError, match=reason) as caught:
        inspect_audio(path)
    assert str(path) in str(caught.value)


def test_inspect_audio_rejects_a_folder(tmp_path):
    with pytest.raises(AudioError, match="folder"):
        inspect_audio(tmp_path)


def test_inspect_audio_describes_a_valid_file(tmp_path):
    path = tmp_path / "ok.flac"
    sf.write(path, tone_mix(0.5, 16000, channels=2), 16000, format="FLAC", subtype="PCM_24")
    info = inspect_audio(path)
    assert (info.frames, info.sample_rate, info.channels, info.format, info.subtype) == (
        8000,
        16000,
        2,
        "FLAC",
        "PCM_24",
    )


@pytest.mark.parametrize("keep", [44, 46, 3000, 16043], ids=["header-only", "one-frame", "early-data", "mid-data"])
def test_truncated_wav_is_refused_as_truncated(tmp_path, keep):
    """A WAV cut inside its data is refused in one line, never read silently as the frames present."""
    path = tmp_path / "cut.wav"
    sf.write(path, tone_mix(1.0, 16000), 16000, subtype="PCM_16")  # 44-byte header + 32000 data bytes
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(AudioError) as error:
        inspect_audio(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert keep == 44 or "truncated audio" in str(error.value)


def test_a_streamed_wav_header_is_not_truncation(tmp_path):
    """sox and ffmpeg writing to a pipe leave the data size 0xFFFFFFFF: such a file is read whole."""
    path = tmp_path / "streamed.wav"
    sf.write(path, tone_mix(0.5, 16000), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    info = inspect_audio(path)
    assert sum(len(block) for block in read_blocks(path, 4096)) == info.frames == 8000


def test_truncated_mp3_is_refused_after_reading(tmp_path):
    path = tmp_path / "cut.mp3"
    sf.write(path, tone_mix(2.0, 16000), 16000, format="MP3")
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 6 // 10])
    with pytest.raises(AudioError, match="truncated audio"):
        for _ in read_blocks(path, 4096):
            pass
