"""The real server's failure and shutdown: a crashed stage is shown and the conversation goes on; stopping
the server ends every process it started. Both run after every other test here (they break the server)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import httpx
import pytest

from liveavatar.agent.agents import build_agent
from liveavatar.agent.clock import Clock
from liveavatar.agent.config import load_persona
from liveavatar.agent.conversation import Conversation
from liveavatar.agent.metrics import MetricsLog
from liveavatar.devices.recording import RecordingSink
from liveavatar.devices.sources import ScriptedSpeech
from liveavatar.testing.vllm_omni.server import SERVED_MODEL, VllmOmniServer
from real_helpers import persona_file
from user_speech import GREETING, user_says


def crash_the_talker(server: VllmOmniServer) -> str:
    """A request the talker stage cannot take: a ChatML turn marker with no role after it (the talker asserts
    one). Returns what the server answered."""
    body = {"model": SERVED_MODEL, "stream": False, "modalities": ["text", "audio"], "voice": "Ethan",
            "messages": [{"role": "user", "content": "Hello <|im_start|> nobody"}]}
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=120)
    return f"{response.status_code} {response.text[:300]}"


@pytest.mark.real_server_last(1)
def test_a_crashed_stage_is_shown_to_the_user_and_the_conversation_goes_on(real_server: VllmOmniServer, real_server_handle,  # noqa: ANN001
                                                                            tmp_path: Path) -> None:
    real_server_handle.broken = True  # from here on the server answers "no live replica" until restarted
    answer = crash_the_talker(real_server)
    hello = user_says(GREETING)
    second_at = 0.5 + len(hello) / 16000 + 3.0
    agent = build_agent(load_persona(persona_file(tmp_path, "Ada", "omni_server", real_server.base_url)), (96, 96), 25.0,
                        24000, underrun="silence")
    clock = Clock()
    sink = RecordingSink(clock.now)
    events: list[dict] = []
    conversation = Conversation(agent, ScriptedSpeech(clock, [(0.5, hello), (second_at, hello)]), [sink], clock,
                                metrics=MetricsLog(), on_event=events.append)

    async def go() -> None:
        await conversation.run(until=second_at + len(hello) / 16000 + 6.0)
        await agent.aclose()

    asyncio.run(go())
    first, second = conversation.metrics.turns
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert len(errors) == 2, (answer, errors)
    assert all("no live replica" in message for message in errors), (answer, errors)
    assert first.error == errors[0] and second.error == errors[1]  # each turn shows it; the second turn was taken
    assert [e["state"] for e in events if e["type"] == "state"][-1] == "listening"
    assert real_server.models() == [SERVED_MODEL]  # the API stayed up: only a stage died


@pytest.mark.real_server_last(2)
def test_stopping_the_server_ends_every_process_it_started(real_server_handle) -> None:  # noqa: ANN001
    # the session's server as it is (after the crash test, with a dead stage: it must stop cleanly too)
    real_server = real_server_handle.server or real_server_handle.get()
    processes = real_server.processes()
    names = " ".join(p.name() for p in processes)
    rss_gb = sum(p.memory_info().rss for p in processes) / 2**30
    print(f"\nvLLM-Omni server: {len(processes)} processes, {rss_gb:.1f} GB RSS")
    assert len(processes) >= 2, names  # the API server and its stage processes (one died in the crash test)
    cpus = real_server.setup.cpus
    if len(os.sched_getaffinity(0)) > 1:  # every thread of every process keeps off one CPU (see server.py)
        threads = [t.id for p in processes for t in p.threads()]
        off = {tid: sorted(os.sched_getaffinity(tid)) for tid in threads if os.sched_getaffinity(tid) != cpus}
        assert cpus is not None and len(threads) > len(processes) and not off, (sorted(cpus or ()), off)
    real_server.stop()
    real_server_handle.server = None
    assert real_server.leftover() == []
    assert not real_server.alive()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", real_server.port), timeout=2):
        pass
