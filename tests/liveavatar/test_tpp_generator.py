"""The LiveAvatar generator on TPP workers behind the AvatarGenerator contract: options, registry, clear() and
pause() reaching every worker.

What is asserted: `dit_workers` must divide the 4 steps and builds a generator with the TPP strategy through the
registry without starting anything; speech comes back on frames stamped with its generation, bit-exact; clear()
drops everything planned before it (frames stay contiguous, the interrupted reply never reappears, the next
reply plays whole), every worker reports the new epoch, and blocks inside the workers at the clear are
dropped rather than shown; "wait" plans nothing until the reply's speech or end() arrives; a consumer
pulling at real time keeps the planning window small, so new speech shows within ~1.5 s, not ~2 s.
"""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np
import pytest

from liveavatar.avatar.liveavatar.backend import LiveAvatarGenerator, Options, with_dit_workers
from liveavatar.avatar.liveavatar.tpp.runner import WorkerPoolRunner
from liveavatar.avatar.registry import create_avatar
from liveavatar.media import AudioChunk
from stream_helpers import RATE, assert_short_reply_then_idle, make_setup, speech, take, worker_children


def test_options_validate_the_worker_count_and_the_registry_builds_a_tpp_generator():
    with pytest.raises(ValueError, match="must divide the 4 denoising steps"):
        Options(dit_workers=3)
    with pytest.raises(ValueError):
        Options(master_port=70000)
    assert with_dit_workers(Options(), 4).dit_workers == 4
    with pytest.raises(ValueError):
        with_dit_workers(Options(), 3)
    gen = create_avatar("liveavatar", {"config": "tiny", "dit_workers": 2, "decode_worker": False}, make_setup())
    assert isinstance(gen, LiveAvatarGenerator) and isinstance(gen.runner, WorkerPoolRunner) and gen.can_pause
    assert gen.runner.layout.world_size == 2 and gen.max_window == 3 and gen.window == 1
    assert gen.runner.worker_pids == [], "no process starts before frames() is iterated"
    assert gen.fps == 25.0 and gen.size == (96, 80) and gen.audio_rate == RATE


def test_speech_round_trip_and_clear_reaches_every_worker():
    async def run():
        gen = LiveAvatarGenerator(Options(dit_workers=2, lookahead_blocks=2), make_setup("silence"))
        gen.push(AudioChunk(speech(6.0), RATE), generation=7)
        stream = gen.frames()
        before = await take(stream, 30)
        while not gen._in_flight:  # clear while speech blocks are inside the workers
            await asyncio.sleep(0.001)
        in_flight = len(gen._in_flight)
        gen.clear()
        gen.push(AudioChunk(speech(1.0), RATE), generation=7)  # a late chunk of the interrupted reply
        after = await take(stream, 42)
        gen.push(AudioChunk(speech(0.48, seed=9), RATE), generation=8)
        gen.end(8)
        nxt = await take(stream, 12 * 8)
        stats = gen.runner.worker_stats()
        outcomes = [t.outcome for t in gen.block_log]
        dropped = gen.dropped_blocks
        window = gen.window
        await gen.aclose()
        return before, after, nxt, stats, outcomes, dropped, in_flight, window

    before, after, nxt, stats, outcomes, dropped, in_flight, window = asyncio.run(run())
    frames = before + after + nxt
    assert [f.index for f in frames] == list(range(len(frames))), "indices stay contiguous across clear()"
    assert [f.generation for f in before] == [7] * 30, "speech came back on frames of its reply"
    np.testing.assert_array_equal(np.concatenate([f.audio for f in before]), speech(6.0)[: 30 * 960])
    assert all(f.generation is None and not f.audio.any() for f in after), "nothing of the interrupted reply after clear()"
    labels = [f.generation for f in nxt]
    assert labels.count(8) == 12 and 7 not in labels, "the next reply plays, whole, and the old one never returns"
    assert sorted(stats) == [0, 1, 2] and len({s["epoch"] for s in stats.values()}) == 1 and stats[0]["epoch"] >= 1, \
        f"every worker saw the clear: {stats}"
    assert dropped >= in_flight >= 1, "blocks in the workers at clear() were dropped, not shown"
    assert set(outcomes) <= {"frames", "stale", "skipped", "dropped"}
    assert 1 <= window <= 5
    assert not worker_children()


def test_frames_carry_exactly_their_audio_under_wait():
    async def run():
        gen = LiveAvatarGenerator(Options(dit_workers=1, decode_worker=False), make_setup("wait"))
        await gen.wait_ready()
        stream = gen.frames()
        gen.push(AudioChunk(speech(0.2), RATE), generation=2)  # less than a block, reply still open
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(stream), 3.0)  # "wait" holds the frame (a block takes ~0.2 s)
        assert gen.block_log == deque() and gen.outstanding == 0, "nothing was planned while waiting"
        gen.end(2)
        frames = await take(stream, 12)
        await gen.aclose()
        return frames

    assert_short_reply_then_idle(asyncio.run(run()), generation=2)


def test_pause_holds_the_reply_in_the_pipeline_and_resume_replays_what_the_sinks_dropped():
    """pause() over workers: blocks of the reply already planned are dropped (their speech goes back), the avatar
    listens, and resume(0.12) speaks the last 0.12 s shown again, then the rest: nothing lost, nothing doubled."""
    async def run():
        gen = LiveAvatarGenerator(Options(dit_workers=1, decode_worker=False), make_setup("silence"))
        stream = gen.frames()
        gen.push(AudioChunk(speech(3.0), RATE), generation=3)
        gen.end(3)
        before = await take(stream, 30)
        gen.pause()
        paused = await take(stream, 12)
        gen.resume(replay_s=0.12)
        after = await take(stream, 120)
        stats = gen.runner.worker_stats()
        await gen.aclose()
        return before, paused, after, stats

    before, paused, after, stats = asyncio.run(run())
    frames = before + paused + after
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [f.generation for f in before] == [3] * 30
    assert all(f.generation is None and not f.audio.any() for f in paused), "paused: the avatar listens, silent"
    heard = np.concatenate([f.audio for f in frames if f.generation == 3])
    expected = np.concatenate([speech(3.0)[: 30 * 960], speech(3.0)[30 * 960 - 2880:]])
    np.testing.assert_array_equal(heard[: len(expected)], expected)
    assert not heard[len(expected):].any()
    assert stats[0]["epoch"] >= 1, "the worker saw the pause's epoch"
    assert not worker_children()


def test_a_real_time_consumer_keeps_few_blocks_planned_ahead():
    """A live sink pulls 25 frames/s from a faster pipeline: the window stays small, so new speech shows early."""
    async def run():
        gen = LiveAvatarGenerator(Options(dit_workers=2), make_setup("silence"))  # 3 stages: up to 4 blocks could be ahead
        await gen.wait_ready()
        stream = gen.frames()
        for _ in range(12 * 5):
            await anext(stream)
            await asyncio.sleep(0.04)
        gen.push(AudioChunk(speech(1.0), RATE), generation=3)
        waited = 0
        while (await asyncio.wait_for(anext(stream), 30)).generation != 3:
            waited += 1
            await asyncio.sleep(0.04)
        window, most = gen.window, gen.max_window
        await gen.aclose()
        return waited, window, most

    waited, window, most = asyncio.run(run())
    assert most == 4 and window <= 2, f"window {window} of {most}"
    assert waited <= 36, f"speech showed after {waited} frames (at most the current block and two planned ones)"
