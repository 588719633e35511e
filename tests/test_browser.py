"""The browser page in a real headless Chromium: its microphone is a WAV file; one turn, then a barge-in."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from browser_harness import CHROMIUM_FLAGS, chromium_path, scripted_server, write_mic_wav
from test_conversation import LONG_LINE, speech_span, user_says

READ_STATS = """() => { const s = window.__liveavatar; return {state: s.state, received: s.framesReceived, drawn: s.framesDrawn,
  mic: s.micSamplesSent, flushes: s.flushes, generations: s.generations, log: s.log, errors: s.errors, config: s.config,
  transcript: [...document.querySelectorAll('#transcript p')].map(p => [p.className, p.textContent])}; }"""


def test_a_spoken_turn_and_a_barge_in_through_the_page(examples: Path, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    hello, stop = user_says("Hello there, how are you today?"), user_says("Wait, stop, tell me something else.")
    barge_at = 1.0 + len(hello) / 16000 + 4.0  # well into the long answer
    wav = write_mic_wav(tmp_path / "mic.wav", [(1.0, hello), (barge_at, stop)], barge_at + len(stop) / 16000 + 8.0)

    async def scenario():
        async with scripted_server(examples, [LONG_LINE, "Sure. Something else, then."]) as (server, agent, metrics, events):
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium_path(), headless=True,
                                                  args=CHROMIUM_FLAGS + [f"--use-file-for-fake-audio-capture={wav}%noloop"])  # fmt: skip
                page = await browser.new_page()
                await page.goto(server.url + "?autostart=1&aec=0")  # the real page keeps echo cancellation on
                deadline = time.monotonic() + 40
                while time.monotonic() < deadline and len(metrics.turns) < 2:
                    await asyncio.sleep(0.5)
                await asyncio.sleep(2.0)  # let the second answer play
                stats = await page.evaluate(READ_STATS)
                await browser.close()
            return stats, list(metrics.turns), events

    stats, turns, events = asyncio.run(scenario())
    assert stats["errors"] == [] and stats["config"]["fps"] == 25
    assert stats["mic"] > 16000 * 8, "the page did not stream its microphone"
    first, second = turns
    assert first.interrupted and not second.interrupted
    assert first.user_speech_end - first.user_onset == pytest.approx(speech_span(hello)[1] - speech_span(hello)[0], abs=0.3)
    # The page received and drew the first answer, then a flush, then nothing more of that answer.
    gen1, gen2 = str(first.generation), str(second.generation)
    assert stats["generations"][gen1]["voiced"] > 25 and stats["generations"][gen2]["voiced"] > 10
    log = stats["log"]
    first_flush = next(i for i, e in enumerate(log) if e.get("flush") and i > 0 and any(x.get("g") == first.generation for x in log[:i]))
    late = [e for e in log[first_flush:] if e.get("g") == first.generation and e.get("voiced")]
    assert late == [], "the interrupted answer kept arriving after the flush"
    assert stats["flushes"] >= 1 and stats["drawn"] > 0.9 * stats["received"] - 30
    assert 0 < first.barge_in_latency_s < 0.5
    assert ["agent", "Sure. Something else, then."] in stats["transcript"]
    assert any(cls == "agent interrupted" for cls, _ in stats["transcript"])
