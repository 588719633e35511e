"""Typed messages between the orchestrator and the TPP worker processes (pickled over multiprocessing pipes).

Orchestrator -> first DiT worker: `BlockRequest` for every planned block.
Worker -> orchestrator, each on its own pipe:
- `Ready` once its models are loaded, the process groups connected and the sink prefilled;
- `Failed` when it fails (then it exits with code 1);
- `Progress` after every block a DiT worker finished: cumulative seconds per activity;
- the first DiT worker: `Skipped` for a block it never started (planned before a clear, or idle with speech
  queued behind it);
- the decoding process: `Frames` (the block's frames, and its clean latent when asked) or `Stale` (a block
  planned before a clear: decoded, so the VAE's causal caches stay in step, but not converted or sent).
The pool hands the orchestrator's event loop `FromWorker(rank, message)` for each, or one `PoolFault`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np


@dataclass(frozen=True)
class WorkerStats:
    """A worker's cumulative seconds per activity (features, dit, decode, frames, waits), blocks done, last epoch seen."""

    blocks: int
    epoch: int
    seconds: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """Flat and JSON-ready: {"blocks": .., "epoch": .., "<activity>_s": ..}."""
        return {"blocks": self.blocks, "epoch": self.epoch, **self.seconds}


@dataclass(frozen=True)
class BlockRequest:
    """Block `seq` planned at `epoch`: its 16 kHz audio; `idle` blocks may be skipped for speech queued behind."""

    seq: int
    epoch: int
    idle: bool
    pcm16k: np.ndarray


@dataclass(frozen=True)
class Ready:
    """The worker has loaded, connected and prefilled."""

    rank: int
    pid: int
    startup_s: float


@dataclass(frozen=True)
class Failed:
    """The worker's exception, with the tail of its traceback."""

    error: str


@dataclass(frozen=True)
class Progress:
    """A DiT worker finished a block."""

    stats: WorkerStats


@dataclass(frozen=True)
class Skipped:
    """The first DiT worker never started block `seq`."""

    seq: int


@dataclass(frozen=True)
class Frames:
    """Block `seq` decoded: uint8 frames [12, H, W, 3], and its clean latent when the pool keeps latents."""

    seq: int
    images: np.ndarray
    latent: Any
    stats: WorkerStats


@dataclass(frozen=True)
class Stale:
    """Block `seq` was decoded after a clear: nothing to show."""

    seq: int
    stats: WorkerStats


WorkerMessage = Union[Ready, Failed, Progress, Skipped, Frames, Stale]


@dataclass(frozen=True)
class FromWorker:
    """A message of worker `rank`, as the pool delivers it."""

    rank: int
    message: WorkerMessage


@dataclass(frozen=True)
class PoolFault:
    """The pool's first fault (a TPPError naming the worker); every worker has been stopped."""

    error: Exception


PoolEvent = Union[FromWorker, PoolFault]
