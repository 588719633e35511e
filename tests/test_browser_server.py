"""The browser device's server on its own: who may connect, what bad messages do, and clean disconnects."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from browser_harness import scripted_server
from liveavatar.devices.browser.protocol import FRAME_HEADER, MAX_MESSAGE_BYTES
from liveavatar.devices.browser.server import BrowserServer
from test_conversation import LONG_LINE
from user_speech import GREETING, user_says

LINES = [LONG_LINE, "Another thing to say."]


async def next_event(ws, kind: str, timeout: float = 10.0) -> dict:  # noqa: ANN001
    """The next JSON event of `kind` (frames and other events are skipped)."""
    async def wait() -> dict:
        while True:
            message = await ws.recv()
            if isinstance(message, str) and json.loads(message)["type"] == kind:
                return json.loads(message)
    return await asyncio.wait_for(wait(), timeout)


def ws_url(server: BrowserServer, token: str | None = None) -> str:
    return f"ws://127.0.0.1:{server.port}/ws" + (f"?token={token}" if token else "")


def test_page_is_served_and_strangers_are_turned_away(examples: Path) -> None:
    async def scenario():
        async with scripted_server(examples, LINES) as (server, *_):
            import httpx

            async with httpx.AsyncClient() as http:
                page = await http.get(f"http://127.0.0.1:{server.port}/")
                script = await http.get(f"http://127.0.0.1:{server.port}/app.js")
                missing = await http.get(f"http://127.0.0.1:{server.port}/secret")
                rebound = await http.get(f"http://127.0.0.1:{server.port}/", headers={"Host": f"evil.example:{server.port}"})
            assert page.status_code == 200 and "<canvas id=\"avatar\"" in page.text
            assert script.status_code == 200 and "getUserMedia" in script.text
            assert missing.status_code == 404 and rebound.status_code == 403
            with pytest.raises(InvalidStatus) as foreign:
                async with connect(ws_url(server), origin="http://evil.example"):
                    pass
            assert foreign.value.response.status_code == 403
            async with connect(ws_url(server), origin=f"http://127.0.0.1:{server.port}") as ws:
                config = await next_event(ws, "config")
                assert config["fps"] == 25 and config["size"] == [256, 256] and config["audio_rate"] == 24000

    asyncio.run(scenario())


def test_another_address_needs_a_token(examples: Path) -> None:
    with pytest.raises(ValueError, match="give a --token"):
        BrowserServer(lambda session: asyncio.sleep(0), lambda: 0.0, host="0.0.0.0")

    async def scenario():
        async with scripted_server(examples, LINES, host="0.0.0.0", token="s3cret") as (server, *_):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url(server)):
                    pass
            assert refused.value.response.status_code == 401
            async with connect(ws_url(server, "s3cret")) as ws:
                assert (await next_event(ws, "config"))["fps"] == 25

    asyncio.run(scenario())


def test_bad_messages_get_an_error_and_the_connection_lives_on(examples: Path) -> None:
    async def scenario():
        async with scripted_server(examples, LINES, transport="websocket") as (server, *_):
            async with connect(ws_url(server)) as ws:
                await next_event(ws, "config")
                for bad, expected in [(b"\x07abc", "unknown binary message kind 0x07"), (b"\x01abc", "whole 16-bit samples"),
                                      (b"\x02notajpeg", "not a JPEG"), ("{not json", "not JSON"), ('{"type": "dance"}', "unknown message type 'dance'")]:  # fmt: skip
                    await ws.send(bad)
                    assert expected in (await next_event(ws, "error"))["message"]
                frame = await asyncio.wait_for(ws.recv(), 5)  # frames keep coming
                while isinstance(frame, str):
                    frame = await asyncio.wait_for(ws.recv(), 5)
                assert FRAME_HEADER.unpack_from(frame)[0] == 0x10
            async with connect(ws_url(server)) as ws:
                await next_event(ws, "config")
                await ws.send(b"\x01" + bytes(MAX_MESSAGE_BYTES))  # over the cap: the connection is closed
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
                assert closed.value.rcvd.code == 1009

    asyncio.run(scenario())


def test_one_page_at_a_time(examples: Path) -> None:
    async def scenario():
        async with scripted_server(examples, LINES) as (server, *_):
            async with connect(ws_url(server)) as first:
                await next_event(first, "config")
                async with connect(ws_url(server)) as second:
                    error = await next_event(second, "error")
                    assert "another page is already in this conversation" in error["message"]
                    with pytest.raises(ConnectionClosed):
                        await asyncio.wait_for(second.recv(), 5)
                    assert second.close_code == 1013

    asyncio.run(scenario())


def test_a_page_that_leaves_mid_reply_leaves_no_task_behind(examples: Path) -> None:
    hello = user_says(GREETING)
    speech = np.concatenate([np.zeros(8000, np.float32), hello, np.zeros(16000, np.float32)])
    pcm = (np.clip(speech, -1, 1) * 32767).astype("<i2").tobytes()

    async def scenario():
        async with scripted_server(examples, LINES, transport="websocket") as (server, agent, metrics, _):
            baseline = {t.get_name() for t in asyncio.all_tasks()}
            async with connect(ws_url(server)) as ws:
                await next_event(ws, "config")
                for start in range(0, len(pcm), 640):  # 20 ms of microphone per message, in real time
                    await ws.send(b"\x01" + pcm[start : start + 640])
                    await asyncio.sleep(0.02)
                speaking = False
                while not speaking:  # wait until the avatar is speaking, then leave
                    message = await asyncio.wait_for(ws.recv(), 10)
                    speaking = isinstance(message, bytes) and FRAME_HEADER.unpack_from(message)[3] >= 0
            await asyncio.sleep(1.0)
            left = {t.get_name() for t in asyncio.all_tasks()} - baseline
            assert not {name for name in left if name.startswith(("reply-", "conversation-", "browser-", "decide-"))}, left
            assert server.sessions == []
            async with connect(ws_url(server)) as ws:  # and the next page is welcome
                assert (await next_event(ws, "config"))["fps"] == 25

    asyncio.run(scenario())
