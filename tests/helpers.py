"""Measurements taken from rendered frames and audio, the way a viewer would judge them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from liveavatar.media import AudioChunk, AVFrame


def luma(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an RGB uint8 image, as float32."""
    return image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114


def dark_pixels(image: np.ndarray, box: tuple[int, int, int, int], threshold: float = 40.0) -> int:
    """Pixels darker than `threshold` inside box (x0, y0, x1, y1): the open mouth's cavity shows up here."""
    x0, y0, x1, y1 = box
    return int((luma(image[y0:y1, x0:x1]) < threshold).sum())


def mouth_box(avatar, offset: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:  # noqa: ANN001 - a PortraitAvatar
    """A box (x0, y0, x1, y1) around the avatar's mouth in its frames, with room for head motion and a full opening."""
    m = avatar.rig.layout.mouth
    cx, cy = m.centre
    w = m.width
    ox, oy = offset
    return int(cx - 0.55 * w) + ox, int(cy - 0.25 * w) + oy, int(cx + 0.55 * w) + ox, int(cy + 0.45 * w) + oy


def eye_box(avatar, which: int = 0) -> tuple[int, int, int, int]:  # noqa: ANN001 - a PortraitAvatar
    """A box around one eye (0 = the one on the viewer's left)."""
    eye = avatar.rig.layout.eyes[which]
    (cx, cy), hw = eye.centre, eye.half_width
    return int(cx - hw), int(cy - 0.6 * hw), int(cx + hw), int(cy + 0.6 * hw)


def rms(samples: np.ndarray) -> float:
    """Root mean square level."""
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


async def take(frames: AsyncIterator[AVFrame], n: int) -> list[AVFrame]:
    """The next `n` frames of a stream."""
    out = []
    async for frame in frames:
        out.append(frame)
        if len(out) == n:
            break
    return out


async def seconds_to_cancel_at_first_audio(reply: AsyncIterator, timeout_s: float) -> float:
    """Stream a dialogue backend's `reply` until its first speech, then cancel it there: the seconds until it stopped."""
    first_audio = asyncio.Event()

    async def consume() -> None:
        async for event in reply:
            if isinstance(event, AudioChunk):
                first_audio.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_audio.wait(), timeout_s)
    cancelled = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.perf_counter() - cancelled


def run(coro):  # noqa: ANN001, ANN201 - thin wrapper for readability in tests
    """Run a coroutine to completion (tests are synchronous; the code under test is asyncio)."""
    return asyncio.run(coro)
