"""The unit every sink receives: one RGB image plus exactly the audio that plays during it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AVFrame:
    """Video frame `index` of a stream at `fps`, with its audio slice (float32 mono at `audio_rate`).

    `generation` is the reply the frame's speech belongs to, or None for idle/listening frames.
    """

    image: np.ndarray
    audio: np.ndarray
    index: int
    generation: int | None
    fps: float
    audio_rate: int

    @property
    def pts(self) -> float:
        """Presentation time of the frame in seconds."""
        return self.index / self.fps

    @property
    def is_speech(self) -> bool:
        """True when the frame carries a reply's speech."""
        return self.generation is not None
