"""Silero VAD run with onnxruntime from the model inside the `silero-vad` wheel (torch is never imported).

The wheel declares a torch dependency and its `__init__` imports torch, so it is installed with
`--no-deps` and only its data folder is read, located without importing the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liveavatar.media.packaged import packaged_file

SAMPLE_RATE = 16000
WINDOW = 512  # samples per inference at 16 kHz: 32 ms
CONTEXT = 64  # samples of the previous window the model sees
MODEL_FILE = "silero_vad.onnx"


class VADModelMissing(RuntimeError):
    """The silero model file is not installed."""


def model_path() -> Path:
    """Path of silero_vad.onnx inside the installed wheel."""
    return packaged_file("silero_vad", ("data", MODEL_FILE), "the silero VAD model", VADModelMissing)


@dataclass(frozen=True)
class VADWindow:
    """Speech probability of one 32 ms window ending at `end_s` seconds on the input's clock, and its loudness."""

    end_s: float
    probability: float
    level_db: float  # the window's RMS in dB relative to full scale (digital silence: -120)

    @property
    def start_s(self) -> float:
        """Start of the window in seconds."""
        return self.end_s - WINDOW / SAMPLE_RATE


def load_model(path: Path | None = None):  # noqa: ANN201 - an onnxruntime.InferenceSession
    """The silero model, ready to run; one can serve every stream of a process (each SileroVAD keeps its own state)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path or model_path()), options, providers=["CPUExecutionProvider"])


def level_db(pcm: np.ndarray) -> float:
    """RMS of `pcm` (floats in [-1, 1]) in dB relative to full scale; -120 for digital silence."""
    return float(10.0 * np.log10(np.mean(np.square(pcm, dtype=np.float64)) + 1e-12))


class SileroVAD:
    """Streaming speech probabilities for 16 kHz mono audio, one per 512-sample window."""

    def __init__(self, path: Path | None = None, model: object | None = None) -> None:
        self._session = model if model is not None else load_model(path)  # `model`: one from load_model(), shared
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Forget all audio seen so far."""
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._consumed = 0  # samples turned into windows

    def window_probability(self, window: np.ndarray) -> float:
        """Speech probability of exactly one 512-sample window (continuing the stream's state)."""
        x = np.concatenate([self._context, window.astype(np.float32)])[None, :]
        prob, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = x[0, -CONTEXT:]
        return float(prob.reshape(-1)[0])

    def windows_completed_by(self, samples: int) -> int:
        """How many windows feeding `samples` more samples would complete (and so run the model)."""
        return (len(self._pending) + samples) // WINDOW

    def feed(self, pcm: np.ndarray) -> list[VADWindow]:
        """Append 16 kHz samples; returns the windows completed by them."""
        self._pending = np.concatenate([self._pending, np.asarray(pcm, np.float32)])
        out = []
        while len(self._pending) >= WINDOW:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            prob = self.window_probability(window)
            self._consumed += WINDOW
            out.append(VADWindow(self._consumed / SAMPLE_RATE, prob, level_db(window)))
        return out
