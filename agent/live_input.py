"""Hands the user's audio, as it is captured, to a dialogue backend that listens while the user speaks."""

from __future__ import annotations

import numpy as np

from liveavatar.dialogue.base import DialogueBackend
from liveavatar.media import AudioChunk


class LiveUserAudio:
    """Between a user turn's start and its end, every captured chunk goes to the backend answering the turn.

    Only backends with `listens_while_user_speaks` are fed (vLLM-Omni realtime); for the others this does
    nothing, and they get the turn whole in `reply()` as always.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._backend: DialogueBackend | None = None

    def turn_started(self, backend: DialogueBackend, so_far: AudioChunk) -> None:
        """A user turn began; `so_far` is its audio up to now (from where the turn's audio will start)."""
        self._backend = backend if backend.listens_while_user_speaks else None
        if self._backend is not None:
            self._backend.user_turn_started(so_far)

    def captured(self, pcm: np.ndarray, pts: float) -> None:
        """Microphone audio at `self.rate`, just captured."""
        if self._backend is not None and len(pcm):
            self._backend.user_audio(AudioChunk(pcm, self.rate, pts=pts))

    def turn_ended(self) -> None:
        """The user's turn is over: nothing more goes up until the next one starts."""
        self._backend = None
