"""The strict config base: unknown keys, wrong types and out-of-range values are refused, naming the key."""

import pytest

from audiodenoise.config import ConfigError
from audiodenoise.data.mixing import MixConfig
from audiodenoise.data.splits import SplitConfig
from audiodenoise.limits import Limits
from audiodenoise.nets.unet import UNetConfig
from audiodenoise.spectral import SpectralConfig
from audiodenoise.train import TrainConfig

CONFIGS = (SpectralConfig, UNetConfig, MixConfig, SplitConfig, TrainConfig, Limits)


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_config_round_trips_through_a_dict(cls):
    config = cls()
    assert cls.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("cls", CONFIGS)
def test_an_unknown_key_is_refused_by_name(cls):
    with pytest.raises(ConfigError, match="unknown setting spectral.colour"):
        cls.from_dict({"colour": 1}, prefix="spectral.")


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (SpectralConfig, {"n_fft": "255"}, "n_fft: must be of type int"),
        (SpectralConfig, {"n_fft": 255.0}, "n_fft: must be of type int"),
        (SpectralConfig, {"patch_weighting": "box"}, "patch_weighting: must be one of hann, tail"),
        (SpectralConfig, {"hop_length": 300}, "hop_length: must be at most n_fft"),
        (UNetConfig, {"target": "spectrum"}, "target: must be one of mask, noise"),
        (UNetConfig, {"dropout": 1.5}, "dropout: must be at most 1"),
        (MixConfig, {"snr_db": [20, -5]}, "snr_db: the minimum 20.0 is above the maximum -5.0"),
        (MixConfig, {"snr_db": [1, 2, 3]}, "snr_db: must hold 2 values"),
        (MixConfig, {"clean_fraction": -0.1}, "clean_fraction: must be at least 0"),
        (SplitConfig, {"val_speakers": 0}, "val_speakers: must be at least 1"),
        (SplitConfig, {"speech_format": "mp3"}, "speech_format: must be one of"),
        (TrainConfig, {"ema_decay": 1.0}, "ema_decay: must be below 1"),
        (TrainConfig, {"loss": "l1"}, "loss: must be one of"),
        (TrainConfig, {"bf16": "yes"}, "bf16: must be of type bool"),
        (TrainConfig, {"epochs": True}, "epochs: must be of type int"),
        (Limits, {"max_upload_mb": 0}, "max_upload_mb: must be above 0"),
    ],
)
def test_a_wrong_type_or_range_is_refused_by_name(cls, values, message):
    with pytest.raises(ConfigError, match=message):
        cls.from_dict(values)


def test_values_read_from_json_take_their_declared_types():
    mixing = MixConfig.from_dict({"snr_db": [0, 10], "max_clean_seconds": 5})
    assert mixing.snr_db == (0.0, 10.0) and isinstance(mixing.snr_db[0], float)
    assert mixing.max_clean_seconds == 5.0 and isinstance(mixing.max_clean_seconds, float)
    assert SplitConfig.from_dict({"noise_val_folds": [9, 10]}).noise_val_folds == (9, 10)
    assert TrainConfig.from_dict({"loss": None, "patience": None}) == TrainConfig()


def test_the_constructor_checks_as_from_dict_does():
    with pytest.raises(ConfigError, match="batch_size: must be at least 1"):
        TrainConfig(batch_size=0)
