"""The `liveavatar` avatar backend: the LiveAvatar streaming diffusion model behind the AvatarGenerator contract.

Speech chunks are queued per reply as they arrive (any sample rate, converted to the stream's `audio_rate`).
A producer task plans one block at a time — 12 frames = 0.48 s — taking exactly the audio those 12 frames
carry: the head reply's speech, silence when nobody speaks (idle frames are generated from silent audio),
or, when a reply is open but its speech is late, silence padding ("silence") or a pause until speech or
`end()` arrives ("wait"). The block's audio also goes, resampled to 16 kHz, to wav2vec2; the model work runs
in a worker thread (`asyncio.to_thread`) so the event loop never blocks. At most `lookahead_blocks` finished
blocks wait for the consumer; `clear()` bumps an epoch so that everything planned before it is dropped.

With `dit_workers` > 0 (`create()` returns a `tpp.generator.TPPGenerator`), the same planning feeds
Timestep-forcing Pipeline Parallel worker processes instead of the worker thread (see avatar/liveavatar/tpp).

torch and the models are imported only when the stream starts, so validating a persona needs neither.
State stays bounded for an endless stream: fixed-size KV rings and VAE caches, a bounded block queue, and
reply buffers that hold only speech not yet played.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from avatar.base import AvatarGenerator
from avatar.liveavatar.config import StreamConfig
from avatar.registry import AvatarSetup
from media import AudioChunk, AVFrame, StreamResampler, samples_before_frame, samples_in_frame

MODEL_RATE = 16000
MODEL_FPS = 25.0
MODEL_BLOCK_SAMPLES = 7680  # 12 frames at 25 fps = 0.48 s at 16 kHz


class Options(BaseModel):
    """`avatar.options` of a persona using the `liveavatar` backend."""

    model_config = ConfigDict(extra="forbid")

    config: Literal["tiny", "checkpoint"] = Field("tiny", description="tiny = TEST CONFIG with random weights; checkpoint = real weights")
    checkpoint_dir: Path | None = Field(None, description="local Wan2.2-S2V-14B folder (config=checkpoint)")
    lora_path: Path | None = Field(None, description="local LiveAvatar LoRA file liveavatar.safetensors (config=checkpoint)")
    dtype: Literal["float32", "bfloat16", "fp8"] = "float32"
    device: str = "cpu"
    prompt: str = "A person is talking naturally, looking at the camera."
    height: int = Field(704, description="generated video height in pixels (config=checkpoint), a multiple of 16")
    width: int = Field(384, description="generated video width in pixels (config=checkpoint), a multiple of 16")
    relative_dist: int | None = Field(None, ge=0, description="fixed Rolling-RoPE distance; None draws d ~ U{4..30} per call")
    lookahead_blocks: int = Field(1, ge=1, le=8, description="finished blocks allowed to wait for the consumer "
                                                             "(TPP: blocks planned ahead beyond one per worker, at most)")
    audio_context_s: float = Field(2.0, ge=0.0, le=10.0, description="past audio wav2vec2 sees before each block")
    # Timestep-forcing Pipeline Parallelism (avatar/liveavatar/tpp): the model in worker processes
    dit_workers: int = Field(0, ge=0, description="TPP DiT worker processes: 1, 2 or 4 (must divide the 4 denoising steps); "
                                                  "0 = the model runs in-process")
    decode_worker: bool = Field(True, description="TPP: decode latents in a separate worker process (the reference layout); "
                                                  "false = the last DiT worker decodes (use when cores/GPUs < dit_workers + 1)")
    master_port: int | None = Field(None, ge=1, le=65535, description="TPP: TCP port on 127.0.0.1 for the workers' "
                                                                     "torch.distributed rendezvous; null = pick a free port")
    worker_threads: int = Field(1, ge=1, le=256, description="TPP: torch threads per worker process")
    start_timeout_s: float = Field(300.0, gt=0, description="TPP: seconds allowed for the workers to load and connect")
    heartbeat_timeout_s: float = Field(3.0, gt=0, description="TPP: seconds without a worker heartbeat before it counts as hung")

    @field_validator("dit_workers")
    @classmethod
    def _divides_steps(cls, value: int) -> int:
        steps = StreamConfig().num_steps
        if value and steps % value:
            raise ValueError(f"dit_workers must divide the {steps} denoising steps "
                             f"({', '.join(str(d) for d in range(1, steps + 1) if steps % d == 0)}) or be 0 (in-process)")
        return value


def with_dit_workers(options: Options, dit_workers: int) -> Options:
    """`options` with `dit_workers` overridden (validated): the hook for a `--dit-workers` command-line flag."""
    return Options.model_validate({**options.model_dump(), "dit_workers": dit_workers})


def create(options: Options, setup: AvatarSetup) -> "LiveAvatarGenerator":
    """Build the generator (TPP worker processes when `dit_workers` > 0); the models load on first use of `frames()`."""
    if abs(setup.fps - MODEL_FPS) > 1e-9:
        raise ValueError(f"liveavatar generates {MODEL_FPS:g} fps video, the persona asks for {setup.fps} fps")
    if options.dit_workers:
        from avatar.liveavatar.tpp.generator import TPPGenerator

        return TPPGenerator(options, setup)
    return LiveAvatarGenerator(options, setup)


def _load_parts(options: Options, audio_context_s: float):
    if options.config == "tiny":
        from avatar.liveavatar.tiny import build_tiny_parts

        return build_tiny_parts(seed=0, context_s=audio_context_s)
    from avatar.liveavatar.loader import load_parts

    if options.checkpoint_dir is None:
        raise ValueError("config=checkpoint needs checkpoint_dir (the local Wan2.2-S2V-14B folder)")
    return load_parts(options.checkpoint_dir, options.lora_path, dtype=options.dtype, device=options.device,
                      pixel_size=(options.height, options.width), audio_context_s=audio_context_s)


@dataclass
class _Reply:
    generation: int
    pending: deque = field(default_factory=deque)  # np.float32 arrays at the stream's audio_rate
    buffered: int = 0
    ended: bool = False
    resampler: StreamResampler | None = None
    rate: int | None = None

    def take(self, n: int) -> np.ndarray:
        """Up to n samples from the front."""
        out, got = [], 0
        while self.pending and got < n:
            head = self.pending.popleft()
            need = n - got
            if len(head) > need:
                self.pending.appendleft(head[need:])
                head = head[:need]
            out.append(head)
            got += len(head)
        self.buffered -= got
        return np.concatenate(out) if out else np.zeros(0, np.float32)


@dataclass
class _Plan:
    epoch: int
    start_index: int
    pcm: np.ndarray  # the 12 frames' audio at audio_rate
    pcm16k: np.ndarray
    generations: list[int | None]


@dataclass
class _Block:
    plan: _Plan
    images: np.ndarray  # uint8 [12, H, W, 3]


class LiveAvatarGenerator(AvatarGenerator):
    """LiveAvatar as an endless AVFrame stream (see the module docstring for the scheduling)."""

    def __init__(self, options: Options, setup: AvatarSetup, parts=None) -> None:
        self.options = options
        self.setup = setup
        self.fps = setup.fps
        self.size = setup.size
        self.audio_rate = setup.audio_rate
        self.frames_per_block = 12
        self._parts = parts
        self._pipeline = None
        self._replies: deque[_Reply] = deque()
        self._seen: deque[int] = deque(maxlen=256)  # generations pushed so far (recent ones)
        self._cleared: set[int] = set()
        self._epoch = 0
        self._plan_index = 0  # frame index of the next block to plan
        self._emit_index = 0  # frame index of the next frame to hand out
        self._to_model = StreamResampler(self.audio_rate, MODEL_RATE)
        self._model_pcm = np.zeros(0, np.float32)
        self._queue: asyncio.Queue[_Block] | None = None
        self._wakeup: asyncio.Event | None = None
        self._producer: asyncio.Task | None = None
        self._iterating = False
        self._stash: _Block | None = None

    # ---- contract ---------------------------------------------------------------------------------
    def push(self, chunk: AudioChunk, generation: int) -> None:
        """Queue speech of reply `generation` (ignored if that reply was cleared)."""
        if generation in self._cleared:
            return
        if generation not in self._seen:
            self._seen.append(generation)
        reply = self._reply(generation)
        if reply.ended:
            raise ValueError(f"reply {generation} already ended; push its speech before end()")
        if reply.rate != chunk.rate:
            self._flush_resampler(reply)
            reply.rate = chunk.rate
            reply.resampler = StreamResampler(chunk.rate, self.audio_rate)
        self._append(reply, reply.resampler.process(chunk.pcm))
        self._wake()

    def end(self, generation: int) -> None:
        """Mark the end of reply `generation`: its remaining speech plays, then frames go idle."""
        if generation in self._cleared:
            return
        reply = self._reply(generation)
        self._flush_resampler(reply)
        reply.ended = True
        self._wake()

    def clear(self) -> None:
        """Barge-in: drop queued speech and every frame not yet handed out; the stream continues idle."""
        self._cleared = set(self._seen)  # late chunks of any reply seen so far are dropped
        self._replies.clear()
        self._epoch += 1
        self._plan_index = self._emit_index
        self._stash = None
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
        self._wake()

    def frames(self) -> "_FrameStream":
        """The endless frame stream (one consumer). Cancelling a pending `anext` (e.g. a timeout) loses nothing."""
        if self._iterating:
            raise RuntimeError("frames() is already being iterated; use one consumer")
        self._iterating = True
        return _FrameStream(self)

    async def aclose(self) -> None:
        """Stop the producer (a block being computed finishes in its thread first)."""
        if self._producer is not None:
            self._producer.cancel()
            try:
                await self._producer
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing; the error was already raised to the consumer
                pass
            self._producer = None

    # ---- producer ---------------------------------------------------------------------------------
    async def _start(self) -> None:
        if self._producer is not None:
            return
        self._queue = asyncio.Queue(maxsize=self.options.lookahead_blocks)
        self._wakeup = asyncio.Event()
        self._producer = asyncio.create_task(self._produce(), name="liveavatar-producer")

    async def _next_block(self) -> _Block:
        await self._start()
        while True:
            if self._stash is not None:
                block, self._stash = self._stash, None
            else:
                get = asyncio.ensure_future(self._queue.get())
                try:
                    done, _ = await asyncio.wait({get, self._producer}, return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:
                    if get.done() and not get.cancelled():
                        self._stash = get.result()  # taken from the queue just as we were cancelled: keep it
                    get.cancel()
                    raise
                if get not in done:
                    get.cancel()
                    self._producer.result()  # re-raise the producer's failure to the consumer
                    raise RuntimeError("the liveavatar producer stopped")
                block = get.result()
            if block.plan.epoch == self._epoch:
                return block

    async def _produce(self) -> None:
        if self._pipeline is None:
            self._pipeline = await asyncio.to_thread(self._build_pipeline)
        while True:
            plan = await self._plan_block()
            images = await asyncio.to_thread(self._render, plan.pcm16k)
            if plan.epoch == self._epoch:
                await self._queue.put(_Block(plan, images))

    def _build_pipeline(self):
        from dataclasses import replace

        from avatar.liveavatar.pipeline import AvatarPipeline
        from avatar.liveavatar.stream import relative_dist_from_config

        if self._parts is None:
            self._parts = _load_parts(self.options, self.options.audio_context_s)
        stream_cfg = replace(self._parts.stream, fixed_relative_dist=self.options.relative_dist)
        d = relative_dist_from_config(stream_cfg, self.setup.seed)
        return AvatarPipeline(self._parts, self.setup.portrait, self.options.prompt, self.setup.seed, d)

    def _render(self, pcm16k: np.ndarray) -> np.ndarray:
        from avatar.liveavatar.pipeline import resize_frames

        width, height = self.size
        return resize_frames(self._pipeline.block(pcm16k), height, width)

    async def _plan_block(self) -> _Plan:
        """Choose the next block's audio and generation labels (waits under the "wait" underrun policy)."""
        while True:
            start = self._plan_index
            n = samples_before_frame(start + self.frames_per_block, self.audio_rate, self.fps) - samples_before_frame(start, self.audio_rate, self.fps)
            reply = self._head_reply()
            if reply is None:
                return self._finish_plan(start, np.zeros(n, np.float32), [None] * self.frames_per_block)
            if reply.buffered >= n or reply.ended or self.setup.underrun == "silence":
                speech = reply.take(n)
                pcm = np.zeros(n, np.float32)
                pcm[: len(speech)] = speech
                if reply.ended and reply.buffered == 0:
                    self._replies.popleft()
                    gens = [self._frame_generation(start, j, len(speech), reply.generation) for j in range(self.frames_per_block)]
                else:
                    gens = [reply.generation] * self.frames_per_block
                return self._finish_plan(start, pcm, gens)
            self._wakeup.clear()
            await self._wakeup.wait()

    def _frame_generation(self, start: int, j: int, speech_samples: int, generation: int) -> int | None:
        """A frame of an ending reply belongs to it when it carries some of its speech."""
        offset = samples_before_frame(start + j, self.audio_rate, self.fps) - samples_before_frame(start, self.audio_rate, self.fps)
        return generation if offset < speech_samples else None

    def _finish_plan(self, start: int, pcm: np.ndarray, gens: list[int | None]) -> _Plan:
        self._plan_index = start + self.frames_per_block
        return _Plan(self._epoch, start, pcm, self._model_block(pcm), gens)

    def _model_block(self, pcm: np.ndarray) -> np.ndarray:
        """The block's audio at 16 kHz, 7,680 samples; the converter's constant delay shows as leading silence."""
        need = MODEL_BLOCK_SAMPLES
        self._model_pcm = np.concatenate([self._model_pcm, self._to_model.process(pcm)])
        if len(self._model_pcm) < need:
            self._model_pcm = np.concatenate([np.zeros(need - len(self._model_pcm), np.float32), self._model_pcm])
        out, self._model_pcm = self._model_pcm[:need], self._model_pcm[need:]
        return out

    # ---- replies ----------------------------------------------------------------------------------
    def _reply(self, generation: int) -> _Reply:
        for reply in self._replies:
            if reply.generation == generation:
                return reply
        reply = _Reply(generation)
        self._replies.append(reply)
        return reply

    def _head_reply(self) -> _Reply | None:
        while self._replies and self._replies[0].ended and self._replies[0].buffered == 0:
            self._replies.popleft()
        return self._replies[0] if self._replies else None

    def _append(self, reply: _Reply, pcm: np.ndarray) -> None:
        if len(pcm):
            reply.pending.append(np.asarray(pcm, np.float32))
            reply.buffered += len(pcm)

    def _flush_resampler(self, reply: _Reply) -> None:
        if reply.resampler is not None:
            self._append(reply, reply.resampler.flush())
            reply.resampler = None
            reply.rate = None

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()


class _FrameStream:
    """Async iterator over a generator's frames; its position lives here, so a cancelled `anext` is harmless."""

    def __init__(self, gen: LiveAvatarGenerator) -> None:
        self.gen = gen
        self.block: _Block | None = None
        self.pos = 0

    def __aiter__(self) -> "_FrameStream":
        return self

    async def __anext__(self) -> AVFrame:
        gen = self.gen
        if self.block is None or self.pos == gen.frames_per_block or self.block.plan.epoch != gen._epoch:
            self.block = await gen._next_block()
            self.pos = 0
        plan = self.block.plan
        index = plan.start_index + self.pos
        rate, fps = gen.audio_rate, gen.fps
        offset = samples_before_frame(index, rate, fps) - samples_before_frame(plan.start_index, rate, fps)
        n = samples_in_frame(index, rate, fps)
        frame = AVFrame(self.block.images[self.pos], plan.pcm[offset:offset + n].copy(), index,
                        plan.generations[self.pos], fps, rate)
        self.pos += 1
        gen._emit_index = index + 1
        return frame
