"""Speech never waits behind idle blocks: the generator's planning, step by step, on a runner the test drives.

The runner here computes nothing: the test decides when a block starts and when it is done (its frames are a
constant image per block), and it starts jobs by the rule every real runner follows (`skip_before_speech`).
What is asserted is the generator's side, exactly: once speech is queued, idle blocks no longer hold the
planning window, so the speech block is submitted at once; an idle block not yet started is skipped and the
runner takes the speech block next; an idle block already finished is dropped; and the first speech frame
replaces the idle block on screen at the very next frame, with contiguous indices and exact audio.
"""

from __future__ import annotations

import asyncio

import numpy as np

from liveavatar.avatar.liveavatar.backend import LiveAvatarGenerator, Options
from liveavatar.avatar.liveavatar.blocks import BlockJob, BlockResult, BlockRunner, skip_before_speech
from liveavatar.media import AudioChunk
from stream_helpers import RATE, make_setup, speech


class DrivenRunner(BlockRunner):
    """TEST runner: jobs start and finish when the test says so."""

    stages = 3

    def __init__(self) -> None:
        self.jobs: list[BlockJob] = []
        self.started: list[BlockJob] = []
        self.skipped: list[int] = []
        self.epoch = 0
        self.results: asyncio.Queue[BlockResult] = asyncio.Queue()

    async def start(self) -> None:
        pass

    async def submit(self, job: BlockJob) -> None:
        self.jobs.append(job)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    async def result(self) -> BlockResult:
        return await self.results.get()

    def begin(self) -> BlockJob:
        job, skipped = skip_before_speech(self.jobs, self.epoch)
        for stale in skipped:
            self.skipped.append(stale.seq)
            self.results.put_nowait(BlockResult(stale.seq, "skipped"))
        assert job is not None, "no job to start"
        self.started.append(job)
        return job

    def finish(self, job: BlockJob) -> None:
        self.results.put_nowait(BlockResult(job.seq, "frames", np.full((12, 80, 96, 3), job.seq, np.uint8)))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_speech_takes_the_next_block_and_cuts_the_idle_one_on_screen():
    async def run():
        runner = DrivenRunner()
        gen = LiveAvatarGenerator(Options(), make_setup("silence"), runner=runner)
        stream = gen.frames()
        pending = asyncio.ensure_future(anext(stream))
        await settle()
        first = runner.begin()
        runner.finish(first)
        frames = [await pending]
        frames += [await anext(stream) for _ in range(3)]  # the sink waited: the window grew
        await settle()
        idle_jobs = [j.seq for j in runner.jobs]
        computing = runner.begin()  # the runner is busy with an idle block when the speech comes
        gen.push(AudioChunk(speech(0.96), RATE), generation=9)
        gen.end(9)
        await settle()
        submitted_after_push = [j for j in runner.jobs if j.seq > max(idle_jobs)]
        runner.finish(computing)  # done, but idle: it must not delay the speech
        await settle()
        frames += [await anext(stream) for _ in range(2)]
        speech_job = runner.begin()  # the idle job behind the busy one was never started: it gives way
        frames += [await anext(stream)]
        runner.finish(speech_job)
        await settle()
        frames += [await anext(stream) for _ in range(12)]
        runner.finish(runner.begin())  # the reply's second block
        await settle()
        frames += [await anext(stream) for _ in range(12)]
        log = [(t.seq, t.outcome) for t in gen.block_log]
        await gen.aclose()
        return frames, idle_jobs, computing, submitted_after_push, speech_job, runner, log

    frames, idle_jobs, computing, submitted, speech_job, runner, log = asyncio.run(run())
    assert len(idle_jobs) >= 1 and all(j.idle for j in runner.started[:2])
    assert [j.idle for j in submitted][:1] == [False], "speech is submitted at once: idle blocks do not hold the window"
    assert not speech_job.idle and runner.skipped == [s for s in idle_jobs if s != computing.seq], \
        "the idle block not yet started was skipped; the runner took the speech block next"
    assert [f.index for f in frames] == list(range(len(frames))), "indices stay contiguous through the cut"
    labels = [f.generation for f in frames]
    first = labels.index(9)
    assert first == 7, "the first frame after the speech block came back carries the speech"
    assert all(f.image[0, 0, 0] == 1 for f in frames[:first]), "until then the sink saw the first idle block"
    assert (computing.seq, "dropped") in log, "the finished idle block was dropped, never shown"
    assert labels[first:first + 24] == [9] * 24 and not any(f.audio.any() for f in frames[:first])
    np.testing.assert_array_equal(np.concatenate([f.audio for f in frames[first:first + 24]]), speech(0.96))


def test_reset_starts_a_fresh_conversation_on_a_new_frame_stream():
    async def run():
        runner = DrivenRunner()
        gen = LiveAvatarGenerator(Options(), make_setup("silence"), runner=runner)
        stream = gen.frames()
        gen.push(AudioChunk(speech(0.96), RATE), generation=5)
        pending = asyncio.ensure_future(anext(stream))
        await settle()
        runner.finish(runner.begin())
        first = await pending
        gen.pause()
        gen.reset()
        fresh = gen.frames()  # a new consumer (a new page)
        gen.push(AudioChunk(speech(0.48, seed=3), RATE), generation=1)
        gen.end(1)
        pending = asyncio.ensure_future(anext(fresh))
        await settle()
        job = runner.begin()
        runner.finish(job)
        frames = [await pending] + [await anext(fresh) for _ in range(11)]
        await gen.aclose()
        return first, job, frames, runner.skipped

    first, job, frames, skipped = asyncio.run(run())
    assert first.generation == 5
    assert not job.idle and [f.generation for f in frames] == [1] * 12, "generation 1 plays again, not paused"
    np.testing.assert_array_equal(np.concatenate([f.audio for f in frames]), speech(0.48, seed=3))
    assert [f.index for f in frames] == list(range(1, 13)), "the frame clock goes on"
