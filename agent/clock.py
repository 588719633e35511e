"""Conversation time: real time for live use (or real time run faster: tests, soaks), or a frame clock for offline renders.

Both clocks offer the same three calls — `now()`, `sleep_until(t)` and `call_at(t, callback)` — so one
conversation engine runs live and offline. On the frame clock, time is frames presented / fps: the
presenter moves it (`advance_to`), and nothing ever waits for the wall.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """A scheduled callback that can be called off (asyncio.TimerHandle is one)."""

    def cancel(self) -> None: ...


class Clock:
    """Seconds since the clock started; `speed` > 1 runs the media timeline faster than the wall."""

    realtime = True  # frames are due at their time: the presenter waits for it

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self.speed = speed
        self._start = time.monotonic()

    def now(self) -> float:
        """Media time in seconds."""
        return (time.monotonic() - self._start) * self.speed

    async def sleep_until(self, t: float) -> None:
        """Wait until media time `t` (returns at once if it has passed)."""
        delay = (t - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)

    def call_at(self, t: float, callback: Callable[[], None]) -> Timer:
        """Call `callback` (from the event loop) at media time `t`."""
        loop = asyncio.get_running_loop()
        return loop.call_at(loop.time() + max(0.0, t - self.now()) / self.speed, callback)


class _FrameTimer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FrameClock:
    """Time = frames presented / fps, for offline renders: a time maps to the frame nearest to it, and whatever
    is due at a frame happens (`advance_to`) before that frame is made, however slow or fast the machine."""

    realtime = False

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.frame = 0  # the frame being made
        self._due: list[tuple[int, int, _FrameTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        """Media time in seconds: the time of the frame being made."""
        return self.frame / self.fps

    def frame_at(self, t: float) -> int:
        """The frame shown at time `t` (the nearest one; a tie goes to the later frame)."""
        return int(t * self.fps + 0.5 + 1e-9)

    async def sleep_until(self, t: float) -> None:
        """Wait until the presenter reaches time `t` (returns at once if it has)."""
        if self.frame_at(t) <= self.frame:
            return
        woken = asyncio.get_running_loop().create_future()
        self.call_at(t, lambda: woken.done() or woken.set_result(None))
        await woken

    def call_at(self, t: float, callback: Callable[[], None]) -> Timer:
        """Call `callback` when the presenter reaches time `t` (at its next `advance_to` if `t` has passed)."""
        timer = _FrameTimer(callback)
        heapq.heappush(self._due, (self.frame_at(t), next(self._order), timer))
        return timer

    def advance_to(self, t: float) -> bool:
        """Move to the frame for time `t` (never back) and run every callback due by then; True if any ran."""
        self.frame = max(self.frame, self.frame_at(t))
        ran = False
        while self._due and self._due[0][0] <= self.frame:
            _, _, timer = heapq.heappop(self._due)
            if not timer.cancelled:
                timer.callback()
                ran = True
        return ran
