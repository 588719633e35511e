"""FramePack motion tokens: the last 19 motion latents packed coarser the further back they lie.

Buckets (newest first): post = 1 latent frame patched (1,2,2); 2x = 2 frames patched (2,4,4);
4x = 16 frames patched (4,8,8). Motion shorter than 19 frames is left-padded with zeros ("padd" mode).
"""

from __future__ import annotations

import torch
from torch import nn


class FramePack(nn.Module):
    """Motion latents [B, C, T, H, W] -> tokens [B, N, dim] in the order post | 2x | 4x (reference: `frame_packer`)."""

    def __init__(self, in_dim: int, dim: int, buckets: tuple[int, int, int] = (1, 2, 16)) -> None:
        super().__init__()
        self.buckets = buckets
        self.proj = nn.Conv3d(in_dim, dim, kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.proj_2x = nn.Conv3d(in_dim, dim, kernel_size=(2, 4, 4), stride=(2, 4, 4))
        self.proj_4x = nn.Conv3d(in_dim, dim, kernel_size=(4, 8, 8), stride=(4, 8, 8))

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        total = sum(self.buckets)
        b, c, t, h, w = motion.shape
        padded = motion.new_zeros(b, c, total, h, w)
        keep = min(total, t)
        if keep:
            padded[:, :, -keep:] = motion[:, :, -keep:]
        far, mid, post = padded.split(list(self.buckets)[::-1], dim=2)
        tokens = [proj(x).flatten(2).transpose(1, 2) for proj, x in ((self.proj, post), (self.proj_2x, mid), (self.proj_4x, far))]
        return torch.cat(tokens, dim=1)
