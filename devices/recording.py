"""A sink that plays nothing and remembers everything: what arrived when, and when it was flushed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from liveavatar.devices.sink import FrameSink
from liveavatar.media import AVFrame


@dataclass(frozen=True)
class Arrival:
    """One frame as the sink saw it."""

    t: float  # clock time it arrived (it plays from then for one frame period)
    index: int
    generation: int | None
    rms: float


@dataclass
class RecordingSink(FrameSink):
    """Records arrivals and flushes on `now()`'s clock; keeps the last `keep` arrivals (bounded)."""

    now: Callable[[], float]
    keep: int = 100_000
    arrivals: list[Arrival] = field(default_factory=list)
    flushes: list[float] = field(default_factory=list)
    frames: int = 0
    samples: int = 0

    async def write(self, frame: AVFrame) -> None:
        """Remember the frame (its audio level, not its pixels)."""
        rms = float(np.sqrt(np.mean(np.square(frame.audio, dtype=np.float64)))) if len(frame.audio) else 0.0
        self.arrivals.append(Arrival(self.now(), frame.index, frame.generation, rms))
        if len(self.arrivals) > self.keep:
            del self.arrivals[: len(self.arrivals) - self.keep]
        self.frames += 1
        self.samples += len(frame.audio)

    async def flush(self) -> float:
        """Note the flush time: playback of anything buffered stops here (it buffers nothing: 0 s dropped)."""
        self.flushes.append(self.now())
        return 0.0

    async def aclose(self) -> None:
        """Nothing to release."""

    def generation_frames(self, generation: int) -> list[Arrival]:
        """Arrivals that carried `generation`."""
        return [a for a in self.arrivals if a.generation == generation]

    def audio_cut(self, generation: int, after: float) -> float | None:
        """When a flush after clock time `after` cut `generation` short; None if it had ended before `after`."""
        cuts = [f for f in self.flushes if f >= after]
        if not cuts or not any(a.generation == generation and a.t >= after for a in self.arrivals):
            return None
        return min(cuts)
