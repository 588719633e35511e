"""KV ring wrap, the cond cache, the 4-step schedule against diffusers, and History Corrupt statistics."""

from __future__ import annotations

import pytest
import torch

from liveavatar.avatar.liveavatar.cache import CondCache, KVRing
from liveavatar.testing.history_corrupt import HistoryCorrupt, corrupt, corrupt_ring_, history_mask
from liveavatar.avatar.liveavatar.schedule import FlowMatchSchedule


def block(value: float, length: int = 4) -> torch.Tensor:
    return torch.full((1, length, 1, 2), value)


def test_ring_window_grows_then_covers_everything_after_wrap():
    ring = KVRing(num_layers=1, capacity=12, heads=1, head_dim=2)
    for b in range(3):  # blocks of 4 tokens at 0, 4, 8: the window is everything written so far
        k, v = ring.write(0, 4 * b, block(b), block(-b))
        assert k.shape[1] == 4 * (b + 1)
        assert torch.equal(k[0, :, 0, 0], torch.tensor([float(i // 4) for i in range(4 * (b + 1))]))
    k, v = ring.write(0, 12, block(3), block(-3))  # wraps onto slots 0..3
    assert k.shape[1] == 12
    assert torch.equal(k[0, :, 0, 0], torch.tensor([3.0] * 4 + [1.0] * 4 + [2.0] * 4)), "current block + the 2 newest, in slot order"
    assert torch.equal(v[0, :, 0, 0], -k[0, :, 0, 0])
    k, _ = ring.write(0, 10**12, block(9), block(9))  # absolute positions never run out; slot = start % capacity
    assert k.shape[1] == 12 and (10**12) % 12 == 4 and torch.equal(k[0, 4:8, 0, 0], torch.full((4,), 9.0))


def test_ring_rejects_a_block_straddling_its_end():
    ring = KVRing(1, 12, 1, 2)
    with pytest.raises(ValueError, match="straddle"):
        ring.write(0, 10, block(1), block(1))


def test_ring_memory_is_fixed():
    ring = KVRing(3, 1152, 2, 128)
    before = ring.nbytes()
    for b in range(40):
        ring.write(b % 3, 288 * b, torch.randn(1, 288, 2, 128), torch.randn(1, 288, 2, 128))
    assert ring.nbytes() == before == 2 * 3 * 1152 * 2 * 128 * 4


def test_cond_cache_requires_prefill():
    cache = CondCache(2)
    assert cache.length == 0
    with pytest.raises(RuntimeError, match="prefill"):
        cache.layer(0)
    cache.store(0, torch.zeros(1, 5, 1, 2), torch.ones(1, 5, 1, 2))
    assert cache.length == 5


def test_schedule_matches_diffusers_flow_match_euler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    ours = FlowMatchSchedule.build(steps=4, shift=3.0)
    assert torch.allclose(ours.sigmas, torch.tensor([1.0, 0.857692, 0.602151, 0.0089286, 0.0]), atol=1e-6)
    assert torch.allclose(ours.timesteps, torch.tensor([1000.0, 857.6923, 602.1506, 8.928572]), atol=1e-3)
    for steps, shift in ((4, 3.0), (1, 3.0), (8, 5.0), (40, 3.0)):
        ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        ref.set_timesteps(steps)
        mine = FlowMatchSchedule.build(steps, shift)
        assert torch.equal(mine.sigmas, ref.sigmas) and torch.equal(mine.timesteps, ref.timesteps), (steps, shift)
    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3)
    ref.set_timesteps(4)
    x, v = torch.randn(16, 3, 4, 4), torch.randn(16, 3, 4, 4)
    y = x
    for i, t in enumerate(ref.timesteps):
        expected = ref.step(v[None], t, y[None], return_dict=False)[0][0]
        y = ours.step(i, v, y)
        assert torch.equal(y, expected)


def test_history_mask_excludes_the_current_block():
    assert history_mask(12, 0, 4).tolist() == [False] * 4
    assert history_mask(12, 8, 4).tolist() == [True] * 8 + [False] * 4
    assert history_mask(12, 16, 4).tolist() == [True] * 4 + [False] * 4 + [True] * 4


def test_history_corrupt_noise_statistics():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 2, 64) * 3.0
    mask = torch.zeros(4000, dtype=torch.bool)
    mask[:3000] = True
    for strength in (0.05, 0.3, 1.0):
        y = corrupt(x, mask, strength, gen)
        noise = (y - x)[mask]
        rms = x[mask].pow(2).mean().sqrt()
        assert abs(noise.mean().item()) < 0.02 * strength * rms
        assert abs(noise.std().item() / (strength * rms.item()) - 1) < 0.02
        assert torch.equal(y[~mask], x[~mask]), "the current block stays clean"
    assert torch.equal(corrupt(x, mask, 0.0, gen), x)


def test_history_corrupt_on_a_ring_is_seeded_and_respects_probability():
    def filled() -> KVRing:
        ring = KVRing(2, 12, 1, 8)
        ring.k.normal_(generator=torch.Generator().manual_seed(1))
        ring.v.normal_(generator=torch.Generator().manual_seed(2))
        return ring

    a, b, clean = filled(), filled(), filled()
    assert corrupt_ring_(a, 16, 4, HistoryCorrupt(0.5), torch.Generator().manual_seed(3))
    corrupt_ring_(b, 16, 4, HistoryCorrupt(0.5), torch.Generator().manual_seed(3))
    assert torch.equal(a.k, b.k) and torch.equal(a.v, b.v)
    assert torch.equal(a.k[:, 4:8], clean.k[:, 4:8]) and not torch.equal(a.k[:, :4], clean.k[:, :4])
    c = filled()
    assert not corrupt_ring_(c, 16, 4, HistoryCorrupt(0.5, probability=0.0), torch.Generator().manual_seed(3))
    assert torch.equal(c.k, clean.k)
    d = filled()
    corrupt_ring_(d, 16, 4, HistoryCorrupt(0.5, values=False), torch.Generator().manual_seed(3))
    assert torch.equal(d.v, clean.v) and not torch.equal(d.k, clean.k)
    with pytest.raises(ValueError):
        HistoryCorrupt(strength=-1.0)
