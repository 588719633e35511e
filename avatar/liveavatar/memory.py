"""Giving freed heap memory back to the operating system, so that an endless stream's RSS stays flat.

Every block allocates and frees the same few hundred CPU tensors and arrays (PyTorch and numpy use malloc),
from more than one thread (the compute thread, the event loop, a pipe reader). glibc keeps freed chunks in its
arenas for reuse, and as the holes drift the arenas grow a little now and then: the memory in use stays
constant while the memory held, and RSS with it, creeps up (measured with glibc's mallinfo2 on the tiny config:
in use flat at 168 MiB, free-but-held 22 -> 33 MiB over 300 blocks, RSS +10 MiB; 495 -> 518 MiB over 2,000
blocks of `bench liveavatar`). `malloc_trim(0)` hands every free page of every arena back. `HeapTrimmer` calls
it after every `every_blocks` blocks, in the thread that computes them (2-6 ms on this machine, once every 2.4 s
of stream: about 0.2 % of real time). Where the C library is not glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

TRIM_EVERY_BLOCKS = 5  # 2.4 s of stream


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class HeapTrimmer:
    """Counts blocks; every `every_blocks`-th one gives the heap's free pages back (see the module docstring)."""

    def __init__(self, every_blocks: int = TRIM_EVERY_BLOCKS) -> None:
        self.every_blocks = every_blocks
        self._trim = _glibc_malloc_trim()
        self._blocks = 0
        self.trims = 0
        self.seconds = 0.0  # spent trimming, in total

    @property
    def available(self) -> bool:
        """Whether this C library can trim."""
        return self._trim is not None

    def block_done(self) -> None:
        """Call once per block, from the thread that computed it."""
        self._blocks += 1
        if self._trim is not None and self._blocks % self.every_blocks == 0:
            t0 = time.perf_counter()
            self._trim(0)
            self.seconds += time.perf_counter() - t0
            self.trims += 1
