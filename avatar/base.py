"""The AvatarGenerator contract every avatar backend implements."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import Literal

from liveavatar.media import AudioChunk, AVFrame

Underrun = Literal["silence", "wait"]
"""What a generator does when a reply is open but its next speech has not arrived yet.

"silence": emit the frame now with silent audio (live sinks that pull at real time);
"wait": hold the frame until speech or `end()` arrives (offline renders, so no gap is baked in).
"""


class AvatarGenerator(abc.ABC):
    """An endless stream of `AVFrame`s driven by queued speech; idle/listening frames when there is none.

    Implementations keep exactly `samples_in_frame(i, audio_rate, fps)` samples on frame i, so audio
    and video can never drift. The consumer paces the stream by how fast it pulls from `frames()`.
    """

    fps: float
    size: tuple[int, int]  # (width, height) in pixels
    audio_rate: int
    can_pause: bool = False  # whether pause()/resume() are supported (barge-in pauses, then decides)

    @abc.abstractmethod
    def push(self, chunk: AudioChunk, generation: int) -> None:
        """Queue speech of reply `generation` (any sample rate; resampled internally)."""

    @abc.abstractmethod
    def end(self, generation: int) -> None:
        """Mark the end of reply `generation`: once its speech has played, frames go idle."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Drop all queued speech and not-yet-emitted frames (barge-in); the stream continues idle."""

    def reset(self) -> None:
        """A new conversation (a new page): drop all queued speech and any pause, and forget every past generation,
        so the new conversation may number its replies from 1 again. The stream goes on idle; the new consumer
        calls `frames()` again (the previous iterator must no longer be used)."""
        raise NotImplementedError(f"{type(self).__name__} cannot start a fresh conversation (no reset())")

    def pause(self) -> None:
        """Hold queued speech where it is: frames go idle (listening) until `resume()`."""
        raise NotImplementedError(f"{type(self).__name__} cannot pause; check can_pause")

    def resume(self, replay_s: float = 0.0) -> None:
        """Continue held speech from where `pause()` stopped it, first replaying up to `replay_s` seconds of the
        speech emitted just before the pause (what the sinks dropped unheard when they were flushed)."""
        raise NotImplementedError(f"{type(self).__name__} cannot pause; check can_pause")

    @abc.abstractmethod
    def frames(self) -> AsyncIterator[AVFrame]:
        """The endless frame stream; iterate it from one consumer only."""

    async def aclose(self) -> None:
        """Release resources (threads, processes); the default has none."""
