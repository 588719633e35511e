"""Keeping a long-running server's memory flat as sessions come and go (glibc's allocator; elsewhere nothing to do).

A session allocates large buffers from many threads (microphone history, frames, codecs, speech). With glibc's
defaults every busy thread may get its own heap arena and the threshold above which a buffer is mapped on its own
rises after each large free, so freed session memory stays scattered in the heaps and the process grows with
every session served (measured: ~1–2 MiB a session, still growing after a hundred). Two arenas, a fixed 128 KiB
mapping threshold (large buffers are unmapped when freed) and a trim after each session keep it flat.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENAS = 2


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None  # glibc, not musl
    except OSError:
        return None


def settle_allocator() -> None:
    """Tune the allocator for a server whose sessions come and go (call once, early)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, ARENAS)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_freed_memory() -> None:
    """Give memory freed by a finished session back to the operating system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def freeze_loaded_objects() -> None:
    """Keep every object alive now (modules, loaded models) out of the cyclic collector's full sweeps.

    A full sweep walks every tracked object while no Python thread runs: in a server with its models loaded that
    took 26-89 ms, five times a minute at three sessions, and every session's frames waited for it. Frozen, a sweep
    walks only what the sessions made since. Call once the models are loaded; `thaw_loaded_objects()` undoes it."""
    gc.collect()
    gc.freeze()


def thaw_loaded_objects() -> None:
    """Let the collector see the frozen objects again (the server is closing)."""
    gc.unfreeze()
