"""audiodenoise: speech denoising with a U-Net over log-magnitude spectrogram patches."""

from .denoiser import Denoiser

__all__ = ["Denoiser"]
__version__ = "0.1.0"
