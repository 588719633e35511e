"""Exact audio bookkeeping per video frame: frame i carries floor((i+1)·r/f) − floor(i·r/f) samples.

With integer rates and 25 fps this is a constant (16 kHz → 640, 24 kHz → 960); for rates that do not
divide evenly the counts alternate so that the total never drifts, however long the stream.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def samples_before_frame(index: int, rate: int, fps: float) -> int:
    """Audio samples that precede video frame `index` (0-based)."""
    return int(Fraction(index) * Fraction(rate) / Fraction(fps).limit_denominator(1001))


def samples_in_frame(index: int, rate: int, fps: float) -> int:
    """Audio samples that play during video frame `index`."""
    return samples_before_frame(index + 1, rate, fps) - samples_before_frame(index, rate, fps)


class FrameAudioSplitter:
    """Cuts a growing mono sample stream into per-frame slices of exact length."""

    def __init__(self, rate: int, fps: float) -> None:
        self.rate = rate
        self.fps = fps
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._next_index = 0

    @property
    def next_index(self) -> int:
        """Index of the next frame `take()` will produce."""
        return self._next_index

    @property
    def buffered(self) -> int:
        """Samples waiting to be cut into frames."""
        return self._pending_len

    def need(self) -> int:
        """Samples the next frame needs."""
        return samples_in_frame(self._next_index, self.rate, self.fps)

    def feed(self, pcm: np.ndarray) -> None:
        """Append samples."""
        if len(pcm):
            self._pending.append(np.asarray(pcm, np.float32))
            self._pending_len += len(pcm)

    def ready(self) -> bool:
        """True when a whole frame's worth of samples is buffered."""
        return self._pending_len >= self.need()

    def take(self, pad: bool = False) -> np.ndarray:
        """The next frame's samples; with `pad`, a short tail is completed with silence."""
        n = self.need()
        if self._pending_len < n and not pad:
            raise ValueError(f"frame {self._next_index} needs {n} samples, only {self._pending_len} buffered")
        buf = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
        out = np.zeros(n, np.float32)
        got = min(n, len(buf))
        out[:got] = buf[:got]
        rest = buf[got:]
        self._pending = [rest] if len(rest) else []
        self._pending_len = len(rest)
        self._next_index += 1
        return out

    def clear(self) -> None:
        """Drop buffered samples (the frame index keeps counting)."""
        self._pending = []
        self._pending_len = 0
