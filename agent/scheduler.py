"""Real-time frames first: how a server with many conversations shares its CPU.

Two kinds of work run in a server. Frames are due every 40 ms in every session: rendering the avatar (its own
thread per session) and encoding the video (the event loop's default executor, where aiortc encodes). Conversation
compute comes in bursts: recognizing a turn, writing a reply, synthesizing speech. A burst from one session must
never make another session's frame late, so conversation compute runs on threads the operating system schedules
after everything else (nice +10 on Linux: when a core is contended, a frame thread gets about ten times the share
of a compute thread, and compute still gets every idle cycle). Threads that libraries start for themselves
(onnxruntime's, OpenMP's in Whisper, llama.cpp's) inherit the priority of the thread that creates them, so models
are loaded, and each session's agent built, on the same low-priority threads. Between sessions, compute threads
share by the kernel's fair scheduling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
COMPUTE_NICENESS = 10
COMPUTE_THREADS = 64  # an upper bound: each live reply holds one (the LLM writing it) and briefly one more (speech)


def lower_this_thread(niceness: int = COMPUTE_NICENESS) -> None:
    """Make the calling thread (and threads it starts later) yield the CPU to normal-priority threads (Linux)."""
    if not sys.platform.startswith("linux"):
        return  # elsewhere the priority is per process: leave it
    with contextlib.suppress(OSError):
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(current, niceness))


class ComputeScheduler:
    """Runs conversation compute on low-priority threads; frames keep the normal-priority ones to themselves."""

    def __init__(self, max_sessions: int, niceness: int = COMPUTE_NICENESS) -> None:
        self.niceness = niceness
        self.compute = ThreadPoolExecutor(COMPUTE_THREADS, thread_name_prefix="compute", initializer=lower_this_thread, initargs=(niceness,))
        # The event loop's default executor: video encoding and other per-frame work, sized so sessions never queue.
        self.realtime = ThreadPoolExecutor(2 * max_sessions + 4, thread_name_prefix="realtime")

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make the real-time pool the loop's default executor (aiortc encodes video there)."""
        loop.set_default_executor(self.realtime)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` on a compute thread (model loading, building a session's agent)."""
        return await asyncio.get_running_loop().run_in_executor(self.compute, fn, *args)

    async def aclose(self) -> None:
        """Give the loop a fresh default executor and stop both pools (running work finishes first)."""
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="asyncio"))
        stopped = asyncio.Event()

        def stop() -> None:
            self.compute.shutdown(wait=True, cancel_futures=True)
            self.realtime.shutdown(wait=True, cancel_futures=True)
            loop.call_soon_threadsafe(stopped.set)

        threading.Thread(target=stop, name="scheduler-stop").start()  # not a pool thread: it joins them all
        await stopped.wait()
