"""A first-in first-out queue of audio samples."""

from __future__ import annotations

from collections import deque

import numpy as np


class SampleFIFO:
    """Mono float32 samples pushed as arrays of any size, taken out in exact counts."""

    def __init__(self) -> None:
        self._parts: deque[np.ndarray] = deque()
        self._length = 0

    def __len__(self) -> int:
        """Samples waiting."""
        return self._length

    def push(self, pcm: np.ndarray) -> None:
        """Append samples."""
        if len(pcm):
            self._parts.append(np.asarray(pcm, np.float32))
            self._length += len(pcm)

    def unread(self, pcm: np.ndarray) -> None:
        """Put samples back in front, to be taken again first."""
        if len(pcm):
            self._parts.appendleft(np.asarray(pcm, np.float32))
            self._length += len(pcm)

    def take(self, n: int) -> np.ndarray:
        """The next `n` samples; when fewer are waiting, the rest is silence."""
        out = np.zeros(n, np.float32)
        filled = 0
        while filled < n and self._parts:
            head = self._parts[0]
            k = min(n - filled, len(head))
            out[filled : filled + k] = head[:k]
            filled += k
            if k == len(head):
                self._parts.popleft()
            else:
                self._parts[0] = head[k:]
        self._length -= filled
        return out

    def clear(self) -> None:
        """Drop everything waiting."""
        self._parts.clear()
        self._length = 0
