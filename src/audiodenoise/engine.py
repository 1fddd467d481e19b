"""What computes the patch gains: PyTorch on the network, or ONNX Runtime on its exported graph.

An engine is called with scaled log-magnitude features (batch, 1, bins, frames) and returns the
magnitude gains of the same shape; everything around it (STFT, patches, overlap-add) is shared.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointError
from .nets import architecture_name, network_input
from .spectral import SpectralConfig

# "torch-bf16": PyTorch in bfloat16 (gains slightly off float32's), fast where the CPU computes bf16 natively.
ENGINES = ("auto", "torch", "torch-bf16", "onnxruntime")
DEFAULT_ENGINE = "auto"
AUTO_ENGINE = "torch-bf16 where the CPU computes bf16 natively, else onnxruntime"  # the faster of the two on each
INPUT_NAME, OUTPUT_NAME = "features", "gain"
CONFIG_KEY = "audiodenoise.config"  # metadata_props entry of an ONNX model holding the checkpoint's config.json
OPSET = 17


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX (elsewhere bf16 convolutions are emulated and far slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux
        return False
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def resolve_engine(engine: str) -> str:
    """The engine that ``engine`` names on this machine ("auto" picks one)."""
    if engine != "auto":
        return engine
    return "torch-bf16" if bf16_native(torch.device("cpu")) else "onnxruntime"


class GainNet(nn.Module):
    """The network followed by its output contract's conversion to a magnitude gain."""

    def __init__(self, model: nn.Module, db_scale: float):
        if network_input(model) != "magnitude":
            raise CheckpointError(
                f"a {architecture_name(model)} network is trained by this version, not yet run by its denoiser "
                "or exported (only patch-gain networks are)"
            )
        super().__init__()
        self.model = model.eval()
        self.db_scale = db_scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.gain(self.model(features), self.db_scale)


class TorchEngine:
    """PyTorch on the CPU, in float32 or (``bf16``) under bfloat16 autocast with channels-last tensors."""

    def __init__(self, model: nn.Module, db_scale: float, bf16: bool = False):
        self.bf16 = bf16
        self.net = GainNet(model, db_scale).eval()
        if bf16:
            self.net.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if not self.bf16:
            return self.net(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.net(features.contiguous(memory_format=torch.channels_last)).float().contiguous()


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


def onnx_bytes(model: nn.Module, spectral: SpectralConfig, config: dict | None = None) -> bytes:
    """The model (features -> gain, dynamic batch) as ONNX, with ``config`` embedded as metadata."""
    import onnx

    config = config or {
        "architecture": architecture_name(model),
        "spectral": spectral.to_dict(),
        "model": model.config.to_dict(),
    }
    buffer = io.BytesIO()
    example = torch.zeros(1, 1, spectral.n_bins, spectral.patch_frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and folding notes
        torch.onnx.export(
            GainNet(model, spectral.db_scale),
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, {CONFIG_KEY: json.dumps(config)})
    return graph.SerializeToString()


def load_onnx(path: str | Path, threads: int | None = None) -> tuple[OnnxEngine, SpectralConfig, dict]:
    """An engine over an exported file, its spectral settings and its embedded config."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    engine = OnnxEngine(path.read_bytes(), threads, source=str(path))
    try:
        config = json.loads(engine.metadata[CONFIG_KEY])
        spectral = SpectralConfig.from_dict(config["spectral"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: not an audiodenoise ONNX export (no valid {CONFIG_KEY}: {error})") from None
    return engine, spectral, config
