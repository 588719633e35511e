"""Benchmark of the tiny TEST config on CPU, printed as one JSON object per line.

    python -m avatar.liveavatar.bench [--blocks 20] [--rss-blocks 2000] [--threads 1]

Figures: tiny-config blocks/s through the whole `liveavatar` backend (audio in, AVFrames out), the share of
time per part (wav2vec2 features, DiT, VAE decode, frame conversion), and the process RSS after 100 streamed
blocks versus after `--rss-blocks` (speech replies, idle stretches and barge-ins mixed in; `model_blocks` also
counts the blocks computed and then dropped by a barge-in). Flat RSS is the evidence that an endless stream keeps
bounded state. The tiny config has random weights; only its speed and
memory behaviour mean something.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import IO

import numpy as np


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def _emit(out: IO[str], name: str, value: float, unit: str, **context: object) -> None:
    out.write(json.dumps({"name": name, "value": round(value, 4), "unit": unit, **context}) + "\n")
    out.flush()


async def _run(out: IO[str], blocks: int, rss_blocks: int, rss_early: int) -> None:
    from avatar.liveavatar.backend import LiveAvatarGenerator, Options
    from avatar.liveavatar.tiny import build_tiny_parts
    from avatar.registry import AvatarSetup
    from media import AudioChunk

    parts = build_tiny_parts(seed=0)
    height, width = parts.pixel_size
    rng = np.random.default_rng(0)
    portrait = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    rate = 24000
    setup = AvatarSetup(portrait=portrait, portrait_path=None, size=(width, height), audio_rate=rate, underrun="wait", seed=0)  # type: ignore[arg-type]
    gen = LiveAvatarGenerator(Options(), setup, parts=parts)
    stream = gen.frames()
    per_block = gen.frames_per_block
    generation = 0

    async def stream_blocks(n: int) -> None:
        nonlocal generation
        for b in range(n):
            if b % 8 == 0:  # a 1.5 s reply every 8 blocks (3.84 s): speech, then idle
                generation += 1
                gen.push(AudioChunk(rng.uniform(-0.3, 0.3, int(1.5 * rate)).astype(np.float32), rate), generation)
                gen.end(generation)
            if b % 50 == 25:  # a barge-in now and then
                gen.push(AudioChunk(rng.uniform(-0.3, 0.3, 3 * rate).astype(np.float32), rate), generation + 1)
                generation += 1
                for _ in range(per_block):
                    await anext(stream)
                gen.clear()
            for _ in range(per_block):
                await anext(stream)

    await stream_blocks(2)  # models loaded, warm
    pipe = gen._pipeline
    pipe.timings.clear()
    t0 = time.perf_counter()
    await stream_blocks(blocks)
    wall = time.perf_counter() - t0
    shares = {k: v for k, v in pipe.timings.items() if k != "prepare"}
    total = sum(shares.values())
    _emit(out, "liveavatar_tiny_blocks_per_s", blocks / wall, "blocks/s", blocks=blocks, frames_per_block=per_block,
          pixels=[height, width], label=parts.label, threads=_threads())
    _emit(out, "liveavatar_tiny_realtime_factor", blocks * 0.48 / wall, "x real time", blocks=blocks)
    _emit(out, "liveavatar_tiny_time_share", 1.0, "fraction",
          parts={k: round(v / total, 4) for k, v in sorted(shares.items())},
          seconds_per_block={k: round(v / blocks, 5) for k, v in sorted(shares.items())})

    done = 2 + blocks
    if rss_blocks > 0:
        if done < rss_early:
            await stream_blocks(rss_early - done)
            done = rss_early
        early, early_at = rss_mb(), done
        trace = {done: round(early, 1)}
        t1 = time.perf_counter()
        while done < rss_blocks:  # readings every 500 blocks show a plateau apart from a slow leak
            step = min(500 - done % 500, rss_blocks - done)
            await stream_blocks(step)
            done += step
            trace[done] = round(rss_mb(), 1)
        late = trace[done]
        _emit(out, "liveavatar_tiny_rss_mb", late, "MiB", after_blocks=rss_blocks, rss_after_early_mb=round(early, 1),
              early_blocks=early_at, growth_mb=round(late - early, 1), rss_trace_mb=trace,
              model_blocks=pipe.streamer.block_index, wall_s=round(time.perf_counter() - t1, 1))
    await gen.aclose()


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints JSON lines to stdout."""
    parser = argparse.ArgumentParser(prog="python -m avatar.liveavatar.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=20, help="blocks timed for throughput (default 20)")
    parser.add_argument("--rss-blocks", type=int, default=2000, help="stream length for the RSS figure; 0 skips it (default 2000)")
    parser.add_argument("--rss-early", type=int, default=100, help="block count of the early RSS reading (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    asyncio.run(_run(sys.stdout, args.blocks, args.rss_blocks, args.rss_early))
    return 0


if __name__ == "__main__":
    sys.exit(main())
