"""Spawning, watching and tearing down the TPP worker processes.

The orchestrator hosts the torch.distributed TCP store itself, on a socket it binds to 127.0.0.1 only (port
0 lets the OS pick a free one, so there is no race between choosing a port and binding it; gloo binds its
pairs to 127.0.0.1 too), then spawns one daemon process per rank with the "spawn" start method. One
monitor thread waits on every worker's pipe and process sentinel at once and checks the heartbeats:

- a worker that exits, is killed, or closes its pipe is seen at once (its sentinel fires);
- a worker whose heartbeat is older than `heartbeat_timeout_s` is hung (stopped, or stuck holding the GIL);
- a worker that reports an exception sends its traceback first, so the error names the real cause;
- start-up must finish within `start_timeout_s`.

On the first fault every worker is terminated (then killed if it does not go within a grace period) and the
fault is delivered as one clear exception. `close()` does the same teardown deliberately; workers never
outlive the pool: `close()` is idempotent, the owner registers it with `weakref.finalize`, the processes are
daemons (ended when the interpreter exits) and each worker exits by itself when the orchestrator dies.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

import numpy as np

from liveavatar.avatar.liveavatar.memory import HeapTrimmer
from liveavatar.avatar.liveavatar.tpp.messages import (BlockRequest, Failed, Frames, FromWorker, PoolEvent, PoolFault,
                                                       Progress, Ready, Skipped, Stale, WorkerMessage, WorkerStats)
from liveavatar.avatar.liveavatar.tpp.worker import HOST, WorkerChannels, WorkerConfig, worker_main


class TPPError(RuntimeError):
    """A TPP worker failed; the message names the worker and the cause."""


class TPPStartError(TPPError):
    """The workers could not start: the port is in use, a worker failed while loading, or start-up timed out."""


class TPPWorkerError(TPPError):
    """A running worker died, hung or raised."""


def _signal_name(code: int | None) -> str:
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


class WorkerPool:
    """The worker processes of one TPP stream; `on_event` receives their messages from the monitor thread."""

    def __init__(self, config: WorkerConfig, on_event: Callable[[PoolEvent], None]) -> None:
        self.config = config
        self.layout = config.layout
        self._on_event = on_event
        self._ctx = multiprocessing.get_context("spawn")
        self.processes: list[Any] = []
        self._status: list[Any] = []
        self._plans = None
        self._heartbeats = self._ctx.RawArray("d", self.layout.world_size)
        self._epoch = self._ctx.RawValue("q", 0)
        self._store = None
        self._ready: dict[int, Ready] = {}
        self._heard: set[int] = set()
        self._ready_event = threading.Event()
        self._fault: TPPError | None = None
        self._closing = False
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self.stats: dict[int, WorkerStats] = {}
        self._trimmer = HeapTrimmer()  # the frames arrive here, on the monitor thread: keep this process's RSS flat
        self.port: int | None = None
        self.started_at: float | None = None
        self.ready_at: float | None = None

    # ---- start -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the workers and wait until all are ready; raises TPPStartError (nothing left running) on failure."""
        cfg = self.config
        self.started_at = time.monotonic()
        self._store = self._host_store(cfg.master_port, cfg.start_timeout_s)
        self.port = self._store.port
        for rank in range(self.layout.world_size):
            if self._closing:
                break
            status_recv, status_send = self._ctx.Pipe(duplex=False)
            plans_send = None
            plans_recv = None
            if rank == 0:
                plans_recv, plans_send = self._ctx.Pipe(duplex=False)
            self._heartbeats[rank] = time.monotonic()
            channels = WorkerChannels(status_send, plans_recv, self._heartbeats, self._epoch)
            proc = self._ctx.Process(target=worker_main, args=(cfg, rank, self.port, channels), name=f"liveavatar-tpp-{rank}",
                                     daemon=True)
            try:
                proc.start()
            except Exception as exc:  # e.g. a parts_factory that cannot be pickled
                self.close()
                raise TPPStartError(f"cannot spawn TPP {self.layout.name(rank)}: {type(exc).__name__}: {exc}") from exc
            status_send.close()  # the child holds its own copy; EOF then means the child is gone
            if plans_recv is not None:
                plans_recv.close()
                self._plans = plans_send
            self.processes.append(proc)
            self._status.append(status_recv)
        if self._closing:  # close() ran while we were spawning: make sure nothing it could not see survives
            self._teardown()
            raise TPPStartError("the TPP workers were closed while starting")
        self._monitor = threading.Thread(target=self._watch, name="tpp-monitor", daemon=True)
        self._monitor.start()
        self._ready_event.wait(cfg.start_timeout_s + 10.0)
        if self._fault is not None:
            raise self._fault
        if self._closing:
            raise TPPStartError("the TPP workers were closed while starting")
        if len(self._ready) < self.layout.world_size:  # the monitor enforces the deadline; this is a backstop
            self._fail(TPPStartError(f"TPP workers did not start within {cfg.start_timeout_s:g} s"))
            raise self._fault  # type: ignore[misc]
        self.ready_at = time.monotonic()

    def _host_store(self, port: int | None, timeout_s: float):
        """The rendezvous store, listening on 127.0.0.1 only (our own socket; port 0 = a free one)."""
        import datetime
        import socket

        import torch.distributed as dist

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((HOST, port or 0))
            listener.listen(128)
        except OSError as exc:
            listener.close()
            raise TPPStartError(f"cannot start the TPP workers: master port {port} on {HOST} is in use or not "
                                f"available ({exc}); choose another master_port or leave it unset to pick a free one") from exc
        bound_port = listener.getsockname()[1]
        fd = listener.detach()  # the store takes the socket over and closes it when it goes
        try:
            return dist.TCPStore(HOST, bound_port, is_master=True, wait_for_workers=False,
                                 timeout=datetime.timedelta(seconds=timeout_s), master_listen_fd=fd)
        except Exception as exc:  # noqa: BLE001 - mapped to a clear message
            try:
                os.close(fd)
            except OSError:
                pass
            raise TPPStartError(f"cannot start the TPP rendezvous store on {HOST}: {exc}") from exc

    # ---- use -------------------------------------------------------------------------------------
    def submit(self, request: BlockRequest) -> None:
        """Hand a planned block (its 16 kHz audio) to the first DiT worker."""
        if self._fault is not None:
            raise self._fault
        request = BlockRequest(request.seq, request.epoch, request.idle, np.ascontiguousarray(request.pcm16k, np.float32))
        with self._send_lock:
            try:
                self._plans.send(request)
            except (OSError, ValueError) as exc:
                if self._fault is not None:
                    raise self._fault from exc
                raise TPPWorkerError(f"the first DiT worker stopped taking blocks ({exc})") from exc

    def set_epoch(self, epoch: int) -> None:
        """Tell every worker the current epoch (blocks planned at an older one are stale)."""
        self._epoch.value = epoch

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers, by rank."""
        return [p.pid for p in self.processes]

    @property
    def fault(self) -> TPPError | None:
        """The first fault, if any."""
        return self._fault

    # ---- monitor ---------------------------------------------------------------------------------
    def _watch(self) -> None:
        try:
            self._watch_loop()
        except Exception as exc:  # noqa: BLE001 - a monitor that died silently would leave the consumer hanging
            self._fail(TPPWorkerError(f"the TPP monitor failed ({type(exc).__name__}: {exc}); all TPP workers were stopped"))

    def _watch_loop(self) -> None:
        conns = {conn: rank for rank, conn in enumerate(self._status)}
        sentinels = {p.sentinel: rank for rank, p in enumerate(self.processes)}
        cfg = self.config
        while not self._closing and self._fault is None:
            try:
                ready = wait(list(conns) + list(sentinels), timeout=0.05)
            except OSError:
                ready = []
            for obj in ready:
                if obj in conns:
                    rank = conns[obj]
                    try:
                        message = obj.recv()
                    except (EOFError, OSError):
                        del conns[obj]
                        self._gone(rank)
                        continue
                    self._handle(rank, message)
                elif obj in sentinels:
                    rank = sentinels.pop(obj)
                    self._drain(rank, conns)
                    self._gone(rank)
                if self._fault is not None or self._closing:
                    return
            now = time.monotonic()
            if len(self._ready) < self.layout.world_size:
                if now - self.started_at > cfg.start_timeout_s:
                    waiting = [self.layout.name(r) for r in range(self.layout.world_size) if r not in self._ready]
                    self._fail(TPPStartError(f"TPP workers did not get ready within {cfg.start_timeout_s:g} s "
                                             f"(still loading: {', '.join(waiting)})"))
                continue
            for rank in range(self.layout.world_size):
                silent = now - self._heartbeats[rank]
                if silent > cfg.heartbeat_timeout_s:
                    self.processes[rank].kill()  # hung: no grace period for it
                    self._fail(TPPWorkerError(f"TPP {self.layout.name(rank)} (pid {self.processes[rank].pid}) is not "
                                              f"responding: no heartbeat for {silent:.1f} s (hung or stopped); "
                                              f"all TPP workers were stopped"))
                    return

    def _drain(self, rank: int, conns: dict) -> None:
        """Read what a dead worker sent before it died (its error report, typically)."""
        for conn, r in list(conns.items()):
            if r != rank:
                continue
            try:
                while conn.poll(0):
                    self._handle(rank, conn.recv())
            except (EOFError, OSError):
                pass
            del conns[conn]

    def _handle(self, rank: int, message: WorkerMessage) -> None:
        self._heard.add(rank)
        match message:
            case Ready():
                self._ready[rank] = message
                if len(self._ready) == self.layout.world_size:
                    self._ready_event.set()
            case Failed(error=text):
                error = TPPStartError if len(self._ready) < self.layout.world_size else TPPWorkerError
                self._fail(error(f"TPP {self.layout.name(rank)} failed: {text}\n(all TPP workers were stopped)"))
            case Progress(stats=stats):
                self.stats[rank] = stats
            case Frames(stats=stats) | Stale(stats=stats):
                self.stats[rank] = stats
                self._emit(FromWorker(rank, message))
                self._trimmer.block_done()
            case Skipped():
                self._emit(FromWorker(rank, message))
            case _:
                self._fail(TPPWorkerError(f"TPP {self.layout.name(rank)} sent an unknown message {message!r}; "
                                          f"all TPP workers were stopped"))

    def _gone(self, rank: int) -> None:
        if self._closing or self._fault is not None:
            return
        proc = self.processes[rank]
        proc.join(0.2)
        started = len(self._ready) == self.layout.world_size
        error = TPPWorkerError if started else TPPStartError
        when = "mid-stream" if started else "while starting"
        hint = ""
        if rank not in self._heard:  # it never got as far as reporting: its error went to stderr
            hint = (" before reporting anything (see its stderr; a script that starts TPP workers must guard its entry "
                    "point with `if __name__ == '__main__':`, as the spawn start method re-imports it)")
        self._fail(error(f"TPP {self.layout.name(rank)} (pid {proc.pid}) died {when} "
                         f"({_signal_name(proc.exitcode)}){hint}; all TPP workers were stopped"))

    def _fail(self, fault: TPPError) -> None:
        with self._lock:
            if self._fault is not None or self._closing:
                return
            self._fault = fault
        self._teardown()
        self._ready_event.set()
        self._emit(PoolFault(fault))

    def _emit(self, event: PoolEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001 - the consumer's loop may be closed; the fault stays recorded
            pass

    # ---- teardown --------------------------------------------------------------------------------
    def _teardown(self) -> None:
        """Terminate every worker, kill those still there after the grace period, reap them all."""
        for proc in self.processes:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + self.config.kill_grace_s
        for proc in self.processes:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.processes:
            if proc.is_alive():
                proc.kill()  # SIGKILL also ends a stopped (SIGSTOP) process
        for proc in self.processes:
            proc.join(5.0)
        for conn in [*self._status, self._plans]:
            if conn is not None:
                try:
                    conn.close()
                except OSError:
                    pass
        self._store = None

    def close(self) -> None:
        """Stop all workers now (idempotent); blocks until they are gone."""
        with self._lock:
            already = self._closing
            self._closing = True
        if already:
            return
        self._teardown()
        self._ready_event.set()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(2.0)
