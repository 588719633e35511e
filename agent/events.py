"""One queue for every event of a conversation, acted on one at a time, in order, by one task."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

E = TypeVar("E")


class EventQueue(Generic[E]):
    """`post()` from anywhere (synchronously); `run()` acts on each event in turn with `act`."""

    def __init__(self, act: Callable[[E], Awaitable[None]]) -> None:
        self._act = act
        self._queue: asyncio.Queue[E] = asyncio.Queue()

    def post(self, event: E) -> None:
        """Queue an event."""
        self._queue.put_nowait(event)

    async def run(self) -> None:
        """Act on events until cancelled."""
        while True:
            event = await self._queue.get()
            try:
                await self._act(event)
            finally:
                self._queue.task_done()

    async def settled(self) -> None:
        """Wait until every event posted so far has been acted on (and those they posted in turn)."""
        await self._queue.join()
