"""Life when nobody speaks, and more while speaking: blinks, head sway, breathing — all seeded, never frozen."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

BLINK_SHAPE = (0.55, 1.0, 0.85, 0.5, 0.2)  # eyelid closure over consecutive 25 fps frames
DOUBLE_BLINK_CHANCE = 0.12
SWAY_FREQS_HZ = (0.13, 0.29, 0.47)  # incommensurate, so the sway never visibly repeats
BREATH_HZ = 0.23
DRIFT_HZ = 0.17  # a slow circular drift keeps the head moving even where the sway turns around


@dataclass(frozen=True)
class HeadPose:
    """Head placement for one frame."""

    tilt_deg: float
    shift_px: tuple[float, float]
    scale: float


class Blinker:
    """Schedules blinks at random intervals drawn from `interval_s` (seconds, min and max)."""

    def __init__(self, fps: float, rng: random.Random, interval_s: tuple[float, float] = (2.0, 5.0)) -> None:
        self.fps = fps
        self.rng = rng
        self.interval_s = interval_s
        self._shape_at = 0  # frame where the current or next blink starts
        self._schedule(0)

    def _schedule(self, now: int) -> None:
        self._shape_at = now + int(self.rng.uniform(*self.interval_s) * self.fps)

    def closure(self, frame: int) -> float:
        """Eyelid closure (0 open .. 1 shut) at `frame`; frames must be asked for in increasing order."""
        k = frame - self._shape_at
        if k < 0:
            return 0.0
        if k < len(BLINK_SHAPE):
            return BLINK_SHAPE[k]
        if self.rng.random() < DOUBLE_BLINK_CHANCE:
            self._shape_at = frame + 2
        else:
            self._schedule(frame)
        return 0.0


class HeadSway:
    """Slow smooth head motion; `energy` (0..1, e.g. speech loudness) adds emphasis while talking."""

    def __init__(self, fps: float, rng: random.Random, amount: float = 1.0, face_width_px: float = 200.0) -> None:
        self.fps = fps
        self.amount = amount
        self.px = face_width_px / 200.0  # motion scales with the face's size on screen
        self._phases = [[rng.uniform(0, 2 * math.pi) for _ in SWAY_FREQS_HZ] for _ in range(3)]
        self._emphasis = 0.0

    def _wave(self, axis: int, t: float) -> float:
        return sum(math.sin(2 * math.pi * f * t + p) / (i + 1) for i, (f, p) in enumerate(zip(SWAY_FREQS_HZ, self._phases[axis]))) / 1.83

    def pose(self, frame: int, energy: float = 0.0) -> HeadPose:
        """Head pose at `frame`."""
        t = frame / self.fps
        self._emphasis += (energy - self._emphasis) * 0.25
        talk = 1.0 + 0.8 * self._emphasis
        a = self.amount
        tilt = a * talk * 1.1 * self._wave(0, t)
        drift = 2 * math.pi * DRIFT_HZ * t + self._phases[0][0]
        dx = a * self.px * (talk * 1.6 * self._wave(1, t) + 0.7 * math.cos(drift))
        dy = a * self.px * (1.2 * self._wave(2, t) + 0.7 * math.sin(drift) + 2.2 * self._emphasis)
        breath = 1.0 + a * 0.004 * math.sin(2 * math.pi * BREATH_HZ * t)
        return HeadPose(tilt, (dx, dy), breath)
