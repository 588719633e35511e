"""The portrait avatar as a viewer sees it: lips that follow speech, eyes that blink, a head never frozen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from liveavatar.agent.agents import build_agent
from liveavatar.agent.config import load_persona
from liveavatar.avatar.portrait.landmarks import detect_faces
from liveavatar.dialogue.speech.piper_tts import PiperTTS
from helpers import dark_pixels, eye_box, luma, mouth_box, rms, run, take
from liveavatar.media import AudioChunk, resample

OPEN_PX = 20  # dark cavity pixels beyond the closed mouth's that count as "mouth open"
SENTENCE = "Hello there. Every frame of my face is one photo, gently warped, and my lips follow the sounds I make."


@pytest.fixture(scope="module")
def nova(examples: Path):
    return load_persona(examples / "nova.yaml")


@pytest.fixture(scope="module")
def speech(nova) -> list[AudioChunk]:
    return list(PiperTTS(nova.voice).synthesize(SENTENCE))


def avatar_for(persona, underrun: str = "wait", seed: int = 0):  # noqa: ANN001, ANN201
    return build_agent(persona, (512, 512), 25.0, 24000, underrun=underrun, seed=seed).avatar  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["nova", "iris"])
def test_faces_are_found_in_the_example_portraits(examples: Path, name: str) -> None:
    persona = load_persona(examples / f"{name}.yaml")
    [face] = detect_faces(persona.portrait)
    layout = avatar_for(persona).rig.layout
    left, right = layout.eyes
    mouth = layout.mouth
    assert face.score > 0.8
    assert left.centre[0] < mouth.centre[0] < right.centre[0]
    assert max(left.centre[1], right.centre[1]) < layout.nose_bottom[1] < mouth.centre[1] < layout.chin[1]
    assert 0.3 < 2 * layout.face_half_size[0] / 512 < 0.5  # framed like a video call: face about 40 % of the width


def test_mouth_opening_in_the_frames_follows_the_speech_envelope(nova, speech) -> None:
    avatar = avatar_for(nova)

    async def scenario():
        frames = avatar.frames()
        before = await take(frames, 25)
        for chunk in speech:
            avatar.push(chunk, 7)
        avatar.end(7)
        return before, await take(frames, 200)

    before, after = run(scenario())
    box = mouth_box(avatar)
    closed = dark_pixels(before[0].image, box)
    opening = np.array([dark_pixels(f.image, box) - closed for f in after])
    loudness = np.array([rms(f.audio) for f in after])
    talking = np.array([f.generation == 7 for f in after])
    last_word = np.nonzero(talking)[0].max()
    assert max(dark_pixels(f.image, box) - closed for f in before) < OPEN_PX  # idle: lips still
    assert (opening[talking] > OPEN_PX).mean() > 0.6  # talking: mostly open
    assert (opening[last_word + 6 :] < OPEN_PX).all()  # and shut again once the reply has played
    r = [np.corrcoef(opening[talking][max(0, k) : len(opening[talking]) + min(0, k)],
                     loudness[talking][max(0, -k) : len(loudness[talking]) + min(0, -k)])[0, 1] for k in range(-3, 4)]  # fmt: skip
    assert r[3] > 0.4, f"openness vs loudness r={r[3]:.2f}"
    assert int(np.argmax(r)) - 3 in (-1, 0, 1), f"lips out of sync: correlation by lag {np.round(r, 2)}"


def test_idle_frames_never_freeze_and_the_eyes_blink(nova) -> None:
    avatar = avatar_for(nova)
    frames = run(take(avatar.frames(), 250))  # 10 s of idle
    images = [f.image.astype(np.int16) for f in frames]
    steps = [float(np.abs(a - b).mean()) for a, b in zip(images, images[1:])]
    half_seconds = [float(np.abs(images[i] - images[i + 12]).mean()) for i in range(len(images) - 12)]
    assert min(steps) > 0.02, "two consecutive idle frames are (nearly) identical"
    assert min(half_seconds) > 0.2, "the head stood still for half a second"
    assert all(f.generation is None and not f.audio.any() for f in frames)
    box = eye_box(avatar)
    brightness = np.array([luma(f.image[box[1] : box[3], box[0] : box[2]]).mean() for f in frames])
    open_level = np.median(brightness)
    blinks = np.diff((brightness > open_level + 8).astype(int)) == 1  # the lid covers the dark iris
    assert 2 <= blinks.sum() <= 6, f"{blinks.sum()} blinks in 10 s"


def test_clear_drops_queued_speech_and_its_later_pushes(nova, speech) -> None:
    avatar = avatar_for(nova)

    async def scenario():
        frames = avatar.frames()
        for chunk in speech:
            avatar.push(chunk, 1)
        talking = await take(frames, 10)
        avatar.clear()
        avatar.push(speech[0], 1)  # a late chunk of the interrupted reply
        after = await take(frames, 10)
        avatar.push(speech[0], 2)
        avatar.end(2)
        return talking, after, await take(frames, 5)

    talking, after, next_reply = run(scenario())
    assert all(f.generation == 1 for f in talking)
    assert all(f.generation is None and not f.audio.any() for f in after)
    assert all(f.generation == 2 and f.audio.any() for f in next_reply[1:])


def test_every_speech_sample_arrives_exactly_once_on_exact_frames(nova, speech) -> None:
    avatar = avatar_for(nova)
    for chunk in speech:
        avatar.push(chunk, 3)
    avatar.end(3)
    frames = run(take(avatar.frames(), 2000))
    assert [f.index for f in frames] == list(range(2000))
    assert all(len(f.audio) == 960 for f in frames)
    heard = np.concatenate([f.audio for f in frames if f.generation == 3])
    expected = resample(np.concatenate([c.pcm for c in speech]), speech[0].rate, 24000)
    assert len(expected) <= len(heard) < len(expected) + 960
    np.testing.assert_allclose(heard[: len(expected)], expected, atol=1e-5)
    assert not heard[len(expected) :].any()


def test_resume_replays_the_speech_the_sinks_dropped_at_the_pause(nova, speech) -> None:
    """A false interruption loses nothing: the 0.12 s a player had buffered (flushed unheard) is spoken again."""
    avatar = avatar_for(nova)
    for chunk in speech:
        avatar.push(chunk, 3)
    avatar.end(3)

    async def scenario() -> list:
        stream = avatar.frames()
        before = await take(stream, 40)
        avatar.pause()
        paused = await take(stream, 10)
        avatar.resume(replay_s=0.12)
        return before + paused + await take(stream, 200)

    frames = run(scenario())
    assert [f.generation for f in frames[40:50]] == [None] * 10, "paused frames carry no speech"
    heard = np.concatenate([f.audio for f in frames if f.generation == 3])
    expected = resample(np.concatenate([c.pcm for c in speech]), speech[0].rate, 24000)
    replayed = np.concatenate([expected[: 40 * 960], expected[40 * 960 - 2880 :]])  # 0.12 s at 24 kHz = 2880 samples
    np.testing.assert_allclose(heard[: len(replayed)], replayed, atol=1e-5)
    assert all(len(f.audio) == 960 for f in frames)


def test_underrun_policies(nova, speech) -> None:
    short = AudioChunk(speech[0].pcm[: speech[0].rate // 5], speech[0].rate)  # 0.2 s = 5 frames

    async def silence_pads():
        avatar = avatar_for(nova, underrun="silence")
        frames = avatar.frames()
        avatar.push(short, 1)
        first = await take(frames, 8)
        avatar.push(short, 1)
        avatar.end(1)
        return first, await take(frames, 8)

    first, rest = run(silence_pads())
    voiced = [bool(f.audio.any()) for f in first]
    assert all(f.generation == 1 for f in first)  # the reply is still open: its gap stays its own
    assert voiced[:3] == [True] * 3 and voiced[5:] == [False] * 3  # speech ran out: silent frames, nothing dropped
    assert sum(f.generation == 1 and f.audio.any() for f in rest) >= 4

    async def wait_blocks():
        avatar = avatar_for(nova, underrun="wait")
        frames = avatar.frames()
        avatar.push(short, 1)
        got = []
        while True:
            pending = asyncio.ensure_future(anext(frames))
            done, _ = await asyncio.wait({pending}, timeout=0.5)
            if not done:
                break  # blocked: the speech ran out and the reply is still open
            got.append(pending.result())
        assert 3 <= len(got) <= 5 and all(f.audio.any() for f in got)
        avatar.end(1)
        tail = await asyncio.wait_for(pending, 5.0)  # end() releases the held frame
        assert tail.generation == 1

    run(wait_blocks())
