"""Mono PCM audio chunks with an explicit sample rate, a time stamp and optional phoneme timings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PhonemeSpan:
    """One phoneme of synthesized speech: its IPA symbol and where it lies in its chunk, in samples."""

    phoneme: str
    start: int
    length: int


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 samples in [-1, 1] at `rate` Hz, starting at `pts` seconds on their stream's clock.

    `phonemes` (optional) place phonemes on the chunk's own samples; avatars use them for visemes.
    """

    pcm: np.ndarray
    rate: int
    pts: float = 0.0
    phonemes: tuple[PhonemeSpan, ...] = field(default=())

    def __post_init__(self) -> None:
        pcm = to_float32(self.pcm)
        if pcm.ndim != 1:
            raise ValueError(f"AudioChunk wants mono samples (1-D), got shape {pcm.shape}")
        if self.rate <= 0:
            raise ValueError(f"AudioChunk sample rate must be positive, got {self.rate}")
        object.__setattr__(self, "pcm", pcm)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.pcm) / self.rate

    @property
    def end_pts(self) -> float:
        """Time stamp just after the last sample, in seconds."""
        return self.pts + self.duration

    @classmethod
    def silence(cls, seconds: float, rate: int, pts: float = 0.0) -> "AudioChunk":
        """A chunk of digital silence `seconds` long."""
        return cls(np.zeros(int(round(seconds * rate)), np.float32), rate, pts)


def to_float32(pcm: np.ndarray) -> np.ndarray:
    """Samples as float32 in [-1, 1]; int16 input is scaled by 1/32768."""
    arr = np.asarray(pcm)
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    if arr.dtype == np.float32:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32)
    raise TypeError(f"expected int16 or float samples, got {arr.dtype}")


def to_int16(pcm: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as int16, clipped."""
    arr = np.asarray(pcm, dtype=np.float32)
    return (np.clip(arr, -1.0, 32767.0 / 32768.0) * 32768.0).round().astype(np.int16)
