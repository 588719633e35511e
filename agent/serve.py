"""`liveavatar serve`: one server, many conversations. Each page gets its own agent (dialogue history, turn-taking,
avatar state, generation ids) for the persona it picks, built over models loaded once; it ends when the page closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from liveavatar.agent.agents import Agent, build_agent
from liveavatar.agent.clock import Clock
from liveavatar.agent.config import ConfigError, Persona
from liveavatar.agent.conversation import Conversation
from liveavatar.agent.memory import freeze_loaded_objects, release_freed_memory, settle_allocator, thaw_loaded_objects
from liveavatar.agent.metrics import MetricsLog
from liveavatar.agent.scheduler import ComputeScheduler
from liveavatar.devices.browser.server import BrowserServer, BrowserSession, Transport
from liveavatar.devices.browser.vp8 import DEFAULT_VIDEO_BITRATE
from liveavatar.devices.end_of_turn import SmartTurn
from liveavatar.devices.sink import FrameSink
from liveavatar.devices.vad import SileroVAD, load_model
from liveavatar.media.plugins import SharedModels

EventPrinter = Callable[[str, dict[str, Any]], None]  # (session id, event)
PERSONA_WAIT_S = 600.0  # a page that never picks a persona gives its seat back after this long


@dataclass(frozen=True)
class ServeOptions:
    """How the server runs: where, how many at once, how media travels, the avatar's picture and sound."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    max_sessions: int = 4
    transport: Transport = "webrtc"
    ice_servers: tuple = ()  # devices.browser.webrtc.IceServer entries
    video_bitrate: int = DEFAULT_VIDEO_BITRATE  # webrtc: each page's avatar video at most this many bits per second
    size: tuple[int, int] = (512, 512)
    fps: float = 25.0
    audio_rate: int = 24000


class SessionFactory:
    """Fresh agents for each page over models loaded once: the heavy parts come from `shared`, the state is new."""

    def __init__(self, personas: list[Persona], options: ServeOptions, scheduler: ComputeScheduler) -> None:
        names = [p.name for p in personas]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            lines = [f"{p.source}: name: {p.name!r} is used by another persona; each needs its own name" for p in personas if p.name in twice]
            raise ConfigError(list(dict.fromkeys(lines)))  # one file given twice is named once
        self.personas = {p.name: p for p in personas}
        self.options = options
        self.scheduler = scheduler
        self.shared = SharedModels()
        self.vad_model: object | None = None
        self.end_of_turn: SmartTurn | None = None  # one end-of-turn model for every page (it judges one pause at a time)

    @property
    def names(self) -> list[str]:
        """The personas a page may pick, in the order given."""
        return list(self.personas)

    async def load(self) -> None:
        """Load every model once (building and closing one agent per persona), on the low-priority threads."""
        self.vad_model = await self.scheduler.run(load_model)
        if any(p.turn_taking.end_of_turn_model for p in self.personas.values()):
            self.end_of_turn = await self.scheduler.run(SmartTurn)
        for name in self.personas:
            agent = await self.build(name)
            await agent.aclose()

    async def build(self, name: str) -> Agent:
        """A new agent for `name` (its own history, avatar and turn state); KeyError for an unknown persona."""
        persona = self.personas[name]
        size, fps, rate = self.options.size, self.options.fps, self.options.audio_rate
        return await self.scheduler.run(lambda: build_agent(persona, size, fps, rate, "silence", shared=self.shared, executor=self.scheduler.compute))

    def vad(self) -> SileroVAD:
        """A voice detector with its own stream state over the one loaded model."""
        return SileroVAD(model=self.vad_model)


class SessionServer:
    """Holds the browser server and runs one conversation per connected page."""

    def __init__(self, personas: list[Persona], options: ServeOptions, on_event: EventPrinter | None = None,
                 metrics_path: Path | None = None) -> None:  # fmt: skip
        self.options = options
        self.scheduler = ComputeScheduler(options.max_sessions)
        self.factory = SessionFactory(personas, options, self.scheduler)
        self.on_event = on_event
        self.clock = Clock()
        self._ids = itertools.count(1)
        self._releasing: set[asyncio.Task] = set()
        self._metrics_file: IO[str] | None = metrics_path.open("a", encoding="utf-8") if metrics_path else None
        self.finished: list[tuple[str, str, MetricsLog]] = []  # (session id, persona, turns) of the last sessions
        width, height = options.size
        config = {"fps": options.fps, "audio_rate": options.audio_rate, "size": [width, height], "personas": self.factory.names,
                  "camera": [p.name for p in personas if p.looks_at_camera]}
        busy = f"all seats are taken: {options.max_sessions} conversations are in progress on this server; try again in a moment"
        self.server = BrowserServer(self._run_session, self.clock.now, options.host, options.port, options.token, config=config,
                                    transport=options.transport, ice_servers=options.ice_servers, video_bitrate=options.video_bitrate,
                                    max_sessions=options.max_sessions,
                                    busy_message=busy)  # fmt: skip

    async def start(self) -> None:
        """Load the models, then start listening."""
        settle_allocator()
        self.scheduler.install(asyncio.get_running_loop())
        await self.factory.load()
        if self.options.transport == "webrtc":  # imported now, its 15,000 objects are frozen with the models
            importlib.import_module("liveavatar.devices.browser.webrtc")
        await self.server.start()
        freeze_loaded_objects()  # once started: a server that could not start leaves nothing frozen

    async def aclose(self) -> None:
        """End every session, stop listening, stop the worker threads."""
        await self.server.aclose()
        await asyncio.gather(*self._releasing, return_exceptions=True)
        await self.scheduler.aclose()
        thaw_loaded_objects()
        if self._metrics_file is not None:
            self._metrics_file.close()

    async def _run_session(self, session: BrowserSession) -> None:
        session_id = f"s{next(self._ids)}"
        try:
            hello = await asyncio.wait_for(asyncio.shield(session.hello), PERSONA_WAIT_S)
        except asyncio.TimeoutError:
            await session.send_event({"type": "error", "message": "no persona was picked; reload the page to start again"})
            return
        name = hello.get("persona") or self.factory.names[0]
        if name not in self.factory.personas:
            await session.send_event({"type": "error", "message": f"unknown persona {name!r}; this server has: {', '.join(self.factory.names)}"})
            return
        building = asyncio.ensure_future(self.factory.build(name))
        try:
            agent = await asyncio.shield(building)
        except asyncio.CancelledError:  # the page left while its agent was being built: close it once it is
            with contextlib.suppress(Exception):
                await (await building).aclose()
            raise
        metrics = MetricsLog()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def post(event: dict[str, Any]) -> None:
            outbox.put_nowait(event)
            self._note(session_id, name, event)

        async def send_events() -> None:
            while True:
                await session.send_event(await outbox.get())

        sender = asyncio.create_task(send_events(), name=f"serve-events-{session_id}")
        await session.send_event({"type": "session", "id": session_id, "persona": name})
        self._note(session_id, name, {"type": "session", "state": "started"})
        conversation = Conversation(agent, session, self.sinks_for(session, session_id), self.clock, metrics=metrics, on_event=post,
                                    vad=self.factory.vad(), camera=lambda: session.camera, end_of_turn=self.factory.end_of_turn)  # fmt: skip
        try:
            await conversation.run()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await agent.aclose()
            trim = asyncio.create_task(self._release_after(session), name=f"serve-release-{session_id}")
            self._releasing.add(trim)
            trim.add_done_callback(self._releasing.discard)
            self.finished = [*self.finished[-99:], (session_id, name, metrics)]
            self._note(session_id, name, {"type": "session", "state": "ended", "turns": len(metrics.turns)})

    async def _release_after(self, session: BrowserSession) -> None:
        """Once the page's session is torn down (its media connection too), give its memory back to the system."""
        await session.ended.wait()
        gc.collect()  # a session's objects are full of cycles (callbacks, emitters): free them now, not at some later sweep
        await asyncio.get_running_loop().run_in_executor(self.scheduler.compute, release_freed_memory)

    def sinks_for(self, session: BrowserSession, session_id: str) -> list[FrameSink]:
        """Where a session's frames go: its page."""
        return [session]

    def _note(self, session_id: str, persona: str, event: dict[str, Any]) -> None:
        if self._metrics_file is not None and event.get("type") == "metrics":
            self._metrics_file.write(json.dumps({"session": session_id, "persona": persona, **{k: v for k, v in event.items() if k != "type"}}) + "\n")
            self._metrics_file.flush()
        if self.on_event is not None:
            self.on_event(session_id, {"persona": persona, **event})


async def serve(personas: list[Persona], options: ServeOptions, on_event: EventPrinter | None = None,
                ready: Callable[[BrowserServer], None] | None = None, metrics_path: Path | None = None) -> None:  # fmt: skip
    """Serve the page until cancelled: up to `options.max_sessions` conversations at once, each with the persona it picks."""
    server = SessionServer(personas, options, on_event, metrics_path)
    try:
        await server.start()
        if ready is not None:
            ready(server.server)
        await asyncio.Event().wait()
    finally:
        await server.aclose()
