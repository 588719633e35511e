"""The entry point of one TPP worker process: heartbeat and parent watchdog, model loading, the block loop.

Messages a worker sends the orchestrator on its own pipe:
- ("ready", info) once its models are loaded, the process groups connected and the sink prefilled;
- ("error", text) when it fails (then it exits with code 1);
- ("stats", totals) after every block: cumulative seconds per activity, blocks done, last epoch seen;
- the first DiT worker: ("skipped", seq) for a block planned before a `clear()` that it had not started;
- the decoding process: ("frames", seq, images, latent or None, totals) or ("stale", seq, totals) for a block
  planned before a `clear()` (decoded, so the VAE's causal caches stay in step, but not converted or sent).

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

from avatar.liveavatar.tpp.layout import TPPLayout

HOST = "127.0.0.1"


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker process needs, picklable (the spawn start method sends it to the child)."""

    rank: int
    layout: TPPLayout
    store_port: int
    backend: str  # "gloo" or "nccl"
    device: str
    threads: int
    options: Any  # avatar.liveavatar.backend.Options
    portrait: np.ndarray
    prompt: str
    seed: int
    out_size: tuple[int, int]  # (width, height) of the output frames
    parts_factory: Callable | None = None
    keep_latents: bool = False
    connect_timeout_s: float = 300.0
    heartbeat_interval_s: float = 0.2


@dataclass
class WorkerChannels:
    """The worker's ends of its channels to the orchestrator (sent to the child at spawn)."""

    status: Any  # multiprocessing Connection, worker -> orchestrator
    plans: Any | None  # multiprocessing Connection, orchestrator -> first DiT worker
    heartbeats: Any  # shared array of doubles, one slot per rank: time.monotonic() of the last beat
    epoch: Any  # shared int64: the orchestrator's current epoch (bumped by clear())


def worker_main(spec: WorkerSpec, channels: WorkerChannels) -> None:
    """Run one worker until the orchestrator closes its pipe or tears it down; report any failure."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _start_watchdog(channels.heartbeats, spec.rank, spec.heartbeat_interval_s)
    try:
        _Worker(spec, channels).run()
    except BaseException as exc:  # noqa: BLE001 - everything is reported, then the process ends
        try:
            channels.status.send(("error", _describe(exc)))
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

    def snapshot(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "epoch": self.epoch, **{k: round(v, 6) for k, v in self.totals.items()}}


class _Worker:
    """One rank's state and loop (see the module docstring for its messages)."""

    def __init__(self, spec: WorkerSpec, channels: WorkerChannels) -> None:
        self.spec, self.ch = spec, channels
        self.layout = spec.layout
        self.rank = spec.rank
        self.clock = _Clock()
        self._pending = None  # (work, buffer) of the last send: waited on before the next one
        self._sink_send = None  # (work, tensor) of the root's sink broadcast, kept alive until exit

    # ---- start-up --------------------------------------------------------------------------------
    def run(self) -> None:
        t0 = time.perf_counter()
        import torch

        torch.set_num_threads(self.spec.threads)
        self.torch = torch
        self.device = _usable_device(self.spec.device)
        self._setup()
        self.ch.status.send(("ready", {"rank": self.rank, "pid": os.getpid(), "startup_s": round(time.perf_counter() - t0, 3)}))
        with torch.no_grad():
            if self.layout.is_dit(self.rank):
                self._dit_loop()
            else:
                self._decode_loop()

    def _setup(self) -> None:
        from avatar.liveavatar.stream import relative_dist_from_config
        from avatar.liveavatar.tpp.stages import (BlockSource, Conditioning, DecodeStage, DiTStage, audio_token_specs,
                                                  load_worker_parts, prepare_conditioning, silent_audio_tokens,
                                                  sink_refresh_block)
        from avatar.liveavatar.tpp.wire import Comm, MessageLayout, TensorSpec

        torch, spec, layout, rank = self.torch, self.spec, self.layout, self.rank
        self.root = layout.decode_rank
        needs = set()
        if layout.is_dit(rank):
            needs.add("dit")
        if rank == 0:
            needs.add("audio")
        if rank == self.root:
            needs |= {"vae", "text"}
        parts = load_worker_parts(spec.options, frozenset(needs), str(self.device), spec.parts_factory)
        self.cfg = parts.stream
        self.comm = Comm(HOST, spec.store_port, rank, layout.world_size, spec.backend, spec.connect_timeout_s)
        mine = prepare_conditioning(parts, spec.portrait, spec.prompt).tensors() if rank == self.root else None
        cond = Conditioning(*self.comm.broadcast_tensors(mine, self.root, self.device))
        ref = cond.ref_latent
        self.latent_shape = (ref.shape[1], self.cfg.frames_per_block, ref.shape[-2], ref.shape[-1])
        self.final_msg = MessageLayout([TensorSpec(self.latent_shape, torch.float32)])
        self.refresh_at = sink_refresh_block(self.cfg)
        if layout.is_dit(rank):
            stream_cfg = replace(self.cfg, fixed_relative_dist=spec.options.relative_dist)
            distances = relative_dist_from_config(stream_cfg, spec.seed)
            self.stage = DiTStage(parts.dit, self.cfg, layout.steps_of(rank), cond, distances)
            silence = silent_audio_tokens(parts.dit, self.cfg)
            self.block_msg = MessageLayout([TensorSpec(self.latent_shape, torch.float32),
                                            *(TensorSpec(s, d) for s, d in audio_token_specs(silence))])
            self.stage.warm_up(silence, self.latent_shape)
        if rank == 0:
            self.source = BlockSource(parts.dit, parts.audio, self.cfg, spec.seed, self.latent_shape)
            self.source.warm_up()
            self.plans: queue.Queue = queue.Queue()
            threading.Thread(target=_read_plans, args=(self.ch.plans, self.plans), name="tpp-plans", daemon=True).start()
        if rank == self.root:
            self.decoder = DecodeStage(parts.vae, cond.motion_latents, spec.out_size)
        self._sink_recv = None
        if self.refresh_at is not None and layout.is_dit(rank) and rank != self.root:
            # posted now, completed by the root once block 0 is clean: no pipeline bubble at the swap
            self._sink_buf = torch.empty(1, ref.shape[1], 1, ref.shape[-2], ref.shape[-1], device=self.device)
            self._sink_recv = self.comm.broadcast(self._sink_buf, self.root)
        self._local_sink = None

    # ---- loops -----------------------------------------------------------------------------------
    def _dit_loop(self) -> None:
        from avatar.liveavatar.dit import AudioTokens
        from avatar.liveavatar.tpp.wire import KIND_BLOCK

        layout, rank, clock, stage = self.layout, self.rank, self.clock, self.stage
        inbuf = self.block_msg.empty(self.device) if rank > 0 else None
        while True:
            if rank == 0:
                with clock.timed("wait_in_s"):
                    request = self.plans.get()
                if request is None:  # the orchestrator closed the pipe
                    return
                seq, epoch, pcm16k = request
                clock.epoch = self.ch.epoch.value
                if epoch != clock.epoch:  # planned before a clear(), not started: never enters the pipeline
                    self.ch.status.send(("skipped", seq))
                    continue
                with clock.timed("features_s"):
                    tokens = self.source.tokens(pcm16k)
                    x = self.source.noise_of(stage.block_index, self.device)
                header = [KIND_BLOCK, seq, epoch, stage.block_index]
            else:
                with clock.timed("wait_in_s"):
                    self.comm.recv(inbuf, rank - 1)
                header, (x, glob, local) = self.block_msg.unpack(inbuf)
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
                self.ch.status.send(("stats", clock.snapshot()))

    def _decode_loop(self) -> None:
        clock = self.clock
        inbuf = self.final_msg.empty(self.device)
        while True:
            with clock.timed("wait_in_s"):
                self.comm.recv(inbuf, self.layout.last_dit_rank)
            header, (x,) = self.final_msg.unpack(inbuf)
            if header[3] == 0 and self.refresh_at is not None:
                self._publish_sink(x)
            clock.blocks += 1
            self._decode_and_report(header, x)

    # ---- helpers ---------------------------------------------------------------------------------
    def _decode_and_report(self, header: list[int], x) -> None:
        _, seq, epoch = header[:3]
        clock = self.clock
        with clock.timed("decode_s"):
            video = self.decoder.decode(x)
        clock.epoch = self.ch.epoch.value
        if epoch != clock.epoch:
            self.ch.status.send(("stale", seq, clock.snapshot()))
            return
        with clock.timed("frames_s"):
            images = self.decoder.frames(video)
        latent = x.cpu() if self.spec.keep_latents else None
        with clock.timed("report_s"):
            self.ch.status.send(("frames", seq, images, latent, clock.snapshot()))

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
