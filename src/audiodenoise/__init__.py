"""audiodenoise: speech denoising with a U-Net over log-magnitude spectrogram patches."""

import os

# ONNX Runtime's telemetry writes a device id under ~/.cache and looks up its host unless this is set before import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .denoiser import Denoiser

__all__ = ["Denoiser"]
__version__ = "0.1.0"
