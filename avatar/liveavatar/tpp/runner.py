"""The TPP strategy: planned blocks computed by Timestep-forcing Pipeline Parallel worker processes.

A job's 16 kHz audio goes to the first DiT worker at once (it runs wav2vec2 and the audio encoder there, and
the tokens travel with the latent); each DiT worker runs its share of the denoising steps with its own steps'
KV rings; the decoding process sends the frames back. Everything that decides what the frames carry stays
in the generator (avatar/liveavatar/backend.py); this only moves blocks.

The generator's epoch reaches every worker through shared memory: the first worker skips jobs planned before
it that it has not started (and idle jobs with speech queued behind them), the decoding process decodes but
does not convert or send stale blocks (its causal caches must stay in step), and the DiT workers in between
finish what they hold (each step's KV ring must see the same blocks as the others).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING

from liveavatar.avatar.liveavatar.blocks import BlockJob, BlockResult, BlockRunner
from liveavatar.avatar.liveavatar.config import StreamConfig
from liveavatar.avatar.liveavatar.options import Options
from liveavatar.avatar.liveavatar.tpp.layout import TPPLayout
from liveavatar.avatar.liveavatar.tpp.messages import BlockRequest, Frames, FromWorker, PoolEvent, PoolFault, Skipped, Stale
from liveavatar.avatar.liveavatar.tpp.pool import TPPError, WorkerPool
from liveavatar.avatar.liveavatar.tpp.worker import WorkerConfig
from liveavatar.avatar.registry import AvatarSetup

if TYPE_CHECKING:
    from liveavatar.avatar.liveavatar.tpp.stages import PartsFactory


class WorkerPoolRunner(BlockRunner):
    """`options.dit_workers` DiT worker processes (+ a decode worker): same frames as in-process, in a pipeline."""

    def __init__(self, options: Options, setup: AvatarSetup, parts_factory: PartsFactory | None = None,
                 keep_latents: bool = False) -> None:
        """`parts_factory` replaces the models `options` name (tests, benchmarks); `keep_latents` sends clean latents back."""
        self.layout = TPPLayout(options.dit_workers, options.decode_worker, StreamConfig().num_steps)
        self.stages = self.layout.stages
        self.config = WorkerConfig(
            layout=self.layout, options=options, portrait=setup.portrait, prompt=options.prompt, seed=setup.seed,
            out_size=setup.size, master_port=options.master_port, device=options.device, threads=options.worker_threads,
            start_timeout_s=options.start_timeout_s, heartbeat_timeout_s=options.heartbeat_timeout_s,
            parts_factory=parts_factory, keep_latents=keep_latents,
        )
        self._pool: WorkerPool | None = None
        self._starting: asyncio.Future | None = None
        self._close_pool: weakref.finalize | None = None
        self._events: asyncio.Queue[PoolEvent] | None = None
        self._epoch = 0

    # ---- BlockRunner ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the workers if needed and wait until all have loaded and connected (raises TPPStartError)."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start_pool())
        await asyncio.shield(self._starting)

    async def submit(self, job: BlockJob) -> None:
        """Hand the job's audio to the first DiT worker (the pipe send runs in a thread)."""
        request = BlockRequest(job.seq, job.epoch, job.idle, job.pcm16k)
        await asyncio.to_thread(self._pool.submit, request)

    def set_epoch(self, epoch: int) -> None:
        """Every worker learns the epoch (blocks planned at an older one are stale)."""
        self._epoch = epoch
        if self._pool is not None:
            self._pool.set_epoch(epoch)

    async def result(self) -> BlockResult:
        """The next block back from the workers; raises the pool's fault (a TPPError naming the worker)."""
        event = await self._events.get()
        match event:
            case PoolFault(error=error):
                raise error
            case FromWorker(message=Frames(seq=seq, images=images, latent=latent)):
                return BlockResult(seq, "frames", images, latent)
            case FromWorker(message=Stale(seq=seq)):
                return BlockResult(seq, "stale")
            case FromWorker(message=Skipped(seq=seq)):
                return BlockResult(seq, "skipped")
        raise TPPError(f"unexpected event from the TPP pool: {event!r}")

    async def aclose(self) -> None:
        """Stop every worker process (nothing is left running); also wakes a start-up still waiting."""
        starting = self._starting
        if starting is not None and not starting.done():
            starting.cancel()
        if self._close_pool is not None:
            await asyncio.to_thread(self._close_pool)
        if starting is not None:
            await asyncio.gather(starting, return_exceptions=True)

    # ---- what the workers report ----------------------------------------------------------------------
    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers, by rank (empty before start)."""
        return self._pool.pids if self._pool is not None else []

    def worker_stats(self) -> dict[int, dict]:
        """Per rank: cumulative seconds per activity (features, dit, decode, frames, waits), blocks, last epoch seen."""
        return {rank: stats.as_dict() for rank, stats in self._pool.stats.items()} if self._pool is not None else {}

    @property
    def startup_s(self) -> float | None:
        """Seconds from spawning the workers until all were ready."""
        pool = self._pool
        if pool is None or pool.ready_at is None:
            return None
        return pool.ready_at - pool.started_at

    # ---- start ----------------------------------------------------------------------------------------
    async def _start_pool(self) -> None:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[PoolEvent] = asyncio.Queue()
        self._events = events

        def on_event(event: PoolEvent) -> None:  # called on the monitor thread; holds no reference to the runner
            loop.call_soon_threadsafe(events.put_nowait, event)

        pool = WorkerPool(self.config, on_event)
        self._pool = pool
        self._close_pool = weakref.finalize(self, pool.close)  # garbage collection tears the workers down too
        await asyncio.to_thread(pool.start)
        pool.set_epoch(self._epoch)
