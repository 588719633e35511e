"""`liveavatar bench`: benchmark figures printed as one JSON object per line (never timed tests)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import IO

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _emit(out: IO[str], name: str, value: float, unit: str, **context: object) -> None:
    out.write(json.dumps({"name": name, "value": round(value, 3), "unit": unit, **context}) + "\n")
    out.flush()


def _one_core() -> int:
    """Pin this process (and OpenCV) to a single core; returns the core used."""
    import cv2

    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    cv2.setNumThreads(1)
    return core


def bench_portrait(out: IO[str], frames: int = 500) -> None:
    """Portrait avatar frames/s at 512×512 on one core: the rig alone, and the whole generator."""
    from liveavatar.agent.agents import build_agent
    from liveavatar.agent.config import load_persona
    from liveavatar.avatar.portrait.rig import FacePose
    from liveavatar.dialogue.speech.piper_tts import PiperTTS

    core = _one_core()
    persona = load_persona(EXAMPLES / "nova.yaml")
    agent = build_agent(persona, (512, 512), 25.0, 24000, underrun="wait")
    rig = agent.avatar.rig  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    poses = [FacePose(jaw=float(rng.uniform(0, 1)) * (i % 3 != 0), spread=float(rng.uniform(-1, 1)), blink=float(i % 60 < 5),
                      tilt_deg=float(np.sin(i / 20)), shift_px=(float(np.sin(i / 13)) * 2, float(np.cos(i / 17)) * 2), scale=1.002)
             for i in range(frames)]  # fmt: skip
    for pose in poses[:20]:
        rig.render(pose)
    t0 = time.perf_counter()
    for pose in poses:
        rig.render(pose)
    fps = frames / (time.perf_counter() - t0)
    _emit(out, "portrait_render_fps", fps, "frames/s", size=[512, 512], cores=1, core=core, frames=frames)

    tts = PiperTTS(persona.voice, persona.base_dir)
    speech = list(tts.synthesize("Every frame of my face is one photo, gently warped, and my lips follow the sounds I make. " * 2))

    async def stream() -> float:
        for chunk in speech:
            agent.avatar.push(chunk, 1)
        agent.avatar.end(1)
        n, start = 0, time.perf_counter()
        async for _frame in agent.avatar.frames():
            n += 1
            if n == frames:
                break
        return n / (time.perf_counter() - start)

    gen_fps = asyncio.run(stream())
    _emit(out, "portrait_generator_fps", gen_fps, "frames/s", size=[512, 512], cores=1, core=core, frames=frames,
          note="speech-driven PortraitAvatar.frames(): drive, blink, sway, render thread")  # fmt: skip


def bench_duet(out: IO[str]) -> None:
    """Whole example duet (TTS, two avatars, composition, H.264 + AAC) as a multiple of real time."""
    from liveavatar.agent.config import load_duet
    from liveavatar.agent.render import render_duet

    duet = load_duet(EXAMPLES / "duet.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(render_duet(duet.plan, duet.personas, Path(tmp) / "duet.mp4"))
    _emit(out, "duet_render_realtime_factor", result.realtime_factor, "x real time", video_s=round(result.seconds, 2),
          wall_s=round(result.wall_seconds, 2), turns=len(result.turns), cores=len(os.sched_getaffinity(0)))  # fmt: skip


def bench_omni(out: IO[str]) -> None:
    """vLLM-Omni client overhead up to the first portrait-avatar frame that carries the first speech chunk."""
    from liveavatar.agent.agents import build_agent
    from liveavatar.agent.config import load_persona
    from liveavatar.testing.omni_bench import run_bench

    agent = build_agent(load_persona(EXAMPLES / "nova.yaml"), (512, 512), 25.0, 24000, underrun="silence")
    state: dict = {"generation": 0, "seen": {}, "consumer": None}

    async def consume() -> None:
        async for frame in agent.avatar.frames():
            waiter = state["seen"].get(frame.generation)
            if waiter is not None and frame.audio.any():
                waiter.set()

    async def first_frame(chunk) -> None:  # noqa: ANN001 - the reply's first AudioChunk
        if state["consumer"] is None or state["consumer"].get_loop() is not asyncio.get_running_loop():
            state["consumer"] = asyncio.create_task(consume())
        state["generation"] += 1
        g = state["generation"]
        state["seen"][g] = asyncio.Event()
        agent.avatar.push(chunk, g)
        await state["seen"][g].wait()
        agent.avatar.clear()

    run_bench(out, runs=30, on_first_chunk=first_frame)


BENCHMARKS = {
    "duet": "the example duet rendered to MP4, as a multiple of real time",
    "latency": "median response and barge-in latency over spoken turns (embedded cascade + portrait avatar)",
    "eot": "end of turn: response latency and false cut-offs over 36 utterances (questions, statements, hesitations), defaults vs the model alone vs silence alone",
    "eot-load": "the same with one core kept busy by another process",
    "eot-sweep": "end-of-turn settings on a simulated clock (real VAD and model): turn-end delay and cut-offs per setting",
    "soak": "30 minutes of the live loop at 8x speed: RSS slope and A/V drift",
    "omni": "vLLM-Omni client overhead: first audio byte -> first avatar frame with that audio",
    "omni-real": "the real vLLM-Omni (tiny model, CPU): chat completions vs realtime, speech end -> first voiced frame",
    "liveavatar": "LiveAvatar tiny config: blocks/s, time per part, RSS after 100 vs 2000 blocks, speech onset -> first frame",
    "liveavatar-soak": "LiveAvatar tiny config for 10,000 s of stream (20,834 blocks): RSS along the way, output health at the end",
    "tpp": "LiveAvatar TPP: frames/s and time-to-first-frame with 1 vs 2 DiT workers, next to the schedule model",
    "gpu": "LiveAvatar at its real size on one GPU: DiT step, VAE, wav2vec2, umT5, errors vs CPU, predicted layouts",
    "serve": "one server, many pages in Chromium: sessions held at real time (scripted, cascade), per-session CPU, memory and "
             "response latency, bytes/s and frame delay over WebRTC vs the websocket (about 15 minutes)",
    "portrait": "portrait avatar frames/s at 512x512 on one core (pins the process: runs last)",
}


def run_benchmarks(which: list[str], frames: int, out: IO[str], gpu_argv: list[str] | None = None,
                   soak_blocks: int | None = None) -> int:
    """Run the named benchmarks in a fixed order (the portrait one pins the process to one core, so it is last).

    `soak_blocks` shortens `liveavatar-soak` (default: the full 20,834 blocks); a shorter soak starts its stream's
    clock later so that it ends at the full soak's RoPE positions, past the reference's table.

    Returns 0, or 1 when a benchmark reported a failed part (`gpu` does).
    """
    status = 0
    unknown = set(which) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; expected: {', '.join(BENCHMARKS)}")
    for name in BENCHMARKS:
        if name not in which:
            continue
        if name == "duet":
            bench_duet(out)
        elif name == "latency":
            from liveavatar.testing.bench_live import bench_latency

            bench_latency(out)
        elif name in ("eot", "eot-load"):
            from liveavatar.testing.eot_bench import bench_eot

            bench_eot(out, load=name == "eot-load")
        elif name == "eot-sweep":
            from liveavatar.testing.eot_bench import bench_eot_sweep

            bench_eot_sweep(out)
        elif name == "soak":
            from liveavatar.testing.bench_live import bench_soak

            bench_soak(out)
        elif name == "omni":
            bench_omni(out)
        elif name == "omni-real":
            from liveavatar.testing.omni_real_bench import run_bench as omni_real_bench

            omni_real_bench(out)
        elif name == "liveavatar":
            from liveavatar.testing.liveavatar_bench import main as liveavatar_bench

            liveavatar_bench([])
        elif name == "liveavatar-soak":
            from liveavatar.testing.liveavatar_bench import SOAK_BLOCKS
            from liveavatar.testing.liveavatar_bench import main as liveavatar_bench

            blocks = soak_blocks or SOAK_BLOCKS
            liveavatar_bench(["--soak-blocks", str(blocks), "--soak-start-block", str(max(0, SOAK_BLOCKS - blocks)),
                              "--soak-warmup", str(min(1000, blocks // 5)), "--soak-every", str(max(1, min(500, blocks // 20)))])
        elif name == "tpp":
            from liveavatar.testing.tpp_bench import main as tpp_bench

            tpp_bench([])
        elif name == "gpu":
            from liveavatar.testing.gpu_bench import main as gpu_bench

            status = max(status, gpu_bench(gpu_argv or []))
        elif name == "serve":
            from liveavatar.testing.serve_bench import bench_serve

            bench_serve(out)
        elif name == "portrait":
            bench_portrait(out, frames)
    return status
