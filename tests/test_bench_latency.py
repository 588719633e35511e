"""The latency benchmark on a few turns: it measures real turns and real barge-ins (figures: `liveavatar bench latency`)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from liveavatar.testing.bench_live import run_latency


def test_a_short_latency_run_measures_every_turn_and_a_barge_in(examples: Path) -> None:
    out = io.StringIO()
    figures = asyncio.run(run_latency(turns=4, barge_ins=1, persona_path=examples / "nova-live.yaml", out=out))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["turn"] for line in lines] == [1, 2, 3, 4]
    assert len(figures["responses"]) == 4 and all(0.3 < r < 3.0 for r in figures["responses"]), figures["responses"]
    # A barge-in is measured only on a reply that was still playing: flush after the user's onset, never before.
    assert len(figures["barges"]) == 1 and 0.1 < figures["barges"][0] < 1.0, figures["barges"]
