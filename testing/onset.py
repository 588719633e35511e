"""Speech onset -> first frame carrying it, measured through a generator's public contract (a benchmark helper).

A live sink pulls frames at 25 frames/s (when a frame comes late, its clock restarts from the late frame, as a
real player's would). The avatar idles for a random while (so the onset falls anywhere inside a block), then a
new reply's speech is pushed in one chunk; the figure is the wall time from that push to the moment the sink
receives the first frame whose audio carries that speech. The reply plays out before the next trial.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass

import numpy as np

from liveavatar.media import AudioChunk


@dataclass(frozen=True)
class OnsetResult:
    """Onset latencies of one run, in seconds, and how many frames reached the sink late (stalls)."""

    latencies_s: list[float]
    late_frames: int
    frames: int

    def summary(self) -> dict:
        """JSON-ready: median, mean, worst and every trial."""
        lat = self.latencies_s
        return {"median_s": round(statistics.median(lat), 4), "mean_s": round(statistics.mean(lat), 4),
                "max_s": round(max(lat), 4), "min_s": round(min(lat), 4), "trials": len(lat),
                "latencies_s": [round(v, 4) for v in lat], "late_frames": self.late_frames, "frames": self.frames}


async def measure_onset(gen, stream=None, trials: int = 6, idle_s: tuple[float, float] = (1.0, 2.0),
                        speech_s: float = 0.96, first_generation: int = 1000, seed: int = 0,
                        timeout_s: float = 120.0) -> OnsetResult:
    """Push `trials` replies, each after a random idle stretch, into `gen` consumed by a real-time sink.

    `stream` is the generator's frame stream if it is already being iterated (else `gen.frames()` is opened).
    """
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    rate = gen.audio_rate
    period = 1.0 / gen.fps
    stream = stream if stream is not None else gen.frames()
    await asyncio.wait_for(anext(stream), timeout_s)  # models loaded, stream running
    due = time.perf_counter()
    late = frames = 0

    async def pull():
        nonlocal due, late, frames
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        frame = await asyncio.wait_for(anext(stream), timeout_s)
        now = time.perf_counter()
        if now > due + period / 2:
            late += 1
        frames += 1
        due = max(due, now) + period
        return frame, now

    latencies = []
    for k in range(trials):
        generation = first_generation + k
        idle_until = time.perf_counter() + rng.uniform(*idle_s)
        while time.perf_counter() < idle_until:
            await pull()
        pushed = time.perf_counter()
        gen.push(AudioChunk(noise.uniform(-0.3, 0.3, int(speech_s * rate)).astype(np.float32), rate), generation)
        gen.end(generation)
        while True:
            frame, at = await pull()
            if frame.generation == generation and frame.audio.any():
                latencies.append(at - pushed)
                break
        while frame.generation == generation:  # let the reply play out
            frame, _ = await pull()
    return OnsetResult(latencies, late, frames)
