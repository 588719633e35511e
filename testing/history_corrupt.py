"""History Corrupt, a training-time utility: noise injected into the self-attention KV history.

LiveAvatar trains the causal student to tolerate its own drift by corrupting the cached history it attends
to. The training code is not released and the noise magnitude is not published (see the model doc), so the
strength is a parameter: every history key/value entry gets Gaussian noise whose standard deviation is
`strength` × the RMS of that layer's history (the "std_scale" convention of the reference's SFT config for
motion noise). Only slots that hold earlier blocks are touched: the block being denoised and the sink
(cond cache) stay clean. `probability` < 1 corrupts only some calls, for training-time randomisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from liveavatar.avatar.liveavatar.cache import KVRing


@dataclass(frozen=True)
class HistoryCorrupt:
    """Noise strength (relative to the history RMS), chance per call, and which tensors to corrupt."""

    strength: float = 0.1
    probability: float = 1.0
    keys: bool = True
    values: bool = True

    def __post_init__(self) -> None:
        if self.strength < 0 or not 0 <= self.probability <= 1:
            raise ValueError(f"strength must be >= 0 and probability in [0, 1], got {self.strength}, {self.probability}")


def history_mask(capacity: int, start: int, length: int) -> torch.Tensor:
    """Bool [visible slots] for a block of `length` tokens at absolute token `start`: True where an earlier block lies."""
    visible = capacity if start >= capacity else start + length
    mask = torch.ones(visible, dtype=torch.bool)
    slot = start % capacity
    mask[slot:slot + length] = False
    return mask


def corrupt(x: torch.Tensor, mask: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """A copy of x [L, ...] with N(0, (strength · RMS(x[mask]))²) noise added on the rows where mask is True."""
    out = x.clone()
    if strength == 0 or not mask.any():
        return out
    rows = x[mask].float()
    rms = rows.pow(2).mean().sqrt()
    noise = torch.randn(rows.shape, generator=generator, dtype=torch.float32) * (strength * rms)
    out[mask] = (rows + noise.to(rows.device)).to(x.dtype)
    return out


@torch.no_grad()
def corrupt_ring_(ring: KVRing, start: int, length: int, cfg: HistoryCorrupt, generator: torch.Generator) -> bool:
    """Corrupt, in place, the history a block at `start` will attend to in every layer; returns whether it did."""
    if cfg.probability < 1 and torch.rand((), generator=generator).item() >= cfg.probability:
        return False
    mask = history_mask(ring.capacity, start, length)
    visible = len(mask)
    for layer in range(ring.k.shape[0]):
        if cfg.keys:
            ring.k[layer, :visible] = corrupt(ring.k[layer, :visible], mask, cfg.strength, generator)
        if cfg.values:
            ring.v[layer, :visible] = corrupt(ring.v[layer, :visible], mask, cfg.strength, generator)
    return True
