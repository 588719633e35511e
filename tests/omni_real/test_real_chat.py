"""`omni_server` against the real vLLM-Omni (tiny random Qwen3-Omni on the CPU plugin), over /v1/chat/completions.

Audio sample values differ from run to run (the talker samples), so these tests check lengths, rates,
the server's own prompt counts and that the speech reaches the avatar, never sample values.
"""

from __future__ import annotations

import asyncio

import numpy as np

from liveavatar.dialogue.base import DialogueError, TextDelta, UserTurn
from liveavatar.dialogue.omni_server import OmniServerBackend, Options
from liveavatar.testing.vllm_omni.server import VllmOmniServer
from helpers import seconds_to_cancel_at_first_audio
from omni_helpers import as_pcm16, collect, speech_turn
from real_helpers import assert_continuous, codec_frames, through_avatar


def backend(server: VllmOmniServer, **options: object) -> OmniServerBackend:
    return OmniServerBackend(Options(base_url=server.base_url, **options), "You are Ada.")


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def test_a_spoken_turn_gets_text_and_24k_speech_that_reaches_the_avatar(real_server: VllmOmniServer) -> None:
    async def go():  # noqa: ANN202
        ada = backend(real_server)
        try:
            reply = await collect(ada, speech_turn(2.0, 16000))
            return reply, ada.last_trace, await through_avatar(reply.chunks)
        finally:
            await ada.aclose()

    reply, trace, (frames, carried) = run(go())
    assert reply.error is None
    assert reply.text.strip()  # the thinker's words (noise from a random model, but words)
    kinds = ["text" if isinstance(e, TextDelta) else "audio" for e in reply.events]
    assert kinds[0] == "text" and "audio" in kinds  # text first, speech streamed after it
    assert_continuous(reply.chunks, 24000)
    assert codec_frames(len(reply.pcm)), f"{len(reply.pcm)} samples is not n·1920 − 555"
    assert len(reply.chunks) >= 2  # streamed in codec chunks, not as one piece
    assert trace is not None and trace.prompt_tokens and trace.first_audio_received > trace.first_text
    # every sample reached the avatar, one 960-sample slice per 40 ms frame, then silence
    assert frames == -(-len(reply.pcm) // 960)
    np.testing.assert_array_equal(carried[: len(reply.pcm)], reply.pcm)
    assert not carried[len(reply.pcm):].any()


def test_history_grows_over_turns_and_16k_or_48k_audio_are_heard_alike(real_server: VllmOmniServer) -> None:
    async def go():  # noqa: ANN202
        a, b = backend(real_server), backend(real_server)
        try:
            at16 = await collect(a, speech_turn(2.0, 16000))
            prompt16 = a.last_trace.prompt_tokens
            replies = [await collect(b, speech_turn(2.0, 48000))]
            prompts = [b.last_trace.prompt_tokens]
            for turn in (speech_turn(1.0, 16000), UserTurn(text="And then?")):
                replies.append(await collect(b, turn))
                prompts.append(b.last_trace.prompt_tokens)
            return at16, prompt16, replies, prompts, b.history.exchanges
        finally:
            await a.aclose()
            await b.aclose()

    at16, prompt16, replies, prompts, exchanges = run(go())
    assert at16.error is None and all(r.error is None for r in replies)
    # 2 s of audio is 2 s of audio at either rate: resampled to 16 kHz, it becomes the same prompt
    assert prompts[0] == prompt16
    # each turn's prompt holds the ones before (audio, text, and the replies as they were heard)
    assert prompts[0] < prompts[1] < prompts[2]
    assert [e.reply_text for e in exchanges] == [r.text for r in replies]
    assert all(codec_frames(len(r.pcm)) for r in replies)


def test_a_camera_image_goes_with_the_turn(real_server: VllmOmniServer) -> None:
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)

    async def go():  # noqa: ANN202
        ada, eve = backend(real_server), backend(real_server)
        try:
            seen = await collect(ada, UserTurn(audio=speech_turn(1.0, 16000).audio, image=image))
            blind = await collect(eve, speech_turn(1.0, 16000))
            return seen, ada.last_trace.prompt_tokens, blind, eve.last_trace.prompt_tokens
        finally:
            await ada.aclose()
            await eve.aclose()

    seen, with_image, blind, without = run(go())
    assert seen.error is None and blind.error is None
    assert with_image > without + 4  # the image became vision tokens in the prompt
    assert codec_frames(len(seen.pcm))


def test_wav_chunks_decode_to_the_same_kind_of_speech(real_server: VllmOmniServer) -> None:
    async def go():  # noqa: ANN202
        ada = backend(real_server, audio_format="wav")
        try:
            return await collect(ada, speech_turn(1.0, 24000))
        finally:
            await ada.aclose()

    reply = run(go())
    assert reply.error is None and len(reply.chunks) >= 2
    assert_continuous(reply.chunks, 24000)  # each chunk's own RIFF header was read, not played
    assert codec_frames(len(reply.pcm))
    np.testing.assert_array_equal(reply.pcm, as_pcm16(reply.pcm))  # 16-bit samples, no header bytes among them


def test_an_unknown_voice_is_refused_with_the_servers_own_message(real_server: VllmOmniServer) -> None:
    reply = run(collect(backend(real_server, voice="Nobody"), speech_turn(0.5, 16000)))
    assert isinstance(reply.error, DialogueError) and not reply.events
    message = str(reply.error)
    assert "(HTTP 400)" in message and "Invalid speaker 'Nobody'. Supported: aiden, chelsie, ethan" in message


def test_a_wrong_model_name_is_a_404_that_says_what_to_check(real_server: VllmOmniServer) -> None:
    reply = run(collect(backend(real_server, model="Qwen/Nope"), speech_turn(0.5, 16000)))
    message = str(reply.error)
    assert "(HTTP 404)" in message and "Qwen/Nope" in message and "does not exist" in message


def test_cancelling_mid_stream_stops_within_50_ms_and_the_server_answers_the_next_turn(real_server: VllmOmniServer) -> None:
    async def go():  # noqa: ANN202
        ada = backend(real_server)
        stopped_ms = await seconds_to_cancel_at_first_audio(ada.reply(speech_turn(1.0, 16000)), 120) * 1000
        after = await collect(ada, speech_turn(1.0, 16000))
        await ada.aclose()
        return stopped_ms, after

    stopped_ms, after = run(go())
    assert stopped_ms < 50
    assert after.error is None and codec_frames(len(after.pcm))
