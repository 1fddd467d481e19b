"""What computes the patch gains: PyTorch on the U-Net, or ONNX Runtime on its exported graph.

An engine is called with scaled log-magnitude features (batch, 1, bins, frames) and returns the
magnitude gains of the same shape; everything around it (STFT, patches, overlap-add) is shared.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointError
from .model import UNet

ENGINES = ("torch", "onnxruntime")
DEFAULT_ENGINE = "onnxruntime"
INPUT_NAME, OUTPUT_NAME = "features", "gain"


class GainNet(nn.Module):
    """The U-Net followed by the conversion of its output to a magnitude gain."""

    def __init__(self, model: UNet, db_scale: float):
        super().__init__()
        self.model = model.eval()
        self.db_scale = db_scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.gain(self.model(features), self.db_scale)


class TorchEngine:
    def __init__(self, model: UNet, db_scale: float):
        self.net = GainNet(model, db_scale).eval()

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class OnnxEngine:
    """An ONNX Runtime session on the CPU over a model exported by ``audiodenoise export``."""

    def __init__(self, model: bytes, threads: int | None = None, source: str = "ONNX model"):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's errors share no base class but Exception
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"{source}: not a loadable ONNX model ({reason})") from None
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        self.model = model  # the ONNX bytes, e.g. for the web page to run them in the browser

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(features.numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0])
