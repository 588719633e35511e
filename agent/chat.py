"""`liveavatar chat`: one persona, live, through the browser page, local devices, or a WAV file."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from liveavatar.agent.agents import Agent, build_agent
from liveavatar.agent.clock import Clock
from liveavatar.agent.config import Persona
from liveavatar.agent.conversation import Conversation
from liveavatar.agent.duet_plan import DuetPlan
from liveavatar.agent.metrics import MetricsLog
from liveavatar.agent.presenter import picture_size
from liveavatar.devices.browser.server import BrowserServer, BrowserSession
from liveavatar.devices.browser.vp8 import DEFAULT_VIDEO_BITRATE
from liveavatar.devices.end_of_turn import SmartTurn
from liveavatar.devices.sink import FrameSink
from liveavatar.devices.sources import AudioSource

Printer = Callable[[dict[str, Any]], None]


def make_agent(persona: Persona, size: tuple[int, int] = (512, 512), fps: float = 25.0, audio_rate: int = 24000) -> Agent:
    """The persona's agent for live use (frames pulled at real time; a slow reply pads with silence)."""
    return build_agent(persona, size, fps, audio_rate, underrun="silence")


async def serve_browser(agent: Agent | list[Agent], host: str, port: int, token: str | None, metrics: MetricsLog,
                        on_event: Printer | None = None, ready: Callable[[BrowserServer], None] | None = None,
                        duet: DuetPlan | None = None, transport: str = "webrtc", ice_servers: tuple = (),
                        video_bitrate: int = DEFAULT_VIDEO_BITRATE) -> None:  # fmt: skip
    """Serve the page until cancelled; each connected page gets a fresh conversation (or live duet) with the agent(s),
    all sharing one end-of-turn model loaded before the page is served."""
    clock = Clock()
    agents = agent if isinstance(agent, list) else [agent]
    end_of_turn = await asyncio.to_thread(SmartTurn) if agents[0].persona.turn_taking.end_of_turn_model else None

    async def run_session(session: BrowserSession) -> None:
        for each in agents:  # a fresh conversation: nothing of the previous page is heard, said or shown
            each.dialogue.reset()
            each.avatar.reset()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def post(event: dict[str, Any]) -> None:
            outbox.put_nowait(event)
            if on_event is not None:
                on_event(event)

        async def send_events() -> None:
            while True:
                await session.send_event(await outbox.get())

        sender = asyncio.create_task(send_events(), name="browser-events")
        conversation = Conversation(agents, session, [session], clock, metrics=metrics, on_event=post, camera=lambda: session.camera, duet=duet,
                                    end_of_turn=end_of_turn)  # fmt: skip
        try:
            await conversation.run(None if duet is None else clock.now() + duet.max_seconds)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    config = {"fps": agents[0].avatar.fps, "audio_rate": agents[0].avatar.audio_rate, "size": list(picture_size(agents, duet)),
              "name": " & ".join(a.name for a in agents)}  # fmt: skip
    config["camera"] = [config["name"]] if any(a.persona.looks_at_camera for a in agents) else []
    server = BrowserServer(run_session, clock.now, host, port, token, config=config, transport=transport, ice_servers=ice_servers,
                           video_bitrate=video_bitrate)  # fmt: skip
    try:
        await server.start()
        if ready is not None:
            ready(server)
        await asyncio.Event().wait()
    finally:
        await server.aclose()
        if end_of_turn is not None:
            end_of_turn.close()


async def converse(agent: Agent | list[Agent], source: AudioSource, sinks: list[FrameSink], metrics: MetricsLog, clock: Clock,
                   until: float | None = None, on_event: Printer | None = None, duet: DuetPlan | None = None) -> Conversation:  # fmt: skip
    """Run one conversation (or live duet) with local or file devices until `until` (clock seconds) or the source ends."""
    conversation = Conversation(agent, source, sinks, clock, metrics=metrics, on_event=on_event, duet=duet)
    try:
        await conversation.run(until, play_out=True)  # a file source's last reply is played (and recorded) to its end
    finally:
        for sink in sinks:
            await sink.aclose()
        await source.aclose()
    return conversation


def metrics_log(path: Path | None) -> MetricsLog:
    """Where per-turn metrics go (JSON lines), if anywhere."""
    return MetricsLog(path)
