"""audiodenoise: speech denoising with a U-Net over log-magnitude spectrogram patches."""

import os

# ONNX Runtime's telemetry writes a device id under ~/.cache and looks up its host unless this is set before import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = ["Denoiser"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``audiodenoise.Denoiser``, imported on first use: the client, the CLI's parser and the file layer load
    without PyTorch."""
    if name == "Denoiser":
        from .denoiser import Denoiser

        return Denoiser
    raise AttributeError(f"module 'audiodenoise' has no attribute {name!r}")
