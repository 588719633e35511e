"""A short accelerated soak of the live loop (the 30-minute one is `liveavatar bench soak`)."""

from __future__ import annotations

import asyncio
import io

from liveavatar.testing.bench_live import run_soak


def test_three_minutes_of_turns_and_barge_ins_keep_audio_and_video_exact() -> None:
    figures = asyncio.run(run_soak(minutes=3, speed=8.0, out=io.StringIO()))
    assert figures["drift"] == 0, "audio samples no longer match frames × 960"
    assert figures["frames"] >= 0.97 * 3 * 60 * 25, "the loop fell behind real time (×8)"
    assert figures["turns"] >= 15 and figures["interrupted"] >= 3
    assert figures["rss_last"] - figures["rss_first"] < 64, f"memory grew {figures['rss_last'] - figures['rss_first']:.0f} MiB in two minutes"
