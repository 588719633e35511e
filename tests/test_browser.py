"""The browser page in a real headless Chromium: its microphone is a WAV file; one turn, then a barge-in.

Once with the media over WebRTC (the default: VP8 video and Opus voice, checked by what the page decoded and
heard) and once over the websocket fallback (checked frame by frame, since each frame names its reply).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from browser_harness import CHROMIUM_FLAGS, chromium_path, scripted_server, write_mic_wav
from test_conversation import LONG_LINE, speech_span
from user_speech import GREETING, STOP_PLEASE, user_says

from liveavatar.agent.metrics import MetricsLog
from liveavatar.devices.browser.server import BrowserServer
from liveavatar.testing.lossy_link import Link, lossy_link

READ_STATS = """() => { const s = window.__liveavatar; return {state: s.state, received: s.framesReceived, drawn: s.framesDrawn,
  mic: s.micSamplesSent, flushes: s.flushes, generations: s.generations, log: s.log, errors: s.errors, config: s.config,
  transport: s.transport, rtc: s.rtcState, decoded: s.framesDecoded, video: s.video, audio: s.audio, heard: s.heard, events: s.events,
  camera: s.camera, meter: s.heard.length > 0, transcript: [...document.querySelectorAll('#transcript p')].map(p => [p.className, p.textContent])}; }"""
VIDEO_BRIGHTNESS = """() => { const v = document.getElementById('avatar-video'); const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight; const g = c.getContext('2d'); g.drawImage(v, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let sum = 0; for (let i = 0; i < d.length; i += 4) sum += d[i + 1];
  return [c.width, c.height, sum / (d.length / 4)]; }"""
SECOND_LINE = "Sure. Something else, then."


def talk_through_the_page(examples: Path, tmp_path: Path, transport: str) -> tuple[dict, list, list, list]:
    """Say hello, then barge in on the long answer; returns (page stats, turns, server events, video probe)."""
    hello, stop = user_says(GREETING), user_says(STOP_PLEASE)
    barge_at = 1.0 + len(hello) / 16000 + 4.0  # well into the long answer
    wav = write_mic_wav(tmp_path / "mic.wav", [(1.0, hello), (barge_at, stop)], barge_at + len(stop) / 16000 + 8.0)

    async def scenario():
        async with scripted_server(examples, [LONG_LINE, SECOND_LINE], transport=transport) as (server, agent, metrics, events):
            stats, video = await visit(server, metrics, wav, turns=2, then_s=2.0)  # then: let the second answer play
            return stats, list(metrics.turns), events, video

    return asyncio.run(scenario())


async def visit(server: BrowserServer, metrics: MetricsLog, wav: Path, turns: int, then_s: float) -> tuple[dict, list]:
    """One tab whose microphone is `wav`, open until the server has had `turns` turns (40 s at most) and `then_s`
    more; returns the page's stats (over WebRTC with the frames the server sent, "sent") and, over WebRTC, the
    video's [width, height, mean brightness]."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), headless=True,
                                          args=CHROMIUM_FLAGS + [f"--use-file-for-fake-audio-capture={wav}%noloop"])  # fmt: skip
        page = await browser.new_page()
        await page.goto(server.url + "?autostart=1&aec=0&meter=1")  # the real page keeps echo cancellation on
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and len(metrics.turns) < turns:
            await asyncio.sleep(0.5)
        await asyncio.sleep(then_s)
        rtc = server.sessions[0].rtc
        await page.evaluate("window.__liveavatarReadRtcStats()")  # decoded as of now, not the last 500 ms poll
        stats = await page.evaluate(READ_STATS)
        video = []
        if rtc is not None:
            stats["sent"] = rtc.video.sent
            video = await page.evaluate(VIDEO_BRIGHTNESS)
        await browser.close()
    return stats, video


def test_a_spoken_turn_and_a_barge_in_over_webrtc(examples: Path, tmp_path: Path) -> None:
    stats, turns, events, (width, height, brightness) = talk_through_the_page(examples, tmp_path, "webrtc")
    assert stats["errors"] == [] and stats["transport"] == "webrtc" and stats["rtc"] == "connected"
    first, second = turns
    assert first.interrupted and not second.interrupted
    assert 0 < first.barge_in_latency_s < 0.5
    assert stats["camera"] is False and stats["meter"], "a scripted agent does not look: the page had no reason to open the camera"
    # Video: the avatar's frames were decoded and shown (the portrait, not a black box).
    assert (width, height) == (256, 256) and brightness > 30
    assert stats["sent"] > 200 and stats["decoded"] > 0.95 * stats["sent"] - 5 and stats["drawn"] > 0, stats["video"]
    # Voice: heard while the first answer played, silent from the barge-in until the second answer.
    speaking = [e["at"] for e in stats["events"] if e["type"] == "state" and e["state"] == "speaking"]
    flush_at = next(e["t"] for e in stats["log"] if e.get("flush"))
    second_at = next(t for t in speaking if t > flush_at)
    heard = np.array(stats["heard"])  # every 10 ms: page time, level arriving, level heard (0 while muted)
    reply = heard[(heard[:, 0] > speaking[0] + 300) & (heard[:, 0] < flush_at), 2]
    after = heard[(heard[:, 0] > flush_at) & (heard[:, 0] < second_at), 2]
    states = [(e["at"], e["state"]) for e in stats["events"] if e["type"] == "state"]
    second_end = next((at for at, state in states if at > second_at and state != "speaking"), float("inf"))
    later = heard[(heard[:, 0] > second_at + 300) & (heard[:, 0] < second_end), 2]  # while the second answer plays
    assert len(reply) > 100 and np.mean(reply > 0.02) > 0.5, f"the first answer was not heard: {np.round(reply, 3)}"
    assert len(after) > 20 and after.max() < 0.003, f"the interrupted answer went on playing: {np.round(after, 3)}"
    assert np.mean(later > 0.02) > 0.3, "the second answer was not heard"
    assert any(e.get("unmute") and e["reached"] for e in stats["log"]), "the page never saw the flushed audio drain"
    assert ["agent", SECOND_LINE] in stats["transcript"]


def test_a_spoken_turn_and_a_barge_in_over_the_websocket(examples: Path, tmp_path: Path) -> None:
    hello = user_says(GREETING)
    stats, turns, events, _ = talk_through_the_page(examples, tmp_path, "websocket")
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
    assert ["agent", SECOND_LINE] in stats["transcript"]
    assert any(cls == "agent interrupted" for cls, _ in stats["transcript"])


def test_the_camera_is_opened_only_for_an_agent_that_looks(tmp_path: Path) -> None:
    """Over WebRTC the page opens its camera, and the server receives it, only when the persona picked looks at the
    person (the server's config names them); a page talking to the others never asks for the camera."""
    from playwright.async_api import async_playwright

    wav = write_mic_wav(tmp_path / "mic.wav", [], 30.0)
    received: dict[str, tuple[int, ...] | None] = {}

    async def run_session(session) -> None:  # noqa: ANN001 - a BrowserSession
        hello = await session.hello
        deadline = time.monotonic() + 10
        while session.camera is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        received[hello["persona"]] = None if session.camera is None else session.camera.shape
        await asyncio.Event().wait()  # until the page leaves

    async def scenario() -> dict[str, bool]:
        config = {"fps": 25, "audio_rate": 24000, "size": [64, 64], "personas": ["Looks", "Blind"], "camera": ["Looks"]}
        server = BrowserServer(run_session, time.monotonic, port=0, config=config, max_sessions=2)
        await server.start()
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium_path(), headless=True,
                                                  args=CHROMIUM_FLAGS + [f"--use-file-for-fake-audio-capture={wav}"])  # fmt: skip
                pages = {}
                for name in ("Looks", "Blind"):
                    pages[name] = await browser.new_page()
                    await pages[name].goto(f"{server.url}?autostart=1&persona={name}")
                deadline = time.monotonic() + 30
                while len(received) < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                opened = {name: await page.evaluate("window.__liveavatar.camera") for name, page in pages.items()}
                errors = [await page.evaluate("window.__liveavatar.errors") for page in pages.values()]
                await browser.close()
        finally:
            await server.aclose()
        assert errors == [[], []]
        return opened

    opened = asyncio.run(scenario())
    assert opened == {"Looks": True, "Blind": False}
    assert received["Looks"] == (480, 640, 3) and received["Blind"] is None, received


def test_a_page_far_away_on_a_lossy_link_still_sees_and_hears_the_avatar(examples: Path, tmp_path: Path) -> None:
    """The avatar's packets reach the page 80 ± 20 ms late and 3 % never arrive: the page asks again for lost video
    (NACK, answered from aiortc's history), decodes nearly every frame, and hears the voice with little concealed."""
    wav = write_mic_wav(tmp_path / "mic.wav", [(1.0, user_says(GREETING))], 20.0)

    async def scenario() -> tuple[dict, int, int]:
        with lossy_link(Link(loss=0.03, delay_s=0.08, jitter_s=0.02), seed=7) as link:
            async with scripted_server(examples, [LONG_LINE]) as (server, agent, metrics, events):
                stats, _ = await visit(server, metrics, wav, turns=1, then_s=1.0)
            return stats, link.sent, link.dropped

    stats, on_link, dropped = asyncio.run(scenario())
    sent = stats["sent"]
    assert stats["errors"] == [] and stats["rtc"] == "connected"
    assert on_link > 500 and 0.015 < dropped / on_link < 0.05, (on_link, dropped)  # the link was in the way
    video = stats["video"]
    assert video["nacks"] > 0, f"the page never asked for a lost packet again: {video}"
    assert stats["decoded"] > 0.9 * sent - 10, f"{stats['decoded']} of {sent} frames decoded: {video}"
    assert video["freezes"] <= 2, video
    audio = stats["audio"]
    assert audio["concealed"] < 0.1 * audio["received"], f"too much of the voice was concealed: {audio}"
    speaking = [e["at"] for e in stats["events"] if e["type"] == "state" and e["state"] == "speaking"]
    heard = np.array(stats["heard"])
    reply = heard[(heard[:, 0] > speaking[0] + 500) & (heard[:, 0] < speaking[0] + 5000), 2]
    assert len(reply) > 200 and np.mean(reply > 0.02) > 0.5, f"the answer was not heard: {np.round(reply, 3)}"
