"""`liveavatar bench omni-real`: the real vLLM-Omni, chat completions versus realtime, in one run.

Starts the real server (`testing/vllm_omni`: cached env, CPU plugin, tiny random Qwen3-Omni; or uses
`--base-url`), then times `runs` user turns per path, alternating the paths so both see the same load.
Each turn is 2 s of 16 kHz audio "captured" in real time in 20 ms chunks; the realtime backend gets the
chunks as they come (`user_turn_started` / `user_audio`), the chat-completions backend gets the whole
turn at its end. From the end of the turn, each reply's first speech chunk is pushed into a 512×512
portrait avatar and the first frame carrying it is pulled. Figures (median, with p95 and max), ms:

* `omni_real.<path>.turn_end_to_first_voiced_frame_ms`: end of the user's speech → first avatar frame
  with the reply's voice (everything: upload left at the end, prompt work, generation, client, avatar).
* `omni_real.<path>.turn_end_to_first_audio_ms`: the same up to the first speech byte received.
* `omni_real.<path>.client_overhead_ms`: the client's own work: turn end → request built (chat: the
  history's WAV, base64 and JSON) or final commit sent (realtime: the last part-batch and the commit),
  plus first speech byte received → first voiced avatar frame (`of_which_decode_ms`: received →
  decoded and handed on; the rest is the avatar's first frame, which here shares two cores with the
  server generating the same reply). Goal ≤ 30 ms.
* `omni_real.<path>.uploaded_at_turn_end_kb`: what still had to go up when the turn ended.
* `omni_real.realtime.saved_ms`: chat minus realtime, end of speech → first voiced frame.
* `omni_real.server_start_s`: how long `vllm serve --omni` took to answer (when started here).

The chat backend keeps one exchange of history (as realtime has none), so both prompts stay the same
size from turn to turn.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from liveavatar.dialogue.base import UserTurn
from liveavatar.dialogue.omni_realtime import OmniRealtimeBackend
from liveavatar.dialogue.omni_realtime import Options as RealtimeOptions
from liveavatar.dialogue.omni_server import OmniServerBackend
from liveavatar.dialogue.omni_server import Options as ChatOptions
from liveavatar.media import AudioChunk

GOAL_MS = 30.0
TURN_S = 2.0
CHUNK_S = 0.02
RATE = 16000
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@dataclass
class Timing:
    """One turn's milestones, perf_counter seconds."""

    turn_end: float
    client_ready: float  # chat: request built; realtime: final commit sent
    first_audio_received: float
    first_audio_yielded: float  # the client decoded that speech and handed it on
    first_voiced_frame: float
    uploaded_at_end_bytes: int


def user_speech(seconds: float = TURN_S, seed: int = 0) -> np.ndarray:
    """A voice-like test signal: a gliding tone with a syllable-rate envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    tone = np.sin(2 * np.pi * np.cumsum(pitch) / RATE) + 0.5 * np.sin(4 * np.pi * np.cumsum(pitch) / RATE)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * tone * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


class AvatarProbe:
    """A portrait avatar whose frames are pulled only to find the first one carrying a pushed chunk."""

    def __init__(self, size: int = 512) -> None:
        from liveavatar.agent.agents import build_agent
        from liveavatar.agent.config import load_persona

        self.agent = build_agent(load_persona(EXAMPLES / "nova.yaml"), (size, size), 25.0, 24000, underrun="silence")
        self._frames = self.agent.avatar.frames()
        self._generation = 0

    async def first_voiced_frame(self, chunk: AudioChunk) -> float:
        """Push `chunk` as a new reply; the perf_counter time the first frame carrying it came out."""
        self._generation += 1
        self.agent.avatar.push(chunk, self._generation)
        async for frame in self._frames:
            if frame.generation == self._generation and frame.audio.any():
                done = time.perf_counter()
                self.agent.avatar.clear()
                return done
        raise RuntimeError("the avatar's frames ended")

    async def aclose(self) -> None:
        await self._frames.aclose()
        await self.agent.aclose()


async def capture(speech: np.ndarray, on_chunk) -> UserTurn:  # noqa: ANN001 - (AudioChunk, first: bool) -> None
    """Deliver `speech` in real time in 20 ms chunks; returns the whole turn (pts 1000 + a unique offset)."""
    pts = 1000.0 + time.perf_counter() % 1000
    n = int(CHUNK_S * RATE)
    start = time.perf_counter()
    for k, at in enumerate(range(0, len(speech), n)):
        await asyncio.sleep(max(0.0, start + (k + 1) * CHUNK_S - time.perf_counter()))
        on_chunk(AudioChunk(speech[at : at + n], RATE, pts=pts + at / RATE), k == 0)
    return UserTurn(audio=AudioChunk(speech, RATE, pts=pts))


async def one_turn(path: str, backend: OmniServerBackend, probe: AvatarProbe, speech: np.ndarray) -> Timing:
    """One timed turn through `path` ("chat" or "realtime"); the reply is read to its end."""
    listening = path == "realtime"
    assert isinstance(backend, OmniRealtimeBackend) == listening

    def hand_over(chunk: AudioChunk, first: bool) -> None:
        if listening:
            backend.user_turn_started(chunk) if first else backend.user_audio(chunk)  # type: ignore[attr-defined]

    turn = await capture(speech, hand_over)
    turn_end = time.perf_counter()
    first_frame = None
    async with contextlib.aclosing(backend.reply(turn)) as events:
        async for event in events:
            if first_frame is None and isinstance(event, AudioChunk):
                first_frame = await probe.first_voiced_frame(event)
    if first_frame is None:
        raise RuntimeError(f"{path}: the reply had no speech")
    if listening:
        trace = backend.last_realtime_trace  # type: ignore[attr-defined]
        ready, uploaded = trace.committed, int(trace.uploaded_at_end_s * RATE * 2 * 4 / 3)  # PCM16, base64
    else:
        trace = backend.last_trace
        ready, uploaded = trace.request_built, trace.request_bytes or 0
    assert trace is not None and ready is not None and trace.first_audio_received is not None
    return Timing(turn_end, ready, trace.first_audio_received, trace.first_audio_ready, first_frame, uploaded)


def summary(name: str, values_ms: list[float], unit: str = "ms", **context: object) -> dict[str, object]:
    ordered = sorted(values_ms)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"name": name, "value": round(statistics.median(ordered), 3), "unit": unit, "p95": round(p95, 3),
            "max": round(ordered[-1], 3), "runs": len(ordered), **context}


async def measure(base_url: str, runs: int) -> dict[str, list[Timing]]:
    """`runs` timed turns per path (after one warm-up turn each), alternating the paths."""
    chat = OmniServerBackend(ChatOptions(base_url=base_url, history_exchanges=1), "You are a benchmark.")
    realtime = OmniRealtimeBackend(RealtimeOptions(base_url=base_url, history_exchanges=1), "You are a benchmark.")
    probe = AvatarProbe()
    timings: dict[str, list[Timing]] = {"chat": [], "realtime": []}
    try:
        for k in range(runs + 1):
            for path, backend in (("chat", chat), ("realtime", realtime)) if k % 2 == 0 else (("realtime", realtime), ("chat", chat)):
                timing = await one_turn(path, backend, probe, user_speech(seed=k))
                if k > 0:  # the first turn of each path warms up
                    timings[path].append(timing)
    finally:
        await chat.aclose()
        await realtime.aclose()
        await probe.aclose()
    return timings


def figures(timings: dict[str, list[Timing]], **context: object) -> list[dict[str, object]]:
    out = []
    medians = {}
    for path, runs in timings.items():
        to_frame = [(t.first_voiced_frame - t.turn_end) * 1e3 for t in runs]
        medians[path] = statistics.median(to_frame)
        out.append(summary(f"omni_real.{path}.turn_end_to_first_voiced_frame_ms", to_frame, **context))
        out.append(summary(f"omni_real.{path}.turn_end_to_first_audio_ms",
                           [(t.first_audio_received - t.turn_end) * 1e3 for t in runs], **context))
        overhead = [((t.client_ready - t.turn_end) + (t.first_voiced_frame - t.first_audio_received)) * 1e3 for t in runs]
        out.append(summary(f"omni_real.{path}.client_overhead_ms", overhead, goal_ms=GOAL_MS,
                           turn_end_to_sent_ms=round(statistics.median([(t.client_ready - t.turn_end) * 1e3 for t in runs]), 3),
                           first_audio_to_frame_ms=round(statistics.median([(t.first_voiced_frame - t.first_audio_received) * 1e3
                                                                            for t in runs]), 3),
                           of_which_decode_ms=round(statistics.median([(t.first_audio_yielded - t.first_audio_received) * 1e3
                                                                       for t in runs]), 3), **context))
        out.append(summary(f"omni_real.{path}.uploaded_at_turn_end_kb", [t.uploaded_at_end_bytes / 1024 for t in runs],
                           unit="KiB", **context))
    out.append({"name": "omni_real.realtime.saved_ms", "value": round(medians["chat"] - medians["realtime"], 3),
                "unit": "ms", "note": "chat minus realtime, end of speech -> first voiced frame (medians)", **context})
    return out


def run_bench(out: IO[str], runs: int = 6, base_url: str | None = None) -> None:
    """Write the figures of the module docstring to `out`, one JSON object per line."""
    context: dict[str, object] = {"model": "tiny random Qwen3-Omni (CPU plugin)", "turn_s": TURN_S, "avatar": "portrait 512x512"}

    def emit(figure: dict[str, object]) -> None:
        out.write(json.dumps(figure) + "\n")
        out.flush()

    if base_url:
        for figure in figures(asyncio.run(measure(base_url, runs)), server=base_url, **context):
            emit(figure)
        return
    from liveavatar.testing.vllm_omni.server import ServerSetup, VllmOmniServer

    log = Path(tempfile.gettempdir()) / "liveavatar-bench-vllm-omni.log"
    with VllmOmniServer(ServerSetup.prepare(log)) as server:
        emit({"name": "omni_real.server_start_s", "value": round(server.started_in_s or 0.0, 1), "unit": "s",
              "log": str(log)})
        for figure in figures(asyncio.run(measure(server.base_url, runs)), **context):
            emit(figure)


def main(argv: list[str] | None = None) -> None:
    """Print the figures as JSON lines (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m liveavatar.testing.omni_real_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="timed turns per path (default 6)")
    parser.add_argument("--base-url", default=None, help="use this running server instead of starting one")
    args = parser.parse_args(argv)
    run_bench(sys.stdout, args.runs, args.base_url)


if __name__ == "__main__":
    main()
