"""The heap trimmer gives freed memory back to the OS: RSS falls after freed chunks left a hole in the heap."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from liveavatar.avatar.liveavatar.memory import HeapTrimmer

CHUNK = 64 * 1024  # below glibc's mmap threshold: served from the heap, as most tensors of a block are


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_freed_heap_memory_goes_back_every_nth_block():
    trimmer = HeapTrimmer(every_blocks=3)
    assert trimmer.available, "this machine's C library is glibc"
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    chunks = [libc.malloc(CHUNK) for _ in range(1600)]  # 100 MiB
    for p in chunks:
        ctypes.memset(p, 1, CHUNK)  # touched: resident
    pin = libc.malloc(CHUNK)  # keeps the heap's top in place, so the free chunks are a hole, as in a long stream
    for p in chunks:
        libc.free(p)
    held = rss_mb()
    trimmer.block_done()
    trimmer.block_done()
    assert trimmer.trims == 0 and rss_mb() > held - 20, "nothing happens before the nth block"
    trimmer.block_done()
    assert trimmer.trims == 1 and rss_mb() < held - 80, f"RSS {held:.0f} -> {rss_mb():.0f} MiB"
    libc.free(pin)
