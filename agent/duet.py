"""Two agents taking turns, rendered offline: each one's played speech is the other's next user turn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from agent.agents import Agent
from agent.compose import Compositor
from devices.sink import FrameSink
from dialogue.base import DialogueError, TextDelta, UserTurn
from media import AudioChunk, AVFrame


@dataclass(frozen=True)
class DuetLimits:
    """When the duet starts, pauses and stops (seconds are of rendered video)."""

    max_turns: int = 12
    max_seconds: float = 300.0
    turn_gap_s: float = 0.4
    lead_in_s: float = 0.8
    tail_s: float = 1.0


@dataclass
class TurnRecord:
    """One spoken turn: who, what (text), which generation, and its first/last frame in the video."""

    speaker: str
    generation: int
    text: str = ""
    first_frame: int | None = None
    last_frame: int | None = None
    samples: int = 0  # speech samples that reached the video


@dataclass
class DuetResult:
    """What was rendered."""

    frames: int
    fps: float
    turns: list[TurnRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # dialogue failures; the duet went on without that turn

    @property
    def seconds(self) -> float:
        """Length of the video."""
        return self.frames / self.fps


class DuetRenderer:
    """Renders a duet as fast as the machine allows; both avatars advance frame by frame in lockstep.

    The avatars must use the "wait" underrun policy, so a slow reply never bakes a gap into the video.
    """

    def __init__(self, agents: tuple[Agent, Agent], compositor: Compositor, sink: FrameSink, limits: DuetLimits,
                 opening: str | None = None, on_frame: Callable[[AVFrame, DuetResult], None] | None = None) -> None:  # fmt: skip
        self.agents = agents
        self.compositor = compositor
        self.sink = sink
        self.limits = limits
        self.opening = opening
        self.on_frame = on_frame
        self.fps = agents[0].avatar.fps
        self.result = DuetResult(0, self.fps)
        self._streams: list[AsyncIterator[AVFrame]] = [a.avatar.frames() for a in agents]
        self._max_frames = int(round(limits.max_seconds * self.fps))

    async def run(self) -> DuetResult:
        """Render the whole duet into the sink; returns the turn log."""
        try:
            await self._idle(self.limits.lead_in_s)
            turn = UserTurn(text=self.opening) if self.opening else UserTurn()
            silent_in_a_row = 0
            for number in range(self.limits.max_turns):
                if self._full():
                    break
                speaker = self.agents[number % 2]
                record, played = await self._speak(speaker, number + 1, turn)
                if record is None:
                    silent_in_a_row += 1
                    if silent_in_a_row == 2:
                        break  # neither agent has anything more to say
                    continue
                silent_in_a_row = 0
                self.result.turns.append(record)
                turn = UserTurn(audio=played, text=record.text or None)
                # The frame that showed the reply had ended is the first frame of the pause.
                await self._idle(self.limits.turn_gap_s, already=1)
            await self._idle(self.limits.tail_s)
        finally:
            for stream in self._streams:
                with contextlib.suppress(Exception):
                    await stream.aclose()  # type: ignore[attr-defined]
        return self.result

    def _full(self) -> bool:
        return self.result.frames >= self._max_frames

    async def _pull(self) -> list[AVFrame]:
        """Next frame of every avatar, composed and written to the sink."""
        frames = list(await asyncio.gather(*(anext(s) for s in self._streams)))  # avatars render in parallel
        composed = self.compositor.compose(frames)
        await self.sink.write(composed)
        self.result.frames += 1
        if self.on_frame is not None:
            self.on_frame(composed, self.result)
        return frames

    async def _idle(self, seconds: float, already: int = 0) -> None:
        """Render `seconds` of video (less `already` frames) while nobody speaks."""
        for _ in range(int(round(seconds * self.fps)) - already):
            if self._full():
                return
            await self._pull()

    async def _speak(self, speaker: Agent, generation: int, turn: UserTurn) -> tuple[TurnRecord | None, AudioChunk | None]:
        """One reply from `speaker`, played to its end; returns its record and the speech as heard."""
        index = self.agents.index(speaker)
        record = TurnRecord(speaker.name, generation)
        started = asyncio.Event()
        pushed = 0

        async def feed() -> None:
            nonlocal pushed
            try:
                async for event in speaker.dialogue.reply(turn):
                    if isinstance(event, TextDelta):
                        record.text += event.text
                    elif len(event.pcm):
                        speaker.avatar.push(event, generation)
                        pushed += 1
                        started.set()
            except DialogueError as exc:
                self.result.errors.append(f"{speaker.name}: {exc}")
            finally:
                speaker.avatar.end(generation)
                started.set()

        feeder = asyncio.create_task(feed(), name=f"duet-reply-{speaker.name}-{generation}")
        heard: list[np.ndarray] = []
        try:
            await started.wait()
            while pushed and not self._full():
                mine = (await self._pull())[index]
                if mine.generation == generation:
                    heard.append(mine.audio)
                    record.first_frame = self.result.frames - 1 if record.first_frame is None else record.first_frame
                    record.last_frame = self.result.frames - 1
                elif heard:
                    break  # the reply has played to its end
            if feeder.done():
                feeder.result()  # re-raise anything but a DialogueError
        finally:
            if not feeder.done():  # stopped by the time limit: drop the rest of this reply
                speaker.avatar.clear()
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
        if not heard:
            return None, None
        pcm = np.concatenate(heard)
        record.samples = len(pcm)
        speaker.dialogue.record_played(record.text, turn)
        return record, AudioChunk(pcm, speaker.avatar.audio_rate)
