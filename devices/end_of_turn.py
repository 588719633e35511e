"""The end-of-turn model: Smart Turn v3.2, run with onnxruntime from the model file inside the `pipecat-ai` wheel.

Smart Turn v3.2 (pipecat-ai/smart-turn, BSD-2-Clause) is a Whisper-tiny encoder with a classifier: from the
last 8 s of a person's voice it says how likely it is that they have finished their turn. It hears only
audio (prosody, pace, the shape of the last words), so it serves every dialogue backend. The wheel is
installed with `--no-deps` outside site-packages (media/packaged.py) and pipecat is never imported: we read
its .onnx file and compute the features ourselves (devices/log_mel.py).

Inference takes tens of milliseconds on one core, so it runs on a thread of its own, never on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liveavatar.devices.log_mel import SAMPLE_RATE, log_mel
from liveavatar.media.packaged import packaged_file

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_FOLDER = ("audio", "turn", "smart_turn", "data")  # inside the `pipecat` package folder
WINDOW_S = 8.0  # the model hears the last 8 s
FRAMES = int(WINDOW_S * 100)  # 10 ms feature frames
SPEECH_LEAD_S = 0.5  # audio before the onset of speech that the model is shown (as pipecat does)


QUIET_SAMPLE_S = 0.032  # the end of the audio repeated to stand for a pause still to come (one VAD window: silence as it heard it)


def as_if_silent_for(audio: np.ndarray, seconds: float) -> np.ndarray:
    """16 kHz `audio` followed by `seconds` more of its own last QUIET_SAMPLE_S repeated: the pause as the model would hear
    it had it gone on as it is (the room's own noise, not digital silence, which the model hears differently)."""
    extra = round(seconds * SAMPLE_RATE)
    if extra <= 0 or not len(audio):
        return audio
    return np.concatenate([audio, np.resize(audio[-round(QUIET_SAMPLE_S * SAMPLE_RATE) :], extra)])


class EndOfTurnModelMissing(RuntimeError):
    """The Smart Turn model file is not installed."""


def model_path() -> Path:
    """Path of smart-turn-v3.2-cpu.onnx inside the installed pipecat-ai wheel."""
    return packaged_file("pipecat", (*MODEL_FOLDER, MODEL_FILE), "the Smart Turn end-of-turn model (pipecat-ai wheel)", EndOfTurnModelMissing)


@dataclass(frozen=True)
class Verdict:
    """The model's answer: `probability` that the turn is complete, and how long it took (seconds of wall time)."""

    probability: float
    seconds: float


class SmartTurn:
    """Smart Turn v3.2 on one onnxruntime thread; `judge()` runs it off the event loop, one call at a time."""

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(str(path or model_path()), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="end-of-turn")
        # The first run allocates: do it now, not in a turn, on the model's own thread, which lives as long as the model.
        self._executor.submit(self.probability, np.zeros(SAMPLE_RATE, np.float32)).result()

    def probability(self, audio: np.ndarray) -> float:
        """Blocking: the probability that the speaker of 16 kHz mono `audio` (its last 8 s count) has finished."""
        features = log_mel(audio, FRAMES)[None]
        (out,) = self._session.run(None, {self._input: features})
        return float(np.asarray(out).reshape(-1)[0])

    async def judge(self, audio: np.ndarray, still_wanted: Callable[[], bool] = lambda: True) -> Verdict | None:
        """The verdict on `audio`, computed on the model's own thread; None when, by the time the thread is free for
        it, `still_wanted()` says the question is moot (the speaker went on): a busy model never works on a backlog."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()

        def work() -> float | None:
            return self.probability(audio) if still_wanted() else None

        probability = await loop.run_in_executor(self._executor, work)
        return None if probability is None else Verdict(probability, time.perf_counter() - started)

    def close(self) -> None:
        """Stop the model's thread (a call in progress finishes)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
