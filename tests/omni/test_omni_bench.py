"""The benchmark command prints its figures as JSON lines and leaves no server process behind."""

from __future__ import annotations

import asyncio
import json

import pytest

from liveavatar.testing import omni_bench
from liveavatar.testing.omni_standin import OmniWireServer, synthetic_source
from liveavatar.dialogue.omni_server import Options
from liveavatar.media import AudioChunk


def test_bench_prints_one_json_object_per_figure(capsys: pytest.CaptureFixture[str]) -> None:
    omni_bench.main(["--runs", "3", "--seconds", "1.0", "--chunk-s", "0.5"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["name"] for line in lines] == [
        "omni_server.first_audio_overhead_ms",
        "omni_server.request_to_first_audio_ms",
        "omni_server.cancel_to_stream_closed_ms",
    ]
    for line in lines:
        assert line["unit"] == "ms" and line["runs"] == 3 and 0 < line["value"] <= line["p95"] <= line["max"]


def test_first_chunk_callback_extends_the_measured_span() -> None:
    handed: list[AudioChunk] = []

    async def to_avatar(chunk: AudioChunk) -> None:  # stands in for "push, wait for the first frame"
        handed.append(chunk)
        await asyncio.sleep(0.02)

    with OmniWireServer(synthetic_source(seconds=1.0, chunk_s=0.5)) as server:
        timings = asyncio.run(omni_bench.measure_first_audio(Options(base_url=server.base_url), 2, to_avatar))
    assert len(handed) == 2 and all(len(c.pcm) == 12000 and c.rate == 24000 for c in handed)
    for timing in timings:
        assert timing.received_to_handled_ms is not None
        assert timing.received_to_handled_ms >= timing.received_to_yielded_ms + 20.0
