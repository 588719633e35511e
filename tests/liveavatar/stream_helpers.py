"""Shared pieces of the LiveAvatar stream tests (one process and TPP): a stream setup, speech, frame taking,
the exact-audio check and process checks."""

from __future__ import annotations

import asyncio

import numpy as np
import psutil

from liveavatar.avatar.registry import AvatarSetup

RATE = 24000


def make_setup(underrun: str = "wait", size=(96, 80), seed: int = 3) -> AvatarSetup:
    """A stream of 96×80 frames from a random portrait (the tiny model renders 64×64, resized)."""
    portrait = (np.random.default_rng(1).random((120, 100, 3)) * 255).astype(np.uint8)
    return AvatarSetup(portrait=portrait, portrait_path=None, fps=25.0, size=size, audio_rate=RATE, underrun=underrun, seed=seed)  # type: ignore[arg-type]


def speech(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Noise-like 'speech' at `rate` (default: the stream rate)."""
    return np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * rate)).astype(np.float32)


async def take(stream, n: int, timeout: float = 120.0) -> list:
    """The next n frames (each within `timeout` seconds)."""
    return [await asyncio.wait_for(anext(stream), timeout) for _ in range(n)]


def assert_short_reply_then_idle(frames: list, generation: int) -> None:
    """12 frames from index 0: `speech(0.2)` of `generation`, exactly, on the first 5, then idle frames."""
    assert [f.index for f in frames] == list(range(12))
    assert [f.generation for f in frames] == [generation] * 5 + [None] * 7  # 0.2 s = 5 frames of speech
    np.testing.assert_array_equal(np.concatenate([f.audio for f in frames[:5]]), speech(0.2))


def alive(pids: list[int]) -> list[int]:
    """The pids among `pids` that still run (reaped or zombie processes do not count)."""
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def worker_children() -> list[psutil.Process]:
    """Live child processes of this test process that are TPP workers (the multiprocessing resource tracker is not)."""
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out
