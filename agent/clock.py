"""Conversation time: real time for live use, or real time run faster (tests, soaks)."""

from __future__ import annotations

import asyncio
import time


class Clock:
    """Seconds since the clock started; `speed` > 1 runs the media timeline faster than the wall."""

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
