"""The speech queue every avatar shares: exact samples in order, per-reply labels, underrun, clear, pause and replay."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from liveavatar.avatar.speech_queue import MAX_REPLAY_S, SpeechQueue
from liveavatar.media import AudioChunk

RATE = 1000  # a round rate keeps the sample arithmetic readable; no resampling happens at the queue's own rate


def speech(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)


def takes(queue: SpeechQueue, n: int, count: int) -> list:
    return [queue.take_now(n) for _ in range(count)]


def test_speech_comes_out_exactly_once_in_order_with_its_generation():
    queue = SpeechQueue(RATE)
    pcm = speech(1050)
    for start in range(0, 1050, 300):
        queue.push(AudioChunk(pcm[start:start + 300], RATE), 4)
    queue.end(4)
    queue.push(AudioChunk(speech(100, seed=1), RATE), 5)
    queue.end(5)
    out = takes(queue, 400, 5)
    assert [(t.generation, t.speech, t.ended) for t in out] == [(4, 400, False), (4, 400, False), (4, 250, True),
                                                                (5, 100, True), (None, 0, False)]
    np.testing.assert_array_equal(np.concatenate([t.pcm[:t.speech] for t in out[:3]]), pcm)
    assert not out[2].pcm[250:].any() and all(len(t.pcm) == 400 for t in out), "padding after a reply's end is silence"
    np.testing.assert_array_equal(out[3].pcm[:100], speech(100, seed=1))
    assert [t.start for t in out[:3]] == [0, 400, 800]


def test_silence_takes_what_is_there_and_wait_holds_until_enough_or_end():
    live = SpeechQueue(RATE, "silence")
    live.push(AudioChunk(speech(150), RATE), 1)
    first = live.take_now(400)
    assert (first.generation, first.speech, first.ended) == (1, 150, False), "an open reply's gap is its own"
    gap = live.take_now(400)
    assert (gap.generation, gap.speech) == (1, 0) and not gap.pcm.any()

    async def offline():
        queue = SpeechQueue(RATE, "wait")
        queue.push(AudioChunk(speech(150), RATE), 1)
        pending = asyncio.ensure_future(queue.take(400))
        await asyncio.sleep(0.05)
        assert not pending.done(), "wait holds the take while the reply is open and short"
        queue.push(AudioChunk(speech(300, seed=2), RATE), 1)
        full = await asyncio.wait_for(pending, 1)
        pending = asyncio.ensure_future(queue.take(400))
        await asyncio.sleep(0.05)
        assert not pending.done()
        queue.end(1)
        return full, await asyncio.wait_for(pending, 1)

    full, tail = asyncio.run(offline())
    assert full.speech == 400 and (tail.speech, tail.ended, tail.generation) == (50, True, 1)


def test_clear_drops_everything_and_later_pushes_of_those_replies():
    queue = SpeechQueue(RATE)
    queue.push(AudioChunk(speech(1000), RATE), 7)
    queue.take_now(100)
    queue.clear()
    queue.push(AudioChunk(speech(500), RATE), 7)  # a late chunk of the interrupted reply
    assert queue.take_now(100).idle and queue.queued_seconds == 0
    queue.push(AudioChunk(speech(500), RATE), 8)
    assert queue.take_now(100).generation == 8


def test_pause_holds_speech_and_gives_back_what_was_never_shown():
    queue = SpeechQueue(RATE, keep_s=2.0)
    pcm = speech(2000)
    queue.push(AudioChunk(pcm, RATE), 1)
    queue.end(1)
    shown = takes(queue, 300, 2)  # 600 taken; say the last 200 never reached a frame
    queue.pause(unplayed=200)
    assert queue.paused and not queue.has_speech()
    assert all(t.idle and not t.pcm.any() for t in takes(queue, 300, 3)), "paused: the avatar listens"
    queue.resume(replay_s=0.1)  # the sinks dropped the last 0.1 s shown
    after = takes(queue, 500, 4)
    heard = np.concatenate([t.pcm[:t.speech] for t in shown] + [t.pcm[:t.speech] for t in after])
    expected = np.concatenate([pcm[:600], pcm[300:]])  # 0..599 taken; back to 400 (unshown), then 100 more replayed
    np.testing.assert_array_equal(heard, expected)


def test_replay_reaches_back_into_a_reply_that_already_ended():
    queue = SpeechQueue(RATE)
    queue.push(AudioChunk(speech(300), RATE), 1)
    queue.end(1)
    queue.push(AudioChunk(speech(300, seed=3), RATE), 2)
    first, second = queue.take_now(300), queue.take_now(100)
    assert (first.generation, first.ended, second.generation) == (1, True, 2)
    queue.pause()
    queue.resume(replay_s=0.15)  # 100 samples of reply 2, then 50 of reply 1
    again = takes(queue, 50, 1) + takes(queue, 100, 1)
    assert [(t.generation, t.speech) for t in again] == [(1, 50), (2, 100)]
    np.testing.assert_array_equal(again[0].pcm, speech(300)[250:])
    np.testing.assert_array_equal(again[1].pcm, speech(300, seed=3)[:100])


def test_replay_is_capped_and_the_log_stays_bounded():
    queue = SpeechQueue(RATE)
    queue.push(AudioChunk(speech(10_000), RATE), 1)
    takes(queue, 100, 50)
    assert queue._logged < (MAX_REPLAY_S * RATE) + 100, "the replay log keeps about MAX_REPLAY_S seconds"
    queue.pause()
    queue.resume(replay_s=5.0)
    assert queue.take_now(1).start == 5000 - MAX_REPLAY_S * RATE


def test_resume_without_pause_replays_nothing():
    queue = SpeechQueue(RATE)
    queue.push(AudioChunk(speech(1000), RATE), 1)
    queue.take_now(400)
    queue.resume(replay_s=0.2)
    assert queue.take_now(100).start == 400


def test_generations_must_increase():
    queue = SpeechQueue(RATE)
    queue.push(AudioChunk(speech(10), RATE), 5)
    with pytest.raises(ValueError, match="pushed after generation 5"):
        queue.push(AudioChunk(speech(10), RATE), 4)
    queue.end(5)
    with pytest.raises(ValueError, match="already ended"):
        queue.push(AudioChunk(speech(10), RATE), 5)


def test_reset_starts_a_fresh_conversation():
    queue = SpeechQueue(RATE)
    queue.push(AudioChunk(speech(500), RATE), 7)
    queue.take_now(100)
    queue.clear()
    queue.pause()
    queue.reset()
    assert not queue.paused and queue.take_now(100).idle
    queue.push(AudioChunk(speech(500), RATE), 1)  # numbering starts again
    assert queue.take_now(100).generation == 1
