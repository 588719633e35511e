"""Every failure `omni_server` can meet ends the reply with the message the user reads — and nothing hangs.

Each test checks the exact text shown in the CLI/page, that the reply ended in bounded time, and that
the same backend answers the next turn once the server behaves again (the conversation goes on).
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from liveavatar.dialogue.base import UserTurn
from liveavatar.testing.omni_standin import OmniWireServer, synthetic_source, with_behaviour
from liveavatar.dialogue.omni_server import OmniServerBackend, Options
from omni_helpers import Collected, collect, free_port, run_reply, speech_turn

MODEL = "Qwen/Qwen3-Omni-30B-A3B-Instruct"


def backend_for(base_url: str, **options: object) -> OmniServerBackend:
    return OmniServerBackend(Options(base_url=base_url, **options), "You are Ada.")


def fail_then_recover(server: OmniWireServer, backend: OmniServerBackend, **fault: object) -> tuple[Collected, float, Collected]:
    """One reply under `fault` (with its duration in seconds), then one with the server healthy again."""

    async def go() -> tuple[Collected, float, Collected]:
        with_behaviour(server, **fault)
        started = time.perf_counter()
        failed = await collect(backend, speech_turn())
        elapsed = time.perf_counter() - started
        with_behaviour(server)
        recovered = await collect(backend, UserTurn(text="Are you there?"))
        await backend.aclose()
        return failed, elapsed, recovered

    return asyncio.run(go())


def assert_recovered(reply: Collected) -> None:
    assert reply.error is None and reply.text == "Hello there, nice to meet you." and len(reply.chunks) == 4


def test_connection_refused_says_where_and_what_to_start() -> None:
    port = free_port()
    started = time.perf_counter()
    reply = run_reply(backend_for(f"http://127.0.0.1:{port}/v1"), speech_turn())
    assert time.perf_counter() - started < 2.0
    assert str(reply.error) == (
        f"cannot reach vLLM-Omni at http://127.0.0.1:{port}/v1: connection refused — "
        f"is `vllm serve {MODEL} --omni --port {port}` running?"
    )


def test_server_going_down_and_coming_back_mid_conversation() -> None:
    port = free_port()

    async def go() -> list[Collected]:
        backend = backend_for(f"http://127.0.0.1:{port}/v1")
        replies = []
        with OmniWireServer(synthetic_source(), port=port):
            replies.append(await collect(backend, speech_turn()))
        replies.append(await collect(backend, speech_turn()))  # server down
        with OmniWireServer(synthetic_source(), port=port) as server:
            replies.append(await collect(backend, UserTurn(text="Back?")))
            roles = [m["role"] for m in server.log.requests[0]["messages"]]
        await backend.aclose()
        assert roles == ["system", "user", "assistant", "user"]  # the failed turn left no trace
        return replies

    before, down, after = asyncio.run(go())
    assert_recovered(before)
    assert down.error is not None and "connection refused" in str(down.error)
    assert_recovered(after)


def test_unknown_voice_shows_the_servers_own_message(server: OmniWireServer) -> None:
    failed, elapsed, _ = fail_then_recover(server, backend_for(server.base_url, voice="Bob"))
    assert str(failed.error) == (
        f"vLLM-Omni at {server.base_url} rejected the request (HTTP 400): Invalid speaker 'Bob'. "
        "Supported: aiden, chelsie, ethan"
    )
    assert failed.events == [] and elapsed < 2.0


def test_unknown_model_404_hints_at_base_url_and_model(server: OmniWireServer) -> None:
    reply = run_reply(backend_for(server.base_url, model="qwen3-omni"), speech_turn())
    assert str(reply.error) == (
        f"vLLM-Omni at {server.base_url} rejected the request (HTTP 404): The model `qwen3-omni` does not exist. "
        "— check `base_url` (it should end in /v1) and that the server serves 'qwen3-omni'"
    )


def test_unauthorized_hints_at_the_api_key(server: OmniWireServer) -> None:
    failed, _, recovered = fail_then_recover(server, backend_for(server.base_url), status=401, status_message="Unauthorized")
    assert str(failed.error) == (
        f"vLLM-Omni at {server.base_url} rejected the request (HTTP 401): Unauthorized — check `api_key` (or $OMNI_API_KEY)"
    )
    assert_recovered(recovered)


def test_server_error_500(server: OmniWireServer) -> None:
    failed, elapsed, recovered = fail_then_recover(
        server, backend_for(server.base_url), status=500, status_message="EngineCore encountered an issue"
    )
    assert str(failed.error) == f"vLLM-Omni at {server.base_url} failed (HTTP 500): EngineCore encountered an issue"
    assert elapsed < 2.0
    assert_recovered(recovered)


def test_gateway_error_with_a_plain_text_body(server: OmniWireServer) -> None:
    failed, _, recovered = fail_then_recover(server, backend_for(server.base_url), status=503, raw_error_body=b"upstream unavailable")
    assert str(failed.error) == f"vLLM-Omni at {server.base_url} failed (HTTP 503): upstream unavailable"
    assert_recovered(recovered)


def test_answer_that_is_not_an_event_stream(server: OmniWireServer) -> None:
    failed, _, _ = fail_then_recover(server, backend_for(server.base_url), status=200, raw_error_body=b"hello")
    assert str(failed.error) == f"vLLM-Omni at {server.base_url} answered with text/plain instead of an event stream: hello"


def test_malformed_json_mid_stream_keeps_what_came_before(server: OmniWireServer) -> None:
    failed, _, recovered = fail_then_recover(server, backend_for(server.base_url), malformed_after=3)
    assert re.fullmatch(
        r'vLLM-Omni sent a malformed stream event \(not JSON: .+\): \{"id": "chatcmpl-broken", .*', str(failed.error)
    )
    assert failed.text == "Hello there,"  # role chunk + two words arrived before the broken event
    assert_recovered(recovered)


def test_error_event_mid_stream(server: OmniWireServer) -> None:
    failed, _, recovered = fail_then_recover(server, backend_for(server.base_url), error_event_after=8)
    assert str(failed.error) == "vLLM-Omni reported an error mid-reply: CUDA out of memory while decoding audio"
    assert len(failed.chunks) == 1  # 1 role + 6 text + 1 audio chunk arrived first
    assert_recovered(recovered)


def test_model_failure_reported_in_the_stream() -> None:
    async def exploding(_: dict) -> object:
        yield "Hello"
        raise RuntimeError("talker produced NaNs")

    with OmniWireServer(exploding) as server:
        reply = run_reply(backend_for(server.base_url), speech_turn())
    assert str(reply.error) == "vLLM-Omni reported an error mid-reply: RuntimeError: talker produced NaNs"
    assert reply.text == "Hello"


def test_stream_cut_mid_way(server: OmniWireServer) -> None:
    failed, elapsed, recovered = fail_then_recover(server, backend_for(server.base_url), cut_after=9)
    assert str(failed.error).startswith(f"the vLLM-Omni stream from {server.base_url} broke off mid-reply (")
    assert str(failed.error).endswith(") — did the server crash or restart?")
    assert len(failed.chunks) == 2 and elapsed < 2.0
    assert_recovered(recovered)


def test_stream_ending_without_done_or_finish(server: OmniWireServer) -> None:
    failed, _, recovered = fail_then_recover(server, backend_for(server.base_url), omit_done=True, omit_finish=True)
    assert str(failed.error) == (
        "vLLM-Omni stream ended without [DONE] or a finish_reason — the reply is incomplete (did the server restart?)"
    )
    assert len(failed.chunks) == 4  # everything that came was still played
    assert_recovered(recovered)


def test_stalled_stream_times_out_between_chunks(server: OmniWireServer) -> None:
    backend = backend_for(server.base_url, chunk_timeout_s=0.3)
    failed, elapsed, recovered = fail_then_recover(server, backend, stall_after=8)
    assert str(failed.error) == "vLLM-Omni stream stalled: no data for 0.3 s"
    assert len(failed.chunks) == 1
    assert 0.3 <= elapsed < 1.5
    assert_recovered(recovered)


@pytest.mark.parametrize("fault", [{"headers_delay_s": 5.0}, {"stall_after": 0}], ids=["no-headers", "no-events"])
def test_first_byte_timeout(server: OmniWireServer, fault: dict[str, object]) -> None:
    backend = backend_for(server.base_url, first_byte_timeout_s=0.4)
    failed, elapsed, recovered = fail_then_recover(server, backend, **fault)
    assert str(failed.error) == (
        f"vLLM-Omni at {server.base_url} sent nothing for 0.4 s after the request (first-byte timeout) — "
        "is it overloaded or still loading the model?"
    )
    assert 0.4 <= elapsed < 1.5
    assert_recovered(recovered)
