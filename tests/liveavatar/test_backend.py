"""The `liveavatar` backend end to end on CPU with the tiny TEST config (random weights).

What is asserted: frames come with contiguous indices and exactly samples_in_frame samples; speech comes out
bit-exact and in order on frames stamped with its generation; idle frames are silent and unstamped; "silence"
pads and "wait" holds; clear() drops everything planned and late chunks; pause() holds the reply (the avatar
listens) and resume(replay_s) replays what the sinks dropped, as the portrait does; a pause with nothing to say
leaves the stream alone; the event loop keeps running while a block is computed; the internal state stays bounded.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from liveavatar.avatar.liveavatar.backend import LiveAvatarGenerator, Options, create
from liveavatar.avatar.registry import AvatarSetup, create_avatar, options_model
from liveavatar.media import AudioChunk, samples_in_frame
from stream_helpers import RATE, assert_short_reply_then_idle, make_setup, speech, take


@pytest.fixture(scope="module")
def tiny_parts():
    from liveavatar.avatar.liveavatar.tiny import build_tiny_parts

    return build_tiny_parts(seed=0, context_s=0.5)


def test_registry_builds_backend_and_options_forbid_extra():
    assert options_model("liveavatar") is Options
    with pytest.raises(Exception):
        Options(config="tiny", unknown=1)
    gen = create_avatar("liveavatar", {"config": "tiny"}, make_setup("silence"))
    assert isinstance(gen, LiveAvatarGenerator)
    assert gen.fps == 25.0 and gen.audio_rate == RATE and gen.size == (96, 80)
    with pytest.raises(ValueError, match="25 fps"):
        create(Options(), AvatarSetup(portrait=np.zeros((8, 8, 3), np.uint8), portrait_path=None, fps=30.0))  # type: ignore[arg-type]


def test_idle_then_speech_then_idle(tiny_parts):
    async def run():
        gen = LiveAvatarGenerator(Options(), make_setup("silence"), parts=tiny_parts)
        stream = gen.frames()
        idle = await take(stream, 12)
        pcm = speech(0.7)
        gen.push(AudioChunk(pcm[:9000], RATE), generation=5)
        gen.push(AudioChunk(pcm[9000:], RATE), generation=5)
        gen.end(5)
        rest = await take(stream, 36)
        await gen.aclose()
        return idle, rest

    idle, rest = asyncio.run(run())
    frames = idle + rest
    assert [f.index for f in frames] == list(range(48))
    for f in frames:
        assert f.image.shape == (80, 96, 3) and f.image.dtype == np.uint8
        assert len(f.audio) == samples_in_frame(f.index, RATE, 25.0) == 960
        assert f.fps == 25.0 and f.audio_rate == RATE
    assert all(f.generation is None and not f.audio.any() for f in idle)
    labels = [f.generation for f in rest]
    first = labels.index(5)  # idle frames already computed may show until the speech block is ready
    # 0.7 s of speech = 17.5 frames -> 18 frames carry it; the rest of that block and later blocks are idle
    assert labels[first:first + 18] == [5] * 18 and 5 not in labels[first + 18:]
    spoken = rest[first:first + 18]
    played = np.concatenate([f.audio for f in spoken])
    np.testing.assert_array_equal(played[: len(speech(0.7))], speech(0.7))
    assert not played[len(speech(0.7)):].any()
    assert all(f.generation is None and not f.audio.any() for f in rest[:first] + rest[first + 18:])
    assert any(not np.array_equal(frames[0].image, f.image) for f in frames[1:]), "the video moves"


def test_other_input_rate_is_resampled(tiny_parts):
    async def run():
        gen = LiveAvatarGenerator(Options(), make_setup("wait"), parts=tiny_parts)
        stream = gen.frames()
        gen.push(AudioChunk(speech(0.48, 16000), 16000), generation=1)
        gen.end(1)
        frames = await take(stream, 24)
        await gen.aclose()
        return frames

    frames = asyncio.run(run())
    spoken = [f for f in frames if f.generation == 1]
    assert len(spoken) == 12
    total = sum(int(np.count_nonzero(f.audio)) for f in spoken)
    assert abs(total - 0.48 * RATE) < 0.01 * RATE


def test_wait_holds_frames_until_speech_or_end(tiny_parts):
    async def run():
        gen = LiveAvatarGenerator(Options(), make_setup("wait"), parts=tiny_parts)
        stream = gen.frames()
        gen.push(AudioChunk(speech(0.2), RATE), generation=2)  # less than one block, reply still open
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(stream), 8.0)
        gen.end(2)
        frames = await take(stream, 12)
        await gen.aclose()
        return frames

    assert_short_reply_then_idle(asyncio.run(run()), generation=2)


def test_silence_pads_an_open_reply(tiny_parts):
    async def run():
        gen = LiveAvatarGenerator(Options(), make_setup("silence"), parts=tiny_parts)
        stream = gen.frames()
        gen.push(AudioChunk(speech(0.2), RATE), generation=4)
        frames = await take(stream, 12)
        await gen.aclose()
        return frames

    frames = asyncio.run(run())
    assert all(f.generation == 4 for f in frames), "an open reply's padded frames still belong to it"
    audio = np.concatenate([f.audio for f in frames])
    np.testing.assert_array_equal(audio[:4800], speech(0.2))
    assert not audio[4800:].any()


def test_clear_drops_queued_speech_and_late_chunks(tiny_parts):
    async def run():
        gen = LiveAvatarGenerator(Options(lookahead_blocks=2), make_setup("silence"), parts=tiny_parts)
        stream = gen.frames()
        gen.push(AudioChunk(speech(3.0), RATE), generation=7)
        first = await take(stream, 5)
        await asyncio.sleep(0.5)  # let the producer plan ahead
        gen.clear()
        gen.push(AudioChunk(speech(1.0), RATE), generation=7)  # a late chunk of the interrupted reply
        after = await take(stream, 24)
        gen.push(AudioChunk(speech(0.48, seed=9), RATE), generation=8)
        gen.end(8)
        nxt = await take(stream, 24)
        await gen.aclose()
        return first, after, nxt

    first, after, nxt = asyncio.run(run())
    assert [f.generation for f in first] == [7] * 5
    indices = [f.index for f in first + after + nxt]
    assert indices == list(range(len(indices))), "frame indices stay contiguous across clear()"
    assert all(f.generation is None and not f.audio.any() for f in after)
    assert 8 in [f.generation for f in nxt] and 7 not in [f.generation for f in nxt]


def test_event_loop_keeps_running_while_blocks_compute(tiny_parts):
    async def run():
        gen = LiveAvatarGenerator(Options(), make_setup("silence"), parts=tiny_parts)
        stream = gen.frames()
        await take(stream, 1)  # models ready
        gaps, stop = [], False

        async def ticker():
            last = time.perf_counter()
            while not stop:
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        await take(stream, 35)  # 3 more blocks
        elapsed = time.perf_counter() - started
        stop = True
        await task
        await gen.aclose()
        return max(gaps), elapsed

    worst_gap, elapsed = asyncio.run(run())
    per_block = elapsed / 3
    assert per_block > 0.05, "blocks take real compute time"
    # computed on the loop, a block would stall it for a whole block; in a worker thread only for GIL slices
    assert worst_gap < 0.5 * per_block, f"the event loop stalled for {worst_gap:.3f} s (a block takes {per_block:.3f} s)"


def test_state_stays_bounded_over_a_long_stream(tiny_parts):
    async def run():
        gen = LiveAvatarGenerator(Options(), make_setup("silence"), parts=tiny_parts)
        stream = gen.frames()
        for k in range(20):
            gen.push(AudioChunk(speech(0.3, seed=k), RATE), generation=100 + k)
            gen.end(100 + k)
            await take(stream, 12)
        pipe = gen.runner.pipeline
        state = {
            "replies": len(gen._speech._replies),
            "model_pcm": len(gen._model_pcm),
            "queue": len(gen._ready),
            "ring_bytes": sum(r.nbytes() for r in pipe.streamer.rings),
            "start_frame": pipe.streamer.start_frame,
        }
        await gen.aclose()
        return state

    state = asyncio.run(run())
    assert state["replies"] <= 1 and state["model_pcm"] < 7680 and state["queue"] <= 2
    assert state["start_frame"] >= 60, "the stream went past the 12-frame ring several times"
    assert state["ring_bytes"] == 4 * 2 * 3 * (12 * 16) * 256 * 4, "4 step rings × (K,V) × 3 layers × 12 frames × 16 tokens × 256 × fp32"


def test_pause_holds_the_reply_and_resume_replays_what_the_sinks_dropped(tiny_parts):
    """As the portrait: a false interruption loses nothing; the 0.12 s a player had buffered is spoken again."""
    async def run():
        gen = LiveAvatarGenerator(Options(), make_setup("silence"), parts=tiny_parts)
        stream = gen.frames()
        gen.push(AudioChunk(speech(3.0), RATE), generation=3)
        gen.end(3)
        before = await take(stream, 30)  # two and a half blocks: the pause lands inside a block
        gen.pause()
        paused = await take(stream, 24)
        gen.resume(replay_s=0.12)
        after = await take(stream, 120)
        await gen.aclose()
        return before, paused, after

    before, paused, after = asyncio.run(run())
    frames = before + paused + after
    assert [f.index for f in frames] == list(range(len(frames))) and all(len(f.audio) == 960 for f in frames)
    assert [f.generation for f in before] == [3] * 30
    assert all(f.generation is None and not f.audio.any() for f in paused), "paused: the avatar listens, silent"
    heard = np.concatenate([f.audio for f in frames if f.generation == 3])
    expected = np.concatenate([speech(3.0)[: 30 * 960], speech(3.0)[30 * 960 - 2880:]])  # 0.12 s at 24 kHz = 2880
    np.testing.assert_array_equal(heard[: len(expected)], expected)
    assert not heard[len(expected):].any() and len(heard) - len(expected) < 12 * 960, "then the reply ends"


def test_a_pause_with_nothing_to_say_leaves_the_stream_alone(tiny_parts):
    """The listening avatar of a duet is paused too: its idle blocks keep coming, nothing is dropped or recomputed."""
    async def run():
        gen = LiveAvatarGenerator(Options(), make_setup("silence"), parts=tiny_parts)
        stream = gen.frames()
        await take(stream, 14)
        epoch, dropped = gen._epoch, gen.dropped_blocks
        gen.pause()
        during = await take(stream, 12)
        gen.resume(replay_s=0.5)
        gen.resume()
        after = await take(stream, 12)
        state = gen._epoch, gen.dropped_blocks
        await gen.aclose()
        return epoch, dropped, during + after, state

    epoch, dropped, frames, state = asyncio.run(run())
    assert state == (epoch, dropped), "no new epoch, no block dropped"
    assert all(f.generation is None and not f.audio.any() for f in frames)
