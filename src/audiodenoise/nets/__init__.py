"""The architectures a checkpoint can name. Adding one is a module in this package and a line in ARCHITECTURES.

Each is an ``nn.Module`` class of one of two kinds, named by its ``input``. A "magnitude" network (the U-Net)
sees patches of log-magnitudes and gives a gain for each; it states, beside its network:

- ``config_class``: its settings (a ``config.Settings``), kept in ``model.config`` and checkpoints;
- ``check_input(config, spectral)``: raise ``ConfigError`` for a patch grid it cannot take (the input constraint);
- ``forward(features)``: (batch, 1, bins, frames) scaled log-magnitudes -> its output;
- the output contract: ``gain(output, db_scale)``, the magnitude gain the engines, the ONNX export and so the
  browser apply, and ``enhance(noisy, features, output, spectral)``, the enhanced magnitude and its features that
  the losses score;
- ``default_loss`` (a name in ``losses.LOSSES``) and ``summary`` (a few words for ``audiodenoise models``).

A "spectrum" network (``crunet``) is causal and recurrent over frames and gives a complex mask; it states
``config_class``, ``check_input``, ``default_loss`` and ``summary`` as above, and ``features(spectrum)``,
``initial_state(batch, bins)``, ``forward(features, state) -> (mask, state)`` (any number of frames) and
``enhance_spectrum(spectrum, network)``, the whole-signal enhancement that the losses score; its config's
``lookahead_frames`` is how far the network runs ahead of the masks it emits.
"""

from __future__ import annotations

from torch import nn

from ..config import ConfigError, Settings
from .crunet import CRUNet
from .unet import UNet

ARCHITECTURES: dict[str, type[nn.Module]] = {"unet": UNet, "crunet": CRUNet}
DEFAULT_ARCHITECTURE = "unet"


def network_class(architecture: str) -> type[nn.Module]:
    try:
        return ARCHITECTURES[architecture]
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise ConfigError(f"architecture: unknown {architecture!r}; this version knows {known}") from None


def default_settings(architecture: str = DEFAULT_ARCHITECTURE) -> Settings:
    return network_class(architecture).config_class()


def read_settings(architecture: str, values: dict) -> Settings:
    """The settings of ``architecture`` in ``values``, read strictly (over its defaults)."""
    return network_class(architecture).config_class.from_dict(values, prefix="model.")


def architecture_name(model_or_settings: nn.Module | Settings) -> str:
    """The registry name of a network, or of the architecture whose settings these are."""
    for name, cls in ARCHITECTURES.items():
        if isinstance(model_or_settings, cls | cls.config_class):
            return name
    raise ConfigError(f"model: {type(model_or_settings).__name__} is no registered architecture or its settings")


def network_input(model: nn.Module) -> str:
    """The kind of network: "magnitude" or "spectrum" (see above)."""
    return getattr(model, "input", "magnitude")


def build(settings: Settings) -> nn.Module:
    """A freshly initialised network of the architecture whose settings these are."""
    return network_class(architecture_name(settings))(settings)
