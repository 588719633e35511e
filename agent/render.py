"""`liveavatar duet`: load a duet YAML, build both agents and render the conversation to an MP4."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.agents import Agent, build_agent
from agent.compose import Compositor
from agent.config import Duet
from agent.duet import DuetLimits, DuetRenderer, DuetResult
from devices.mp4 import MP4Sink
from media import AVFrame


@dataclass(frozen=True)
class RenderStats:
    """How the render went."""

    result: DuetResult
    wall_seconds: float

    @property
    def realtime_factor(self) -> float:
        """Seconds of video per second of wall time."""
        return self.result.seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


async def render_duet(
    duet: Duet,
    out: Path,
    max_seconds: float | None = None,
    max_turns: int | None = None,
    on_frame: Callable[[AVFrame, DuetResult], None] | None = None,
    seed: int = 0,
) -> RenderStats:
    """Render `duet` to the MP4 file `out`; the file is finished even when the render is interrupted."""
    spec = duet.spec
    started = time.perf_counter()
    agents: list[Agent] = []
    try:
        for i, persona in enumerate(duet.personas):
            agents.append(build_agent(persona, spec.size, spec.fps, spec.audio_rate, underrun="wait", seed=seed + i))
        compositor = Compositor(spec.size, 2, spec.layout, [a.name for a in agents] if spec.captions else None)
        limits = DuetLimits(
            max_turns=max_turns or spec.max_turns,
            max_seconds=max_seconds or spec.max_seconds,
            turn_gap_s=spec.turn_gap_s,
            lead_in_s=spec.lead_in_s,
            tail_s=spec.tail_s,
        )
        sink = MP4Sink(out, compositor.size, spec.fps, spec.audio_rate)
        try:
            renderer = DuetRenderer((agents[0], agents[1]), compositor, sink, limits, spec.opening, on_frame)
            result = await renderer.run()
        finally:
            await sink.aclose()
    finally:
        for agent in agents:
            await agent.aclose()
    return RenderStats(result, time.perf_counter() - started)
