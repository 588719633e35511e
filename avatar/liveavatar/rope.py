"""3-axis rotary position embedding (time, height, width) whose positions never run out.

The reference precomputes a 45,000-row table and indexes it with the absolute latent frame, so an
endless stream dies after 45,000 latent frames (~7,200 s at 25 fps). Here every multiplier is computed
on demand from its integer position: angle = position · inv_freq in float64, exactly the product the
reference's table holds, so positions below 45,000 give bit-identical multipliers, and positions
beyond keep working. Python ints never overflow; the float64 angle is exact up to 2**53 and its
rounding error is |p| · 2**-53 rad, below 1e-4 rad (a fifth of the fp16 rounding the reference
applies to cos/sin anyway) for p < 9e11 latent frames, i.e. for ~4,500 years of 25 fps video.

Multipliers are rounded to fp16 like the reference (it stores them as complex32) and applied by a
complex multiply in float64, the result cast back to float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """Complex pairs per head given to the time, height and width axes (22/21/21 for head_dim 128)."""
    c = head_dim // 2
    return (c - 2 * (c // 3), c // 3, c // 3)


def spread(first: int, last: int, count: int) -> list[int]:
    """`count` integers evenly spread from `first` to `last`, truncated toward zero (np.linspace + astype(int))."""
    return np.linspace(first, last, count).astype(int).tolist()


class Rope3D:
    """Rotary multipliers for token grids, and their application to query/key heads."""

    def __init__(self, head_dim: int, theta: float = 10000.0, round_to_fp16: bool = True) -> None:
        self.round_to_fp16 = round_to_fp16
        self.inv_freqs = [
            1.0 / torch.pow(theta, torch.arange(0, 2 * p, 2, device="cpu").to(torch.float64).div(2 * p))
            for p in axis_pairs(head_dim)
        ]

    def _axis(self, axis: int, positions: Sequence[int]) -> torch.Tensor:
        """complex128 [len(positions), pairs]; negative positions give the conjugate of |p| (as the reference)."""
        pos = torch.tensor([abs(int(p)) for p in positions], dtype=torch.float64, device="cpu")
        angles = pos[:, None] * self.inv_freqs[axis][None, :]
        mult = torch.polar(torch.ones_like(angles), angles)
        negative = torch.tensor([int(p) < 0 for p in positions], device="cpu")
        return torch.where(negative[:, None], mult.conj(), mult)

    def grid(self, t: Sequence[int], h: Sequence[int], w: Sequence[int]) -> torch.Tensor:
        """complex128 [len(t)·len(h)·len(w), head_dim/2] for tokens ordered time-major, then height, then width."""
        ft, fh, fw = self._axis(0, t), self._axis(1, h), self._axis(2, w)
        nt, nh, nw = len(t), len(h), len(w)
        mult = torch.cat(
            [
                ft.view(nt, 1, 1, -1).expand(nt, nh, nw, -1),
                fh.view(1, nh, 1, -1).expand(nt, nh, nw, -1),
                fw.view(1, 1, nw, -1).expand(nt, nh, nw, -1),
            ],
            dim=-1,
        ).reshape(nt * nh * nw, -1)
        if self.round_to_fp16:
            mult = torch.complex(mult.real.half().double(), mult.imag.half().double())
        return mult

    @staticmethod
    def apply(x: torch.Tensor, mult: torch.Tensor) -> torch.Tensor:
        """Rotate x [B, S, heads, head_dim] by mult [S, head_dim/2] in float64; returns float32."""
        b, s, n, d = x.shape
        xc = torch.view_as_complex(x.to(torch.float64).reshape(b, s, n, d // 2, 2))
        return torch.view_as_real(xc * mult[None, :, None, :]).flatten(3).float()


def framepack_positions(lat_h: int, lat_w: int, buckets: Sequence[int]) -> list[tuple[list[int], list[int], list[int]]]:
    """(t, h, w) position lists of the FramePack buckets post | 2x | 4x for a lat_h × lat_w latent.

    Bucket k covers the latent frames just before the ones of bucket k-1 (negative times), is patched with
    stride s = 1, 2, 4 in time and 2s in space, and its tokens sit on positions spread over the full-resolution
    patch grid (so 4x tokens of a 16-frame bucket land at -19, -14, -9, -4).
    """
    grids = []
    start = 0
    gh, gw = lat_h // 2, lat_w // 2
    for stride, span in zip((1, 2, 4), buckets):
        start -= span
        t = [-p for p in spread(-start, -start - span + 1, span // stride)]
        grids.append((t, spread(0, gh - 1, gh // stride), spread(0, gw - 1, gw // stride)))
    return grids
