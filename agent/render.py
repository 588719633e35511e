"""Offline duets (`liveavatar duet DUET.yaml --out F.mp4`): the conversation engine on a frame clock, with no one
listening and avatars that wait for speech, written as fast as the machine allows.

Because time is frames / fps, a slow reply never bakes a gap into the video: the turn order, history,
gaps, limits, layout and captions are those of the live duet, and the video is the same however slow
the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from liveavatar.agent.agents import Agent, build_agent
from liveavatar.agent.clock import FrameClock
from liveavatar.agent.config import Persona
from liveavatar.agent.conversation import Conversation
from liveavatar.agent.duet_plan import DuetPlan
from liveavatar.agent.metrics import MetricsLog
from liveavatar.agent.presenter import picture_size
from liveavatar.agent.replies import Reply, ReplyState
from liveavatar.devices.mp4 import MP4Sink
from liveavatar.devices.sink import FrameSink
from liveavatar.media import AVFrame


@dataclass
class TurnRecord:
    """One spoken turn: who, what (text), which generation, its first/last frame in the video and its samples there."""

    speaker: str
    generation: int
    text: str
    first_frame: int
    last_frame: int
    samples: int
    cut: bool = False  # the video's time limit ended it before the reply's end


@dataclass
class RenderResult:
    """What was rendered, and how fast."""

    frames: int
    fps: float
    turns: list[TurnRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # dialogue failures; the duet went on without that turn
    wall_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        """Length of the video."""
        return self.frames / self.fps

    @property
    def realtime_factor(self) -> float:
        """Seconds of video per second of wall time."""
        return self.seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


FrameCallback = Callable[[AVFrame, RenderResult], None]


class _Progress(FrameSink):
    """Counts frames into the result and calls `on_frame` after each."""

    def __init__(self, result: RenderResult, on_frame: FrameCallback | None) -> None:
        self.result = result
        self.on_frame = on_frame

    async def write(self, frame: AVFrame) -> None:
        self.result.frames += 1
        if self.on_frame is not None:
            self.on_frame(frame, self.result)

    async def aclose(self) -> None:
        """Nothing to release."""


async def render(agents: Sequence[Agent], plan: DuetPlan, sinks: list[FrameSink], on_frame: FrameCallback | None = None,
                 metrics: MetricsLog | None = None) -> RenderResult:  # fmt: skip
    """Render the duet of `agents` (avatars with underrun "wait") following `plan` into `sinks`; returns what was rendered."""
    result = RenderResult(0, plan.fps)

    def collect(reply: Reply) -> None:
        if reply.error:
            result.errors.append(f"{reply.speaker.name}: {reply.error}")
        if reply.samples_played and reply.first_frame is not None and reply.last_frame is not None:
            result.turns.append(TurnRecord(reply.speaker.name, reply.generation, reply.text, reply.first_frame, reply.last_frame,
                                           reply.samples_played, cut=reply.state is ReplyState.INTERRUPTED))  # fmt: skip

    started = time.perf_counter()
    conversation = Conversation(agents, None, [*sinks, _Progress(result, on_frame)], FrameClock(plan.fps), metrics=metrics,
                                duet=plan, on_reply_closed=collect)  # fmt: skip
    try:
        await conversation.run(until=max(plan.max_seconds, 1 / plan.fps))  # a video has at least one frame
    finally:
        result.wall_seconds = time.perf_counter() - started
    return result


def offline_agents(plan: DuetPlan, personas: Sequence[Persona], seed: int = 0) -> list[Agent]:
    """The personas' agents for an offline render of `plan`: frames wait for speech, each agent its own seed."""
    return [build_agent(p, plan.size, plan.fps, plan.audio_rate, underrun="wait", seed=seed + i) for i, p in enumerate(personas)]


async def render_duet(plan: DuetPlan, personas: Sequence[Persona], out: Path | str, on_frame: FrameCallback | None = None,
                      seed: int = 0) -> RenderResult:  # fmt: skip
    """Render two personas talking, following `plan`, to the MP4 file `out`; the file is finished even when the
    render is interrupted (Ctrl-C)."""
    started = time.perf_counter()
    agents: list[Agent] = []
    try:
        agents = offline_agents(plan, personas, seed)
        sink = MP4Sink(out, picture_size(agents, plan), plan.fps, plan.audio_rate)
        try:
            result = await render(agents, plan, [sink], on_frame)
        finally:
            await sink.aclose()
    finally:
        for agent in agents:
            await agent.aclose()
    result.wall_seconds = time.perf_counter() - started
    return result
