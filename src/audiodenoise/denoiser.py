"""``Denoiser.from_pretrained(name)`` then ``denoiser(audio, sample_rate)``; chunked and streaming."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import pretrained
from .arrays import ArrayLayout, from_frames, to_frames
from .audio import (
    READ_BLOCK_FRAMES,
    AtomicWriter,
    FileResult,
    ResampleStream,
    check_channels,
    check_sample_rate,
    fit_frames,
    inspect_audio,
    output_format,
    read_blocks,
    refuse_overwriting,
)
from .checkpoint import CONFIG, CheckpointError, load_checkpoint
from .engine import (
    DEFAULT_ENGINE,
    ENGINES,
    OnnxEngine,
    TorchEngine,
    load_onnx,
    onnx_bytes,
    resolve_engine,
    shipped_onnx,
)
from .framestream import FrameStream, latency_samples
from .fullband import TopBand
from .nets import network_input
from .spectral import (
    BlockPlan,
    SpectralConfig,
    frames_to_patches,
    istft,
    low_latency_settings,
    magnitude_to_features,
    overlap_add_patches,
    plan_block,
    stft,
)

BLOCK_SECONDS = 11.7  # blocks of about this much audio bound memory (4096 frames at the reference settings)
BLOCK_CHANNELS = 2  # more channels than this share a block's memory: each gets a shorter block
BATCH_VALUES = 16 * 128 * 128  # features per model call, bounding memory: 16 patches at the reference settings
INFERENCE_OPTIONS = {"strength", "atten_lim_db"}  # what a checkpoint's "inference" defaults may set


class Denoiser:
    def __init__(
        self,
        model: nn.Module | OnnxEngine,
        spectral: SpectralConfig,
        name: str = "model",
        strength: float | None = None,
        atten_lim_db: float | None = None,
        threads: int | None = None,
        block_frames: int | None = None,
        batch_size: int | None = None,
        engine: str | None = None,
        low_latency: bool = False,
    ):
        """``model`` is a network from ``nets``, run by ``engine`` (default: DEFAULT_ENGINE), or an ONNX Runtime engine.

        A "spectrum" network (``nets``) streams frame by frame (``framestream``) at its own small latency, always;
        ``block_frames`` caps the frames of one network call. For a "magnitude" network (patch gains),
        ``low_latency`` takes each frame's gain from a patch that ends just after it (``spectral.low_latency_settings``)
        and streams in blocks of one patch hop: latency of about a low-latency patch hop instead of a whole block,
        for ``spectral.patch_hop`` / the low-latency hop times the model runs."""
        strength = _checked_strength(1.0 if strength is None else strength)
        if atten_lim_db is not None and atten_lim_db < 0:
            raise ValueError(f"the attenuation limit must be >= 0 dB, not {atten_lim_db}")
        self.frame_streaming = (model.kind if isinstance(model, OnnxEngine) else network_input(model)) == "spectrum"
        step = 1 if self.frame_streaming else spectral.patch_hop  # block edges sit on this grid of frames
        if low_latency and not self.frame_streaming:
            spectral = low_latency_settings(spectral)
            step = spectral.patch_hop
            block_frames = block_frames or step
        block_frames = block_frames or step * max(
            1, round(BLOCK_SECONDS * spectral.sample_rate / spectral.hop_length / step)
        )
        if block_frames % step:
            raise ValueError(f"block_frames must be a multiple of {step}")
        self.engine = _make_engine(model, spectral, engine, threads)
        self.spectral = spectral
        self.name = name
        self.strength = strength
        self.gain_floor = 0.0 if atten_lim_db is None else 10 ** (-atten_lim_db / 20)
        self.block_frames = block_frames
        self.batch_size = batch_size or max(1, BATCH_VALUES // (spectral.n_bins * spectral.patch_frames))
        if threads is not None:
            torch.set_num_threads(threads)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = "default", **options) -> Denoiser:
        """A bundled model by name ('default', or see ``audiodenoise models``), a checkpoint folder or a .onnx export.

        Options left out or None take the checkpoint's ``inference`` defaults (e.g. its tuned strength)."""
        if str(name_or_path).endswith(".onnx"):
            path = Path(name_or_path)
            engine = load_onnx(path, options.get("threads"))
            _take_inference_defaults(engine.config, path, options)
            return cls(engine, engine.spectral, name=path.stem, **options)
        folder = pretrained.resolve(name_or_path)
        model, spectral, config = load_checkpoint(folder)
        _take_inference_defaults(config, folder / CONFIG, options)
        if resolve_engine(options.get("engine") or DEFAULT_ENGINE) == "onnxruntime":
            model = shipped_onnx(folder, options.get("threads")) or model  # no export at load
        return cls(model, spectral, name=folder.name, **options)

    def with_strength(self, strength: float) -> Denoiser:
        """The same model, weights shared, at another strength."""
        variant = copy.copy(self)
        variant.strength = _checked_strength(strength)
        return variant

    def onnx(self) -> bytes:
        """The ONNX model this Denoiser runs: its ONNX Runtime engine's bytes, or its PyTorch network exported now."""
        if isinstance(self.engine, OnnxEngine):
            return self.engine.model
        return onnx_bytes(self.engine.net.model, self.spectral)

    @property
    def sample_rate(self) -> int:
        return self.spectral.sample_rate

    @property
    def stream_settings(self) -> dict | None:
        """For a spectrum network, what a frame-by-frame runner of its ONNX graph needs beside it (the look-ahead
        and one channel's state shapes, ``engine.describe``); None for a patch-gain network."""
        return self.engine.config.get("stream")

    def stream_block_frames(self, channels: int) -> int:
        """Frames per block for ``channels``: ``block_frames`` up to stereo, shorter beyond, so that a block's
        working memory does not grow with the channel count (outputs do not depend on the block size)."""
        step = 1 if self.frame_streaming else self.spectral.patch_hop
        shared = self.block_frames * BLOCK_CHANNELS // max(channels, BLOCK_CHANNELS)
        return max(step, shared // step * step)

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency of streaming, in samples at the model's rate: the first sample of a block
        comes out once the block and the frames after it that its patches need are in; later samples wait less.
        Frame streaming waits for one window and the look-ahead frames (``framestream.latency_samples``)."""
        if self.frame_streaming:
            return latency_samples(self.spectral, self.engine.lookahead_frames)
        plan = plan_block(0, self.block_frames, self.spectral)
        return plan.input_span(self.spectral)[1] - plan.output_span(self.spectral)[0]

    @property
    def latency_seconds(self) -> float:
        """``latency_samples`` in seconds (resampling, when the input's rate differs, adds a few ms)."""
        return self.latency_samples / self.sample_rate

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Denoise ``audio`` at ``sample_rate``: (samples,), (samples, channels) or (channels, samples), float or
        integer (see ``arrays.to_frames``); the result has the input's shape, and its type for integers
        (float32 for floats)."""
        frames, layout = to_frames(audio)
        stream = self.stream(sample_rate, frames.shape[1])
        return from_frames(np.concatenate([stream.feed(frames), stream.flush()]), layout)

    def stream(self, sample_rate: int, channels: int = 1) -> Stream:
        return Stream(self, sample_rate, channels)

    def model_rate_stream(self, channels: int) -> ModelRateStream | FrameStream:
        """The stream that runs the network on samples at its rate, as its kind needs."""
        if self.frame_streaming:
            frames = self.stream_block_frames(channels)
            return FrameStream(self.engine, self.spectral, channels, self.strength, self.gain_floor, frames)
        return ModelRateStream(self, channels)

    def denoise_file(self, source: str | Path, destination: str | Path, mp3_kbps: int | None = None) -> FileResult:
        """Denoise a file block by block into ``destination`` (never ``source`` itself), in the format its suffix
        names or else the source's (``audio.output_format``)."""
        refuse_overwriting(source, destination)
        info = inspect_audio(source)
        started = time.perf_counter()
        output = output_format(info, destination, mp3_kbps)
        with AtomicWriter(destination, info.sample_rate, info.channels, output, Path(source)) as writer:
            for block in self.denoise_blocks(read_blocks(source, READ_BLOCK_FRAMES), info.sample_rate, info.channels):
                writer.write(block)
        return FileResult(info.frames / info.sample_rate, time.perf_counter() - started)

    def denoise_blocks(self, blocks: Iterable[np.ndarray], sample_rate: int, channels: int) -> Iterator[np.ndarray]:
        """Denoised (frames, channels) blocks from input blocks, in constant memory; together the input's length."""
        stream = self.stream(sample_rate, channels)
        for block in blocks:
            yield stream.feed(block)
        yield stream.flush()

    @torch.inference_mode()
    def process_block(self, excerpt: np.ndarray, plan: BlockPlan, cached_gains: dict[int, torch.Tensor]) -> np.ndarray:
        """Denoise the samples of ``plan``'s output span from the ``excerpt`` (samples, channels) of its input span.

        ``cached_gains`` maps a patch's first frame to its gains (channels, bins, frames) from earlier blocks; the
        patches computed here are added to it."""
        cfg = self.spectral
        spec = stft(torch.from_numpy(np.ascontiguousarray(excerpt.T)), cfg)  # (channels, bins, frames)
        patches = frames_to_patches(magnitude_to_features(spec.abs(), cfg), cfg)
        starts = [plan.context_first_frame + i * cfg.patch_hop for i in range(plan.n_patches)]
        missing = [i for i, start in enumerate(starts) if start not in cached_gains]
        if missing:
            batches = patches[:, missing].flatten(0, 1).split(self.batch_size)
            computed = torch.cat([self.engine(batch.unsqueeze(1))[:, 0] for batch in batches]).unflatten(
                0, (-1, len(missing))
            )
            cached_gains.update((starts[i], computed[:, k]) for k, i in enumerate(missing))
        gains = torch.stack([cached_gains[start] for start in starts], dim=1)
        gain = overlap_add_patches(gains, spec.shape[-1], cfg)
        gain = (1.0 - self.strength * (1.0 - gain)).clamp_min(self.gain_floor)
        signal, envelope = istft(spec * gain, cfg)
        start, _ = plan.input_span(cfg)
        out_start, out_stop = plan.output_span(cfg)
        keep = slice(out_start - start, out_stop - start)
        return (signal[:, keep] / envelope[keep]).T.numpy()


def _checked_strength(strength: float) -> float:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be within [0, 1], not {strength}")
    return strength


def _take_inference_defaults(config: dict, source: Path, options: dict) -> None:
    """Fill the options left out or None from the config's ``inference`` defaults."""
    defaults = config.get("inference", {})
    unknown = sorted(set(defaults) - INFERENCE_OPTIONS) if isinstance(defaults, dict) else ["(not a mapping)"]
    if unknown:
        raise CheckpointError(f"{source}: unknown inference setting(s) {', '.join(unknown)}")
    for key, value in defaults.items():
        if options.get(key) is None:
            options[key] = value


def _make_engine(model: nn.Module | OnnxEngine, spectral: SpectralConfig, engine: str | None, threads: int | None):
    if isinstance(model, OnnxEngine):
        if engine not in (None, "auto", "onnxruntime"):
            raise ValueError("an ONNX model runs only on the onnxruntime engine")
        return model
    engine = resolve_engine(engine or DEFAULT_ENGINE)
    if engine in ("torch", "torch-bf16"):
        return TorchEngine(model, spectral, bf16=engine == "torch-bf16")
    if engine == "onnxruntime":
        return OnnxEngine(onnx_bytes(model, spectral), threads)
    raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")


class ModelRateStream:
    """Feeds samples at the model's rate and emits denoised samples in fixed blocks on the frame grid."""

    def __init__(self, denoiser: Denoiser, channels: int):
        self.denoiser = denoiser
        self.cfg = denoiser.spectral
        self.channels = channels
        self.block_frames = denoiser.stream_block_frames(channels)
        self.next_frame = 0
        first = plan_block(0, self.block_frames, self.cfg)
        self.buffer_start, _ = first.input_span(self.cfg)
        self.buffer = np.zeros((-self.buffer_start, channels), dtype=np.float32)
        self.fed = 0
        self.emitted = 0
        self.cached_gains: dict[int, torch.Tensor] = {}

    def feed(self, chunk: np.ndarray) -> np.ndarray:
        self.fed += len(chunk)
        self.buffer = np.concatenate([self.buffer, chunk.astype(np.float32, copy=False)])
        out = []
        while True:
            plan = plan_block(self.next_frame, self.next_frame + self.block_frames, self.cfg)
            if self.buffer_start + len(self.buffer) < plan.input_span(self.cfg)[1]:
                break
            out.append(self._run(plan))
        return self._join(out)

    def flush(self) -> np.ndarray:
        out = []
        hop, step = self.cfg.hop_length, self.cfg.patch_hop
        while self.emitted < self.fed:
            remaining_frames = -(-(self.fed - self.emitted) // hop)
            size = min(self.block_frames, -(-remaining_frames // step) * step)
            plan = plan_block(self.next_frame, self.next_frame + size, self.cfg)
            missing = plan.input_span(self.cfg)[1] - (self.buffer_start + len(self.buffer))
            if missing > 0:
                self.buffer = np.concatenate([self.buffer, np.zeros((missing, self.channels), np.float32)])
            out.append(self._run(plan))
        joined = self._join(out)
        surplus = self.emitted - self.fed
        return joined[: len(joined) - surplus] if surplus > 0 else joined

    def _run(self, plan: BlockPlan) -> np.ndarray:
        start, stop = plan.input_span(self.cfg)
        excerpt = self.buffer[start - self.buffer_start : stop - self.buffer_start]
        result = self.denoiser.process_block(excerpt, plan, self.cached_gains)
        self.next_frame = plan.last_frame
        following = plan_block(self.next_frame, self.next_frame + self.block_frames, self.cfg)
        for start in [s for s in self.cached_gains if s < following.context_first_frame]:
            del self.cached_gains[start]
        drop = following.input_span(self.cfg)[0] - self.buffer_start
        self.buffer, self.buffer_start = self.buffer[drop:], self.buffer_start + drop
        self.emitted += len(result)
        return result

    def _join(self, blocks: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(blocks) if blocks else np.zeros((0, self.channels), np.float32)


class Stream:
    """Chunked denoising at any sample rate: ``feed(chunk)`` as audio arrives, then ``flush()``.

    Chunks are (samples, channels) arrays, or 1-D for mono, of any length (``arrays.to_frames``); each output
    comes back in the layout and type of the chunk before it, and all outputs together have exactly the input's
    length. At strength 0 the input comes back unchanged, at once. Above the model's rate, the band the model does
    not see is kept and attenuated by the model's estimate (``fullband.TopBand``)."""

    def __init__(self, denoiser: Denoiser, sample_rate: int, channels: int):
        sample_rate = check_sample_rate(sample_rate, "sample_rate")
        self.channels = check_channels(channels, "channels")
        self.passthrough = denoiser.strength == 0
        self.to_model = ResampleStream(sample_rate, denoiser.sample_rate, channels)
        self.core = denoiser.model_rate_stream(channels)
        self.from_model = ResampleStream(denoiser.sample_rate, sample_rate, channels)
        self.top_band = (
            TopBand(denoiser.sample_rate, sample_rate, channels) if sample_rate > denoiser.sample_rate else None
        )
        self.layout = ArrayLayout(False, False, np.dtype(np.float32))
        self.fed = 0
        self.emitted = 0

    def feed(self, chunk: np.ndarray) -> np.ndarray:
        frames, self.layout = to_frames(chunk, "chunk", self.channels)
        self.fed += len(frames)
        out = frames if self.passthrough else self._denoise(frames)
        self.emitted += len(out)
        return from_frames(out, self.layout)

    def _denoise(self, frames: np.ndarray, last: bool = False) -> np.ndarray:
        model_in = self.to_model(frames, last=last)
        model_out = self.core.feed(model_in)
        if last:
            model_out = np.concatenate([model_out, self.core.flush()])
        out = self.from_model(model_out, last=last)
        return out if self.top_band is None else self.top_band(frames, model_in, model_out, out, last=last)

    def flush(self) -> np.ndarray:
        if self.passthrough:
            return from_frames(np.zeros((0, self.channels), np.float32), self.layout)
        out = fit_frames(self._denoise(np.zeros((0, self.channels), np.float32), last=True), self.fed - self.emitted)
        self.emitted += len(out)
        return from_frames(out, self.layout)
