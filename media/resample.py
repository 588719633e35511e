"""Sample-rate conversion with soxr (one-shot and streaming)."""

from __future__ import annotations

import numpy as np
import soxr


def resample(pcm: np.ndarray, rate_in: int, rate_out: int, quality: str = "HQ") -> np.ndarray:
    """Whole-signal conversion of float32 mono samples from `rate_in` to `rate_out`."""
    pcm = np.asarray(pcm, np.float32)
    if rate_in == rate_out or len(pcm) == 0:
        return pcm.copy()
    return soxr.resample(pcm, rate_in, rate_out, quality=quality).astype(np.float32, copy=False)


class StreamResampler:
    """Chunk-by-chunk conversion whose concatenated output equals a one-shot conversion's length.

    soxr keeps filter state between chunks; `flush()` returns the delayed tail at the end of a stream.
    """

    def __init__(self, rate_in: int, rate_out: int, quality: str = "HQ") -> None:
        self.rate_in = rate_in
        self.rate_out = rate_out
        self._passthrough = rate_in == rate_out
        self._stream = None if self._passthrough else soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=quality)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Convert the next chunk; may return fewer samples while the filter fills."""
        pcm = np.asarray(pcm, np.float32)
        if self._stream is None:
            return pcm.copy()
        return self._stream.resample_chunk(pcm, last=False)

    def flush(self) -> np.ndarray:
        """The samples still held inside the filter; the stream is finished afterwards."""
        if self._stream is None:
            return np.zeros(0, np.float32)
        return self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
