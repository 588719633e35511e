"""Benchmark of the tiny TEST config on CPU, printed as one JSON object per line.

    python -m liveavatar.testing.liveavatar_bench [--blocks 20] [--rss-blocks 2000] [--threads 1] [--onset-trials 6]
    python -m liveavatar.testing.liveavatar_bench --soak-blocks 20834 [--soak-start-block 0] [--soak-max-s S]   (the soak)

Figures: tiny-config blocks/s through the whole `liveavatar` backend (audio in, AVFrames out), the share of
time per part (wav2vec2 features, DiT, VAE decode, frame conversion), the process RSS after 100 streamed blocks
versus after `--rss-blocks` (speech replies, idle stretches and barge-ins mixed in; `model_blocks` also counts the
blocks computed and then dropped by a barge-in), and speech onset -> the first frame carrying it: measured here
in-process with a sink pulling 25 frames/s (`liveavatar_tiny_onset_s`), and predicted by the onset model for the
reference's 5-GPU layout at its 45 FPS per-step cost, with the planning before issue 15 and now
(`liveavatar_reference_onset_s`).

The soak (`liveavatar bench liveavatar-soak`: 20,834 blocks = 10,000 s of stream) samples RSS along the way and
reports whether its level stayed within 2 % after warm-up (the median of the last third of the samples against
the first third; single samples scatter by a few per cent, reported as `spread`), and whether the output is still well-formed at the end:
finite latents, frames that move and change with the speech, RoPE positions past the reference's 45,000-row
table. `--soak-start-block` starts the stream's clock that many blocks in (positions only: a shorter soak
still reaches positions past the table). The tiny config has random weights; only its speed and memory
behaviour mean something.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import IO

import numpy as np

RATE = 24000
REFERENCE_TABLE_FRAMES = 45000  # the reference precomputes RoPE for this many latent frames
SOAK_BLOCKS = 20834  # 10,000 s of stream at 0.48 s per block
FLAT_WITHIN = 0.02


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


def _setup(underrun: str, size: tuple[int, int]):
    from liveavatar.avatar.registry import AvatarSetup

    portrait = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    return AvatarSetup(portrait=portrait, portrait_path=None, size=size, audio_rate=RATE, underrun=underrun, seed=0)  # type: ignore[arg-type]


class _Script:
    """The benchmark's stream: a 1.5 s reply every 8 blocks (3.84 s), a barge-in every 50 blocks."""

    def __init__(self, gen, stream) -> None:
        self.gen, self.stream = gen, stream
        self.rng = np.random.default_rng(0)
        self.generation = 0
        self.blocks = 0

    async def run(self, n: int) -> None:
        from liveavatar.media import AudioChunk

        gen, per_block = self.gen, self.gen.frames_per_block
        for _ in range(n):
            b = self.blocks
            if b % 8 == 0:
                self.generation += 1
                gen.push(AudioChunk(self.rng.uniform(-0.3, 0.3, int(1.5 * RATE)).astype(np.float32), RATE), self.generation)
                gen.end(self.generation)
            if b % 50 == 25:
                self.generation += 1
                gen.push(AudioChunk(self.rng.uniform(-0.3, 0.3, 3 * RATE).astype(np.float32), RATE), self.generation)
                for _ in range(per_block):
                    await anext(self.stream)
                gen.clear()
            for _ in range(per_block):
                await anext(self.stream)
            self.blocks += 1


async def _run(out: IO[str], blocks: int, rss_blocks: int, rss_early: int) -> None:
    from liveavatar.avatar.liveavatar.backend import LiveAvatarGenerator, Options
    from liveavatar.avatar.liveavatar.tiny import build_tiny_parts

    parts = build_tiny_parts(seed=0)
    height, width = parts.pixel_size
    gen = LiveAvatarGenerator(Options(), _setup("wait", (width, height)), parts=parts)
    script = _Script(gen, gen.frames())
    await script.run(2)  # models loaded, warm
    pipe = gen.runner.pipeline
    pipe.timings.clear()
    t0 = time.perf_counter()
    await script.run(blocks)
    wall = time.perf_counter() - t0
    shares = {k: v for k, v in pipe.timings.items() if k != "prepare"}
    total = sum(shares.values())
    _emit(out, "liveavatar_tiny_blocks_per_s", blocks / wall, "blocks/s", blocks=blocks, frames_per_block=gen.frames_per_block,
          pixels=[height, width], label=parts.label, threads=_threads())
    _emit(out, "liveavatar_tiny_realtime_factor", blocks * 0.48 / wall, "x real time", blocks=blocks)
    _emit(out, "liveavatar_tiny_time_share", 1.0, "fraction",
          parts={k: round(v / total, 4) for k, v in sorted(shares.items())},
          seconds_per_block={k: round(v / blocks, 5) for k, v in sorted(shares.items())})

    if rss_blocks > 0:
        if script.blocks < rss_early:
            await script.run(rss_early - script.blocks)
        early, early_at = rss_mb(), script.blocks
        trace = {script.blocks: round(early, 1)}
        t1 = time.perf_counter()
        while script.blocks < rss_blocks:  # readings every 500 blocks show a plateau apart from a slow leak
            await script.run(min(500 - script.blocks % 500, rss_blocks - script.blocks))
            trace[script.blocks] = round(rss_mb(), 1)
        late = trace[script.blocks]
        _emit(out, "liveavatar_tiny_rss_mb", late, "MiB", after_blocks=rss_blocks, rss_after_early_mb=round(early, 1),
              early_blocks=early_at, growth_mb=round(late - early, 1), rss_trace_mb=trace,
              model_blocks=pipe.streamer.block_index, wall_s=round(time.perf_counter() - t1, 1))
    await gen.aclose()


async def _onset(out: IO[str], trials: int) -> None:
    """Speech onset -> first frame carrying it, in-process, and the model's prediction for the reference layout."""
    from liveavatar.avatar.liveavatar.backend import LiveAvatarGenerator, Options
    from liveavatar.avatar.liveavatar.tiny import build_tiny_parts
    from liveavatar.avatar.liveavatar.tpp.onset_model import predict_onset
    from liveavatar.avatar.liveavatar.tpp.schedule_model import StageCosts, forward_cost_for_fps
    from liveavatar.testing.onset import measure_onset

    parts = build_tiny_parts(seed=0, context_s=2.0)
    height, width = parts.pixel_size
    gen = LiveAvatarGenerator(Options(), _setup("silence", (width, height)), parts=parts)
    await gen.wait_ready()
    try:
        result = await measure_onset(gen, trials=trials)
    finally:
        await gen.aclose()
    summary = result.summary()
    _emit(out, "liveavatar_tiny_onset_s", summary["median_s"], "s speech onset -> first frame (median)", **summary,
          layout="in-process", sink="pulls 25 frames/s", label=parts.label)
    costs = StageCosts(forward_cost_for_fps(45.0), decode_s=round(1.21 - 4 * 12 / 45, 3))
    for policy in ("queued", "preempt"):
        pred = predict_onset(costs, 4, True, policy=policy)
        _emit(out, "liveavatar_reference_onset_s", pred.mean_s, "s speech onset -> first frame (mean)", policy=policy,
              **{k: v for k, v in pred.as_dict().items() if k != "policy"}, claim_fps=45.0,
              forward_s=round(costs.forward_s, 4), decode_s=costs.decode_s, goal_s=1.0, met=pred.max_s <= 1.0,
              floor_s=round(4 * costs.forward_s + costs.decode_s, 4),
              layout="reference: 4 DiT GPUs (one step each) + 1 VAE GPU",
              note="'queued' = speech planned behind every planned block (before issue 15); 'preempt' = now")


async def _soak(out: IO[str], blocks: int, every: int, warmup: int, start_block: int, max_s: float | None = None) -> None:
    """The soak: RSS along `blocks` blocks of stream (or fewer: until the first sample after `max_s` s), then the output's health."""
    import torch

    from liveavatar.avatar.liveavatar.backend import LiveAvatarGenerator, Options
    from liveavatar.avatar.liveavatar.tiny import build_tiny_parts
    from liveavatar.media import AudioChunk

    parts = build_tiny_parts(seed=0)
    height, width = parts.pixel_size
    gen = LiveAvatarGenerator(Options(), _setup("wait", (width, height)), parts=parts)
    await gen.wait_ready()
    streamer = gen.runner.pipeline.streamer
    streamer.block_index = start_block  # the stream's clock (RoPE positions, ring slots, noise clips) starts there
    last = {}
    final_step = streamer.cfg.num_steps - 1
    streamer.on_step = lambda r: last.__setitem__("latent", r.latent_out) if r.step == final_step else None
    script = _Script(gen, gen.frames())
    samples: dict[int, float] = {}
    t0 = time.perf_counter()
    planned = blocks
    while script.blocks < blocks:
        if max_s is not None and samples and time.perf_counter() - t0 >= max_s:
            blocks = script.blocks  # out of time: stop at this sample, still check the output
            break
        await script.run(min(every - script.blocks % every, blocks - script.blocks))
        samples[script.blocks] = rss_mb()
        _emit(out, "liveavatar_soak_rss_mb", samples[script.blocks], "MiB", blocks=script.blocks,
              stream_s=round(script.blocks * 0.48, 1), model_blocks=streamer.block_index - start_block,
              latent_frame=streamer.start_frame, wall_s=round(time.perf_counter() - t0, 1))
    # the output at the end: an idle block, then a block of speech
    idle = [await anext(script.stream) for _ in range(12 * 2)]
    gen.push(AudioChunk(np.random.default_rng(1).uniform(-0.5, 0.5, RATE).astype(np.float32), RATE), 10**9)
    gen.end(10**9)
    spoken = []
    while len(spoken) < 12:
        frame = await anext(script.stream)
        if frame.generation == 10**9:
            spoken.append(frame)
    await gen.aclose()
    trimmer = gen.runner.trimmer
    after = {b: v for b, v in samples.items() if b >= warmup} or samples
    low, high = min(after.values()), max(after.values())
    spread = (high - low) / low
    drift = _drift(after)
    motion = float(np.mean([np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).mean()
                            for a, b in zip(spoken, spoken[1:])]))
    speech_vs_idle = float(np.abs(np.mean([f.image for f in spoken], axis=0) - np.mean([f.image for f in idle[-12:]], axis=0)).mean())
    latent = last.get("latent")
    finite = bool(latent is not None and torch.isfinite(latent).all())
    position = streamer.start_frame
    _emit(out, "liveavatar_soak", drift, "fraction (RSS growth after warm-up: median of the last third of the samples "
          "over the first third, minus 1)", flat=abs(drift) <= FLAT_WITHIN, spread=round(spread, 4),
          within=FLAT_WITHIN, blocks=blocks, stream_s=round(blocks * 0.48, 1), warmup_blocks=warmup,
          rss_first_mb=round(after[min(after)], 1), rss_last_mb=round(after[max(after)], 1), rss_min_mb=round(low, 1),
          rss_max_mb=round(high, 1), finite_latents=finite, frame_motion=round(motion, 3),
          speech_vs_idle=round(speech_vs_idle, 3), frames_vary_with_speech=motion > 0 and speech_vs_idle > 0,
          rope_latent_frame=position, past_reference_table=position > REFERENCE_TABLE_FRAMES, start_block=start_block,
          heap_trims=trimmer.trims, trim_ms_each=round(1000 * trimmer.seconds / max(1, trimmer.trims), 3),
          reduced=blocks < SOAK_BLOCKS, planned_blocks=planned, stopped_by_time=blocks < planned,
          wall_s=round(time.perf_counter() - t0, 1))


def _drift(samples: dict[int, float]) -> float:
    """RSS growth along the samples: the median of the last third over the median of the first third, minus 1.

    One sample lands anywhere in a block's allocations and between heap trims, so single samples scatter by a few
    per cent (`spread`); the medians of whole thirds show whether the level moves.
    """
    values = [samples[b] for b in sorted(samples)]
    third = max(1, len(values) // 3)
    first, last = statistics.median(values[:third]), statistics.median(values[-third:])
    return (last - first) / first


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints JSON lines to stdout."""
    parser = argparse.ArgumentParser(prog="python -m liveavatar.testing.liveavatar_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=20, help="blocks timed for throughput (default 20)")
    parser.add_argument("--rss-blocks", type=int, default=2000, help="stream length for the RSS figure; 0 skips it (default 2000)")
    parser.add_argument("--rss-early", type=int, default=100, help="block count of the early RSS reading (default 100)")
    parser.add_argument("--onset-trials", type=int, default=6, help="speech onsets timed in-process; 0 skips (default 6)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--soak-blocks", type=int, default=0, help=f"run the soak instead, this many blocks ({SOAK_BLOCKS} = 10,000 s)")
    parser.add_argument("--soak-every", type=int, default=500, help="soak: blocks between RSS samples (default 500)")
    parser.add_argument("--soak-warmup", type=int, default=1000, help="soak: blocks before RSS must stay flat (default 1000)")
    parser.add_argument("--soak-start-block", type=int, default=0, help="soak: start the stream's clock this many blocks in")
    parser.add_argument("--soak-max-s", type=float, default=None,
                        help="soak: stop at the first RSS sample after this many seconds (then check the output as usual)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.soak_blocks:
        asyncio.run(_soak(sys.stdout, args.soak_blocks, args.soak_every, args.soak_warmup, args.soak_start_block,
                          args.soak_max_s))
        return 0
    if args.blocks:
        asyncio.run(_run(sys.stdout, args.blocks, args.rss_blocks, args.rss_early))
    if args.onset_trials:
        asyncio.run(_onset(sys.stdout, args.onset_trials))
    return 0


if __name__ == "__main__":
    sys.exit(main())
