"""`omni_server` against a real local HTTP server speaking each stream shape vLLM-Omni (and DashScope) sends."""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import pytest

from liveavatar.dialogue.base import TextDelta, UserTurn
from liveavatar.testing.omni_standin import OmniWireServer, Speech, synthetic_source, synthetic_speech, with_behaviour
from liveavatar.dialogue.omni_server import OmniServerBackend, Options, create
from liveavatar.dialogue.registry import DialogueSetup, create_dialogue
from liveavatar.dialogue.wav import decode_wav
from liveavatar.media import AudioChunk
from omni_helpers import as_pcm16, collect, run_reply, speech_turn

REPLY_TEXT = "Hello there, nice to meet you."
SPEECH = synthetic_speech(1.0)  # what the `server` fixture speaks, in 0.25 s chunks


def backend_for(server: OmniWireServer, **options: object) -> OmniServerBackend:
    return OmniServerBackend(Options(base_url=server.base_url, **options), "You are Ada, a cheerful guide.")


def assert_continuous(chunks: list[AudioChunk], rate: int) -> None:
    """Every chunk has samples at `rate`, and each starts where the previous one ended."""
    assert chunks and all(len(c.pcm) > 0 and c.rate == rate for c in chunks)
    for before, after in zip(chunks, chunks[1:]):
        assert after.pts == pytest.approx(before.end_pts)


def test_vllm_omni_pcm16_stream(server: OmniWireServer) -> None:
    reply = run_reply(backend_for(server, audio_format="pcm16"), speech_turn(1.0, 24000))
    assert reply.error is None
    assert reply.text == REPLY_TEXT
    assert [len(c.pcm) for c in reply.chunks] == [6000] * 4
    assert_continuous(reply.chunks, 24000)
    np.testing.assert_allclose(reply.pcm, as_pcm16(SPEECH), atol=1e-6)
    # text deltas come first, token by token, as vLLM-Omni streams them
    kinds = ["text" if isinstance(e, TextDelta) else "audio" for e in reply.events]
    assert kinds == ["text"] * 6 + ["audio"] * 4


def test_request_carries_voice_format_persona_prompt_and_16k_wav(server: OmniWireServer) -> None:
    run_reply(backend_for(server, voice="Chelsie", max_tokens=200, extra_body={"top_p": 0.8}), speech_turn(1.5, 48000))
    (body,) = server.log.requests
    assert body["model"] == "Qwen/Qwen3-Omni-30B-A3B-Instruct"
    assert body["stream"] is True and body["modalities"] == ["text", "audio"]
    assert body["voice"] == "Chelsie" and body["audio"]["format"] == "pcm16"
    assert body["max_tokens"] == 200 and body["top_p"] == 0.8
    system, user = body["messages"]
    assert system == {"role": "system", "content": [{"type": "text", "text": "You are Ada, a cheerful guide."}]}
    (part,) = user["content"]
    pcm, rate = decode_wav(base64.b64decode(part["input_audio"]["data"]))
    assert (part["type"], part["input_audio"]["format"], rate, len(pcm)) == ("input_audio", "wav", 16000, 24000)
    assert server.log.request_headers[0]["accept"] == "text/event-stream"


def test_per_chunk_wav_stream(server: OmniWireServer) -> None:
    reply = run_reply(backend_for(server, audio_format="wav"), speech_turn())
    assert server.log.requests[0]["audio"]["format"] == "wav"
    assert reply.error is None and reply.text == REPLY_TEXT
    assert [len(c.pcm) for c in reply.chunks] == [6000] * 4  # each chunk's own WAV header stripped, not played
    np.testing.assert_allclose(reply.pcm, as_pcm16(SPEECH), atol=1e-6)


def test_empty_audio_chunks_are_skipped(server: OmniWireServer) -> None:
    with_behaviour(server, empty_audio_chunks=True)
    reply = run_reply(backend_for(server), speech_turn())
    assert reply.error is None
    assert [len(c.pcm) for c in reply.chunks] == [6000] * 4
    np.testing.assert_allclose(reply.pcm, as_pcm16(SPEECH), atol=1e-6)


def test_dashscope_stream_audio_data_and_transcript(server: OmniWireServer) -> None:
    with_behaviour(server, dialect="dashscope")
    reply = run_reply(backend_for(server, audio_format="wav"), speech_turn())  # DashScope sends raw PCM anyway
    assert reply.error is None and reply.text == REPLY_TEXT
    assert_continuous(reply.chunks, 24000)
    np.testing.assert_allclose(reply.pcm, as_pcm16(SPEECH), atol=1e-6)


def test_text_only_stream_gives_text_and_no_speech(server: OmniWireServer, caplog: pytest.LogCaptureFixture) -> None:
    with_behaviour(server, speak=False)
    reply = run_reply(backend_for(server), speech_turn())
    assert reply.error is None and reply.text == REPLY_TEXT and reply.chunks == []
    assert f"the reply from {server.base_url} had text but no speech — is it vLLM-Omni" in caplog.text


def test_usage_only_final_chunk(server: OmniWireServer) -> None:
    with_behaviour(server, usage_chunk=True)
    reply = run_reply(backend_for(server), speech_turn())
    assert reply.error is None and reply.text == REPLY_TEXT and len(reply.chunks) == 4


def test_finish_reason_without_done_is_accepted(server: OmniWireServer) -> None:
    with_behaviour(server, omit_done=True)
    reply = run_reply(backend_for(server), speech_turn())
    assert reply.error is None and len(reply.chunks) == 4


def test_sample_rate_comes_from_audio_metadata() -> None:
    async def source(_: dict) -> object:
        yield "Hi"
        yield Speech(np.full(1600, 0.1, np.float32), 16000)
        yield Speech(np.full(1600, 0.1, np.float32), 16000)

    with OmniWireServer(source) as server:
        pcm16 = run_reply(backend_for(server, audio_format="pcm16"), speech_turn())
        wav = run_reply(backend_for(server, audio_format="wav"), speech_turn())
    for reply in (pcm16, wav):
        assert [(len(c.pcm), c.rate) for c in reply.chunks] == [(1600, 16000), (1600, 16000)]
        assert reply.chunks[1].pts == pytest.approx(0.1)


def test_first_chunk_reaches_the_consumer_while_the_rest_is_still_being_generated() -> None:
    interval = 0.3  # the server produces a chunk every 0.3 s: the whole reply takes 1.2 s
    with OmniWireServer(synthetic_source(seconds=1.0, chunk_s=0.25, interval_s=interval)) as server:

        async def go() -> list[float]:
            backend = backend_for(server)
            arrivals = []
            started = time.perf_counter()
            async for event in backend.reply(speech_turn()):
                if isinstance(event, AudioChunk):
                    arrivals.append(time.perf_counter() - started)
            await backend.aclose()
            return arrivals

        arrivals = asyncio.run(go())
    assert len(arrivals) == 4
    assert arrivals[0] < arrivals[-1] - 2.5 * interval  # the first chunk did not wait for the last one
    assert arrivals[0] < 2 * interval


def test_history_across_turns_keeps_audio_and_what_was_heard(server: OmniWireServer) -> None:
    async def go() -> None:
        backend = backend_for(server)
        await collect(backend, speech_turn(1.0))
        backend.record_played("Hello there")  # barge-in: only this much was heard
        await collect(backend, UserTurn(text="And you?"))
        await backend.aclose()

    asyncio.run(go())
    first, second = server.log.requests
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert second["messages"][1]["content"][0]["type"] == "input_audio"  # the audio turn stays audio
    assert second["messages"][2]["content"] == "Hello there"
    assert second["messages"][3]["content"] == [{"type": "text", "text": "And you?"}]


def test_api_key_from_options_or_environment(server: OmniWireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    run_reply(backend_for(server, api_key="sk-one"), speech_turn())
    monkeypatch.setenv("OMNI_API_KEY", "sk-two")
    run_reply(backend_for(server), speech_turn())
    assert [h.get("authorization") for h in server.log.request_headers] == ["Bearer sk-one", "Bearer sk-two"]


def test_registry_builds_the_backend_from_persona_options(server: OmniWireServer) -> None:
    setup = DialogueSetup(name="ada", system_prompt="")
    backend = create_dialogue("omni_server", {"base_url": server.base_url, "voice": "Aiden"}, setup)
    assert isinstance(backend, OmniServerBackend)
    assert isinstance(create(Options(), setup), OmniServerBackend)
    reply = run_reply(backend, UserTurn(text="Hi"))
    assert reply.error is None and reply.text == REPLY_TEXT
    system = server.log.requests[0]["messages"][0]["content"][0]["text"]
    assert system.startswith("You are Qwen, a virtual human")  # no persona prompt: Qwen's own speech prompt
