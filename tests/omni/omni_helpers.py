"""Small helpers shared by the omni tests: run a reply to its end and sort what came out."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import numpy as np

from liveavatar.dialogue.base import DialogueBackend, DialogueError, TextDelta, UserTurn
from liveavatar.media import AudioChunk, to_float32, to_int16


@dataclass
class Collected:
    """Everything one reply yielded, in order, and the DialogueError it ended with (if any)."""

    events: list[TextDelta | AudioChunk] = field(default_factory=list)
    error: DialogueError | None = None

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TextDelta))

    @property
    def chunks(self) -> list[AudioChunk]:
        return [e for e in self.events if isinstance(e, AudioChunk)]

    @property
    def pcm(self) -> np.ndarray:
        chunks = self.chunks
        return np.concatenate([c.pcm for c in chunks]) if chunks else np.zeros(0, np.float32)


async def collect(backend: DialogueBackend, turn: UserTurn) -> Collected:
    """Iterate `backend.reply(turn)` to its end, keeping a DialogueError instead of raising it."""
    out = Collected()
    try:
        async for event in backend.reply(turn):
            out.events.append(event)
    except DialogueError as exc:
        out.error = exc
    return out


def run_reply(backend: DialogueBackend, turn: UserTurn) -> Collected:
    """`collect` in a fresh event loop, then close the backend."""

    async def go() -> Collected:
        try:
            return await collect(backend, turn)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def speech_turn(seconds: float = 1.0, rate: int = 24000, text: str | None = None) -> UserTurn:
    """A user turn holding `seconds` of a quiet tone at `rate` Hz (and optional text)."""
    t = np.arange(int(seconds * rate)) / rate
    return UserTurn(audio=AudioChunk((0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate), text=text)


def as_pcm16(pcm: np.ndarray) -> np.ndarray:
    """What float samples become after a trip through 16-bit PCM."""
    return to_float32(to_int16(pcm))


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
