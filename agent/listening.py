"""The person's side of a conversation: microphone audio through the VAD into the TurnTaker, and the user's
turns cut from the recent microphone audio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from liveavatar.agent.live_input import LiveUserAudio
from liveavatar.agent.replies import UserSpan
from liveavatar.agent.turns import TurnEvent, TurnTaker
from liveavatar.devices.sources import AudioSource
from liveavatar.devices.vad import SAMPLE_RATE, WINDOW, SileroVAD, VADWindow
from liveavatar.dialogue.base import DialogueBackend, UserTurn
from liveavatar.media import AudioChunk, StreamResampler

PRE_ROLL_S = 0.3  # audio kept before the VAD's onset (it detects speech a little late)
POST_ROLL_S = 0.15  # and after the last speech window
HISTORY_S = 120.0  # microphone audio kept for turn extraction (longer turns are cut to this)


class MicHistory:
    """The last HISTORY_S seconds of 16 kHz microphone audio, addressable by absolute sample index."""

    def __init__(self, seconds: float = HISTORY_S) -> None:
        self._ring = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
        self.written = 0

    def write(self, pcm: np.ndarray) -> None:
        """Append samples (the oldest are overwritten)."""
        n = len(self._ring)
        for start in range(0, len(pcm), n):
            part = pcm[start : start + n]
            at = self.written % n
            first = min(len(part), n - at)
            self._ring[at : at + first] = part[:first]
            self._ring[: len(part) - first] = part[first:]
            self.written += len(part)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop), clipped to what is still kept."""
        start = max(start, self.written - len(self._ring), 0)
        stop = min(stop, self.written)
        if stop <= start:
            return np.zeros(0, np.float32)
        idx = np.arange(start, stop) % len(self._ring)
        return self._ring[idx].copy()


class Listener:
    """Feeds `source` through the VAD into `taker`, posting every turn event it causes, until the source ends."""

    def __init__(self, source: AudioSource, taker: TurnTaker, post: Callable[[TurnEvent], None], vad: SileroVAD | None = None,
                 camera: Callable[[], np.ndarray | None] | None = None) -> None:  # fmt: skip
        self.source = source
        self.taker = taker
        self.post = post
        self.camera = camera or (lambda: None)
        self._vad = vad or SileroVAD()
        self._mic = MicHistory()
        self._resampler: StreamResampler | None = None
        self._t0: float | None = None  # clock time of the source's first sample
        self._live = LiveUserAudio(SAMPLE_RATE)  # the user's audio as captured, for backends that listen meanwhile

    async def run(self) -> None:
        """Listen until the source ends."""
        async for chunk in self.source.chunks():
            if self._t0 is None:
                self._t0 = chunk.pts
            pcm = self._to_16k(chunk)
            captured_at = self._t0 + self._mic.written / SAMPLE_RATE
            self._mic.write(pcm)
            self._live.captured(pcm, captured_at)
            for window in await self._vad_windows(pcm):
                end = self._t0 + window.end_s
                for event in self.taker.vad(end - WINDOW / SAMPLE_RATE, end, window.probability, window.level_db):
                    self.post(event)

    async def _vad_windows(self, pcm: np.ndarray) -> list[VADWindow]:
        """The VAD windows `pcm` completes. The model runs on the loop's default executor, not on the loop: beside a
        served session's frames a window costs 0.5 ms (its weights out of cache), and four sessions' event loop went
        from 0.30 to 0.25 cores without it."""
        if not self._vad.windows_completed_by(len(pcm)):
            return self._vad.feed(pcm)
        return await asyncio.get_running_loop().run_in_executor(None, self._vad.feed, pcm)

    def user_turn(self, span: UserSpan) -> UserTurn:
        """The user's speech over `span` (with a little margin) and the camera's view."""
        stop = int((span.speech_end + POST_ROLL_S - (self._t0 or 0.0)) * SAMPLE_RATE)
        return UserTurn(audio=self._user_audio(span.onset, stop), image=self.camera())

    def audio_between(self, start: float, stop: float) -> np.ndarray:
        """The microphone's 16 kHz audio between two clock times (seconds), clipped to what is kept."""
        t0 = self._t0 or 0.0
        return self._mic.read(int((start - t0) * SAMPLE_RATE), int((stop - t0) * SAMPLE_RATE))

    def turn_started(self, onset: float, backend: DialogueBackend) -> None:
        """A user turn began at `onset`: a backend that listens while the user speaks gets its audio from now on."""
        self._live.turn_started(backend, self._user_audio(onset, self._mic.written))

    def turn_ended(self) -> None:
        """The user's turn is over: no more of their audio goes to the backend until the next turn."""
        self._live.turn_ended()

    def _user_audio(self, onset: float, stop: int) -> AudioChunk:
        """Microphone audio from just before `onset` up to sample `stop` (its pts is where the turn starts)."""
        t0 = self._t0 or 0.0
        start = int((onset - PRE_ROLL_S - t0) * SAMPLE_RATE)
        return AudioChunk(self._mic.read(start, stop), SAMPLE_RATE, pts=max(onset - PRE_ROLL_S, t0))

    def _to_16k(self, chunk: AudioChunk) -> np.ndarray:
        if chunk.rate == SAMPLE_RATE:
            return chunk.pcm
        if self._resampler is None or self._resampler.rate_in != chunk.rate:
            self._resampler = StreamResampler(chunk.rate, SAMPLE_RATE)
        return self._resampler.process(chunk.pcm)
