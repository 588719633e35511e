"""The AvatarGenerator over TPP workers: the single-process generator's planning, the model work in processes.

Everything that decides what the frames carry stays in this (orchestrator) process and is inherited from
`LiveAvatarGenerator`: speech queued per reply, one block of 12 frames planned at a time with exactly its
audio, the "silence"/"wait" underrun policy, generation labels, `clear()` epochs, bounded look-ahead. What
changes is where a planned block goes: its 16 kHz audio is handed to the first DiT worker at once (it runs
wav2vec2 and the audio encoder there, and the tokens travel with the latent), and the frames come back
from the decoding process.

How far ahead to plan is the one real trade-off of a pipeline: every block planned but not yet shown delays
new speech by 0.48 s. So the number of planned-but-unshown blocks (in flight + finished) is an adaptive
window between 1 and `stages + lookahead_blocks`: it grows by one whenever the consumer had to wait for a
block (a consumer pulling as fast as it can, such as the MP4 recorder, soon keeps every stage busy) and
shrinks by one whenever a finished block was already waiting behind the one taken (a live sink pulling at
real time from a fast pipeline keeps just enough blocks ahead, so speech starts as early as it can).

`clear()` reaches every worker through a shared epoch: the first worker skips blocks planned before it that
it has not started, the decoding process decodes but does not convert or send stale blocks (its causal
caches must stay in step), and the DiT workers in between finish what they hold (each step's KV ring must
see the same blocks as the others). Nothing stamped before the clear reaches the consumer.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from avatar.liveavatar.backend import LiveAvatarGenerator, Options, _Block, _Plan
from avatar.liveavatar.config import StreamConfig
from avatar.liveavatar.tpp.layout import TPPLayout
from avatar.liveavatar.tpp.pool import PoolConfig, TPPError, WorkerPool
from avatar.registry import AvatarSetup

if TYPE_CHECKING:
    from avatar.liveavatar.tpp.stages import PartsFactory


@dataclass(frozen=True)
class BlockTiming:
    """When block `seq` (first frame `start_index`) was handed to the workers and came back, and how."""

    seq: int
    start_index: int
    submitted_s: float  # time.perf_counter()
    returned_s: float
    outcome: str  # "frames", "stale" (decoded after a clear) or "skipped" (never started)


class TPPGenerator(LiveAvatarGenerator):
    """LiveAvatar on `options.dit_workers` DiT worker processes (+ a decode worker), same contract and output."""

    def __init__(self, options: Options, setup: AvatarSetup, parts_factory: PartsFactory | None = None,
                 keep_latents: bool = False) -> None:
        """`parts_factory` replaces the models `options` name (tests, benchmarks); `keep_latents` keeps clean latents."""
        super().__init__(options, setup)
        self.layout = TPPLayout(options.dit_workers, options.decode_worker, StreamConfig().num_steps)
        self.max_window = self.layout.stages + options.lookahead_blocks
        self.window = 1  # blocks allowed planned but not yet taken by the consumer (adapts, see the module docstring)
        self.block_log: deque[BlockTiming] = deque(maxlen=4096)
        self.latents: deque = deque(maxlen=256)  # clean latents of delivered blocks (keep_latents=True; for tests)
        self.dropped_blocks = 0
        self._parts_factory = parts_factory
        self._keep_latents = keep_latents
        self._pool: WorkerPool | None = None
        self._pool_task: asyncio.Future | None = None
        self._close_pool: weakref.finalize | None = None
        self._events: asyncio.Queue | None = None
        self._in_flight: dict[int, tuple[_Plan, float]] = {}
        self._room: asyncio.Event | None = None
        self._seq = 0

    # ---- contract additions -----------------------------------------------------------------------
    def clear(self) -> None:
        """Barge-in: as the single-process generator, and every worker learns the new epoch."""
        super().clear()
        if self._pool is not None:
            self._pool.set_epoch(self._epoch)
        self._make_room()

    async def wait_ready(self) -> None:
        """Start the workers if needed and wait until all have loaded and connected (raises TPPStartError)."""
        if self._pool_task is None:
            self._pool_task = asyncio.ensure_future(self._start_pool())
        await asyncio.shield(self._pool_task)

    async def aclose(self) -> None:
        """Stop the producer, then every worker process (nothing is left running)."""
        await super().aclose()
        starting = self._pool_task
        if starting is not None and not starting.done():
            starting.cancel()
        if self._close_pool is not None:
            await asyncio.to_thread(self._close_pool)  # also wakes a start-up still waiting for the workers
        if starting is not None:
            await asyncio.gather(starting, return_exceptions=True)

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers, by rank (empty before start)."""
        return self._pool.pids if self._pool is not None else []

    def worker_stats(self) -> dict[int, dict]:
        """Per rank: cumulative seconds per activity (features, dit, decode, frames, waits), blocks, last epoch seen."""
        return dict(self._pool.stats) if self._pool is not None else {}

    @property
    def startup_s(self) -> float | None:
        """Seconds from spawning the workers until all were ready."""
        pool = self._pool
        if pool is None or pool.ready_at is None:
            return None
        return pool.ready_at - pool.started_at

    @property
    def outstanding(self) -> int:
        """Blocks planned but not yet taken by the consumer (in the workers, or finished and waiting)."""
        queued = self._queue.qsize() if self._queue is not None else 0
        return len(self._in_flight) + queued + (1 if self._stash is not None else 0)

    # ---- scheduling ------------------------------------------------------------------------------
    async def _start(self) -> None:
        if self._producer is not None:
            return
        self._queue = asyncio.Queue()  # bounded by the window, not by its own size
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._producer = asyncio.create_task(self._produce(), name="liveavatar-tpp-producer")

    async def _next_block(self):
        waited = self._queue is None or (self._queue.empty() and self._stash is None)
        block = await super()._next_block()
        if waited:
            self.window = min(self.window + 1, self.max_window)
        elif not self._queue.empty():
            self.window = max(self.window - 1, 1)
        self._make_room()
        return block

    def _make_room(self) -> None:
        if self._room is not None:
            self._room.set()

    # ---- workers ---------------------------------------------------------------------------------
    async def _start_pool(self) -> None:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        self._events = events

        def on_event(event) -> None:  # called on the monitor thread; holds no reference to the generator
            loop.call_soon_threadsafe(events.put_nowait, event)

        opts = self.options
        config = PoolConfig(
            layout=self.layout, options=opts, portrait=self.setup.portrait, prompt=opts.prompt, seed=self.setup.seed,
            out_size=self.size, master_port=opts.master_port, device=opts.device, threads=opts.worker_threads,
            start_timeout_s=opts.start_timeout_s, heartbeat_timeout_s=opts.heartbeat_timeout_s,
            parts_factory=self._parts_factory, keep_latents=self._keep_latents,
        )
        pool = WorkerPool(config, on_event)
        self._pool = pool
        self._close_pool = weakref.finalize(self, pool.close)  # garbage collection tears the workers down too
        await asyncio.to_thread(pool.start)
        pool.set_epoch(self._epoch)

    async def _produce(self) -> None:
        await self.wait_ready()
        tasks = [asyncio.create_task(self._submit_blocks(), name="liveavatar-tpp-submit"),
                 asyncio.create_task(self._collect_blocks(), name="liveavatar-tpp-collect")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the one that stopped raised: re-raise it (a TPPError names the worker)
            raise TPPError("the TPP producer stopped")
        finally:
            for task in tasks:
                task.cancel()

    async def _submit_blocks(self) -> None:
        while True:
            while self.outstanding >= self.window:
                self._room.clear()
                await self._room.wait()
            plan = await self._plan_block()
            self._seq += 1
            self._in_flight[self._seq] = (plan, time.perf_counter())
            await asyncio.to_thread(self._pool.submit, self._seq, plan.epoch, plan.pcm16k)

    async def _collect_blocks(self) -> None:
        while True:
            event = await self._events.get()
            if event[0] == "fault":
                raise event[1]
            _, message = event
            kind, seq = message[0], message[1]
            plan, submitted = self._in_flight.pop(seq)
            self.block_log.append(BlockTiming(seq, plan.start_index, submitted, time.perf_counter(), kind))
            if kind == "frames" and plan.epoch == self._epoch:
                if self._keep_latents:
                    self.latents.append(message[3])
                self._queue.put_nowait(_Block(plan, message[2]))
            else:
                self.dropped_blocks += 1
                self._make_room()
