"""Who does what in a TPP run: D DiT workers with contiguous step shares, and where decoding happens.

Process index = torch.distributed rank. Ranks 0..D-1 are DiT workers; worker r runs steps
[r·k, (r+1)·k) with k = steps / D. With a decode worker it is rank D; without one the last DiT worker
decodes. The decoding process is also the "prep root": it VAE-encodes the portrait, encodes the prompt and
broadcasts them at start, and it broadcasts the Adaptive Attention Sink latent once block 0 is clean (the
reference does the same from its VAE rank).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TPPLayout:
    """D DiT workers over `num_steps` denoising steps, plus an optional decode worker."""

    dit_workers: int
    decode_worker: bool = True
    num_steps: int = 4

    def __post_init__(self) -> None:
        if self.dit_workers < 1 or self.num_steps % self.dit_workers:
            divisors = [d for d in range(1, self.num_steps + 1) if self.num_steps % d == 0]
            raise ValueError(f"dit_workers={self.dit_workers} must divide the {self.num_steps} denoising steps "
                             f"(one of {divisors})")

    @property
    def world_size(self) -> int:
        """Processes in the torch.distributed group."""
        return self.dit_workers + (1 if self.decode_worker else 0)

    @property
    def steps_per_worker(self) -> int:
        """Denoising steps each DiT worker runs per block."""
        return self.num_steps // self.dit_workers

    def steps_of(self, rank: int) -> range:
        """The steps DiT worker `rank` owns (empty for the decode worker)."""
        if rank >= self.dit_workers:
            return range(0)
        k = self.steps_per_worker
        return range(rank * k, (rank + 1) * k)

    @property
    def decode_rank(self) -> int:
        """The rank that decodes latents to frames (and is the prep/sink root)."""
        return self.dit_workers if self.decode_worker else self.dit_workers - 1

    @property
    def last_dit_rank(self) -> int:
        """The DiT worker that finishes each block."""
        return self.dit_workers - 1

    def is_dit(self, rank: int) -> bool:
        """Whether `rank` runs denoising steps."""
        return rank < self.dit_workers

    def name(self, rank: int) -> str:
        """A human name for error messages: 'DiT worker 1 (steps 2-3)' or 'decode worker'."""
        if not self.is_dit(rank):
            return "decode worker"
        steps = self.steps_of(rank)
        span = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"
        extra = " + decode" if rank == self.decode_rank else ""
        return f"DiT worker {rank} ({span}{extra})"

    @property
    def stages(self) -> int:
        """Pipeline stages a block passes through (the in-flight depth needed to keep all busy)."""
        return self.world_size
