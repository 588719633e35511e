"""The entry point of one TPP worker process: heartbeat and parent watchdog, model loading, the block loop.

A worker gets the pool's one `WorkerConfig`, its rank and the rendezvous port; it sends the orchestrator the
typed messages of `tpp.messages` on its own pipe. The first DiT worker reads `BlockRequest`s: it skips a
request planned before the current epoch, and an idle request when a request with speech is queued behind
it (so speech waits for no idle block that has not started), reporting each as `Skipped`.

Workers never outlive the orchestrator: a watchdog thread exits the process as soon as its parent is gone,
SIGINT is ignored (the orchestrator owns Ctrl-C and tears the workers down), and the heartbeat the same
thread writes lets the orchestrator tell a hung or stopped worker from a busy one.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from liveavatar.avatar.liveavatar.blocks import skip_before_speech
from liveavatar.avatar.liveavatar.memory import HeapTrimmer
from liveavatar.avatar.liveavatar.tpp.layout import TPPLayout
from liveavatar.avatar.liveavatar.tpp.messages import (BlockRequest, Failed, Frames, Progress, Ready, Skipped, Stale,
                                                       WorkerStats)

HOST = "127.0.0.1"


@dataclass(frozen=True)
class WorkerConfig:
    """How to start and run the workers of one TPP stream (timeouts in seconds); picklable, sent to every worker."""

    layout: TPPLayout
    options: Any  # avatar.liveavatar.options.Options
    portrait: np.ndarray
    prompt: str
    seed: int
    out_size: tuple[int, int]  # (width, height) of the output frames
    master_port: int | None = None
    device: str = "cpu"
    threads: int = 1
    start_timeout_s: float = 300.0
    heartbeat_timeout_s: float = 3.0
    heartbeat_interval_s: float = 0.2
    kill_grace_s: float = 0.5
    parts_factory: Callable | None = None
    keep_latents: bool = False

    @property
    def backend(self) -> str:
        """The torch.distributed backend: NCCL between GPUs, gloo on CPU."""
        return "nccl" if self.device.startswith("cuda") else "gloo"

    def device_of(self, rank: int) -> str:
        """CPU stays CPU; "cuda" spreads the ranks over the visible GPUs (rank r -> cuda:r mod count)."""
        if not self.device.startswith("cuda") or ":" in self.device:
            return self.device
        import torch

        return f"cuda:{rank % max(1, torch.cuda.device_count())}"


@dataclass
class WorkerChannels:
    """The worker's ends of its channels to the orchestrator (sent to the child at spawn)."""

    status: Any  # multiprocessing Connection, worker -> orchestrator
    plans: Any | None  # multiprocessing Connection, orchestrator -> first DiT worker
    heartbeats: Any  # shared array of doubles, one slot per rank: time.monotonic() of the last beat
    epoch: Any  # shared int64: the orchestrator's current epoch (bumped by clear())


def worker_main(config: WorkerConfig, rank: int, store_port: int, channels: WorkerChannels) -> None:
    """Run worker `rank` until the orchestrator closes its pipe or tears it down; report any failure."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _start_watchdog(channels.heartbeats, rank, config.heartbeat_interval_s)
    try:
        _Worker(config, rank, store_port, channels).run()
    except BaseException as exc:  # noqa: BLE001 - everything is reported, then the process ends
        try:
            channels.status.send(Failed(_describe(exc)))
        except Exception:  # noqa: BLE001 - the orchestrator may be gone already
            pass
        os._exit(1)
    # os._exit skips interpreter teardown, which could wait on gloo threads of peers that are gone already
    os._exit(0)


def _describe(exc: BaseException) -> str:
    tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:]).rstrip()
    return f"{type(exc).__name__}: {exc}\n{tail}"


def _start_watchdog(heartbeats, rank: int, interval_s: float) -> None:
    """A daemon thread: beat every interval; exit the process at once if the parent (orchestrator) is gone."""
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    sentinel = parent.sentinel if parent is not None else None

    def watch() -> None:
        while True:
            heartbeats[rank] = time.monotonic()
            if sentinel is not None:
                if wait([sentinel], timeout=interval_s):
                    os._exit(3)
            else:
                time.sleep(interval_s)

    threading.Thread(target=watch, name="tpp-watchdog", daemon=True).start()


class _Clock:
    """Cumulative seconds per activity of this worker, reported to the orchestrator after every block."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.blocks = 0
        self.epoch = 0

    @contextmanager
    def timed(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] += time.perf_counter() - t0

    def snapshot(self) -> WorkerStats:
        return WorkerStats(self.blocks, self.epoch, {k: round(v, 6) for k, v in self.totals.items()})


class _Worker:
    """One rank's state and loop (see the module docstring for its messages)."""

    def __init__(self, config: WorkerConfig, rank: int, store_port: int, channels: WorkerChannels) -> None:
        self.config, self.ch = config, channels
        self.layout = config.layout
        self.rank = rank
        self.store_port = store_port
        self.clock = _Clock()
        self._requests: list[BlockRequest] = []  # the first DiT worker's requests not yet started
        self.trimmer = HeapTrimmer()  # keeps the worker's RSS flat over an endless stream (see memory.py)
        self._pending = None  # (work, buffer) of the last send: waited on before the next one
        self._sink_send = None  # (work, tensor) of the root's sink broadcast, kept alive until exit

    # ---- start-up --------------------------------------------------------------------------------
    def run(self) -> None:
        t0 = time.perf_counter()
        import torch

        torch.set_num_threads(self.config.threads)
        self.torch = torch
        self.device = _usable_device(self.config.device_of(self.rank))
        self._setup()
        self.ch.status.send(Ready(self.rank, os.getpid(), round(time.perf_counter() - t0, 3)))
        with torch.no_grad():
            if self.layout.is_dit(self.rank):
                self._dit_loop()
            else:
                self._decode_loop()

    def _setup(self) -> None:
        from liveavatar.avatar.liveavatar.stream import relative_dist_from_config
        from liveavatar.avatar.liveavatar.tpp.stages import (BlockSource, Conditioning, DecodeStage, DiTStage, audio_token_specs,
                                                  load_worker_parts, prepare_conditioning, silent_audio_tokens,
                                                  sink_refresh_block)
        from liveavatar.avatar.liveavatar.tpp.wire import Comm, MessageLayout, TensorSpec

        torch, config, layout, rank = self.torch, self.config, self.layout, self.rank
        self.root = layout.decode_rank
        needs = set()
        if layout.is_dit(rank):
            needs.add("dit")
        if rank == 0:
            needs.add("audio")
        if rank == self.root:
            needs |= {"vae", "text"}
        parts = load_worker_parts(config.options, frozenset(needs), str(self.device), config.parts_factory)
        self.cfg = parts.stream
        self.comm = Comm(HOST, self.store_port, rank, layout.world_size, config.backend, config.start_timeout_s)
        mine = prepare_conditioning(parts, config.portrait, config.prompt).tensors() if rank == self.root else None
        cond = Conditioning(*self.comm.broadcast_tensors(mine, self.root, self.device))
        ref = cond.ref_latent
        self.latent_shape = (ref.shape[1], self.cfg.frames_per_block, ref.shape[-2], ref.shape[-1])
        self.final_msg = MessageLayout([TensorSpec(self.latent_shape, torch.float32)])
        self.refresh_at = sink_refresh_block(self.cfg)
        if layout.is_dit(rank):
            stream_cfg = replace(self.cfg, fixed_relative_dist=config.options.relative_dist)
            distances = relative_dist_from_config(stream_cfg, config.seed)
            self.stage = DiTStage(parts.dit, self.cfg, layout.steps_of(rank), cond, distances)
            silence = silent_audio_tokens(parts.dit, self.cfg)
            self.block_msg = MessageLayout([TensorSpec(self.latent_shape, torch.float32),
                                            *(TensorSpec(s, d) for s, d in audio_token_specs(silence))])
            self.stage.warm_up(silence, self.latent_shape)
        if rank == 0:
            self.source = BlockSource(parts.dit, parts.audio, self.cfg, config.seed, self.latent_shape)
            self.source.warm_up()
            self.plans: queue.Queue = queue.Queue()
            threading.Thread(target=_read_plans, args=(self.ch.plans, self.plans), name="tpp-plans", daemon=True).start()
        if rank == self.root:
            self.decoder = DecodeStage(parts.vae, cond.motion_latents, config.out_size)
        self._sink_recv = None
        if self.refresh_at is not None and layout.is_dit(rank) and rank != self.root:
            # posted now, completed by the root once block 0 is clean: no pipeline bubble at the swap
            self._sink_buf = torch.empty(1, ref.shape[1], 1, ref.shape[-2], ref.shape[-1], device=self.device)
            self._sink_recv = self.comm.broadcast(self._sink_buf, self.root)
        self._local_sink = None

    # ---- loops -----------------------------------------------------------------------------------
    def _dit_loop(self) -> None:
        from liveavatar.avatar.liveavatar.dit import AudioTokens
        from liveavatar.avatar.liveavatar.tpp.wire import KIND_BLOCK, BlockHeader

        layout, rank, clock, stage = self.layout, self.rank, self.clock, self.stage
        inbuf = self.block_msg.empty(self.device) if rank > 0 else None
        while True:
            if rank == 0:
                request = self._next_request()
                if request is None:  # the orchestrator closed the pipe
                    return
                with clock.timed("features_s"):
                    tokens = self.source.tokens(request.pcm16k)
                    x = self.source.noise_of(stage.block_index, self.device)
                header = BlockHeader(KIND_BLOCK, request.seq, request.epoch, stage.block_index)
            else:
                with clock.timed("wait_in_s"):
                    self.comm.recv(inbuf, rank - 1)
                header, (x, glob, local) = self.block_msg.unpack_block(inbuf)
                tokens = AudioTokens(glob, local)
                clock.epoch = self.ch.epoch.value
            if stage.needs_sink:
                with clock.timed("sink_refresh_s"):
                    stage.refresh_sink(self._sink())
            block = stage.block_index
            with clock.timed("dit_s"):
                x = stage.run(x, tokens)
            if rank == self.root and block == 0 and self.refresh_at is not None:
                self._publish_sink(x)
            if rank < layout.last_dit_rank:
                self._send(self.block_msg.pack(header, [x, tokens.glob, tokens.local], self.device), rank + 1)
            elif rank != self.root:
                self._send(self.final_msg.pack(header, [x], self.device), self.root)
            clock.blocks += 1
            if rank == self.root:
                self._decode_and_report(header, x)
            else:
                self.ch.status.send(Progress(clock.snapshot()))
            self.trimmer.block_done()

    def _decode_loop(self) -> None:
        clock = self.clock
        inbuf = self.final_msg.empty(self.device)
        while True:
            with clock.timed("wait_in_s"):
                self.comm.recv(inbuf, self.layout.last_dit_rank)
            header, (x,) = self.final_msg.unpack_block(inbuf)
            if header.block == 0 and self.refresh_at is not None:
                self._publish_sink(x)
            clock.blocks += 1
            self._decode_and_report(header, x)
            self.trimmer.block_done()

    # ---- helpers ---------------------------------------------------------------------------------
    def _next_request(self) -> BlockRequest | None:
        """The first DiT worker's next request to start; reports the ones it skips (None: the pipe closed)."""
        clock = self.clock
        while True:
            if not self._requests:
                with clock.timed("wait_in_s"):
                    request = self.plans.get()
                if request is None:
                    return None
                self._requests.append(request)
            while True:  # what else has arrived: an idle request gives way to speech queued behind it
                try:
                    request = self.plans.get_nowait()
                except queue.Empty:
                    break
                if request is None:
                    return None
                self._requests.append(request)
            clock.epoch = self.ch.epoch.value
            request, skipped = skip_before_speech(self._requests, clock.epoch)
            for stale in skipped:
                self.ch.status.send(Skipped(stale.seq))
            if request is not None:
                return request

    def _decode_and_report(self, header, x) -> None:
        clock = self.clock
        with clock.timed("decode_s"):
            video = self.decoder.decode(x)
        clock.epoch = self.ch.epoch.value
        if header.epoch != clock.epoch:
            self.ch.status.send(Stale(header.seq, clock.snapshot()))
            return
        with clock.timed("frames_s"):
            images = self.decoder.frames(video)
        latent = x.cpu() if self.config.keep_latents else None
        with clock.timed("report_s"):
            self.ch.status.send(Frames(header.seq, images, latent, clock.snapshot()))

    def _publish_sink(self, x) -> None:
        """Root: the first latent frame of clean block 0 becomes the sink; broadcast it (asynchronously)."""
        sink = x[None, :, 0:1].clone()
        self._local_sink = sink
        if self.layout.world_size > 1:
            self._sink_send = (self.comm.broadcast(sink, self.root), sink)

    def _sink(self):
        if self.rank == self.root:
            return self._local_sink
        self._sink_recv.wait()
        return self._sink_buf

    def _send(self, buf, dst: int) -> None:
        """Send asynchronously; wait for the previous send first (one message in flight per hop)."""
        if self._pending is not None:
            with self.clock.timed("wait_out_s"):
                self._pending[0].wait()
        self._pending = (self.comm.send(buf, dst), buf)


def _usable_device(name: str):
    import torch

    try:
        device = torch.device(name)
        torch.empty(1, device=device)
    except Exception as exc:  # noqa: BLE001 - re-raised with the device named
        raise RuntimeError(f"device {name!r} is not usable in this worker: {exc}") from exc
    return device


def _read_plans(conn, out: queue.Queue) -> None:
    """Drain the orchestrator's plan pipe into a queue, so the orchestrator's sends never block; None at EOF."""
    try:
        while True:
            out.put(conn.recv())
    except (EOFError, OSError):
        out.put(None)
