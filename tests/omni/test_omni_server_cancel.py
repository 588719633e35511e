"""Barge-in: cancelling a reply closes its HTTP stream within 50 ms, measured where the server sees the socket close."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from liveavatar.dialogue.base import TextDelta, UserTurn
from liveavatar.testing.omni_standin import OmniWireServer, with_behaviour
from liveavatar.dialogue.omni_server import OmniServerBackend, Options
from liveavatar.media import AudioChunk
from omni_helpers import collect, speech_turn

LIMIT_S = 0.050


def backend_for(server: OmniWireServer) -> OmniServerBackend:
    return OmniServerBackend(Options(base_url=server.base_url), "You are Ada.")


async def server_saw_close(server: OmniWireServer) -> float:
    """The perf_counter time at which the server saw the client drop its unfinished response."""
    for _ in range(200):
        if server.log.early_disconnects:
            return server.log.early_disconnects[0]
        await asyncio.sleep(0.01)
    raise AssertionError("the server never saw the connection close")


async def cancel_after_first_audio(backend: OmniServerBackend, busy_elsewhere: bool) -> tuple[float, float, str]:
    """Start a reply, cancel its consumer once the first speech chunk arrived; (cancel time, task end, text)."""
    first_audio = asyncio.Event()
    heard: list[str] = []

    async def consume() -> None:
        async for event in backend.reply(speech_turn()):
            if isinstance(event, TextDelta):
                heard.append(event.text)
            elif isinstance(event, AudioChunk) and not first_audio.is_set():
                first_audio.set()
                if busy_elsewhere:  # e.g. pushing to the avatar: the generator is parked at its yield
                    await asyncio.sleep(30)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_audio.wait(), 5)
    await asyncio.sleep(0.05)  # let the consumer settle into its wait
    cancelled_at = time.perf_counter()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return cancelled_at, time.perf_counter(), "".join(heard)


@pytest.mark.parametrize("busy_elsewhere", [False, True], ids=["waiting-for-data", "busy-with-a-chunk"])
def test_cancel_closes_the_stream_within_50_ms(server: OmniWireServer, busy_elsewhere: bool) -> None:
    with_behaviour(server, stall_after=9)  # one audio chunk, then the server keeps the stream open

    async def go() -> tuple[float, float, float]:
        backend = backend_for(server)
        cancelled_at, task_done, _ = await cancel_after_first_audio(backend, busy_elsewhere)
        closed_at = await server_saw_close(server)
        await backend.aclose()
        return cancelled_at, task_done, closed_at

    cancelled_at, task_done, closed_at = asyncio.run(go())
    assert task_done - cancelled_at < LIMIT_S
    assert 0 <= closed_at - cancelled_at < LIMIT_S, f"server saw the close {1e3 * (closed_at - cancelled_at):.1f} ms later"
    assert server.log.completed_responses == 0


def test_cancel_before_the_server_answered(server: OmniWireServer) -> None:
    with_behaviour(server, headers_delay_s=5.0)

    async def go() -> tuple[float, float]:
        backend = backend_for(server)
        task = asyncio.create_task(collect(backend, speech_turn()))
        while not server.log.requests:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        cancelled_at = time.perf_counter()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        closed_at = await server_saw_close(server)
        await backend.aclose()
        return cancelled_at, closed_at

    cancelled_at, closed_at = asyncio.run(go())
    assert 0 <= closed_at - cancelled_at < LIMIT_S


def test_leaving_the_loop_early_closes_the_stream(server: OmniWireServer) -> None:
    with_behaviour(server, stall_after=9)

    async def go() -> tuple[float, float]:
        backend = backend_for(server)
        async with contextlib.aclosing(backend.reply(speech_turn())) as events:
            async for event in events:
                if isinstance(event, AudioChunk):
                    break
        left_at = time.perf_counter()
        closed_at = await server_saw_close(server)
        await backend.aclose()
        return left_at, closed_at

    left_at, closed_at = asyncio.run(go())
    assert closed_at - left_at < LIMIT_S  # closed by the time the loop was left, or just after


def test_after_a_barge_in_the_history_holds_what_was_heard_and_the_next_reply_works(server: OmniWireServer) -> None:
    with_behaviour(server, stall_after=9)

    async def go() -> tuple[str, list[dict], str]:
        backend = backend_for(server)
        _, _, heard = await cancel_after_first_audio(backend, busy_elsewhere=False)
        partial = backend.history.exchanges[-1].reply_text
        backend.record_played("Hello")
        with_behaviour(server)
        reply = await collect(backend, UserTurn(text="Sorry, go on."))
        await backend.aclose()
        assert reply.error is None and len(reply.chunks) == 4
        return heard, server.log.requests[-1]["messages"], partial

    heard, messages, partial = asyncio.run(go())
    assert heard == partial == "Hello there, nice to meet you."
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "Hello"
