"""`omni_realtime` on what the real vLLM-Omni cannot be made to do on cue: the docs' event names, a connection
cut mid-reply, a malformed frame, an error mid-reply, no server at all. A small WebSocket stand-in plays
each; everything else is tested against the real server (tests/omni_real)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from liveavatar.dialogue.base import DialogueError, UserTurn
from liveavatar.dialogue.omni import realtime_wire as wire
from liveavatar.dialogue.omni_realtime import OmniRealtimeBackend, Options, realtime_url
from liveavatar.media import AudioChunk
from omni_helpers import collect, speech_turn

Script = Callable[[ServerConnection], "asyncio.Future[None] | object"]


def pcm16_b64(samples: int) -> str:
    return base64.b64encode((np.arange(samples) % 100).astype("<i2").tobytes()).decode("ascii")


@asynccontextmanager
async def standin(after_commit: Callable[[ServerConnection], object]) -> AsyncIterator[tuple[str, list[dict]]]:
    """A realtime endpoint that records the client's events and, after the final commit, runs `after_commit`."""
    received: list[dict] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "session.created"}))
        async for message in ws:
            event = json.loads(message)
            received.append(event)
            if event["type"] == "input_audio_buffer.commit" and event.get("final"):
                await after_commit(ws)  # type: ignore[misc]
                return

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/v1", received


def backend(base_url: str, **options: object) -> OmniRealtimeBackend:
    return OmniRealtimeBackend(Options(base_url=base_url, connect_timeout_s=2.0, chunk_timeout_s=2.0, **options), "You are Ada.")


def test_the_docs_event_names_work_as_well_and_the_client_speaks_the_protocol() -> None:
    async def reply(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "transcription.delta", "delta": "Hi"}))
        await ws.send(json.dumps({"type": "response.audio.delta", "delta": pcm16_b64(2400), "sample_rate_hz": 24000}))
        await ws.send(json.dumps({"type": "transcription.done", "text": "Hi", "usage": {"prompt_tokens": 17}}))
        await ws.send(json.dumps({"type": "response.audio.done"}))

    async def go():  # noqa: ANN202
        async with standin(reply) as (url, received):
            rt = backend(url, append_ms=100)
            turn = speech_turn(0.5, 48000)  # resampled to 16 kHz, sent whole (no live session)
            got = await collect(rt, turn)
            await rt.aclose()
            return got, received, rt.last_realtime_trace

    got, received, trace = asyncio.run(go())
    assert got.error is None and got.text == "Hi" and [len(c.pcm) for c in got.chunks] == [2400]
    assert got.chunks[0].rate == 24000 and trace.prompt_tokens == 17
    kinds = [e["type"] for e in received]
    assert kinds[:2] == ["session.update", "input_audio_buffer.commit"] and received[1]["final"] is False
    assert received[0]["model"] == "Qwen/Qwen3-Omni-30B-A3B-Instruct"
    assert kinds[-1] == "input_audio_buffer.commit" and received[-1]["final"] is True
    appended = [e for e in received if e["type"] == "input_audio_buffer.append"]
    samples = sum(len(base64.b64decode(e["audio"])) // 2 for e in appended)
    assert samples == 8000 and len(appended) == 5  # 0.5 s at 16 kHz in 100 ms appends


@pytest.mark.parametrize(("fault", "message"), [
    ("cut", "closed the connection mid-reply"),
    ("malformed", "malformed event"),
    ("error", "reported an error: CUDA out of memory (processing_error)"),
    ("silent", "sent nothing for 1.0 s"),
])
def test_faults_mid_reply_are_reported_and_the_next_turn_works(fault: str, message: str) -> None:
    turns = {"n": 0}

    async def reply(ws: ServerConnection) -> None:
        turns["n"] += 1
        if turns["n"] > 1:  # the next turn, on a new connection: a normal reply
            await ws.send(json.dumps({"type": "response.output_audio.delta", "audio": pcm16_b64(480)}))
            await ws.send(json.dumps({"type": "response.output_audio.done", "has_audio": True}))
            await ws.wait_closed()
            return
        if fault != "silent":
            await ws.send(json.dumps({"type": "transcription.delta", "delta": "Hel"}))
        if fault == "cut":
            ws.transport.abort()
        elif fault == "malformed":
            await ws.send('{"type": "transcription.del')
        elif fault == "error":
            await ws.send(json.dumps({"type": "error", "error": "CUDA out of memory", "code": "processing_error"}))
        await ws.wait_closed()

    async def go():  # noqa: ANN202
        async with standin(reply) as (url, _):
            rt = backend(url, first_byte_timeout_s=1.0 if fault == "silent" else 5.0)
            first = await collect(rt, speech_turn(0.3, 16000))
            second = await collect(rt, speech_turn(0.3, 16000))
            await rt.aclose()
            return first, second

    first, second = asyncio.run(go())
    assert isinstance(first.error, DialogueError) and message in str(first.error), first.error
    assert second.error is None and len(second.pcm) == 480


def test_no_server_says_how_to_start_one() -> None:
    got = asyncio.run(collect(backend("http://127.0.0.1:9/v1"), speech_turn(0.3, 16000)))
    assert "cannot reach vLLM-Omni realtime at ws://127.0.0.1:9/v1/realtime: connection refused" in str(got.error)
    assert "--omni --port 9" in str(got.error)


def test_wire_events_and_urls() -> None:
    assert realtime_url("http://h:8091/v1") == "ws://h:8091/v1/realtime"
    assert realtime_url("https://h/api/v1/") == "wss://h/api/v1/realtime"
    for kind in ("response.output_audio.delta", "response.audio.delta"):
        event = wire.parse_event(json.dumps({"type": kind, "audio": pcm16_b64(10), "sample_rate_hz": 24000}))
        assert isinstance(event, wire.AudioEvent) and len(event.pcm) == 10 and event.rate == 24000
    for kind in ("response.output_audio.done", "response.audio.done"):
        assert wire.parse_event(json.dumps({"type": kind})) == wire.AudioDone(True)
    assert wire.parse_event('{"type": "response.output_audio.done", "has_audio": false}') == wire.AudioDone(False)
    assert wire.parse_event('{"type": "transcription.delta", "delta": "a"}') == wire.TextEvent("a")
    assert wire.parse_event('{"type": "session.created"}') == wire.Other("session.created")
    with pytest.raises(DialogueError, match=r"The model `x` does not exist\. \(model_not_found\)"):
        wire.parse_event('{"type": "error", "error": "The model `x` does not exist.", "code": "model_not_found"}')
    with pytest.raises(DialogueError, match="bad modalities"):
        wire.parse_event('{"type": "error", "error": {"message": "bad modalities", "type": "invalid_request_error"}}')
    with pytest.raises(DialogueError, match="not valid base64"):
        wire.parse_event('{"type": "response.output_audio.delta", "audio": "@@@"}')
    sent = json.loads(wire.append_audio(np.array([0.5, -0.5], np.float32)))
    assert np.frombuffer(base64.b64decode(sent["audio"]), "<i2").tolist() == [16384, -16384]


def test_a_listening_turn_goes_up_while_spoken_and_only_the_commit_is_left_at_the_end() -> None:
    async def reply(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "response.output_audio.done", "has_audio": False}))

    async def go():  # noqa: ANN202
        async with standin(reply) as (url, received):
            rt = backend(url, append_ms=100)
            pcm = np.full(16000, 0.1, np.float32)
            turn = UserTurn(audio=AudioChunk(pcm, 16000, pts=5.0))
            rt.user_turn_started(AudioChunk(pcm[:1600], 16000, pts=5.0))
            for start in range(1600, 16000, 320):
                rt.user_audio(AudioChunk(pcm[start : start + 320], 16000, pts=5.0 + start / 16000))
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.1)
            before_end = sum(1 for e in received if e["type"] == "input_audio_buffer.append")
            got = await collect(rt, turn)
            await rt.aclose()
            return got, received, before_end, rt.last_realtime_trace

    got, received, before_end, trace = asyncio.run(go())
    assert got.error is None and not got.events
    appended = [e for e in received if e["type"] == "input_audio_buffer.append"]
    assert before_end == len(appended) == 10  # every 100 ms batch went up while the user spoke
    assert trace.uploaded_at_end_s == 0.0
