"""Streaming attention state: one self-attention KV ring per denoising step, and the cond (sink) cache.

Memory is fixed at construction: a ring holds `capacity` tokens per layer whatever the stream length,
and the cond cache holds the reference + FramePack tokens. Nothing grows with time.
"""

from __future__ import annotations

import torch


class KVRing:
    """Keys (RoPE already applied, at absolute positions) and values of the most recent `capacity` tokens.

    A block starting at absolute token `start` is written at slot `start % capacity`. Before the ring has
    wrapped, attention sees slots [0, start + block); afterwards it sees the whole ring, i.e. the current
    block plus the newest `capacity - block` tokens of history, in slot order (as the reference does).
    """

    def __init__(self, num_layers: int, capacity: int, heads: int, head_dim: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        self.capacity = capacity
        self.k = torch.zeros(num_layers, capacity, heads, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [1, L, heads, head_dim] of the block at absolute token `start`; return the keys/values to attend to."""
        length = k.shape[1]
        slot = start % self.capacity
        if slot + length > self.capacity:
            raise ValueError(f"a block of {length} tokens at slot {slot} would straddle the ring end ({self.capacity})")
        self.k[layer, slot:slot + length] = k[0]
        self.v[layer, slot:slot + length] = v[0]
        visible = self.capacity if start >= self.capacity else start + length
        return self.k[layer, :visible].unsqueeze(0), self.v[layer, :visible].unsqueeze(0)

    def nbytes(self) -> int:
        """Bytes held by the ring."""
        return self.k.numel() * self.k.element_size() * 2


class CondCache:
    """Per-layer keys (before RoPE) and values of the sink tokens: ref latent | FramePack post | 2x | 4x.

    Filled by the sink prefill and refilled by the Adaptive Attention Sink; streaming calls rotate the
    keys afresh on every call, because Rolling RoPE moves the ref position with the stream.
    """

    def __init__(self, num_layers: int) -> None:
        self.k: list[torch.Tensor | None] = [None] * num_layers
        self.v: list[torch.Tensor | None] = [None] * num_layers

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Record layer `layer`'s k, v [1, L, heads, head_dim]."""
        self.k[layer], self.v[layer] = k, v

    def layer(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(k, v) of one layer; raises if the prefill has not run."""
        k, v = self.k[layer], self.v[layer]
        if k is None or v is None:
            raise RuntimeError("the cond cache is empty: run the sink prefill first")
        return k, v

    @property
    def length(self) -> int:
        """Sink tokens held (0 before the prefill)."""
        return 0 if self.k[0] is None else self.k[0].shape[1]
