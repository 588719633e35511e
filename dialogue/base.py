"""The DialogueBackend contract: one user turn in, an async stream of text and speech out."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from liveavatar.media import AudioChunk


@dataclass(frozen=True, eq=False)
class UserTurn:
    """What the other side said: its audio (any rate) and/or its text, when known, and what the camera saw.

    Backends that take video use `image` (RGB uint8, the webcam's latest frame); the others ignore it.
    Turns are compared by identity: `record_played` and `discard_turn` name the very object `reply` got.
    """

    audio: AudioChunk | None = None
    text: str | None = None
    image: np.ndarray | None = None


@dataclass(frozen=True)
class TextDelta:
    """A piece of the reply's text, in order."""

    text: str


@dataclass(frozen=True)
class Transcript:
    """What the backend understood the user to say (backends with their own speech recognition)."""

    text: str
    sentence_end_probability: float | None = None
    """How sure the recognizer was that a sentence ends where the words end (0–1); None when it does not say."""
    language_end_probability: float | None = None
    """How likely the backend's language model found it, from the words alone (their closing marks left out), that a
    sentence ends where they end (0–1); None when it does not say."""


ReplyEvent = TextDelta | AudioChunk | Transcript


class DialogueError(RuntimeError):
    """A backend failure the user should read (server down, bad voice, ...); the conversation goes on."""


class DialogueBackend(abc.ABC):
    """Produces replies and keeps the conversation history across turns.

    Cancelling the task that iterates `reply()` must stop the backend promptly (under 50 ms) and
    release its stream; the cancelled reply then counts only as far as `record_played` says.

    Backends that can listen while the user speaks set `listens_while_user_speaks`: the conversation
    then hands them the user's audio as it is captured (`user_turn_started`, then `user_audio` for every
    chunk until the turn ends), and `reply(turn)` for that turn (same `turn.audio.pts`) only has to
    finish what is already under way. They still take any turn whole in `reply` (an agent's voice, a
    turn whose early reply was dropped). Both hooks are called from the event loop and must not block.
    """

    listens_while_user_speaks: ClassVar[bool] = False
    transcribes_first: ClassVar[bool] = False
    """Every `reply()` yields the user's words (one `Transcript`) before anything else: turn-taking may wait for them."""

    def user_turn_started(self, audio: AudioChunk) -> None:
        """The user began a turn: `audio` is what was captured of it so far (from just before the onset)."""

    def user_audio(self, chunk: AudioChunk) -> None:
        """More of the user's current turn, as it is captured (until the turn ends)."""

    @abc.abstractmethod
    def reply(self, turn: UserTurn) -> AsyncIterator[ReplyEvent]:
        """Stream the reply to `turn`: `TextDelta`s and speech `AudioChunk`s in playback order."""

    def record_played(self, text: str, turn: UserTurn | None = None) -> None:
        """Make the reply to `turn` (the same object given to `reply`; default: the last one) in the history
        exactly the part the listener heard."""

    def discard_turn(self, turn: UserTurn) -> None:
        """Forget `turn` and its reply, if they were recorded: it was prepared early and the user went on."""

    def reset(self) -> None:
        """Forget the whole conversation: a new person is talking (a new page). Loaded models stay loaded.

        Every backend that keeps a history must implement it; the default refuses, so no conversation
        is ever carried over to the next person by mistake.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot start a fresh conversation (no reset())")

    async def aclose(self) -> None:
        """Release resources; the default has none."""
