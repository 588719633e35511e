"""The sink contract: accepts AVFrames in order, can drop what it has not played yet."""

from __future__ import annotations

import abc

from liveavatar.media import AVFrame


class FrameSink(abc.ABC):
    """Receives frames; `flush()` drops buffered, unplayed frames (barge-in) and says how much audio that was."""

    @abc.abstractmethod
    async def write(self, frame: AVFrame) -> None:
        """Accept the next frame (may wait when the sink is full)."""

    async def flush(self) -> float:
        """Drop frames not yet played; returns the seconds of written audio dropped unheard (files drop none)."""
        return 0.0

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Finish and release the sink; nothing is lost."""
