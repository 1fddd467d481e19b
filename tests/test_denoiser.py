import numpy as np
import pytest
from conftest import halving_model, identity_model, speech_like

from audiodenoise import Denoiser
from audiodenoise.audio import AudioError
from audiodenoise.spectral import STFT_PRESETS, SpectralConfig

RATE = SpectralConfig().sample_rate


@pytest.fixture(scope="module")
def identity():
    # Small blocks so that even short signals cross several block edges.
    return Denoiser(identity_model(), SpectralConfig(), block_frames=128)


@pytest.mark.parametrize("length", [1, 17, 254, 255, 4031, 4032, 12345, 40000])
def test_identity_model_returns_the_input_at_any_length(identity, length):
    signal = np.random.default_rng(length).uniform(-1, 1, length).astype(np.float32)
    out = identity(signal, RATE)
    assert out.shape == signal.shape
    assert np.max(np.abs(out - signal)) < 1e-4


def test_block_size_does_not_change_the_result():
    signal = speech_like(3.0, RATE)
    small = Denoiser(halving_model(), SpectralConfig(), block_frames=64)(signal, RATE)
    large = Denoiser(halving_model(), SpectralConfig(), block_frames=4096)(signal, RATE)
    assert np.max(np.abs(small - large)) < 1e-4
    assert np.allclose(large[2000:-2000], 0.5 * signal[2000:-2000], atol=1e-3)


def test_many_channels_share_a_block_and_give_each_channel_its_mono_result():
    denoiser = Denoiser(halving_model(), SpectralConfig(), block_frames=512)
    assert [denoiser.stream_block_frames(n) for n in (1, 2, 3, 8, 1000)] == [512, 512, 320, 128, 64]
    channels = np.stack([speech_like(2.0, RATE, seed=seed) for seed in range(6)], axis=1)
    together = denoiser(channels, RATE)
    for channel in range(6):
        assert np.max(np.abs(together[:, channel] - denoiser(channels[:, channel], RATE))) < 1e-4


@pytest.mark.parametrize("preset, frames, low_latency_frames", [("reference", 4096, 16), ("long", 1984, 8)])
def test_default_blocks_hold_about_the_same_audio_whatever_the_hop(preset, frames, low_latency_frames):
    spectral = STFT_PRESETS[preset]
    assert Denoiser(halving_model(), spectral).block_frames == frames  # about 11.7 s either way
    assert Denoiser(halving_model(), spectral, low_latency=True).block_frames == low_latency_frames  # 46 ms


@pytest.mark.parametrize("preset, patches", [("reference", 16), ("long", 8)])
def test_a_model_call_holds_16_reference_patches_worth_of_features(preset, patches):
    denoiser = Denoiser(halving_model(), STFT_PRESETS[preset])
    engine, calls = denoiser.engine, []

    def recording(features):
        calls.append(features.shape[0])
        return engine(features)

    denoiser.engine = recording
    denoiser(speech_like(12.0, RATE), RATE)
    assert max(calls) == patches


def test_stream_in_random_chunks_equals_offline(identity):
    denoiser = Denoiser(halving_model(), SpectralConfig(), block_frames=128)
    signal = speech_like(2.5, 16000, seed=3)[:, None].repeat(2, axis=1)
    offline = denoiser(signal, 16000)
    stream = denoiser.stream(16000, 2)
    rng = np.random.default_rng(0)
    parts, position = [], 0
    while position < len(signal):
        size = int(rng.integers(1, 5000))
        parts.append(stream.feed(signal[position : position + size]))
        position += size
    parts.append(stream.flush())
    streamed = np.concatenate(parts)
    assert streamed.shape == signal.shape
    assert np.max(np.abs(streamed - offline)) < 1e-4


def test_strength_zero_keeps_the_input_and_attenuation_limit_caps_the_gain():
    signal = speech_like(1.0, RATE)
    untouched = Denoiser(halving_model(), SpectralConfig(), strength=0.0)(signal, RATE)
    assert np.max(np.abs(untouched - signal)) < 1e-4
    limited = Denoiser(halving_model(), SpectralConfig(), atten_lim_db=3.0)(signal, RATE)
    gain = np.sqrt(np.sum(limited[2000:-2000] ** 2) / np.sum(signal[2000:-2000] ** 2))
    assert gain == pytest.approx(10 ** (-3 / 20), rel=1e-3)


def test_silence_stays_silence_and_bad_arrays_are_refused(identity):
    out = Denoiser(halving_model(), SpectralConfig())(np.zeros((5000, 2), np.float32), 48000)
    assert out.shape == (5000, 2) and np.all(out == 0)
    with pytest.raises(AudioError):
        identity(np.array([0.0, np.nan], np.float32), RATE)
    with pytest.raises(AudioError):
        identity(np.zeros(0, np.float32), RATE)
    with pytest.raises(ValueError):
        Denoiser(identity_model(), SpectralConfig(), strength=2.0)


def test_unknown_inference_defaults_in_a_checkpoint_are_a_clear_error(identity_checkpoint, tmp_path):
    import json
    import shutil

    from audiodenoise.checkpoint import CheckpointError

    folder = tmp_path / "model"
    shutil.copytree(identity_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"inference": {"strength": 0.5, "volume": 11}}))
    with pytest.raises(CheckpointError, match="unknown inference setting.*volume"):
        Denoiser.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(config | {"inference": {"strength": 0.5}}))
    assert Denoiser.from_pretrained(folder).strength == 0.5


def _random_unet():
    import torch

    from audiodenoise.nets.unet import UNet, UNetConfig

    torch.manual_seed(0)
    return UNet(UNetConfig(base_filters=4, depth=2)).eval()


def _streamed(denoiser: Denoiser, signal: np.ndarray, rate: int, seed: int) -> np.ndarray:
    stream, rng = denoiser.stream(rate), np.random.default_rng(seed)
    parts, position = [], 0
    while position < len(signal):
        size = int(rng.integers(1, 3000))
        parts.append(stream.feed(signal[position : position + size, None]))
        position += size
    parts.append(stream.flush())
    return np.concatenate(parts)[:, 0]


def test_low_latency_output_depends_on_no_input_beyond_its_latency():
    model = _random_unet()
    low = Denoiser(model, SpectralConfig(), engine="torch", low_latency=True)
    assert low.latency_seconds < 0.1
    assert Denoiser(model, SpectralConfig(), engine="torch").latency_seconds > 10
    signal = speech_like(1.2, RATE, seed=5)
    changed = signal.copy()
    cut = RATE // 2
    changed[cut:] = speech_like(1.2, RATE, seed=6)[cut:]
    before, after = low(signal, RATE), low(changed, RATE)
    settled = cut - low.latency_samples
    assert np.max(np.abs(before[:settled] - after[:settled])) < 1e-6
    assert np.max(np.abs(before[cut : cut + 4000] - after[cut : cut + 4000])) > 1e-3  # the change does get through


def test_low_latency_stream_in_random_chunks_equals_offline():
    denoiser = Denoiser(_random_unet(), SpectralConfig(), engine="torch", low_latency=True)
    signal = speech_like(1.5, RATE, seed=2)
    streamed = _streamed(denoiser, signal, RATE, seed=1)
    assert streamed.shape == signal.shape
    assert np.max(np.abs(streamed - denoiser(signal, RATE))) < 1e-5
