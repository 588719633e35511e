"""Benchmark of `omni_server`'s client-side overhead: first audio byte received → first speech chunk handed on.

`python -m liveavatar.testing.omni_bench` starts the vLLM-Omni-compatible local server in a child process
(synthetic speech, pcm16 chunks; a separate process like the real server, so it does not share our
GIL), streams replies through `omni_server` and prints one JSON object per line:

* `omni_server.first_audio_overhead_ms`: from the moment the network read completing the first audio
  event returned, to the moment the consumer received its `AudioChunk` (SSE framing, JSON, base64,
  PCM decode, the async-generator hop). With `on_first_chunk` (e.g. push to an avatar and wait for the
  first frame carrying that audio), `..._to_handled_ms` extends the span to when the callback returns.
* `omni_server.request_to_first_audio_ms`: from starting the reply to that first chunk (local server).
* `omni_server.cancel_to_stream_closed_ms`: barge-in — from cancelling the consuming task to the server
  seeing the connection close (an in-process server here, so it can time-stamp the close).

`--base-url` measures against a running server (e.g. real vLLM-Omni) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from liveavatar.dialogue.base import UserTurn
from liveavatar.testing.omni_standin import SERVED_MODEL, OmniWireServer, synthetic_source, with_behaviour
from liveavatar.dialogue.omni_server import OmniServerBackend, Options
from liveavatar.media import AudioChunk

GOAL_MS = 30.0  # issue 4: first audio byte → first avatar frame with that audio, portrait avatar


@dataclass(frozen=True)
class FirstAudioTiming:
    """One reply's first-audio figures, in milliseconds."""

    received_to_yielded_ms: float
    received_to_handled_ms: float | None
    request_to_first_audio_ms: float


async def measure_first_audio(
    options: Options,
    runs: int,
    on_first_chunk: Callable[[AudioChunk], Awaitable[None]] | None = None,
    turn: UserTurn | None = None,
) -> list[FirstAudioTiming]:
    """Stream `runs` replies from the server in `options`; time each reply's first AudioChunk.

    `on_first_chunk` is awaited with that chunk before the clock stops for `received_to_handled_ms`;
    every reply is read to its end so the connection behaves as in a conversation.
    """
    turn = turn or UserTurn(audio=AudioChunk(np.zeros(16000, np.float32), 16000))
    backend = OmniServerBackend(options, "You are a benchmark.")
    timings: list[FirstAudioTiming] = []
    try:
        for _ in range(runs):
            timing = None
            async with contextlib.aclosing(backend.reply(turn)) as events:
                async for event in events:
                    if timing is not None or not isinstance(event, AudioChunk):
                        continue
                    yielded = time.perf_counter()
                    handled = None
                    if on_first_chunk is not None:
                        await on_first_chunk(event)
                        handled = time.perf_counter()
                    trace = backend.last_trace
                    assert trace is not None and trace.first_audio_received is not None
                    received = trace.first_audio_received
                    timing = FirstAudioTiming(
                        received_to_yielded_ms=(yielded - received) * 1e3,
                        received_to_handled_ms=None if handled is None else (handled - received) * 1e3,
                        request_to_first_audio_ms=(yielded - trace.started) * 1e3,
                    )
            if timing is None:
                raise RuntimeError("the server's reply had no audio")
            timings.append(timing)
    finally:
        await backend.aclose()
    return timings


async def measure_cancel_close(runs: int) -> list[float]:
    """Milliseconds from cancelling a reply's consumer (after its first chunk) to the server seeing the close."""
    results = []
    with OmniWireServer(synthetic_source(seconds=1.0, chunk_s=0.25)) as server:
        with_behaviour(server, stall_after=9)  # role + 6 words + 1 audio chunk, then the stream stays open
        backend = OmniServerBackend(Options(base_url=server.base_url), "You are a benchmark.")
        try:
            for run in range(runs):
                first_audio = asyncio.Event()
                task = asyncio.create_task(_consume(backend, first_audio))
                await asyncio.wait_for(first_audio.wait(), 10)
                await asyncio.sleep(0.01)
                cancelled = time.perf_counter()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                while len(server.log.early_disconnects) <= run:
                    await asyncio.sleep(0.001)
                results.append((server.log.early_disconnects[run] - cancelled) * 1e3)
        finally:
            await backend.aclose()
    return results


async def _consume(backend: OmniServerBackend, first_audio: asyncio.Event) -> None:
    async for event in backend.reply(UserTurn(text="Hello")):
        if isinstance(event, AudioChunk):
            first_audio.set()


@contextlib.contextmanager
def local_server_process(seconds: float, chunk_s: float) -> Iterator[str]:
    """Run dialogue.omni.local_server in a child process; yields its base URL; stops it on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "liveavatar.testing.omni_standin", "--seconds", str(seconds), "--chunk-s", str(chunk_s)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the local vLLM-Omni-compatible server did not start")
        yield json.loads(line)["base_url"]
    finally:
        if process.stdin is not None:
            process.stdin.close()  # the server exits when its stdin closes
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def summary(name: str, values_ms: list[float], **context: object) -> dict[str, object]:
    """One figure in `liveavatar bench`'s JSON-line shape: value = median; p95, max and runs alongside (ms)."""
    ordered = sorted(values_ms)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"name": name, "value": round(statistics.median(ordered), 3), "unit": "ms", "p95": round(p95, 3),
            "max": round(ordered[-1], 3), "runs": len(ordered), **context}


def run_bench(
    out: IO[str],
    runs: int = 20,
    chunk_s: float = 2.0,
    seconds: float = 4.0,
    audio_format: str = "pcm16",
    base_url: str | None = None,
    model: str = SERVED_MODEL,
    on_first_chunk: Callable[[AudioChunk], Awaitable[None]] | None = None,
) -> None:
    """Write the figures of the module docstring to `out`, one JSON object per line."""

    def measure(url: str) -> list[FirstAudioTiming]:
        options = Options(base_url=url, model=model, audio_format=audio_format)  # type: ignore[arg-type]
        return asyncio.run(measure_first_audio(options, runs + 1, on_first_chunk))[1:]  # the first run warms up

    if base_url:
        timings, server = measure(base_url), "external"
    else:
        with local_server_process(seconds, chunk_s) as url:
            timings, server = measure(url), "local synthetic"
    context = {"audio_format": audio_format, "chunk_s": chunk_s, "server": server}
    figures = [summary("omni_server.first_audio_overhead_ms", [t.received_to_yielded_ms for t in timings],
                       goal_ms=GOAL_MS, **context)]
    if on_first_chunk is not None:
        handled = [t.received_to_handled_ms for t in timings if t.received_to_handled_ms is not None]
        figures.append(summary("omni_server.first_audio_to_handled_ms", handled, goal_ms=GOAL_MS, **context))
    figures.append(summary("omni_server.request_to_first_audio_ms", [t.request_to_first_audio_ms for t in timings],
                           **context))
    figures.append(summary("omni_server.cancel_to_stream_closed_ms", asyncio.run(measure_cancel_close(runs)),
                           goal_ms=50.0, server="in-process"))
    for figure in figures:
        out.write(json.dumps(figure) + "\n")
        out.flush()


def main(argv: list[str] | None = None) -> None:
    """Print the figures as JSON lines (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m liveavatar.testing.omni_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="replies to time (default 20)")
    parser.add_argument("--chunk-s", type=float, default=2.0,
                        help="speech per audio chunk from the local server, seconds (default 2.0: vLLM-Omni's 25 frames)")
    parser.add_argument("--seconds", type=float, default=4.0, help="speech per reply from the local server (default 4.0)")
    parser.add_argument("--audio-format", choices=["pcm16", "wav"], default="pcm16")
    parser.add_argument("--base-url", default=None, help="measure against this running server instead")
    parser.add_argument("--model", default=SERVED_MODEL, help=f"model name on that server (default {SERVED_MODEL})")
    args = parser.parse_args(argv)
    run_bench(sys.stdout, args.runs, args.chunk_s, args.seconds, args.audio_format, args.base_url, args.model)


if __name__ == "__main__":
    main()
