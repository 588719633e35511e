"""The streaming loop on its own: sink replacement timing, d sources, per-clip noise, per-step rings."""

from __future__ import annotations

import random
from contextlib import contextmanager

import pytest
import torch

from liveavatar.avatar.liveavatar.config import StreamConfig
from liveavatar.avatar.liveavatar.stream import BlockStreamer, ClipNoise, fixed_relative_dist, random_relative_dist, relative_dist_from_config, replay_relative_dist
from liveavatar.avatar.liveavatar.tiny import TINY_DIT

LAT = 8  # 8×8 latent, 16 tokens per frame


@pytest.fixture(scope="module")
def model():
    from liveavatar.avatar.liveavatar.dit import CausalS2VDiT

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return CausalS2VDiT(TINY_DIT).eval()


@contextmanager
def prefills_recorded(model):
    """Record the sink latent of every prefill while the block runs."""
    calls: list[torch.Tensor] = []
    prefill = model.prefill
    model.prefill = lambda *args, **kwargs: (calls.append(args[0].clone()), prefill(*args, **kwargs))[1]
    try:
        yield calls
    finally:
        del model.prefill


def make_streamer(model, cfg: StreamConfig) -> BlockStreamer:
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(1, 16, 1, LAT, LAT, generator=gen)
    motion = torch.randn(1, 16, 19, LAT, LAT, generator=gen)
    text = model.encode_text(torch.randn(5, TINY_DIT.text_dim, generator=gen))
    noise = ClipNoise(7, 16, cfg.frames_per_block, cfg.blocks_per_clip, LAT, LAT)
    return BlockStreamer(model, cfg, text, ref, motion, fixed_relative_dist(10), noise)


def audio(block: int) -> torch.Tensor:
    return torch.randn(1, 25, TINY_DIT.audio_dim, 12, generator=torch.Generator().manual_seed(100 + block))


def test_adaptive_attention_sink_replaces_the_reference_once(model):
    with prefills_recorded(model) as calls:
        streamer = make_streamer(model, StreamConfig())
        finals = [streamer.next_block(audio(b)) for b in range(9)]
    assert len(calls) == 2, "prefill at start, re-prefill once at block 4, never again"
    assert torch.equal(calls[1], finals[0][None, :, 0:1])
    assert torch.equal(streamer.sink_latent, finals[0][None, :, 0:1])


def test_sink_refresh_can_be_disabled(model):
    with prefills_recorded(model) as calls:
        streamer = make_streamer(model, StreamConfig(sink_refresh_block=None))
        for b in range(5):
            streamer.next_block(audio(b))
    assert len(calls) == 1


def test_each_step_writes_only_its_own_ring(model):
    streamer = make_streamer(model, StreamConfig())
    streamer.next_block(audio(0))
    tokens = 3 * LAT * LAT // 4
    rings = streamer.rings
    assert len(rings) == 4 and all(r.capacity == 12 * LAT * LAT // 4 for r in rings)
    firsts = [r.k[0, :tokens].clone() for r in rings]
    assert all(f.abs().sum() > 0 for f in firsts)
    assert all(not torch.equal(firsts[i], firsts[j]) for i in range(4) for j in range(i + 1, 4)), "timestep forcing: one history per step"
    assert all(r.k[:, tokens:].abs().sum() == 0 for r in rings)


def test_relative_dist_sources():
    draws = random_relative_dist(random.Random(7))
    # the fixture's 48 draws came from random.seed(7) then random.randint(4, 30) per call
    assert [draws() for _ in range(8)] == [14, 8, 16, 24, 5, 6, 30, 21]
    assert all(4 <= random_relative_dist(random.Random(1))() <= 30 for _ in range(100))
    assert fixed_relative_dist(30)() == 30
    replay = replay_relative_dist([5, 6])
    assert (replay(), replay()) == (5, 6)
    with pytest.raises(RuntimeError, match="exhausted"):
        replay()
    assert relative_dist_from_config(StreamConfig(fixed_relative_dist=12), seed=0)() == 12
    a, b = relative_dist_from_config(StreamConfig(), seed=3), relative_dist_from_config(StreamConfig(), seed=3)
    assert [a() for _ in range(10)] == [b() for _ in range(10)]


def test_clip_noise_is_the_per_clip_draw_sliced_per_block():
    noise = ClipNoise(2024, 16, 3, 4, 16, 24)
    clip1 = torch.randn(16, 12, 16, 24, generator=torch.Generator().manual_seed(2025))
    assert torch.equal(noise(5), clip1[:, 3:6])
    assert torch.equal(noise(4), clip1[:, 0:3])
    assert torch.equal(noise(0), torch.randn(16, 12, 16, 24, generator=torch.Generator().manual_seed(2024))[:, :3])
