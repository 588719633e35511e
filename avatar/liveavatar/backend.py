"""The `liveavatar` avatar backend: the LiveAvatar streaming diffusion model behind the AvatarGenerator contract.

Speech is queued per reply in the shared `SpeechQueue` (any sample rate, converted to the stream's
`audio_rate`). The generator plans one block at a time — 12 frames = 0.48 s — taking exactly the audio those
12 frames carry (speech, or silence when nobody speaks: idle frames are generated from silent audio), and
hands it, with its 16 kHz copy for wav2vec2, to the strategy it was given: `InProcessRunner` (the model in
this process, in a worker thread) or `WorkerPoolRunner` (Timestep-forcing Pipeline Parallel worker
processes, avatar/liveavatar/tpp). Frame indices are assigned as frames are handed out, so every frame
carries exactly `audio_rate / 25` samples whatever block it came from.

How far ahead to plan is the one real trade-off of a pipeline: every block planned but not yet shown delays
new speech by 0.48 s. The number of planned-but-unshown blocks is an adaptive window between 1 and
`stages + lookahead_blocks`: it grows by one whenever the consumer had to wait for a block and shrinks by one
whenever a finished block was already waiting behind the one taken. And speech never waits behind idle
blocks: when speech is queued, idle blocks no longer hold the window; an idle block not yet started is
skipped (the runner takes the speech block next); and the first speech block to come back replaces the idle
block on screen at the next frame (finished idle blocks are dropped). A block's audio is therefore never
delayed by a pipeline of idle blocks, only by the block already being computed.

`clear()` and `pause()` start a new epoch: everything planned before is dropped (a stale block inside the
runner is finished but never shown). `pause()` gives the speech of those blocks back to the queue first, so
nothing is lost, and the avatar listens; `resume(replay_s)` continues it, replaying what the sinks dropped.

torch and the models are imported only when the stream starts, so validating a persona needs neither.
State stays bounded for an endless stream: fixed-size KV rings and VAE caches, a window of planned blocks,
speech queues that hold only speech not yet played, and fixed-length logs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from liveavatar.avatar.base import AvatarGenerator
from liveavatar.avatar.liveavatar.blocks import BlockJob, BlockRunner
from liveavatar.avatar.liveavatar.options import Options, with_dit_workers
from liveavatar.avatar.registry import AvatarSetup
from liveavatar.avatar.speech_queue import MAX_REPLAY_S, SpeechQueue, Take
from liveavatar.media import AudioChunk, AVFrame, StreamResampler

__all__ = ["LiveAvatarGenerator", "Options", "create", "with_dit_workers"]

MODEL_RATE = 16000
MODEL_FPS = 25.0
MODEL_BLOCK_SAMPLES = 7680  # 12 frames at 25 fps = 0.48 s at 16 kHz
FRAMES_PER_BLOCK = 12
LOG_BLOCKS = 256  # block timings kept (for benchmarks and tests)


def create(options: Options, setup: AvatarSetup) -> "LiveAvatarGenerator":
    """Build the generator (TPP worker processes when `dit_workers` > 0); the models load on first use of `frames()`."""
    return LiveAvatarGenerator(options, setup)


def default_runner(options: Options, setup: AvatarSetup, parts=None) -> BlockRunner:
    """The strategy `options` asks for: TPP workers when `dit_workers` > 0, else the model in this process."""
    if options.dit_workers:
        if parts is not None:
            raise ValueError("parts cannot be handed to TPP workers; give WorkerPoolRunner a parts_factory instead")
        from liveavatar.avatar.liveavatar.tpp.runner import WorkerPoolRunner

        return WorkerPoolRunner(options, setup)
    from liveavatar.avatar.liveavatar.inprocess import InProcessRunner

    return InProcessRunner(options, setup, parts)


@dataclass(frozen=True)
class BlockTiming:
    """When block `seq` was handed to the runner, when its result came back, and what it was."""

    seq: int
    idle: bool
    submitted_s: float  # time.perf_counter()
    returned_s: float
    outcome: str  # "frames", "stale" (computed after a clear), "skipped" (never started) or "dropped" (replaced)


@dataclass
class _Plan:
    seq: int
    epoch: int
    pcm: np.ndarray  # the 12 frames' audio at audio_rate
    pcm16k: np.ndarray
    generations: list[int | None]
    speech: int  # samples of speech at the front of pcm
    submitted_s: float = 0.0

    @property
    def idle(self) -> bool:
        """Carries no speech (idle, listening, or a gap of a reply whose speech is late)."""
        return self.speech == 0


@dataclass
class _Block:
    plan: _Plan
    images: np.ndarray  # uint8 [12, H, W, 3]


class LiveAvatarGenerator(AvatarGenerator):
    """LiveAvatar as an endless AVFrame stream; `runner` (default: from `options`) computes the blocks."""

    can_pause = True

    def __init__(self, options: Options, setup: AvatarSetup, parts=None, runner: BlockRunner | None = None) -> None:
        """`parts` replaces the models `options` name (in-process only); `runner` replaces the default strategy."""
        if abs(setup.fps - MODEL_FPS) > 1e-9:
            raise ValueError(f"liveavatar generates {MODEL_FPS:g} fps video, the persona asks for {setup.fps} fps")
        if setup.audio_rate % MODEL_FPS:
            raise ValueError(f"liveavatar needs an audio rate that is a multiple of {MODEL_FPS:g} Hz (whole samples per "
                             f"frame), got {setup.audio_rate}")
        self.options = options
        self.setup = setup
        self.fps = setup.fps
        self.size = setup.size
        self.audio_rate = setup.audio_rate
        self.frames_per_block = FRAMES_PER_BLOCK
        self.runner = runner if runner is not None else default_runner(options, setup, parts)
        self.max_window = self.runner.stages + options.lookahead_blocks
        self.window = 1  # blocks allowed planned but not yet taken by the consumer (adapts)
        self.block_log: deque[BlockTiming] = deque(maxlen=LOG_BLOCKS)
        self.latents: deque = deque(maxlen=LOG_BLOCKS)  # clean latents of shown blocks (when the runner keeps them)
        self.dropped_blocks = 0
        self._frame_samples = int(self.audio_rate // MODEL_FPS)
        unshown_s = (self.max_window + 1) * FRAMES_PER_BLOCK / MODEL_FPS  # speech a pause may have to give back
        self._speech = SpeechQueue(self.audio_rate, setup.underrun, keep_s=MAX_REPLAY_S + unshown_s)
        self._to_model = StreamResampler(self.audio_rate, MODEL_RATE)
        self._model_pcm = np.zeros(0, np.float32)
        self._epoch = 0
        self._seq = 0
        self._in_flight: dict[int, _Plan] = {}
        self._ready: deque[_Block] = deque()
        self._showing: _Block | None = None  # the block frames are taken from, and how many were
        self._shown = 0
        self._emit_index = 0
        self._planned_speech = 0  # speech samples in the plans of this epoch
        self._shown_speech = 0  # of which handed out on frames
        self._producer: asyncio.Task | None = None
        self._ready_event: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        self._iterating = False

    # ---- contract ---------------------------------------------------------------------------------
    def push(self, chunk: AudioChunk, generation: int) -> None:
        """Queue speech of reply `generation` (ignored if that reply was cleared)."""
        self._speech.push(chunk, generation)
        self._make_room()

    def end(self, generation: int) -> None:
        """Mark the end of reply `generation`: its remaining speech plays, then frames go idle."""
        self._speech.end(generation)
        self._make_room()

    def clear(self) -> None:
        """Barge-in: drop queued speech and every frame not yet handed out; the stream continues idle."""
        self._speech.clear()
        self._new_epoch()

    def pause(self) -> None:
        """Hold the reply's remaining speech (what was planned but not shown goes back first); the avatar listens."""
        if self._speech.paused:
            return
        unshown = self._planned_speech - self._shown_speech
        self._speech.pause(unplayed=unshown)
        if unshown or self._labelled_ahead():
            self._new_epoch()

    def resume(self, replay_s: float = 0.0) -> None:
        """Continue held speech, first replaying up to `replay_s` seconds (≤ 1 s) of the speech shown before the pause."""
        self._speech.resume(replay_s)
        self._make_room()

    def reset(self) -> None:
        """A new conversation: nothing queued or planned, not paused, every generation number usable again, and
        frames() may be called anew."""
        self._speech.reset()
        self._new_epoch()
        self._iterating = False

    def frames(self) -> "_FrameStream":
        """The endless frame stream (one consumer). Cancelling a pending `anext` (e.g. a timeout) loses nothing."""
        if self._iterating:
            raise RuntimeError("frames() is already being iterated; use one consumer")
        self._iterating = True
        return _FrameStream(self)

    async def wait_ready(self) -> None:
        """Load the models (or start the TPP workers) now; raises what the runner raises (e.g. TPPStartError)."""
        await self.runner.start()

    async def aclose(self) -> None:
        """Stop planning, then the runner (its threads or worker processes; nothing is left running)."""
        if self._producer is not None:
            self._producer.cancel()
            await asyncio.gather(self._producer, return_exceptions=True)
            self._producer = None
        await self.runner.aclose()

    @property
    def outstanding(self) -> int:
        """Blocks planned but not yet taken by the consumer (in the runner, or finished and waiting)."""
        return len(self._in_flight) + len(self._ready)

    @property
    def queued_seconds(self) -> float:
        """Speech waiting to be planned, in seconds."""
        return self._speech.queued_seconds

    # ---- epochs -----------------------------------------------------------------------------------
    def _new_epoch(self) -> None:
        """Everything planned so far is dropped: stale blocks never reach the consumer."""
        self._epoch += 1
        self.dropped_blocks += len(self._ready)
        self._ready.clear()
        self._showing = None
        self._planned_speech = self._shown_speech = 0
        self.runner.set_epoch(self._epoch)
        self._make_room()

    def _labelled_ahead(self) -> bool:
        """Whether a planned frame not yet shown belongs to a reply (its speech, or a gap of it)."""
        plans = [p for p in self._in_flight.values() if p.epoch == self._epoch] + [b.plan for b in self._ready]
        rest = self._showing.plan.generations[self._shown:] if self._showing is not None else []
        return any(g is not None for g in rest) or any(g is not None for p in plans for g in p.generations)

    def _make_room(self) -> None:
        if self._room is not None:
            self._room.set()

    # ---- planning ---------------------------------------------------------------------------------
    async def _start(self) -> None:
        if self._producer is None:
            self._ready_event, self._room = asyncio.Event(), asyncio.Event()
            self._producer = asyncio.create_task(self._produce(), name="liveavatar-producer")

    async def _produce(self) -> None:
        await self.runner.start()
        tasks = [asyncio.create_task(self._submit_blocks(), name="liveavatar-submit"),
                 asyncio.create_task(self._collect_blocks(), name="liveavatar-collect")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the one that stopped raised: re-raise it (a TPPError names the worker)
            raise RuntimeError("the liveavatar producer stopped")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _holding(self) -> int:
        """Planned blocks that count against the window: stale ones never do, idle ones not while speech is queued."""
        plans = [p for p in self._in_flight.values() if p.epoch == self._epoch] + [b.plan for b in self._ready]
        if self._speech.has_speech():
            plans = [p for p in plans if not p.idle]
        return len(plans)

    async def _submit_blocks(self) -> None:
        while True:
            while self._holding() >= self.window:
                self._room.clear()
                await self._room.wait()
            plan = await self._plan_block()
            plan.submitted_s = time.perf_counter()
            self._in_flight[plan.seq] = plan
            await self.runner.submit(BlockJob(plan.seq, plan.epoch, plan.idle, plan.pcm16k))

    async def _collect_blocks(self) -> None:
        while True:
            result = await self.runner.result()
            plan = self._in_flight.pop(result.seq)
            self.block_log.append(BlockTiming(plan.seq, plan.idle, plan.submitted_s, time.perf_counter(), result.outcome))
            if result.outcome == "frames" and plan.epoch == self._epoch:
                self._ready.append(_Block(plan, result.images))
                if result.latent is not None:
                    self.latents.append(result.latent)
                self._ready_event.set()
            else:
                self.dropped_blocks += 1
            self._make_room()

    async def _plan_block(self) -> _Plan:
        """The next block's audio and generation labels (waits for speech under the "wait" underrun policy)."""
        take = await self._speech.take(self._frame_samples * FRAMES_PER_BLOCK)
        self._seq += 1
        self._planned_speech += take.speech
        return _Plan(self._seq, self._epoch, take.pcm, self._model_block(take.pcm), self._labels(take), take.speech)

    def _labels(self, take: Take) -> list[int | None]:
        """Each frame's generation: the reply's while it speaks (or waits for late speech), None once it has ended."""
        if take.generation is None:
            return [None] * FRAMES_PER_BLOCK
        if not take.ended:
            return [take.generation] * FRAMES_PER_BLOCK
        return [take.generation if j * self._frame_samples < take.speech else None for j in range(FRAMES_PER_BLOCK)]

    def _model_block(self, pcm: np.ndarray) -> np.ndarray:
        """The block's audio at 16 kHz, 7,680 samples; the converter's constant delay shows as leading silence."""
        need = MODEL_BLOCK_SAMPLES
        self._model_pcm = np.concatenate([self._model_pcm, self._to_model.process(pcm)])
        if len(self._model_pcm) < need:
            self._model_pcm = np.concatenate([np.zeros(need - len(self._model_pcm), np.float32), self._model_pcm])
        out, self._model_pcm = self._model_pcm[:need], self._model_pcm[need:]
        return out

    # ---- frames -----------------------------------------------------------------------------------
    def _speech_ready(self) -> bool:
        return any(not b.plan.idle for b in self._ready)

    async def _next_block(self) -> _Block:
        """The next finished block (idle blocks before a finished speech block are dropped); adapts the window."""
        await self._start()
        producer = self._producer
        waited = not self._ready
        while not self._ready:
            if producer.done():
                if producer.cancelled():
                    raise RuntimeError("the liveavatar generator was closed")
                producer.result()  # re-raise the producer's failure to the consumer
                raise RuntimeError("the liveavatar producer stopped")
            self._ready_event.clear()
            wake = asyncio.ensure_future(self._ready_event.wait())
            try:
                await asyncio.wait({wake, producer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                wake.cancel()
        if self._speech_ready():
            while self._ready[0].plan.idle:
                self._drop(self._ready.popleft())
        block = self._ready.popleft()
        if waited:
            self.window = min(self.window + 1, self.max_window)
        elif self._ready:
            self.window = max(self.window - 1, 1)
        self._make_room()
        return block

    def _drop(self, block: _Block) -> None:
        self.dropped_blocks += 1
        self.block_log.append(BlockTiming(block.plan.seq, True, block.plan.submitted_s, time.perf_counter(), "dropped"))

    async def _next_frame(self) -> AVFrame:
        block = self._showing
        if block is not None and block.plan.idle and self._shown < FRAMES_PER_BLOCK and self._speech_ready():
            self._drop(block)  # speech is ready: it replaces the rest of the idle block on screen
            block = self._showing = None
        if block is None or self._shown >= FRAMES_PER_BLOCK:
            block = await self._next_block()
            self._showing, self._shown = block, 0
        j, n = self._shown, self._frame_samples
        plan = block.plan
        self._shown += 1
        self._shown_speech += min(max(plan.speech - j * n, 0), n)
        index, self._emit_index = self._emit_index, self._emit_index + 1
        return AVFrame(block.images[j], plan.pcm[j * n:(j + 1) * n].copy(), index, plan.generations[j], self.fps,
                       self.audio_rate)


class _FrameStream:
    """Async iterator over a generator's frames (its position lives in the generator, so a cancelled `anext` is harmless)."""

    def __init__(self, gen: LiveAvatarGenerator) -> None:
        self.gen = gen

    def __aiter__(self) -> "_FrameStream":
        return self

    async def __anext__(self) -> AVFrame:
        return await self.gen._next_frame()
