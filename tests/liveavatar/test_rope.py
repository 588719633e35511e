"""RoPE positions: the reference's table values, the token grids, Rolling RoPE, and positions past the table's end."""

from __future__ import annotations

import torch

from liveavatar.avatar.liveavatar.config import DiTConfig
from liveavatar.avatar.liveavatar.dit import CausalS2VDiT
from liveavatar.avatar.liveavatar.rope import Rope3D, axis_pairs, framepack_positions


def reference_table(rows: int, head_dim: int = 128) -> list[torch.Tensor]:
    """The reference's precomputed per-axis table (outer(arange, 1/theta^(2i/d)) -> polar), complex128."""
    tables = []
    for pairs in axis_pairs(head_dim):
        dim = 2 * pairs
        angles = torch.outer(torch.arange(rows), 1.0 / torch.pow(10000, torch.arange(0, dim, 2).to(torch.float64).div(dim)))
        tables.append(torch.polar(torch.ones_like(angles), angles))
    return tables


def test_axis_split_is_22_21_21_for_head_dim_128():
    assert axis_pairs(128) == (22, 21, 21)


def test_multipliers_equal_the_reference_table_up_to_its_end():
    rope = Rope3D(128, round_to_fp16=False)
    table = reference_table(45000)
    for p in (0, 1, 29, 30, 1234, 44999):
        grid = rope.grid([p], [p % 97], [p % 89])[0]
        expected = torch.cat([table[0][p], table[1][p % 97], table[2][p % 89]])
        assert torch.equal(grid, expected), p


def test_negative_positions_are_conjugates():
    rope = Rope3D(128, round_to_fp16=False)
    assert torch.equal(rope.grid([-19], [0], [0]), torch.cat([reference_table(20)[0][19].conj(), torch.ones(42, dtype=torch.complex128)])[None])


def test_fp16_rounding_like_the_reference_complex32_store():
    exact, rounded = Rope3D(128, round_to_fp16=False).grid([7], range(3), range(2)), Rope3D(128).grid([7], range(3), range(2))
    assert torch.equal(rounded.real, exact.real.half().double()) and torch.equal(rounded.imag, exact.imag.half().double())
    assert 0 < (rounded - exact).abs().max() < 1e-3


def test_grid_order_is_time_then_height_then_width():
    rope = Rope3D(128, round_to_fp16=False)
    grid = rope.grid([5, 6], [0, 1, 2], [0, 1])
    assert grid.shape == (12, 64)
    assert torch.equal(grid[7], rope.grid([6], [0], [1])[0])  # t index 1, h 0, w 1


def test_framepack_positions_of_the_fixture_grid():
    post, x2, x4 = framepack_positions(16, 24, (1, 2, 16))
    assert post == ([-1], list(range(8)), list(range(12)))
    assert x2 == ([-3], [0, 2, 4, 7], [0, 2, 4, 6, 8, 11])
    assert x4 == ([-19, -14, -9, -4], [0, 7], [0, 5, 11])


def test_rolling_ref_position_is_max_30_f_plus_d():
    model = CausalS2VDiT(DiTConfig(dim=256, num_heads=2, num_layers=1, ffn_dim=64, text_dim=8, audio_dim=8, audio_inject_layers=(0,)))
    for f in (0, 3, 12, 25, 26, 30, 3168, 10**9):
        for d in (4, 17, 30):
            assert model.ref_position(f, d) == max(30, f + d)


def test_positions_never_run_out():
    rope = Rope3D(128, round_to_fp16=False)
    one = rope.grid([1], [0], [0])[0]
    for p in (45000, 10**6, 10**9, 2**40):
        a, b = rope.grid([p], [0], [0])[0], rope.grid([p + 1], [0], [0])[0]
        assert torch.isfinite(torch.view_as_real(a)).all()
        assert torch.allclose(a.abs(), torch.ones(64, dtype=torch.float64))
        # rotation by one more step composes exactly as it should, even 2**40 latent frames in (~5,600 years)
        assert (b - a * one).abs().max() < (1e-4 if p == 2**40 else 1e-6)


def test_rope_is_relative():
    rope = Rope3D(128, round_to_fp16=False)
    q, k = torch.randn(1, 1, 1, 128), torch.randn(1, 1, 1, 128)

    def score(pq: int, pk: int) -> float:
        return float((rope.apply(q, rope.grid([pq], [3], [4])) * rope.apply(k, rope.grid([pk], [3], [4]))).sum())

    assert abs(score(40, 31) - score(10**7 + 9, 10**7)) < 1e-4
    assert abs(score(40, 31) - score(40, 30)) > 1e-4
