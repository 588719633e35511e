"""The presenter: pulls every avatar's next frame on the clock, composes them, silences what must not be heard,
writes every sink, and tells the conversation what was played.

Live, frames are requested just before they are due and written when due (real time). On a frame
clock the presenter moves time itself: before each frame it lets the conversation act on everything
due by then, and it writes as fast as the avatars render.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from liveavatar.agent.agents import Agent
from liveavatar.agent.clock import Clock, FrameClock
from liveavatar.agent.compose import Compositor, canvas_size
from liveavatar.agent.duet_plan import DuetPlan
from liveavatar.agent.replies import Reply, ReplyBook
from liveavatar.devices.sink import FrameSink
from liveavatar.media import AVFrame

PLAN_AHEAD_S = 0.015  # live: a frame is requested this long before it is due (rendering takes a few ms)


@dataclass(frozen=True)
class ReplyHeard:
    """The first frame carrying the reply's voice reached the sinks at clock time `t`."""

    reply: Reply
    t: float


@dataclass(frozen=True)
class ReplyPlayedOut:
    """The reply has played to its end: the frame at clock time `t` no longer carries it."""

    reply: Reply
    t: float


@dataclass(frozen=True)
class AgentVoice:
    """The frames reaching the sinks started (True) or stopped (False) carrying an agent's speech."""

    speaking: bool
    t: float


PlaybackNews = ReplyHeard | ReplyPlayedOut | AgentVoice


def compositor_for(agents: Sequence[Agent], duet: DuetPlan | None) -> Compositor | None:
    """How several agents share the picture: the duet plan's layout and captions (one agent: no compositing)."""
    if len(agents) == 1:
        return None
    names = [a.name for a in agents] if duet is None or duet.captions else None
    return Compositor(agents[0].avatar.size, len(agents), duet.layout if duet else "side_by_side", names)


def picture_size(agents: Sequence[Agent], duet: DuetPlan | None = None) -> tuple[int, int]:
    """(width, height) of the frames the agents' conversation writes to its sinks."""
    tile = agents[0].avatar.size
    return tile if len(agents) == 1 else canvas_size(tile, len(agents), duet.layout if duet else "side_by_side")


class Presenter:
    """Shows the agents on every sink, one frame per clock period, until `stop()` or cancelled."""

    def __init__(self, agents: Sequence[Agent], sinks: list[FrameSink], clock: Clock | FrameClock, book: ReplyBook,
                 post: Callable[[PlaybackNews], None], compositor: Compositor | None = None,
                 settle: Callable[[], Awaitable[None]] | None = None) -> None:  # fmt: skip
        self.agents = list(agents)
        self.sinks = sinks
        self.clock = clock
        self.book = book
        self.post = post
        self.compositor = compositor
        self.settle = settle  # waits until the conversation has acted on every event posted so far
        self.holding = False  # the avatars are paused: a frame planned just before the pause is silenced too
        self.unheard_s = 0.0  # speech of the paused reply that never reached the listener: replayed on resume
        self.frames_presented = 0
        self.samples_presented = 0
        self._stopped = False
        self._last: Reply | None = None  # the reply the previous frame carried
        self._voiced = False

    def stop(self) -> None:
        """Present no further frame: `run()` returns before making the next one."""
        self._stopped = True

    async def flush(self) -> float:
        """Flush every sink; returns the most audio any of them dropped unheard, in seconds."""
        dropped = 0.0
        for sink in self.sinks:
            dropped = max(dropped, await sink.flush())
        return dropped

    async def run(self) -> None:
        """Present frames until stopped."""
        fps = self.agents[0].avatar.fps
        start = self.clock.now()
        streams = [a.avatar.frames() for a in self.agents]
        try:
            while True:
                due = start + self.frames_presented / fps
                if isinstance(self.clock, FrameClock):
                    self.clock.advance_to(due)
                    await self._catch_up()
                else:  # ask for the frame shortly before it is due, so speech that arrives meanwhile makes it in
                    await self.clock.sleep_until(due - PLAN_AHEAD_S)
                if self._stopped:
                    return
                tiles = await _next_tiles(streams)
                frame = tiles[0] if self.compositor is None else self.compositor.compose(tiles)
                await self.clock.sleep_until(due)
                self._keep_voices(tiles)
                frame = self._censor(frame)
                for sink in self.sinks:
                    await sink.write(frame)
                self._account(frame)
        finally:
            for stream in streams:
                with contextlib.suppress(Exception):
                    await stream.aclose()  # type: ignore[attr-defined]

    async def _catch_up(self) -> None:
        """Frame clock: before a frame is made, everything due by its time has been acted on, and a reply just
        released has reached its avatar (so no idle frame is made while its speech is on its way)."""
        assert isinstance(self.clock, FrameClock)
        while True:
            if self.settle is not None:
                await self.settle()
            if self.clock.advance_to(self.clock.now()):
                continue  # what was due posted events: act on them too
            reply = self.book.current
            if reply is None or reply.reached_avatar.is_set():
                return
            await reply.reached_avatar.wait()

    def _keep_voices(self, tiles: list[AVFrame]) -> None:
        """Each reply's audio as heard, from its own agent's frames (a duet: the other agent's next turn)."""
        for tile in tiles:
            reply = self.book.get(tile.generation)
            if reply is not None and reply.keeps_voice and not self.holding:
                reply.voice.append(tile.audio)

    def _censor(self, frame: AVFrame) -> AVFrame:
        """Silence a frame of a cut-off reply, or one planned just before a pause (its speech comes again on resume)."""
        g = frame.generation
        if g is None or not (self.holding or self.book.silenced(g)):
            return frame
        if self.holding and frame.audio.any():
            self.unheard_s += len(frame.audio) / frame.audio_rate
        return replace(frame, audio=np.zeros_like(frame.audio), generation=None)

    def _account(self, frame: AVFrame) -> None:
        """Count what was played and tell the conversation what changed."""
        number = self.frames_presented
        self.frames_presented += 1
        self.samples_presented += len(frame.audio)
        now = self.clock.now()
        reply = self.book.get(frame.generation)
        if reply is not None and reply.note_played(frame, number):
            self.post(ReplyHeard(reply, now))
        if self._last is not None and reply is not self._last and not self.holding and self._last.finished.is_set():
            self.post(ReplyPlayedOut(self._last, now))
        self._last = reply
        voiced = frame.generation is not None
        if voiced != self._voiced:
            self._voiced = voiced
            self.post(AgentVoice(voiced, now))


async def _next_tiles(streams: list[AsyncIterator[AVFrame]]) -> list[AVFrame]:
    """Every avatar's next frame, rendered in parallel; one avatar's is awaited directly (a gather would cost the
    event loop three more turns a frame, and a served loop full of sessions turns slowly)."""
    if len(streams) == 1:
        return [await anext(streams[0])]
    return list(await asyncio.gather(*(anext(s) for s in streams)))
