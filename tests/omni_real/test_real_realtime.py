"""`omni_realtime` against the real vLLM-Omni `/v1/realtime`: the user's audio goes up while they speak.

Sample values differ from run to run: lengths, rates, the server's prompt counts and what reached the
avatar are checked instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from liveavatar.agent.agents import build_agent
from liveavatar.agent.clock import Clock
from liveavatar.agent.config import load_persona
from liveavatar.agent.conversation import Conversation
from liveavatar.agent.metrics import MetricsLog
from liveavatar.devices.recording import RecordingSink
from liveavatar.dialogue.base import DialogueError, TextDelta, UserTurn
from liveavatar.dialogue.omni_realtime import OmniRealtimeBackend, Options
from liveavatar.media import AudioChunk
from liveavatar.testing.vllm_omni.server import VllmOmniServer
from helpers import seconds_to_cancel_at_first_audio
from omni_helpers import collect, speech_turn
from real_helpers import ReactiveSpeech, assert_continuous, codec_frames, persona_file, through_avatar
from user_speech import GREETING, STOP_PLEASE, user_says


def backend(server: VllmOmniServer, **options: object) -> OmniRealtimeBackend:
    return OmniRealtimeBackend(Options(base_url=server.base_url, **options), "You are Ada.")


async def speak_live(rt: OmniRealtimeBackend, turn: UserTurn, chunk_s: float = 0.02) -> None:
    """Hand `turn`'s audio to the backend as a microphone would, in real time: the start, then 20 ms chunks."""
    assert turn.audio is not None
    pcm, rate = turn.audio.pcm, turn.audio.rate
    n = int(chunk_s * rate)
    rt.user_turn_started(AudioChunk(pcm[: 5 * n], rate, pts=turn.audio.pts))
    for start in range(5 * n, len(pcm), n):
        await asyncio.sleep(chunk_s)
        rt.user_audio(AudioChunk(pcm[start : start + n], rate, pts=turn.audio.pts + start / rate))


def test_a_live_turn_is_uploaded_while_spoken_and_answered_in_speech_that_reaches_the_avatar(real_server: VllmOmniServer) -> None:
    turn = speech_turn(2.0, 16000)

    async def go():  # noqa: ANN202
        rt = backend(real_server)
        try:
            await speak_live(rt, turn)
            live = await collect(rt, turn)
            live_trace = rt.last_realtime_trace
            whole = await collect(rt, speech_turn(2.0, 48000))  # no live upload: sent whole at the end
            whole_trace = rt.last_realtime_trace
            avatar = await through_avatar(live.chunks)
            return live, live_trace, whole, whole_trace, avatar, rt.history.exchanges
        finally:
            await rt.aclose()

    live, live_trace, whole, whole_trace, (frames, carried), exchanges = asyncio.run(go())
    assert live.error is None and whole.error is None
    # while the user spoke, all but the last part-batch went up: the turn's end sent at most 0.1 s more
    assert live_trace.uploaded_at_end_s <= 0.1
    assert whole_trace.uploaded_at_end_s == pytest.approx(2.0, abs=0.01)
    # the server heard the whole turn either way: the same prompt for 2 s at 16 kHz (live) and 48 kHz (whole)
    assert live_trace.prompt_tokens and live_trace.prompt_tokens == whole_trace.prompt_tokens
    for reply in (live, whole):
        assert reply.text.strip()
        assert_continuous(reply.chunks, 24000)
        assert codec_frames(len(reply.pcm)), f"{len(reply.pcm)} samples is not n·1920 − 555"
    assert frames == -(-len(live.pcm) // 960)
    np.testing.assert_array_equal(carried[: len(live.pcm)], live.pcm)
    # the history keeps both turns and what was said (for turns that go through chat completions)
    assert [e.reply_text for e in exchanges] == [live.text, whole.text]


def test_a_text_turn_goes_through_chat_completions_with_the_realtime_turns_in_its_history(real_server: VllmOmniServer) -> None:
    async def go():  # noqa: ANN202
        rt = backend(real_server)
        try:
            heard = await collect(rt, speech_turn(1.0, 16000))
            said = await collect(rt, UserTurn(text="Tell me more."))
            return heard, said, rt.last_trace
        finally:
            await rt.aclose()

    heard, said, chat_trace = asyncio.run(go())
    assert heard.error is None and said.error is None
    assert said.text.strip() and codec_frames(len(said.pcm))
    # the chat request carried the earlier realtime turn (1 s of audio = 13 tokens, and its reply)
    assert chat_trace is not None and chat_trace.prompt_tokens > 13


def test_a_barge_in_drops_the_realtime_reply_within_50_ms_and_the_next_turn_works(real_server: VllmOmniServer) -> None:
    async def go():  # noqa: ANN202
        rt = backend(real_server)
        turn = speech_turn(1.0, 16000)
        await speak_live(rt, turn)
        stopped_ms = await seconds_to_cancel_at_first_audio(rt.reply(turn), 120) * 1000
        nxt = speech_turn(1.0, 16000)
        await speak_live(rt, nxt)
        after = await collect(rt, nxt)
        await rt.aclose()
        return stopped_ms, after

    stopped_ms, after = asyncio.run(go())
    assert stopped_ms < 50
    assert after.error is None and codec_frames(len(after.pcm))


def test_listening_to_a_false_interruption_does_not_touch_the_reply_in_flight(real_server: VllmOmniServer) -> None:
    """The user coughs over the agent: a new turn starts (its session opens), then is dropped; the reply
    that was streaming goes on to its end, whole."""

    async def go():  # noqa: ANN202
        rt = backend(real_server)
        turn = speech_turn(1.0, 16000)
        await speak_live(rt, turn)
        events = []
        noise_started = asyncio.Event()

        async def consume() -> None:
            async for event in rt.reply(turn):
                events.append(event)
                if not isinstance(event, TextDelta) and not noise_started.is_set():
                    noise_started.set()

        reply = asyncio.create_task(consume())
        await asyncio.wait_for(noise_started.wait(), 120)
        cough = speech_turn(0.4, 16000)
        await speak_live(rt, cough)  # the conversation hands the cough to the backend as a new turn
        prepared = asyncio.create_task(collect(rt, cough))  # ... prepares a reply to it ...
        await asyncio.sleep(0.05)
        prepared.cancel()  # ... and drops it: a false interruption
        with pytest.raises(asyncio.CancelledError):
            await prepared
        rt.discard_turn(cough)
        await asyncio.wait_for(reply, 120)
        await rt.aclose()
        return events, rt.history.exchanges

    events, exchanges = asyncio.run(go())
    pcm = np.concatenate([e.pcm for e in events if isinstance(e, AudioChunk)])
    assert codec_frames(len(pcm)), "the reply in flight lost speech"
    assert len(exchanges) == 1 and exchanges[0].reply_text == "".join(e.text for e in events if isinstance(e, TextDelta))


def test_a_person_barging_in_on_a_realtime_reply_stops_the_avatar_and_the_next_turn_is_answered(
    real_server: VllmOmniServer, tmp_path: Path
) -> None:
    hello, stop_please = user_says(GREETING), user_says(STOP_PLEASE)
    persona = load_persona(persona_file(tmp_path, "Ada", "omni_realtime", real_server.base_url))
    agent = build_agent(persona, (96, 96), 25.0, 24000, underrun="silence")
    clock = Clock()
    sink = RecordingSink(clock.now)
    source = ReactiveSpeech(clock, [(0.5, hello)])
    barge: list[float] = []

    def on_event(event: dict) -> None:
        if event.get("type") == "state" and event.get("state") == "speaking" and not barge:
            barge.append(source.say(stop_please, 0.25))  # the person talks over the first answer

    conversation = Conversation(agent, source, [sink], clock, metrics=MetricsLog(), on_event=on_event)

    async def go() -> None:
        run = asyncio.create_task(conversation.run())
        deadline = clock.now() + 180
        while len(conversation.metrics.turns) < 2 and clock.now() < deadline:  # both turns finished (or failed)
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await agent.aclose()

    asyncio.run(go())
    first, second = conversation.metrics.turns[:2]
    assert first.interrupted and not second.interrupted and second.error is None
    assert 0 < first.barge_in_latency_s < 0.6
    barge_at = source.started_at + barge[0]
    cut = min(f for f in sink.flushes if f >= barge_at)
    assert not [a for a in sink.arrivals if a.generation == first.generation and a.t > cut], \
        "frames of the interrupted reply reached the sink after the interrupt"
    voiced = [a for a in sink.generation_frames(second.generation) if a.rms > 0.01]
    assert voiced, "the next turn was not answered in speech"
    trace = agent.dialogue.last_realtime_trace  # type: ignore[attr-defined]
    assert trace is not None and trace.uploaded_at_end_s <= 0.1  # the second turn went up while spoken


def test_a_wrong_model_name_is_the_servers_own_message(real_server: VllmOmniServer) -> None:
    reply = asyncio.run(collect(backend(real_server, model="Qwen/Nope"), speech_turn(0.5, 16000)))
    assert isinstance(reply.error, DialogueError) and not reply.events
    assert "The model `Qwen/Nope` does not exist." in str(reply.error)
