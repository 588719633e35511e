"""One reply (generation): the dialogue stream running in its own task, held back until released.

A reply can be prepared early (while the user pauses) and released when the user's turn is really
over, or dropped if the user goes on. Released replies push their speech into the avatar as it
arrives. The reply also remembers which text belongs to which speech, so that after a barge-in the
history can keep exactly what was heard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from avatar.base import AvatarGenerator
from dialogue.base import DialogueBackend, DialogueError, ReplyEvent, TextDelta, Transcript, UserTurn
from media import AudioChunk


@dataclass
class ReplyTimes:
    """When each stage first produced something, in clock seconds (None: not yet)."""

    started: float
    transcript: float | None = None
    first_text: float | None = None
    first_audio: float | None = None
    finished: float | None = None


@dataclass
class _Spoken:
    """A speech chunk with the text that came since the previous chunk, and its length at the avatar's rate."""

    text: str
    samples: int


@dataclass
class Reply:
    """Generation `generation` answering `turn`; see the module docstring."""

    generation: int
    turn: UserTurn
    dialogue: DialogueBackend
    avatar: AvatarGenerator
    now: Callable[[], float]
    on_event: Callable[[ReplyEvent, "Reply"], None] = lambda event, reply: None
    times: ReplyTimes = field(init=False)
    transcript: str | None = None
    text: str = ""
    error: str | None = None
    released: bool = False
    produced: asyncio.Event = field(default_factory=asyncio.Event)  # first text or speech arrived
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # the stream ended (or failed)
    _held: list[ReplyEvent] = field(default_factory=list)
    _spoken: list[_Spoken] = field(default_factory=list)
    _pending_text: str = ""
    _task: asyncio.Task | None = None
    _ended: bool = False

    def __post_init__(self) -> None:
        self.times = ReplyTimes(self.now())

    def start(self) -> "Reply":
        """Begin streaming (held until `release()`)."""
        self._task = asyncio.create_task(self._run(), name=f"reply-{self.generation}")
        return self

    @property
    def spoke(self) -> bool:
        """True once speech of this reply went to the avatar."""
        return bool(self._spoken)

    @property
    def said_anything(self) -> bool:
        """True once the backend produced text or speech."""
        return self.produced.is_set()

    def release(self) -> None:
        """Let the reply reach the avatar: held events first, then the rest as it streams."""
        if self.released:
            return
        self.released = True
        held, self._held = self._held, []
        for event in held:
            self._deliver(event)
        if self.finished.is_set():
            self._end()

    async def cancel(self) -> None:
        """Stop the stream (the backend closes its connection) and wait for the task to finish."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_decided(self) -> bool:
        """Wait until the reply produced text or speech (True) or ended without any (False)."""
        if not self.produced.is_set() and not self.finished.is_set():
            waiters = [asyncio.ensure_future(self.produced.wait()), asyncio.ensure_future(self.finished.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        return self.produced.is_set()

    def heard_text(self, samples_played: int) -> str:
        """The reply's text as far as `samples_played` of its speech (at the avatar's rate) were heard."""
        out, remaining = "", samples_played
        for spoken in self._spoken:
            if remaining >= spoken.samples:
                out += spoken.text
                remaining -= spoken.samples
                continue
            words = spoken.text.split(" ")
            out += " ".join(words[: int(len(words) * remaining / max(spoken.samples, 1))])
            break
        return out.strip()

    async def _run(self) -> None:
        try:
            async for event in self.dialogue.reply(self.turn):
                self._note(event)
                if self.released:
                    self._deliver(event)
                else:
                    self._held.append(event)
        except DialogueError as exc:
            self.error = str(exc)
        finally:
            self.times.finished = self.now()
            self.finished.set()
            if self.released:
                self._end()

    def _note(self, event: ReplyEvent) -> None:
        now = self.now()
        if isinstance(event, Transcript):
            self.transcript = event.text
            self.times.transcript = now
        elif isinstance(event, TextDelta):
            self.text += event.text
            self.times.first_text = self.times.first_text or now
            self.produced.set()
        elif isinstance(event, AudioChunk):
            self.times.first_audio = self.times.first_audio or now
            self.produced.set()
        self.on_event(event, self)

    def _deliver(self, event: ReplyEvent) -> None:
        if isinstance(event, TextDelta):
            self._pending_text += event.text
        elif isinstance(event, AudioChunk) and len(event.pcm):
            self._spoken.append(_Spoken(self._pending_text, round(event.duration * self.avatar.audio_rate)))
            self._pending_text = ""
            self.avatar.push(event, self.generation)

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            if self._pending_text and self._spoken:
                self._spoken[-1].text += self._pending_text
            self.avatar.end(self.generation)
