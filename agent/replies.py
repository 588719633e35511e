"""The reply is the unit of a conversation: one generation, spoken by one agent, answering one turn.

A reply streams from its speaker's dialogue backend in its own task from the moment it is created.
It can be prepared early (while the user pauses) and released when the user's turn is really over,
or discarded if the user goes on. Released, its speech goes into its speaker's avatar as it arrives.
It owns its state, what of it was played (samples, frames, its audio as heard) and its metrics, and
remembers which text belongs to which speech, so that after a barge-in the history can keep exactly
what was heard. It tells the conversation what happened through `post` (see `ReplyNews`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from liveavatar.agent.agents import Agent
from liveavatar.agent.metrics import TurnMetrics
from liveavatar.dialogue.base import DialogueError, ReplyEvent, TextDelta, Transcript, UserTurn
from liveavatar.media import AudioChunk, AVFrame

HeardFrom = Literal["user", "agent", "opening"]  # what a reply answers: the person, the other agent, the duet's opening
CUT_GENERATIONS_KEPT = 64  # interrupted or discarded generations remembered, so their stray frames are silenced


class ReplyState(enum.Enum):
    """Where a reply is in its life."""

    PREPARED = "prepared"  # streaming, held back from the avatar
    PLAYING = "playing"  # released: its speech goes to the avatar and is heard
    PAUSED = "paused"  # the person spoke over it: held until resumed or interrupted
    INTERRUPTED = "interrupted"  # cut off (barge-in, or the conversation ended): history keeps what was heard
    DISCARDED = "discarded"  # prepared early, then dropped unheard (the user went on)
    DONE = "done"  # played to its end, or ended without speech


@dataclass(frozen=True)
class UserSpan:
    """The stretch of the user's speech a reply answers, in clock seconds."""

    onset: float
    speech_end: float


@dataclass
class ReplyTimes:
    """When each stage first produced something, in clock seconds (None: not yet)."""

    started: float
    transcript: float | None = None
    first_text: float | None = None
    first_audio: float | None = None
    finished: float | None = None


@dataclass(frozen=True)
class ReplyStreamed:
    """The backend sent text of the reply, or its transcript of the user."""

    reply: Reply
    event: TextDelta | Transcript
    after_release: bool  # the reply was already released when it came (else its text is shown on release)


@dataclass(frozen=True)
class ReplyProduced:
    """The reply's first text or speech arrived: it has something to say."""

    reply: Reply


@dataclass(frozen=True)
class ReplyFinished:
    """The reply's stream ended (all of it arrived, or the backend failed: see `reply.error`)."""

    reply: Reply


ReplyNews = ReplyStreamed | ReplyProduced | ReplyFinished


@dataclass
class _Spoken:
    """A speech chunk with the text that came since the previous chunk, and its length at the avatar's rate."""

    text: str
    samples: int


@dataclass(eq=False)
class Reply:
    """Generation `generation`: `speaker` answering `turn`; see the module docstring."""

    generation: int
    speaker: Agent
    turn: UserTurn
    now: Callable[[], float]
    post: Callable[[ReplyNews], None]
    answers: UserSpan | None = None  # the user's speech it answers (None: not the person's turn)
    heard_from: HeardFrom = "user"
    keeps_voice: bool = False  # keep its audio as played (a duet: the other agent's next turn)
    state: ReplyState = ReplyState.PREPARED
    metrics: TurnMetrics | None = None  # set when its turn is committed (the user's turn ended, or an agent's turn began)
    times: ReplyTimes = field(init=False)
    transcript: str | None = None
    sentence_end_probability: float | None = None  # the recognizer's, where the transcript ends (None: not said)
    language_end_probability: float | None = None  # the language model's, from the transcript's words alone (None: not said)
    text: str = ""
    released: bool = False  # it may reach the avatar (its speech goes there as it arrives)
    error: str | None = None  # what the backend reported (DialogueError): the conversation goes on
    failure: Exception | None = None  # anything else the stream raised
    samples_played: int = 0  # of its speech that reached the sinks (less what a flush dropped unheard)
    first_frame: int | None = None  # the conversation's first and last frame that carried it
    last_frame: int | None = None
    voice: list[np.ndarray] = field(default_factory=list)  # its audio as played, when keeps_voice
    produced: asyncio.Event = field(default_factory=asyncio.Event)  # first text or speech arrived
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # the stream ended (or failed)
    reached_avatar: asyncio.Event = field(default_factory=asyncio.Event)  # released, and its first speech pushed (or none will come)
    _held: list[ReplyEvent] = field(default_factory=list)
    _spoken: list[_Spoken] = field(default_factory=list)
    _pending_text: str = ""
    _task: asyncio.Task | None = None
    _ended: bool = False
    _heard: bool = False
    _closed: bool = False

    def __post_init__(self) -> None:
        self.times = ReplyTimes(self.now())

    def start(self) -> Reply:
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

    @property
    def closed(self) -> bool:
        """True once the reply is over (interrupted, discarded or done)."""
        return self._closed

    def release(self) -> None:
        """Let the reply reach the avatar: held events first, then the rest as it streams."""
        if self.released or self.state is not ReplyState.PREPARED:
            return
        self.released = True
        self.state = ReplyState.PLAYING
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

    def note_played(self, frame: AVFrame, number: int) -> bool:
        """Frame `number` of the conversation carried this reply to the sinks; True if it is the first with its voice."""
        self.samples_played += len(frame.audio)
        self.first_frame = number if self.first_frame is None else self.first_frame
        self.last_frame = number
        if not self._heard and frame.audio.any():
            self._heard = True
            return True
        return False

    def unhear(self, seconds: float) -> None:
        """The last `seconds` sent to the sinks were dropped there unplayed: they do not count as heard."""
        self.samples_played = max(0, self.samples_played - round(seconds * self.speaker.avatar.audio_rate))

    def heard_voice(self) -> AudioChunk | None:
        """Its audio as played (when `keeps_voice`), or None if none was."""
        if not self.voice:
            return None
        return AudioChunk(np.concatenate(self.voice), self.speaker.avatar.audio_rate)

    def heard_text(self) -> str:
        """The reply's text as far as its speech was heard (`samples_played`)."""
        out, remaining = "", self.samples_played
        for spoken in self._spoken:
            if remaining >= spoken.samples:
                out += spoken.text
                remaining -= spoken.samples
                continue
            words = spoken.text.split(" ")
            out += " ".join(words[: int(len(words) * remaining / max(spoken.samples, 1))])
            break
        return out.strip()

    def close(self, state: ReplyState, heard: str | None = None) -> TurnMetrics | None:
        """End the reply in `state`; returns its completed metrics (once; None if its turn was never committed)."""
        self.state = state
        if self._closed:
            return None
        self._closed = True
        self.voice = []
        metrics, t = self.metrics, self.times
        if metrics is None:
            return None
        metrics.transcript, metrics.sentence_end_probability = self.transcript, self.sentence_end_probability
        metrics.language_end_probability = self.language_end_probability
        metrics.reply_text = self.text
        metrics.heard_text = self.text if heard is None else heard
        metrics.error = self.error
        metrics.speech_s = sum(spoken.samples for spoken in self._spoken) / self.speaker.avatar.audio_rate
        metrics.played_s = self.samples_played / self.speaker.avatar.audio_rate
        metrics.reply_started_s = t.started - metrics.turn_end
        metrics.asr_s = None if t.transcript is None else t.transcript - metrics.turn_end
        metrics.llm_first_text_s = None if t.first_text is None else t.first_text - metrics.turn_end
        metrics.tts_first_audio_s = None if t.first_audio is None else t.first_audio - metrics.turn_end
        return metrics

    async def _run(self) -> None:
        try:
            async for event in self.speaker.dialogue.reply(self.turn):
                self._note(event)
                if self.released:
                    self._deliver(event)
                else:
                    self._held.append(event)
        except DialogueError as exc:
            self.error = str(exc)
        except Exception as exc:  # a bug, not a backend's report: the conversation re-raises it
            self.failure = exc
        finally:
            self.times.finished = self.now()
            self.finished.set()
            if self.released:
                self._end()
            self.post(ReplyFinished(self))

    def _note(self, event: ReplyEvent) -> None:
        now = self.now()
        if isinstance(event, Transcript):
            self.transcript, self.sentence_end_probability = event.text, event.sentence_end_probability
            self.language_end_probability = event.language_end_probability
            self.times.transcript = now
            self.post(ReplyStreamed(self, event, self.released))
            return
        if isinstance(event, TextDelta):
            self.text += event.text
            self.times.first_text = self.times.first_text or now
        else:
            self.times.first_audio = self.times.first_audio or now
        if not self.produced.is_set():
            self.produced.set()
            self.post(ReplyProduced(self))
        if isinstance(event, TextDelta):
            self.post(ReplyStreamed(self, event, self.released))

    def _deliver(self, event: ReplyEvent) -> None:
        if isinstance(event, TextDelta):
            self._pending_text += event.text
        elif isinstance(event, AudioChunk) and len(event.pcm):
            self._spoken.append(_Spoken(self._pending_text, round(event.duration * self.speaker.avatar.audio_rate)))
            self._pending_text = ""
            self.speaker.avatar.push(event, self.generation)
            self.reached_avatar.set()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            if self._pending_text and self._spoken:
                self._spoken[-1].text += self._pending_text
            self.speaker.avatar.end(self.generation)
            self.reached_avatar.set()


class ReplyBook:
    """The replies of one conversation: the one the avatar speaks, the one prepared early, the one awaiting a
    verdict (pause-then-decide), and the generations recently cut off, whose stray frames must be silenced."""

    def __init__(self) -> None:
        self.current: Reply | None = None  # released: playing, paused, or about to play
        self.prepared: Reply | None = None  # started during the user's pause, before the turn ended
        self.deciding: Reply | None = None  # answers the person's turn over a paused reply: will it have words?
        self._open: dict[int, Reply] = {}
        self._cut: deque[int] = deque(maxlen=CUT_GENERATIONS_KEPT)
        self.last_generation = 0

    def new(self, speaker: Agent, turn: UserTurn, now: Callable[[], float], post: Callable[[ReplyNews], None], **options) -> Reply:  # noqa: ANN003
        """A new generation answering `turn`, spoken by `speaker`, streaming from now on (see Reply's fields)."""
        self.last_generation += 1
        reply = Reply(self.last_generation, speaker, turn, now, post, **options)
        self._open[reply.generation] = reply
        return reply.start()

    def get(self, generation: int | None) -> Reply | None:
        """The open reply of `generation`, if any."""
        return None if generation is None else self._open.get(generation)

    def silenced(self, generation: int) -> bool:
        """Whether frames of `generation` must not be heard (it was cut off)."""
        return generation in self._cut

    def retire(self, reply: Reply) -> None:
        """Forget a closed reply; a cut-off one is remembered as silenced."""
        if self.deciding is reply:
            self.deciding = None
        if self._open.pop(reply.generation, None) is not None and reply.state in (ReplyState.INTERRUPTED, ReplyState.DISCARDED):
            self._cut.append(reply.generation)

    def open_replies(self) -> Iterator[Reply]:
        """Every reply not yet retired, oldest first."""
        return iter(list(self._open.values()))
