"""End to end: a tiny random Qwen3-Omni (real transformers code path) behind the local server, driven by `omni_server`.

The model is built from a hand-made config, saved with save_pretrained and loaded with from_pretrained;
each request's audio goes through the Whisper feature extractor into the thinker, and the talker and
code2wav produce the speech that streams back in vLLM-Omni's format.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import av
import numpy as np
import pytest

from liveavatar.agent.agents import build_agent
from liveavatar.agent.config import load_persona
from liveavatar.devices.mp4 import MP4Sink
from liveavatar.dialogue.base import UserTurn
from liveavatar.testing.omni_standin import OmniWireServer
from liveavatar.dialogue.omni_server import OmniServerBackend, Options
from liveavatar.media import AudioChunk, AVFrame
from omni_helpers import Collected, as_pcm16, collect, speech_turn
from omni_tiny import SAMPLES_PER_FRAME, TinyOmniSource, expected_samples


def talk(server: OmniWireServer, turns: list[UserTurn], **options: object) -> list[Collected]:
    async def go() -> list[Collected]:
        backend = OmniServerBackend(Options(base_url=server.base_url, **options), "You are Ada.")
        replies = [await collect(backend, turn) for turn in turns]
        await backend.aclose()
        return replies

    return asyncio.run(go())


def test_tiny_qwen3_omni_speaks_through_the_server(tiny_server: OmniWireServer, tiny_source: TinyOmniSource) -> None:
    (reply,) = talk(tiny_server, [speech_turn(2.0, 24000)], voice="Chelsie")
    (generation,) = tiny_source.generations
    assert reply.error is None
    # the model heard the user: 2 s of audio at 16 kHz -> 200 mel frames -> 26 audio placeholder tokens
    assert (generation.prompt_audio_clips, generation.prompt_audio_tokens) == (1, 26)
    # its text arrived as streamed deltas, and all of its speech arrived, in order, at 24 kHz
    assert reply.text == generation.text and reply.text
    assert len(reply.pcm) == generation.samples == expected_samples(12)
    chunk = 4 * SAMPLES_PER_FRAME
    assert [len(c.pcm) for c in reply.chunks] == [chunk] * (len(reply.pcm) // chunk) + [len(reply.pcm) % chunk]
    assert len(reply.chunks) == math.ceil(expected_samples(12) / chunk)
    assert all(c.rate == 24000 for c in reply.chunks)
    assert [c.pts for c in reply.chunks] == [i * chunk / 24000 for i in range(len(reply.chunks))]
    assert np.all(np.isfinite(reply.pcm))


def test_tiny_model_sees_the_whole_history_on_the_second_turn(tiny_server: OmniWireServer, tiny_source: TinyOmniSource) -> None:
    first, second = talk(tiny_server, [speech_turn(2.0), speech_turn(1.0, 16000)], audio_format="wav")
    assert first.error is None and second.error is None
    one, two = tiny_source.generations
    assert (one.prompt_audio_clips, two.prompt_audio_clips) == (1, 2)
    assert two.prompt_audio_tokens == 26 + 13  # 2 s and 1 s of audio
    assert len(second.pcm) == expected_samples(12)
    messages = tiny_server.log.requests[1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == first.text


def test_tiny_qwen3_omni_to_portrait_avatar_to_mp4(
    tiny_server: OmniWireServer, tiny_source: TinyOmniSource, examples: Path, tmp_path: Path
) -> None:
    """Persona YAML → omni_server → portrait avatar (chunks pushed as they arrive) → MP4 with the model's speech."""
    persona_file = tmp_path / "ada.yaml"
    persona_file.write_text(
        "name: Ada\n"
        f"portrait: {examples / 'portraits' / 'nova.jpg'}\n"
        "system_prompt: You are Ada.\n"
        "dialogue:\n  backend: omni_server\n  options:\n"
        f"    base_url: {tiny_server.base_url}\n    voice: Chelsie\n"
        "avatar:\n  backend: portrait\n"
    )
    out = tmp_path / "ada.mp4"
    agent = build_agent(load_persona(persona_file), (256, 256), 25.0, 24000, underrun="wait")
    rate_per_frame = 24000 // 25

    async def converse() -> list[AVFrame]:
        sink = MP4Sink(out, (256, 256), 25.0, 24000)
        written: list[AVFrame] = []

        async def record() -> None:  # the MP4 pulls frames as fast as the avatar makes them
            idle_after_speech = 0
            async for frame in agent.avatar.frames():
                await sink.write(frame)
                written.append(frame)
                spoke = any(f.generation == 1 for f in written)
                idle_after_speech += spoke and frame.generation is None
                if idle_after_speech == 10:
                    return

        recorder = asyncio.create_task(record())
        await asyncio.sleep(0.2)  # idle frames before the user's turn
        async for event in agent.dialogue.reply(speech_turn(2.0)):
            if isinstance(event, AudioChunk):
                agent.avatar.push(event, 1)
        agent.avatar.end(1)
        await asyncio.wait_for(recorder, 60)
        await sink.aclose()
        await agent.aclose()
        return written

    frames = asyncio.run(converse())
    (generation,) = tiny_source.generations
    speech_at = [i for i, f in enumerate(frames) if f.generation == 1]
    assert speech_at and speech_at == list(range(speech_at[0], speech_at[-1] + 1))  # one unbroken utterance
    assert speech_at[0] > 0  # idle frames came first
    # the frames carry exactly the model's speech (after the wire's 16-bit PCM), then silence
    carried = np.concatenate([frames[i].audio for i in speech_at])
    assert len(speech_at) == math.ceil(generation.samples / rate_per_frame)
    np.testing.assert_allclose(carried[: generation.samples], as_pcm16(generation.pcm), atol=1e-6)
    assert not carried[generation.samples :].any()

    # the MP4 holds every frame, and its audio track holds that speech where the speech frames are
    with av.open(str(out)) as container:
        video_frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(out)) as container:
        track = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert video_frames == len(frames)
    start = speech_at[0] * rate_per_frame
    speech = as_pcm16(generation.pcm)
    lag = best_lag(track, speech, start)
    heard = track[start + lag : start + lag + len(speech)]
    assert abs(lag) <= 2048  # at most the AAC codec delay
    assert rms(heard) == pytest.approx(rms(speech), rel=0.25)
    assert np.corrcoef(heard, speech)[0, 1] > 0.8
    assert rms(track[: start - 2048]) < 0.05 * rms(speech)  # silence while idle, before the reply


def best_lag(track: np.ndarray, speech: np.ndarray, start: int, reach: int = 2048) -> int:
    """The shift (samples) at which `speech` best matches `track` around `start`."""
    scores = {}
    for lag in range(-reach, reach + 1, 1):
        a = start + lag
        if a < 0 or a + len(speech) > len(track):
            continue
        scores[lag] = float(np.dot(track[a : a + len(speech)], speech))
    return max(scores, key=scores.__getitem__)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
