"""The DiT's causal audio encoder: wav2vec2 layers mixed by learned weights, then causal convs to latent rate.

Input: wav2vec2 hidden states at video-frame rate [B, layers, C, T]. Output per latent frame (4× temporal
downsampling by two stride-2 convs): `num_token` local tokens plus one learned padding token, and one
global token that drives the AdaLN of the audio injectors. Submodule names follow the reference
(`casual_audio_encoder.encoder.conv1_local.conv`, ...), so its state dict loads as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv1d(nn.Module):
    """Conv1d that pads only the past, by repeating the first sample (replicate padding)."""

    def __init__(self, chan_in: int, chan_out: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.left_pad = kernel_size - 1
        self.conv = nn.Conv1d(chan_in, chan_out, kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.left_pad, 0), mode="replicate"))


def _norm_act(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine (eps 1e-6) over the last axis, then SiLU."""
    return F.silu(F.layer_norm(x, x.shape[-1:], eps=1e-6))


class MotionEncoder(nn.Module):
    """Causal conv stack (stride 1, 2, 2) producing local tokens per frame and an optional global token."""

    def __init__(self, in_dim: int, hidden_dim: int, num_tokens: int, need_global: bool = True) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.conv1_local = CausalConv1d(in_dim, hidden_dim // 4 * num_tokens, 3, stride=1)
        self.conv1_global = CausalConv1d(in_dim, hidden_dim // 4, 3, stride=1) if need_global else None
        self.conv2 = CausalConv1d(hidden_dim // 4, hidden_dim // 2, 3, stride=2)
        self.conv3 = CausalConv1d(hidden_dim // 2, hidden_dim, 3, stride=2)
        self.final_linear = nn.Linear(hidden_dim, hidden_dim) if need_global else None
        self.padding_tokens = nn.Parameter(torch.zeros(1, 1, 1, hidden_dim))

    def _downsample(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, C/4] (already normed and activated) -> [N, T/4, C], through the two shared stride-2 convs."""
        x = _norm_act(self.conv2(x.transpose(1, 2)).transpose(1, 2))
        return _norm_act(self.conv3(x.transpose(1, 2)).transpose(1, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """x [B, T, C] -> (global [B, T', 1, D] or None, local [B, T', num_tokens + 1, D])."""
        b, t, _ = x.shape
        x = x.transpose(1, 2)  # B C T
        local = self.conv1_local(x)  # B (n c) T
        local = local.view(b, self.num_tokens, -1, t).flatten(0, 1).transpose(1, 2)  # (B n) T c
        local = self._downsample(_norm_act(local))
        local = local.view(b, self.num_tokens, *local.shape[1:]).permute(0, 2, 1, 3)  # B T' n D
        padding = self.padding_tokens.expand(b, local.shape[1], 1, -1)
        local = torch.cat([local, padding], dim=2)
        if self.conv1_global is None:
            return None, local
        glob = _norm_act(self.conv1_global(x).transpose(1, 2))
        glob = self.final_linear(self._downsample(glob))
        return glob.unsqueeze(2), local


class CausalAudioEncoder(nn.Module):
    """SiLU-normalised weighted sum over wav2vec2 layers, then `MotionEncoder`; runs in float32."""

    def __init__(self, audio_dim: int, out_dim: int, num_tokens: int, num_layers: int = 25, need_global: bool = True) -> None:
        super().__init__()
        self.encoder = MotionEncoder(audio_dim, out_dim, num_tokens, need_global)
        self.weights = nn.Parameter(torch.ones(1, num_layers, 1, 1) * 0.01)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """features [B, layers, C, T] -> (global [B, T', 1, D], local [B, T', n+1, D]), T' = ceil(ceil(T/2)/2)."""
        weights = F.silu(self.weights.float())
        mixed = ((features.float() * weights) / weights.sum(dim=1, keepdim=True)).sum(dim=1)  # B C T
        return self.encoder(mixed.transpose(1, 2))
