"""What runs a network: PyTorch on the network, or ONNX Runtime on its exported graph.

For a "magnitude" network an engine is called with scaled log-magnitude features (batch, 1, bins, frames) and
returns the magnitude gains of the same shape. For a "spectrum" network it is called with the STFT's real and
imaginary parts (batch, 2, bins, frames) and the recurrent state (``Engine.initial_state``), and returns the
complex mask's parts (batch, 2, bins, frames) for the frames ``lookahead_frames`` earlier and the state after.
Everything around it (STFT, patches or frame streaming, overlap-add) is shared.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import SHIPPED_ONNX, CheckpointError, weights_digest
from .nets import architecture_name, network_class, network_input
from .spectral import SpectralConfig

# "torch-bf16": PyTorch in bfloat16 (gains slightly off float32's), fast where the CPU computes bf16 natively.
ENGINES = ("auto", "torch", "torch-bf16", "onnxruntime")
DEFAULT_ENGINE = "auto"
AUTO_ENGINE = "torch-bf16 where the CPU computes bf16 natively, else onnxruntime"  # the faster of the two on each
INPUT_NAME, OUTPUT_NAME = "features", "gain"  # a magnitude network's graph
SPECTRUM_NAME, MASK_NAME = "spectrum", "mask"  # a spectrum network's, with state_0… in and next_state_0… out
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
    """A magnitude network followed by its output contract's conversion to a magnitude gain."""

    def __init__(self, model: nn.Module, db_scale: float):
        super().__init__()
        self.model = model.eval()
        self.db_scale = db_scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.gain(self.model(features), self.db_scale)


class MaskNet(nn.Module):
    """A spectrum network from the STFT's parts and the state before them to its mask and the state after."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, spectrum: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mask, after = self.model(self.model.features(spectrum), list(state))
        return (mask, *after)


def runnable(model: nn.Module, db_scale: float) -> nn.Module:
    """The module an engine runs and the export traces, for either kind of network."""
    return GainNet(model, db_scale) if network_input(model) == "magnitude" else MaskNet(model)


def describe(model: nn.Module, spectral: SpectralConfig) -> dict:
    """The config an engine carries (and an export embeds): architecture, settings and, for a spectrum network,
    what a frame-by-frame runner needs beside the graph (``stream``: look-ahead, one channel's state shapes)."""
    config = {"architecture": architecture_name(model), "spectral": spectral.to_dict(), "model": model.config.to_dict()}
    if network_input(model) == "spectrum":
        shapes = [list(state.shape) for state in model.initial_state(1, spectral.n_bins)]
        config["stream"] = {"lookahead_frames": model.config.lookahead_frames, "state_shapes": shapes}
    return config


def _state_batch_axis(shape: list[int]) -> int:
    """Where a state tensor holds the batch: first in an encoder cache, second (batch × bands) in a GRU's."""
    return 0 if len(shape) == 4 else 1


class Engine:
    """What both engines know of their network from its config: its kind, look-ahead and state."""

    config: dict

    @property
    def kind(self) -> str:
        return "spectrum" if "stream" in self.config else "magnitude"

    @property
    def lookahead_frames(self) -> int:
        return self.config["stream"]["lookahead_frames"]

    def state_shapes(self, batch: int) -> list[list[int]]:
        """The shapes of the recurrent state for ``batch`` channels."""
        return [
            [size * batch if axis == _state_batch_axis(shape) else size for axis, size in enumerate(shape)]
            for shape in self.config["stream"]["state_shapes"]
        ]

    def initial_state(self, batch: int) -> list[torch.Tensor]:
        """Zeros, the state before the first frame for ``batch`` channels."""
        return [torch.zeros(shape) for shape in self.state_shapes(batch)]

    def check_state(self, state: list[torch.Tensor], batch: int) -> None:
        """Refuse a streaming state that is not this network's for ``batch`` channels."""
        expected, given = self.state_shapes(batch), [list(tensor.shape) for tensor in state]
        if given != expected:
            raise ValueError(f"streaming state: this model's for {batch} channel(s) has shapes {expected}, not {given}")


class TorchEngine(Engine):
    """PyTorch on the CPU, in float32 or (``bf16``) under bfloat16 autocast with channels-last tensors."""

    def __init__(self, model: nn.Module, spectral: SpectralConfig, bf16: bool = False):
        self.bf16 = bf16
        self.net = runnable(model, spectral.db_scale).eval()
        self.config = describe(model, spectral)
        if bf16:
            self.net.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if not self.bf16:
            return self.net(*inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = self.net(inputs[0].contiguous(memory_format=torch.channels_last), *inputs[1:])
        if isinstance(outputs, torch.Tensor):
            return outputs.float().contiguous()
        return tuple(output.float().contiguous() for output in outputs)


class OnnxEngine(Engine):
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
        metadata = self.session.get_modelmeta().custom_metadata_map
        try:
            self.config = json.loads(metadata[CONFIG_KEY])
            self.spectral = SpectralConfig.from_dict(self.config["spectral"])
            network_class(self.config.get("architecture", "unet"))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{source}: not an audiodenoise ONNX export ({error})") from None
        self.model = model  # the ONNX bytes, e.g. for the web page to run them in the browser

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        feed = {
            node.name: np.ascontiguousarray(value.numpy(), dtype=np.float32)
            for node, value in zip(self.session.get_inputs(), inputs)
        }
        outputs = [torch.from_numpy(output) for output in self.session.run(None, feed)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _graph_signature(model: nn.Module, spectral: SpectralConfig) -> tuple[tuple, list, list, dict]:
    """Example inputs, input and output names and dynamic axes of the exported graph."""
    if network_input(model) == "magnitude":
        example = (torch.zeros(1, 1, spectral.n_bins, spectral.patch_frames),)
        axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
        return example, [INPUT_NAME], [OUTPUT_NAME], axes
    state = model.initial_state(1, spectral.n_bins)
    inputs = [SPECTRUM_NAME] + [f"state_{i}" for i in range(len(state))]
    outputs = [MASK_NAME] + [f"next_state_{i}" for i in range(len(state))]
    axes = {SPECTRUM_NAME: {0: "batch", 3: "frames"}, MASK_NAME: {0: "batch", 3: "frames"}}
    for i, tensor in enumerate(state):
        axis = {_state_batch_axis(list(tensor.shape)): "batch"}
        axes[f"state_{i}"] = axes[f"next_state_{i}"] = axis
    return (torch.zeros(1, 2, spectral.n_bins, 8), *state), inputs, outputs, axes


def onnx_bytes(model: nn.Module, spectral: SpectralConfig, config: dict | None = None) -> bytes:
    """The network as ONNX (``_graph_signature``), with ``config`` and ``describe``'s entries as metadata."""
    import onnx

    config = (config or {}) | describe(model, spectral)
    example, inputs, outputs, axes = _graph_signature(model, spectral)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and folding notes
        torch.onnx.export(
            runnable(model, spectral.db_scale),
            example,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, {CONFIG_KEY: json.dumps(config)})
    return graph.SerializeToString()


def load_onnx(path: str | Path, threads: int | None = None) -> OnnxEngine:
    """An engine over an exported file (its ``config`` and ``spectral`` from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    return OnnxEngine(path.read_bytes(), threads, source=str(path))


def shipped_onnx(folder: Path, threads: int | None = None) -> OnnxEngine | None:
    """An engine over the checkpoint folder's shipped export, when it has one made from these weights."""
    path = folder / SHIPPED_ONNX
    if not path.is_file():
        return None
    engine = load_onnx(path, threads)
    return engine if engine.config.get("weights_sha256") == weights_digest(folder) else None
