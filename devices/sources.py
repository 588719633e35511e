"""Audio sources for headless runs: WAV files and scripted speech, delivered at the pace of a clock."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile

from liveavatar.media import AudioChunk, SampleFIFO, resample

CHUNK_S = 0.02  # 20 ms, like a sound card's buffer


class Pacer(Protocol):
    """Anything with a media-time `now()` and `sleep_until()` (agent.clock.Clock)."""

    def now(self) -> float: ...

    async def sleep_until(self, t: float) -> None: ...


class AudioSource(abc.ABC):
    """Yields mono AudioChunks stamped with the clock time of their first sample."""

    rate: int

    @abc.abstractmethod
    def chunks(self) -> AsyncIterator[AudioChunk]:
        """The stream; ends when the source does."""

    async def aclose(self) -> None:
        """Release the device."""


MAX_SOUND_FILE_S = 3600.0
"""The longest sound file taken as a microphone: an hour (it is held in memory, 230 MB at 16 kHz)."""
SOUND_FILE_RATES = (4000, 384000)
"""Sample rates (Hz) taken from a sound file's header."""


def sound_file_problem(path: Path | str) -> str | None:
    """What is wrong with a sound file, from its header alone (None: it can be read)."""
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        return f"cannot read {path} as audio: {exc}"
    low, high = SOUND_FILE_RATES
    if not low <= info.samplerate <= high:
        return f"{path} states a sample rate of {info.samplerate} Hz; expected {low} to {high}"
    if info.channels < 1 or info.frames <= 0:
        return f"{path} holds no audio"
    if info.frames / info.samplerate > MAX_SOUND_FILE_S:
        return f"{path} is {info.frames / info.samplerate / 60:.0f} minutes long; the limit is {MAX_SOUND_FILE_S / 60:.0f} minutes"
    return None


def read_wav(path: Path | str, rate: int = 16000) -> np.ndarray:
    """A sound file as float32 mono at `rate` (stereo is averaged), its header checked first; errors name the file."""
    problem = sound_file_problem(path)
    if problem is not None:
        raise ValueError(problem)
    try:
        pcm, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise ValueError(f"cannot read {path} as audio: {exc}") from None
    if not len(pcm):
        raise ValueError(f"{path} holds no audio")
    mono = np.clip(np.nan_to_num(pcm, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0).mean(axis=1)  # float files may hold anything
    return np.clip(resample(mono, file_rate, rate), -1.0, 1.0)


class ScriptedSpeech(AudioSource):
    """Utterances placed at given times over silence, delivered in real time on `clock`.

    After the last utterance the source keeps delivering silence until `end_s` (None: forever), so
    turn endings are heard as they would be from a microphone.
    """

    def __init__(self, clock: Pacer, utterances: list[tuple[float, np.ndarray]], rate: int = 16000, end_s: float | None = None) -> None:
        self.clock = clock
        self.rate = rate
        self.end_s = end_s
        self._utterances = sorted(utterances, key=lambda u: u[0])
        self._n = int(round(CHUNK_S * rate))
        self.started_at: float | None = None  # clock time of the first sample (utterance times count from here)

    def samples(self, start: int, count: int) -> np.ndarray:
        """The signal between sample `start` and `start + count`."""
        out = np.zeros(count, np.float32)
        for at_s, pcm in self._utterances:
            a = int(round(at_s * self.rate))
            lo, hi = max(start, a), min(start + count, a + len(pcm))
            if lo < hi:
                out[lo - start : hi - start] += pcm[lo - a : hi - a]
        return out

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        """20 ms chunks, each delivered once the clock has reached its end (as a microphone would)."""
        start = self.started_at = self.clock.now()
        k = 0
        while self.end_s is None or k * self._n < self.end_s * self.rate:
            t = start + k * self._n / self.rate
            await self.clock.sleep_until(t + self._n / self.rate)
            yield AudioChunk(self.samples(k * self._n, self._n), self.rate, pts=t)
            k += 1


class WavFileSource(ScriptedSpeech):
    """A WAV file played as if it were the microphone, starting `delay_s` after the run begins."""

    def __init__(self, clock: Pacer, path: Path | str, delay_s: float = 0.5, tail_s: float | None = 5.0, rate: int = 16000) -> None:
        pcm = read_wav(path, rate)
        super().__init__(clock, [(delay_s, pcm)], rate, None if tail_s is None else delay_s + len(pcm) / rate + tail_s)


class SpeechOnCue(AudioSource):
    """Silence until `say()` is called; then that utterance, from the next chunk on (a scripted user).

    `say()` returns the clock time the utterance's first sample will carry, so a benchmark knows
    exactly when the user "really" started speaking.
    """

    def __init__(self, clock: Pacer, rate: int = 16000) -> None:
        self.clock = clock
        self.rate = rate
        self._n = int(round(CHUNK_S * rate))
        self._queue = SampleFIFO()
        self._assembled_until: float | None = None  # clock time just after the last chunk already filled

    def say(self, pcm: np.ndarray) -> float:
        """Queue an utterance (16 kHz float32) to follow anything already queued; returns its start time."""
        pending = len(self._queue)
        self._queue.push(pcm)
        start = self._assembled_until if self._assembled_until is not None else self.clock.now()
        return start + pending / self.rate

    @property
    def speaking(self) -> bool:
        """True while part of an utterance is still to be delivered."""
        return len(self._queue) > 0

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        """20 ms chunks in real time on the clock, forever."""
        t = self.clock.now()
        while True:
            out = self._queue.take(self._n)
            self._assembled_until = t + self._n / self.rate
            await self.clock.sleep_until(t + self._n / self.rate)
            yield AudioChunk(out, self.rate, pts=t)
            t += self._n / self.rate
