"""TPP building blocks without processes: the step layout, the message format, and the schedule model."""

from __future__ import annotations

import pytest
import torch

from liveavatar.avatar.liveavatar.tpp.layout import TPPLayout
from liveavatar.avatar.liveavatar.tpp.schedule_model import (StageCosts, forward_cost_for_fps, predict, reference_layout, simulate,
                                                  stage_work)
from liveavatar.avatar.liveavatar.blocks import BlockJob, skip_before_speech
from liveavatar.avatar.liveavatar.tpp.wire import HEADER_FIELDS, KIND_BLOCK, BlockHeader, MessageLayout, TensorSpec


# ---- layout ---------------------------------------------------------------------------------------
def test_layout_splits_the_steps_contiguously_and_names_the_roles():
    four = TPPLayout(4, decode_worker=True)
    assert [list(four.steps_of(r)) for r in range(5)] == [[0], [1], [2], [3], []]
    assert four.world_size == 5 and four.decode_rank == 4 and four.last_dit_rank == 3
    assert four.name(1) == "DiT worker 1 (step 1)" and four.name(4) == "decode worker"
    two = TPPLayout(2, decode_worker=False)
    assert [list(two.steps_of(r)) for r in range(2)] == [[0, 1], [2, 3]]
    assert two.world_size == 2 and two.decode_rank == 1 and two.name(1) == "DiT worker 1 (steps 2-3 + decode)"
    assert list(TPPLayout(1).steps_of(0)) == [0, 1, 2, 3]
    for bad in (0, 3, 5):
        with pytest.raises(ValueError, match="must divide the 4 denoising steps"):
            TPPLayout(bad)


# ---- wire -----------------------------------------------------------------------------------------
def test_messages_carry_any_dtype_bit_exactly():
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(16, 3, 8, 8, generator=gen), torch.randn(3, 7, generator=gen).to(torch.bfloat16),
               torch.randint(-5, 5, (5,), generator=gen), torch.randn(3, 5, 1, generator=gen).double()]
    tensors[0][0, 0, 0, 0] = float("nan")  # NaN payloads and odd sizes survive too
    layout = MessageLayout([TensorSpec(tuple(t.shape), t.dtype) for t in tensors])
    header = [1, 42, 7, 3]
    buf = layout.pack(header, tensors)
    assert buf.dtype == torch.uint8 and buf.numel() == layout.nbytes and layout.nbytes % 8 == 0
    got_header, got = layout.unpack(buf)
    assert got_header == header + [0] * (HEADER_FIELDS - len(header))
    for a, b in zip(tensors, got):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a.contiguous().view(torch.uint8) if a.dtype != torch.bfloat16 else a.view(torch.int16),
                           b.contiguous().view(torch.uint8) if b.dtype != torch.bfloat16 else b.view(torch.int16))
    buf.zero_()
    assert not torch.equal(got[1], torch.zeros_like(got[1])), "unpacked tensors are copies"


def test_a_block_message_has_a_named_header():
    layout = MessageLayout([TensorSpec((2,), torch.float32)])
    header, (x,) = layout.unpack_block(layout.pack(BlockHeader(KIND_BLOCK, seq=9, epoch=2, block=40), [torch.ones(2)]))
    assert header == BlockHeader(KIND_BLOCK, 9, 2, 40) and (header.seq, header.epoch, header.block) == (9, 2, 40)
    assert torch.equal(x, torch.ones(2))


def test_idle_jobs_give_way_to_speech_and_stale_jobs_never_start():
    def job(seq, epoch=1, idle=True):
        return BlockJob(seq, epoch, idle, torch.zeros(1).numpy())

    jobs = [job(1, epoch=0), job(2), job(3), job(4, idle=False), job(5)]
    start, skipped = skip_before_speech(jobs, epoch=1)
    assert start.seq == 4 and [j.seq for j in skipped] == [1, 2, 3], "stale and idle-before-speech jobs are skipped"
    assert [j.seq for j in jobs] == [5], "the rest waits"
    start, skipped = skip_before_speech(jobs, epoch=1)
    assert start.seq == 5 and not skipped, "an idle job with no speech behind it runs"
    assert skip_before_speech([], epoch=1) == (None, [])


def test_messages_reject_what_does_not_fit():
    layout = MessageLayout([TensorSpec((2, 3), torch.float32)])
    with pytest.raises(ValueError, match="does not fit"):
        layout.pack([1], [torch.zeros(3, 2)])
    with pytest.raises(ValueError, match="does not fit"):
        layout.pack([1], [torch.zeros(2, 3, dtype=torch.float64)])
    with pytest.raises(ValueError, match="carries 1 tensors"):
        layout.pack([1], [])
    with pytest.raises(ValueError, match="at most"):
        layout.pack(list(range(HEADER_FIELDS + 1)), [torch.zeros(2, 3)])


# ---- schedule model -------------------------------------------------------------------------------
COSTS = StageCosts(forward_s=0.1, features_s=0.02, decode_s=0.05, frames_s=0.01, transfer_s=0.001)


def test_in_process_is_the_sum_of_all_work():
    p = predict(COSTS, 0)
    assert p.period_s == pytest.approx(0.02 + 0.4 + 0.05 + 0.01)
    assert p.ttff_s == pytest.approx(p.period_s) and p.fps == pytest.approx(12 / p.period_s)


def test_a_pipeline_runs_at_its_slowest_stage_and_ttff_is_the_whole_path():
    work = stage_work(COSTS, 2, decode_worker=True)
    assert work == pytest.approx({"dit0": 0.22, "dit1": 0.201, "decode": 0.061})
    p = predict(COSTS, 2, decode_worker=True, cores=None)
    assert p.period_s == pytest.approx(0.22) and p.bottleneck == "dit0"
    assert p.ttff_s == pytest.approx(0.22 + 0.201 + 0.061)
    four = predict(COSTS, 4, decode_worker=True)
    assert four.period_s == pytest.approx(0.12) and four.fps == pytest.approx(100.0)


def test_shared_cores_cap_the_throughput():
    assert simulate([1.0, 1.0, 1.0], cores=None, blocks=20)[-1] - simulate([1.0, 1.0, 1.0], cores=None, blocks=19)[-1] == pytest.approx(1.0)
    times = simulate([1.0, 1.0, 1.0], cores=2, blocks=40)
    assert (times[-1] - times[20]) / 19 == pytest.approx(1.5, rel=1e-6), "3 busy stages on 2 cores: 3 s of work per 2 s"
    p = predict(StageCosts(forward_s=0.1, decode_s=0.2), 2, decode_worker=True, cores=2)
    assert p.bottleneck == "cpu" and p.period_s == pytest.approx(0.3, rel=1e-6)


def test_decode_bound_layouts_do_not_scale_with_dit_workers():
    tiny_like = StageCosts(forward_s=0.016, features_s=0.015, decode_s=0.11)
    one, two = predict(tiny_like, 1, False, cores=2), predict(tiny_like, 2, False, cores=2)
    assert two.fps / one.fps < 1.4 and two.bottleneck == "dit1"
    deep_like = StageCosts(forward_s=0.14, features_s=0.015, decode_s=0.1)
    one, two = predict(deep_like, 1, False, cores=2), predict(deep_like, 2, False, cores=2)
    assert two.fps / one.fps > 1.7


def test_reference_layout_predictions():
    assert forward_cost_for_fps(45) == pytest.approx(0.2667, abs=1e-4) and forward_cost_for_fps(20) == pytest.approx(0.6)
    fast = reference_layout(45, decode_s=0.14)
    assert fast.fps == pytest.approx(45.0) and fast.ttff_s == pytest.approx(4 * 12 / 45 + 0.14)
    slow_vae = reference_layout(20, decode_s=12 / 8.7)
    assert slow_vae.fps == pytest.approx(8.7) and slow_vae.bottleneck == "decode"
