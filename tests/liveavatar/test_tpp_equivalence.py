"""TPP output equals the single-process output, bit for bit, for D = 1, 2, 4 DiT workers (tiny TEST config, CPU fp32).

Over 10 blocks (past the Adaptive Attention Sink swap at block 4 and the KV rings' wrap from block 4 on),
with Rolling-RoPE distances drawn at random (so each worker must replay every draw in order), speech of two
replies and idle blocks: every clean latent is `torch.equal` to the one the in-process generator computes,
and every AVFrame (image, audio, index, generation) is identical. Both sides run one torch thread.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from liveavatar.avatar.liveavatar.backend import LiveAvatarGenerator, Options
from liveavatar.avatar.liveavatar.inprocess import InProcessRunner
from liveavatar.avatar.liveavatar.tpp.runner import WorkerPoolRunner
from liveavatar.media import AudioChunk
from stream_helpers import RATE, make_setup, speech, take, worker_children

BLOCKS = 10


def script(gen) -> None:
    """Two replies queued up front (chunked), then idle: the same plan in both generators."""
    pcm = speech(2.5)
    for start in range(0, len(pcm), 7000):
        gen.push(AudioChunk(pcm[start:start + 7000], RATE), generation=1)
    gen.end(1)
    gen.push(AudioChunk(speech(1.1, seed=5), RATE), generation=2)
    gen.end(2)


@pytest.fixture(scope="module")
def reference():
    """Frames and clean latents of the in-process generator."""
    async def run():
        options, setup = Options(), make_setup()
        gen = LiveAvatarGenerator(options, setup, runner=InProcessRunner(options, setup, keep_latents=True))
        script(gen)
        frames = await take(gen.frames(), 12 * BLOCKS)
        await gen.aclose()
        return frames, list(gen.latents)

    return asyncio.run(run())


@pytest.mark.parametrize("dit_workers,decode_worker", [(1, True), (2, True), (4, True), (2, False)])
def test_tpp_output_is_bit_identical_to_one_process(reference, dit_workers, decode_worker):
    async def run():
        options, setup = Options(dit_workers=dit_workers, decode_worker=decode_worker), make_setup()
        gen = LiveAvatarGenerator(options, setup, runner=WorkerPoolRunner(options, setup, keep_latents=True))
        script(gen)
        frames = await take(gen.frames(), 12 * BLOCKS)
        latents = list(gen.latents)
        processes = len(gen.runner.worker_pids)
        await gen.aclose()
        return frames, latents, processes

    ref_frames, ref_latents = reference
    frames, latents, processes = asyncio.run(run())
    assert processes == dit_workers + (1 if decode_worker else 0)
    assert len(latents) >= BLOCKS and len(ref_latents) >= BLOCKS
    for b in range(BLOCKS):
        assert torch.equal(latents[b], ref_latents[b]), f"block {b}: max |diff| {(latents[b] - ref_latents[b]).abs().max()}"
    assert [f.index for f in frames] == list(range(12 * BLOCKS))
    labels = [f.generation for f in frames]
    assert 1 in labels and 2 in labels and None in labels, "speech of both replies, then idle"
    for mine, ref in zip(frames, ref_frames):
        assert (mine.index, mine.generation) == (ref.index, ref.generation)
        np.testing.assert_array_equal(mine.image, ref.image)
        np.testing.assert_array_equal(mine.audio, ref.audio)
    assert not worker_children(), "aclose() leaves no worker behind"
