"""Blocks between the LiveAvatar generator and the strategy that computes them (in-process, or TPP workers).

The generator plans blocks (what speech, which reply) and hands each to its `BlockRunner` as a `BlockJob`; the
runner gives back one `BlockResult` per job. Two rules every runner follows, so that new speech never waits
behind more than the block already being computed:

- a job planned before the generator's current epoch (a `clear()` or `pause()` since) is not started: its
  result is "skipped";
- an idle job (no speech) that has not started yet is skipped when a job with speech is queued behind it.

A job that was started always finishes (every denoising step's KV ring must see the same blocks), so a stale
job may still come back with frames; the generator drops those.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Outcome = Literal["frames", "stale", "skipped"]


@dataclass(frozen=True)
class BlockJob:
    """One planned block: its order, the epoch it was planned in, whether it is idle, its 16 kHz audio."""

    seq: int
    epoch: int
    idle: bool
    pcm16k: np.ndarray


@dataclass(frozen=True)
class BlockResult:
    """What became of job `seq`: "frames" (uint8 [12, H, W, 3]), "stale" (computed after a clear) or "skipped"."""

    seq: int
    outcome: Outcome
    images: np.ndarray | None = None
    latent: Any = None  # the clean latent (a torch.Tensor) when the runner keeps latents (tests)


def skip_before_speech(jobs: list[BlockJob], epoch: int) -> tuple[BlockJob | None, list[BlockJob]]:
    """The next job to start from `jobs` (in order) and the jobs to skip before it (stale, or idle before speech)."""
    skipped = []
    while jobs:
        job = jobs.pop(0)
        if job.epoch != epoch or (job.idle and any(not later.idle for later in jobs)):
            skipped.append(job)
            continue
        return job, skipped
    return None, skipped


class BlockRunner(abc.ABC):
    """Where planned blocks are computed: the strategy a `LiveAvatarGenerator` is given."""

    stages: int = 1
    """How many blocks can be in work at once (the depth of the pipeline)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the models (or start the workers); idempotent, and safe to await from several tasks."""

    @abc.abstractmethod
    async def submit(self, job: BlockJob) -> None:
        """Queue a job (returns without waiting for it to be computed)."""

    @abc.abstractmethod
    async def result(self) -> BlockResult:
        """The next result (results of started jobs come in job order); raises if the runner failed."""

    @abc.abstractmethod
    def set_epoch(self, epoch: int) -> None:
        """Jobs of an older epoch are stale from now on."""

    async def aclose(self) -> None:
        """Stop computing and release what the runner holds (threads, processes); idempotent."""
