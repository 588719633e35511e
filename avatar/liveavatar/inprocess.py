"""The in-process strategy: the whole model in this process, one block at a time in a worker thread.

The event loop never blocks: each block's wav2vec2 features, 4 denoising steps, VAE decode and frame
conversion run in `asyncio.to_thread`. Jobs wait in a list until the thread is free; stale jobs and idle
jobs with speech queued behind them are skipped there (see `blocks`).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np

from liveavatar.avatar.liveavatar.blocks import BlockJob, BlockResult, BlockRunner, skip_before_speech
from liveavatar.avatar.liveavatar.memory import HeapTrimmer
from liveavatar.avatar.liveavatar.options import Options
from liveavatar.avatar.registry import AvatarSetup


def load_parts(options: Options):
    """The models `options` name: the tiny TEST config, or a local checkpoint."""
    if options.config == "tiny":
        from liveavatar.avatar.liveavatar.tiny import build_tiny_parts

        return build_tiny_parts(seed=0, context_s=options.audio_context_s)
    from liveavatar.avatar.liveavatar.loader import load_parts as load_checkpoint

    if options.checkpoint_dir is None:
        raise ValueError("config=checkpoint needs checkpoint_dir (the local Wan2.2-S2V-14B folder)")
    return load_checkpoint(options.checkpoint_dir, options.lora_path, dtype=options.dtype, device=options.device,
                           pixel_size=(options.height, options.width), audio_context_s=options.audio_context_s)


class InProcessRunner(BlockRunner):
    """Computes blocks with an `AvatarPipeline` in a worker thread; `parts` replaces the models `options` name."""

    stages = 1

    def __init__(self, options: Options, setup: AvatarSetup, parts=None, keep_latents: bool = False) -> None:
        self.options, self.setup = options, setup
        self.parts = parts
        self.keep_latents = keep_latents
        self.pipeline = None  # the AvatarPipeline, once started
        self._jobs: list[BlockJob] = []
        self._epoch = 0
        self._results: asyncio.Queue[BlockResult] | None = None
        self._wake: asyncio.Event | None = None
        self._starting: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._latent = None
        self.trimmer = HeapTrimmer()  # keeps RSS flat over an endless stream (see memory.py)

    async def start(self) -> None:
        """Load the models (in a thread) and start the block worker."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        self._results, self._wake = asyncio.Queue(), asyncio.Event()
        if self.pipeline is None:
            self.pipeline = await asyncio.to_thread(self._build)
        self._task = asyncio.create_task(self._work(), name="liveavatar-blocks")

    def _build(self):
        from liveavatar.avatar.liveavatar.pipeline import AvatarPipeline
        from liveavatar.avatar.liveavatar.stream import relative_dist_from_config

        if self.parts is None:
            self.parts = load_parts(self.options)
        stream_cfg = replace(self.parts.stream, fixed_relative_dist=self.options.relative_dist)
        d = relative_dist_from_config(stream_cfg, self.setup.seed)
        pipeline = AvatarPipeline(self.parts, self.setup.portrait, self.options.prompt, self.setup.seed, d)
        if self.keep_latents:
            last = pipeline.streamer.cfg.num_steps - 1
            pipeline.streamer.on_step = lambda r: setattr(self, "_latent", r.latent_out.clone()) if r.step == last else None
        return pipeline

    async def submit(self, job: BlockJob) -> None:
        """Queue a job for the worker thread."""
        self._jobs.append(job)
        self._wake.set()

    def set_epoch(self, epoch: int) -> None:
        """Jobs planned before `epoch` are skipped, or reported stale once computed."""
        self._epoch = epoch
        if self._wake is not None:
            self._wake.set()

    async def result(self) -> BlockResult:
        """The next result; re-raises the worker's failure."""
        get = asyncio.ensure_future(self._results.get())
        try:
            done, _ = await asyncio.wait({get, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not get.done():
                get.cancel()
        if get in done:
            return get.result()
        self._task.result()
        raise RuntimeError("the liveavatar block worker stopped")

    async def _work(self) -> None:
        while True:
            job, skipped = skip_before_speech(self._jobs, self._epoch)
            for stale in skipped:
                self._results.put_nowait(BlockResult(stale.seq, "skipped"))
            if job is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            images, latent = await asyncio.to_thread(self._render, job.pcm16k)
            if job.epoch == self._epoch:
                self._results.put_nowait(BlockResult(job.seq, "frames", images, latent))
            else:
                self._results.put_nowait(BlockResult(job.seq, "stale"))

    def _render(self, pcm16k: np.ndarray):
        from liveavatar.avatar.liveavatar.pipeline import resize_frames

        width, height = self.setup.size
        images = resize_frames(self.pipeline.block(pcm16k), height, width)
        latent, self._latent = self._latent, None
        self.trimmer.block_done()
        return images, latent

    async def aclose(self) -> None:
        """Stop the worker (a block being computed finishes in its thread first)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
