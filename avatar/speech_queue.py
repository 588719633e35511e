"""The speech queue every avatar generator shares: replies queued per generation, taken out in exact counts.

A generator asks for the audio of its next frame (portrait) or block of frames (LiveAvatar) with `take(n)`
and gets exactly `n` samples at the stream's rate: the head reply's speech, padded with silence where it
runs out, or silence when nobody speaks. What happens when a reply is open but its speech has not arrived
yet is the underrun policy: "silence" takes what is there now (live sinks pull at real time), "wait" holds
the take until enough speech or `end()` arrives (offline renders bake no gap into the video).

`pause()` holds the queued speech (takes are idle: the avatar listens) and can hand back speech a generator
took but never showed; `resume(replay_s)` first puts back up to `replay_s` seconds of the speech taken just
before the pause (what the sinks dropped unheard when they were flushed), then continues. `clear()` drops
every queued reply; later pushes of those generations are ignored.

State is bounded: a reply holds only speech not yet taken, and the replay log the last `keep_s` seconds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from liveavatar.avatar.base import Underrun
from liveavatar.media import AudioChunk, PhonemeSpan, SampleFIFO, StreamResampler

MAX_REPLAY_S = 1.0
"""The most speech `resume()` replays (sinks buffer far less)."""


@dataclass
class _Reply:
    """Speech of one generation, resampled to the output rate, not yet taken."""

    generation: int
    resampler: StreamResampler | None = None
    pcm: SampleFIFO = field(default_factory=SampleFIFO)
    consumed: int = 0  # samples of this reply already taken (its position, for phoneme spans)
    speech_s: float = 0.0  # seconds of speech pushed so far, at the input's own rate
    phonemes: list[PhonemeSpan] = field(default_factory=list)  # positions relative to the reply's first sample
    ended: bool = False

    @property
    def buffered(self) -> int:
        """Samples not yet taken."""
        return len(self.pcm)


@dataclass(frozen=True)
class Take:
    """The audio of the next frame(s): `speech` samples of reply `generation` at the front, then silence.

    `generation` is None when nobody speaks (or the queue is paused). `ended` says the reply's last sample is
    in this take (the padding after it belongs to no reply). `start` is the position of `pcm[0]` within the
    reply, and `phonemes` the reply's spans that overlap the take (plus the look-ahead asked for).
    """

    pcm: np.ndarray
    generation: int | None = None
    speech: int = 0
    ended: bool = False
    start: int = 0
    phonemes: tuple[PhonemeSpan, ...] = ()

    @property
    def idle(self) -> bool:
        """No reply is speaking."""
        return self.generation is None


class SpeechQueue:
    """Per-generation speech at `rate` for one avatar; see the module docstring."""

    def __init__(self, rate: int, underrun: Underrun = "silence", keep_s: float = MAX_REPLAY_S) -> None:
        if underrun not in ("silence", "wait"):
            raise ValueError(f"underrun must be 'silence' or 'wait', got {underrun!r}")
        self.rate = rate
        self.underrun: Underrun = underrun
        self._keep = round(keep_s * rate)
        self._replies: deque[_Reply] = deque()
        self._dead_below = -1  # generations <= this were cleared: their speech is dropped
        self._paused = False
        self._log: deque[tuple[_Reply, np.ndarray]] = deque()  # speech taken, newest last (for replay)
        self._logged = 0
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- producer side (the dialogue) ---------------------------------------------------------------------
    def push(self, chunk: AudioChunk, generation: int) -> None:
        """Queue speech of reply `generation` (any rate); generations must increase over the avatar's life."""
        if generation <= self._dead_below:
            return
        reply = self._reply(generation)
        if reply.ended:
            raise ValueError(f"generation {generation} already ended; speech pushed after end()")
        if reply.resampler is None or reply.resampler.rate_in != chunk.rate:
            if reply.resampler is not None:
                reply.pcm.push(reply.resampler.flush())
            reply.resampler = StreamResampler(chunk.rate, self.rate)
        # soxr's stream output is delay-compensated, so input time t lands at output sample t·rate.
        offset = round(reply.speech_s * self.rate)
        ratio = self.rate / chunk.rate
        for span in chunk.phonemes:
            reply.phonemes.append(PhonemeSpan(span.phoneme, offset + int(span.start * ratio), int(span.length * ratio)))
        reply.speech_s += len(chunk.pcm) / chunk.rate
        reply.pcm.push(reply.resampler.process(chunk.pcm))
        self._changed.set()

    def end(self, generation: int) -> None:
        """No more speech for `generation`; what is buffered still plays."""
        if generation <= self._dead_below:
            return
        reply = self._reply(generation)
        if not reply.ended:
            if reply.resampler is not None:
                reply.pcm.push(reply.resampler.flush())
                reply.resampler = None
            reply.ended = True
        self._changed.set()

    def clear(self) -> None:
        """Drop every queued reply and the replay log; later pushes of those generations are ignored."""
        gens = [r.generation for r in self._replies] + [r.generation for r, _ in self._log]
        if gens:
            self._dead_below = max(self._dead_below, max(gens))
        self._replies.clear()
        self._log.clear()
        self._logged = 0
        self._changed.set()

    def reset(self) -> None:
        """A new conversation: nothing queued, not paused, and every generation number usable again."""
        self._replies.clear()
        self._log.clear()
        self._logged = 0
        self._dead_below = -1
        self._paused = False
        self._changed.set()

    def pause(self, unplayed: int = 0) -> None:
        """Hold queued speech (takes go idle); the last `unplayed` samples taken were never shown: they go back first."""
        self.unread(unplayed)
        self._paused = True
        self._changed.set()

    def resume(self, replay_s: float = 0.0) -> None:
        """Continue held speech, replaying first the last `replay_s` seconds (≤ MAX_REPLAY_S) taken before the pause."""
        if self._paused and replay_s > 0:
            self.unread(round(min(replay_s, MAX_REPLAY_S) * self.rate))
        self._paused = False
        self._changed.set()

    @property
    def paused(self) -> bool:
        """Whether speech is held."""
        return self._paused

    # ---- consumer side (the generator) --------------------------------------------------------------------
    @property
    def queued_seconds(self) -> float:
        """Speech waiting to be taken, in seconds."""
        return sum(r.buffered for r in self._replies) / self.rate

    def has_speech(self) -> bool:
        """Whether the next take would carry speech now (not paused, and the head reply has some buffered)."""
        reply = self._head()
        return reply is not None and reply.buffered > 0

    def ready(self, n: int) -> bool:
        """Whether `take(n)` would return at once."""
        reply = self._head()
        return reply is None or reply.buffered >= n or reply.ended or self.underrun == "silence"

    async def take(self, n: int, phoneme_ahead: int = 0) -> Take:
        """The next `n` samples (see the module docstring); under "wait" this waits for speech or end()."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # an Event binds to the loop that first waits on it
            self._loop, self._changed = loop, asyncio.Event()
        while not self.ready(n):
            self._changed.clear()
            await self._changed.wait()
        return self.take_now(n, phoneme_ahead)

    def take_now(self, n: int, phoneme_ahead: int = 0) -> Take:
        """`take(n)` without waiting: what is there now (call it when `ready(n)`)."""
        reply = self._head()
        if reply is None:
            return Take(np.zeros(n, np.float32))
        start = reply.consumed
        got = min(n, reply.buffered)
        pcm = reply.pcm.take(n)  # zero-padded past what is buffered
        reply.consumed += got
        if got:
            self._remember(reply, pcm[:got])
        ended = reply.ended and reply.buffered == 0
        if ended:
            self._replies.popleft()
        spans = tuple(s for s in reply.phonemes if s.start + s.length > start and s.start < start + n + phoneme_ahead)
        reply.phonemes = [s for s in reply.phonemes if s.start + s.length > start - self._keep]  # replayable speech keeps them
        return Take(pcm, reply.generation, got, ended, start, spans)

    def unread(self, samples: int) -> None:
        """Put back the last `samples` samples taken (at most what the log keeps), to be taken again first."""
        while samples > 0 and self._log:
            reply, last = self._log.pop()
            back = last[len(last) - samples:] if samples < len(last) else last
            if len(back) < len(last):
                self._log.append((reply, last[: len(last) - len(back)]))
            self._logged -= len(back)
            reply.pcm.unread(back)
            reply.consumed -= len(back)
            if not self._replies or self._replies[0] is not reply:
                self._replies.appendleft(reply)  # an ended reply taken to its end comes back to the front
            samples -= len(back)
        self._changed.set()

    # ---- internals ----------------------------------------------------------------------------------------
    def _head(self) -> _Reply | None:
        while self._replies and self._replies[0].ended and self._replies[0].buffered == 0:
            self._replies.popleft()
        return self._replies[0] if self._replies and not self._paused else None

    def _remember(self, reply: _Reply, pcm: np.ndarray) -> None:
        self._log.append((reply, pcm))
        self._logged += len(pcm)
        while self._log and self._logged - len(self._log[0][1]) >= self._keep:
            self._logged -= len(self._log.popleft()[1])

    def _reply(self, generation: int) -> _Reply:
        for reply in self._replies:
            if reply.generation == generation:
                return reply
        if self._replies and generation < self._replies[-1].generation:
            raise ValueError(f"generation {generation} pushed after generation {self._replies[-1].generation}")
        reply = _Reply(generation)
        self._replies.append(reply)
        return reply
