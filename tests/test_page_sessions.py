"""Each page that connects gets a fresh conversation: nothing of the previous visitor, and a voice that works."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect

from browser_harness import scripted_server
from liveavatar.devices.browser.protocol import FRAME_HEADER
from user_speech import GREETING, user_says

LINES = ["Welcome, first visitor.", "Nice to see you again."]


async def visit(port: int, speech: np.ndarray, leave_mid_reply: bool = False) -> tuple[list[dict], float]:
    """One page: say `speech`, listen until the answer has played (or has begun, when leaving mid-reply);
    returns its JSON events and the loudest answer frame's RMS."""
    pcm = (np.clip(np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)]), -1, 1) * 32767).astype("<i2").tobytes()
    events: list[dict] = []
    loudest = 0.0
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws:

        async def talk() -> None:
            for start in range(0, len(pcm), 640):  # 20 ms of microphone per message, in real time
                await ws.send(b"\x01" + pcm[start : start + 640])
                await asyncio.sleep(0.02)

        talking = asyncio.create_task(talk())
        try:
            async with asyncio.timeout(40):
                while not any(e.get("type") == "metrics" for e in events):  # the reply has played to its end
                    message = await ws.recv()
                    if isinstance(message, str):
                        events.append(json.loads(message))
                    else:
                        kind, _, jpeg_bytes, generation, rate10, _ = FRAME_HEADER.unpack_from(message)
                        audio = np.frombuffer(message[FRAME_HEADER.size + jpeg_bytes :], "<i2").astype(np.float32) / 32768
                        if generation >= 0 and len(audio):
                            loudest = max(loudest, float(np.sqrt(np.mean(audio**2))))
                        if leave_mid_reply and loudest > 0.01:
                            return events, loudest
        finally:
            talking.cancel()
    return events, loudest


def said(events: list[dict]) -> str:
    return " ".join(e["text"] for e in events if e.get("type") == "transcript" and e.get("role") == "agent" and not e.get("delta"))


async def gone(server) -> None:  # noqa: ANN001 - a BrowserServer
    """Wait until the page that left has its conversation wound down."""
    async with asyncio.timeout(10):
        while server.sessions:
            await asyncio.sleep(0.05)


def test_a_second_page_sees_nothing_of_the_first_and_is_answered_aloud(examples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from liveavatar.devices.end_of_turn import SmartTurn

    hello = user_says(GREETING)
    loads: list[SmartTurn] = []
    load = SmartTurn.__init__

    def counted_load(model: SmartTurn, *args: object, **kwargs: object) -> None:
        loads.append(model)
        load(model, *args, **kwargs)

    monkeypatch.setattr(SmartTurn, "__init__", counted_load)  # the real model still loads: this only counts

    async def scenario() -> None:
        async with scripted_server(examples, LINES, size=(128, 128), transport="websocket") as (server, agent, _, _):
            first, first_rms = await visit(server.port, hello)
            assert said(first) == LINES[0] and first_rms > 0.01
            await gone(server)
            _, left_rms = await visit(server.port, hello, leave_mid_reply=True)  # a visitor who leaves mid-answer
            assert left_rms > 0.01
            await gone(server)
            second, second_rms = await visit(server.port, hello)
            assert LINES[0] in said(second) and LINES[1] not in said(second), "the second visitor started mid-script"
            assert second_rms > 0.01, "the second visitor's answer was silent"
            [metrics] = [e for e in second if e["type"] == "metrics"]
            assert metrics["turn"] == 1 and metrics["reply_text"] == LINES[0]
            assert agent.dialogue.history == [("assistant", LINES[0])]  # the agent remembers only this visitor

    asyncio.run(scenario())
    assert len(loads) == 1, "each page loaded its own end-of-turn model instead of sharing the server's"


def test_every_dialogue_backend_and_avatar_can_start_a_fresh_conversation() -> None:
    from liveavatar.avatar import registry as avatars
    from liveavatar.avatar.base import AvatarGenerator
    from liveavatar.dialogue import registry as dialogues
    from liveavatar.dialogue.base import DialogueBackend

    missing = []
    for registry, base in ((dialogues, DialogueBackend), (avatars, AvatarGenerator)):
        for name, module_name in registry.BACKENDS.items():
            module = __import__(module_name, fromlist=["create"])
            classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, base) and c is not base]
            assert classes, module_name
            missing += [f"{name}: {c.__name__}" for c in classes if c.reset is base.reset]
    assert not missing, f"no reset(): {missing}"


def test_an_omni_agent_forgets_the_previous_visitor() -> None:
    import httpx

    from liveavatar.dialogue.base import UserTurn
    from liveavatar.dialogue.omni_server import OmniServerBackend, Options

    reply = b'data: {"choices": [{"delta": {"content": "Hi."}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    requests: list[dict] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(json.loads(request.content))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=reply)

    async def two_visitors() -> None:
        backend = OmniServerBackend(Options(base_url="http://omni.test/v1"), "You are Ada.")
        backend._client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        async for _ in backend.reply(UserTurn(text="My name is Bob and my PIN is 1234.")):
            pass
        backend.reset()
        async for _ in backend.reply(UserTurn(text="What is my PIN?")):
            pass
        await backend.aclose()

    asyncio.run(two_visitors())
    assert "1234" in json.dumps(requests[0]) and "1234" not in json.dumps(requests[1])
