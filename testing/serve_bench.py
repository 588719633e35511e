"""`liveavatar bench serve`: one server, N pages in a real headless Chromium, measured at the pages.

Every run opens N tabs in one Chromium whose microphone is a WAV file (a question every QUESTION_EVERY_S seconds;
tabs start staggered so their people do not all speak at once), lets them settle for SETTLE_S, then measures
WINDOW_S seconds. The server stamps each frame's index into its top-left corner (16 cells, white for 1) and notes
when the frame left for the page; the page reads the stamp of each frame as it has it ready to show: drawn on its
canvas (websocket) or out of the video decoder (WebRTC; headless Chromium's software compositor then shows only
62-74 % of the decoded frames even with the machine mostly idle, so its count, `frames_drawn_per_s`, is reported
beside, not judged). From that:

- lateness: how much later than its due time the page presented a frame. Due times follow the stream at its frame
  rate from the best anchor seen (the earliest `presented − index/fps`), so a constant transport delay is not
  lateness but any stall, growing buffer or frame the page never showed is. N sessions are "held" when no frame of
  any tab was more than 100 ms late and fewer than 1 % were never presented.
- delay: presented minus left, per frame (both on this machine's wall clock); over WebRTC also split at the moment
  the frame, encoded, went to aiortc to be sent: how late frames were sent (lateness as above, at the server) and
  the delay from sent to presented (the network and the browser).
- bytes per second the page received (RTP with headers, plus the websocket).
- held as sent: whether the server sent every frame of the window (shown or not) no more than 100 ms late, to every
  page, with fewer than 1 % skipped and no page reporting an error. The `scripted_server_side` runs judge by this
  alone, with the tabs given the lowest CPU weight (`yield_cpu_to_server`): the pages stand in for pages on other
  machines, which this 2-core machine, shared with its own tabs, cannot show in time at every count the server sends.
- per session: the server's CPU (this process: the bench's Chromium driver is another process) and memory above
  the idle server, and the response latency of each turn (end of the person's speech to the first frame with the
  reply's voice leaving the server); per tab: the CPU of the Chromium processes (they share the 2 cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from liveavatar.agent.config import Persona, load_persona
from liveavatar.agent.scheduler import lower_this_thread
from liveavatar.agent.serve import ServeOptions, SessionServer
from liveavatar.devices.browser.server import BrowserSession
from liveavatar.devices.browser.webrtc import VIDEO_CLOCK
from liveavatar.devices.sink import FrameSink
from liveavatar.media import AVFrame
from liveavatar.testing.lossy_link import Link, lossy_link

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHROMIUM = "/usr/lib/chromium/chromium"
CHROMIUM_FLAGS = [
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking", "--disable-component-update", "--no-first-run", "--no-default-browser-check",
    "--disable-dev-shm-usage", "--no-sandbox", "--disable-gpu", "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
]  # fmt: skip
QUESTIONS = ["Hello Nova, how are you today?", "What is it like to float in space?", "Do you ever miss the rain?",
             "Can you see the moon from your window?", "Tell me something about the stars.", "What is your favourite planet?",
             "Is it cold up there?", "Do you like music?"]  # fmt: skip
QUESTION_EVERY_S = 9.0
SETTLE_S = 6.0
WINDOW_S = 60.0
LATE_S = 0.1
CONNECT_TIMEOUT_S = 20.0  # pages that give way to the server: how long each may take to connect before they do
MISSING_MAX = 0.01
FAR_LINK = Link(loss=0.02, delay_s=0.05, jitter_s=0.01)  # a page on another continent's Wi-Fi, roughly
STAMP_CELL = 16
STAMP_BITS = 16
READ_PAGE = """() => { const s = window.__liveavatar; return {presented: s.presented, drawn: s.framesDrawn, wsBytes: s.wsBytes, rtpBytes: s.rtpBytes,
  errors: s.errors, events: s.events.filter(e => e.type === 'session'), now: performance.timeOrigin + performance.now()}; }"""


def emit(out: IO[str], name: str, value: float | None, unit: str, **context: object) -> None:
    """One figure as a JSON line."""
    out.write(json.dumps({"name": name, "value": None if value is None else round(value, 4), "unit": unit, **context}) + "\n")
    out.flush()


def stamp(image: np.ndarray, index: int) -> np.ndarray:
    """`image` with `index` written into its top-left corner (in place): STAMP_BITS cells of STAMP_CELL pixels, white
    for 1. In place because the avatars render every frame into a fresh image; a copy of a 512² frame costs 0.4 ms on
    the event loop (a fresh mapping above the server's 128 KiB mmap threshold)."""
    for bit in range(STAMP_BITS):
        image[:STAMP_CELL, bit * STAMP_CELL : (bit + 1) * STAMP_CELL] = 255 if index >> bit & 1 else 0
    return image


class ProbeSink(FrameSink):
    """The page as a sink, with each frame stamped and the times it left for the page and, over WebRTC, was sent
    (encoded and handed to aiortc) noted (wall clock, seconds)."""

    def __init__(self, session: BrowserSession) -> None:
        self.session = session
        self.left: dict[int, float] = {}
        self.sent: dict[int, float] = {}
        self._fps = 25.0

    def _note_sent(self, pts: int) -> None:
        self.sent[round(pts * self._fps / VIDEO_CLOCK) % (1 << STAMP_BITS)] = time.time()

    async def write(self, frame: AVFrame) -> None:
        """Stamp, note, send."""
        index = frame.index % (1 << STAMP_BITS)
        self.left[index] = time.time()
        if self.session.rtc is not None:
            self._fps = frame.fps
            self.session.rtc.video.on_sent = self._note_sent
        await self.session.write(AVFrame(stamp(frame.image, index), frame.audio, frame.index, frame.generation, frame.fps, frame.audio_rate))

    async def flush(self) -> float:
        """The page's flush."""
        return await self.session.flush()

    async def aclose(self) -> None:
        """The page's close."""
        await self.session.aclose()


class ProbeServer(SessionServer):
    """A session server whose pages get stamped frames; keeps each session's probe by its id."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probes: dict[str, ProbeSink] = {}

    def sinks_for(self, session: BrowserSession, session_id: str) -> list[FrameSink]:
        probe = self.probes[session_id] = ProbeSink(session)
        return [probe]


@dataclass
class PageResult:
    """What one tab saw in the measured window, and what its session did."""

    presented: list[tuple[int, float]]  # (frame index, ready to show at: wall seconds)
    left: dict[int, float]
    sent: dict[int, float]  # WebRTC: when each frame, encoded, went to aiortc (the whole run, in sending order)
    bytes_per_s: float
    drawn_per_s: float  # frames the page's canvas drew (websocket) or its video element presented (WebRTC)
    errors: list[str]
    responses: list[float] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 0.0)  # the measured window at the page (wall seconds)

    def sent_in_window(self) -> list[tuple[int, float]]:
        """(frame index, sent at) for every frame the server sent within the window, presented or not."""
        start, stop = self.window
        return [(index, at) for index, at in self.sent.items() if start <= at <= stop]


def lateness(presented: list[tuple[int, float]], fps: float) -> tuple[np.ndarray, int]:
    """Per presented frame: seconds later than its due time (anchored at the best frame); and frames never presented.

    Indices are unwrapped from the 16-bit stamp first (a stream crosses 65536 frames after 43 minutes)."""
    if len(presented) < 2:
        return np.zeros(0), 0
    raw = np.array([i for i, _ in presented], np.int64)
    steps = (np.diff(raw) + (1 << (STAMP_BITS - 1))) % (1 << STAMP_BITS) - (1 << (STAMP_BITS - 1))
    index = np.concatenate([[raw[0]], raw[0] + np.cumsum(steps)])
    when = np.array([t for _, t in presented])
    order = np.argsort(index, kind="stable")
    index, when = index[order], when[order]
    index, first = np.unique(index, return_index=True)  # a frame shown twice counts once, when first shown
    when = when[first]
    offset = when - index / fps
    missing = int(index[-1] - index[0] + 1 - len(index))
    return offset - offset.min(), missing


def frame_delays(presented: list[tuple[int, float]], left: dict[int, float]) -> np.ndarray:
    """Seconds from each frame leaving the server to the page presenting it (first presentation)."""
    seen: dict[int, float] = {}
    for index, at in presented:
        seen.setdefault(index, at)
    return np.array([at - left[i] for i, at in seen.items() if i in left])


def _chromium_processes(process: Any) -> list[Any]:
    """The Chromium processes started under `process` (a psutil.Process): the tabs, and the browser's GPU, audio and
    network processes they share (one that ends while they are listed is left out)."""
    import psutil

    found = []
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chrom" in child.name():
                found.append(child)
    return found


def browser_cpu(process: Any) -> float:
    """CPU seconds the Chromium processes started under `process` (a psutil.Process) have used so far."""
    import psutil

    total = 0.0
    for child in _chromium_processes(process):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            total += times.user + times.system
    return total


def yield_cpu_to_server(process: Any) -> int:
    """Give the Chromium processes started under `process` (a psutil.Process) the lowest CPU weight there is, so that
    the server runs first whenever both want a core; returns how many processes were set (0: not possible here).

    Linux schedules each session's processes as one group (autogroup) against the others, so `nice` on a tab's
    process weighs only against its own browser's other processes; the group's own weight is set through
    /proc/PID/autogroup (raising it needs no privilege). The pages then stand in for pages on other machines: what
    is measured is whether the server sends its frames on time, not whether this machine can also show them."""
    import psutil

    done = 0
    for child in _chromium_processes(process):
        with contextlib.suppress(psutil.Error, OSError):
            Path(f"/proc/{child.pid}/autogroup").write_text("19")
            done += 1
    return done


def question_wav(path: Path, seconds: float) -> Path:
    """The person: a question every QUESTION_EVERY_S seconds (Piper, a lower voice), 16-bit 16 kHz.

    Spoken on a low-priority thread, as a server loads its models: the Piper voice is loaded once per process, so the
    server's sessions speak with the one loaded here, and the onnxruntime worker it starts inherits this thread's
    priority (on the main thread it would compete with every session's frames at normal priority)."""
    with ThreadPoolExecutor(1, thread_name_prefix="bench-questions", initializer=lower_this_thread) as pool:
        return pool.submit(_speak_questions, path, seconds).result()


def _speak_questions(path: Path, seconds: float) -> Path:
    import soundfile

    from liveavatar.dialogue.speech.piper_tts import PiperTTS
    from liveavatar.dialogue.speech.voice import VoiceOptions
    from liveavatar.media import resample

    tts = PiperTTS(VoiceOptions(pitch_semitones=-3, formant_shift=0.95))
    wav = np.zeros(int(seconds * 16000), np.float32)
    at, k = 1.0, 0
    while at < seconds - 4:
        pcm = resample(np.concatenate([c.pcm for c in tts.synthesize(QUESTIONS[k % len(QUESTIONS)])]), tts.rate, 16000)
        start = int(at * 16000)
        wav[start : start + len(pcm)] += pcm[: len(wav) - start]
        at, k = at + QUESTION_EVERY_S, k + 1
    soundfile.write(str(path), wav, 16000, subtype="PCM_16")
    return path


async def run_pages(server: ProbeServer, count: int, persona: str, wav: Path,
                    pages_yield: bool = False) -> tuple[list[PageResult], dict[str, float]]:  # fmt: skip
    """`count` tabs talking with `persona` for SETTLE_S + WINDOW_S; returns each tab's result and the server's load.
    `pages_yield`: the tabs get the CPU only when the server does not want it (`yield_cpu_to_server`; an error when
    this machine cannot do that)."""
    import psutil
    from playwright.async_api import async_playwright

    process = psutil.Process()
    idle_rss = process.memory_info().rss
    first_metrics = len(server.responses)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=CHROMIUM_FLAGS + [f"--use-file-for-fake-audio-capture={wav}%noloop"])  # fmt: skip
        context = await browser.new_context()
        pages = []
        for _ in range(count):  # staggered: their people do not all ask at the same moment
            page = await context.new_page()
            await page.goto(f"{server.server.url}?autostart=1&probe=1&persona={persona}")
            pages.append(page)
            await asyncio.sleep(QUESTION_EVERY_S / count)
        if pages_yield:  # once every page is connected: a page starved while it connects may never connect
            for page in pages:  # (one that does not: the server sends it nothing, and the run is not held as sent)
                with contextlib.suppress(Exception):
                    await page.wait_for_function("window.__liveavatar.rtcState === 'connected'", timeout=CONNECT_TIMEOUT_S * 1000)
            if not yield_cpu_to_server(process):
                raise RuntimeError("cannot lower the pages' CPU weight here (Linux with /proc/PID/autogroup needed)")
        await asyncio.sleep(SETTLE_S)
        before = [await page.evaluate(READ_PAGE) for page in pages]
        cpu0, browser_cpu0, wall0, peak_rss = sum(process.cpu_times()[:2]), browser_cpu(process), time.monotonic(), idle_rss
        while time.monotonic() - wall0 < WINDOW_S:
            await asyncio.sleep(1.0)
            peak_rss = max(peak_rss, process.memory_info().rss)
        cpu, browser_s = sum(process.cpu_times()[:2]) - cpu0, browser_cpu(process) - browser_cpu0
        wall = time.monotonic() - wall0
        after = [await page.evaluate(READ_PAGE) for page in pages]
        await browser.close()
    while server.server.sessions:
        await asyncio.sleep(0.1)
    by_id = {}
    for b, a in zip(before, after):
        start, stop = b["now"] / 1000, a["now"] / 1000
        session_id = next((e["id"] for e in a["events"] if e.get("id")), None)
        presented = [(i, t / 1000) for i, t in a["presented"] if start <= t / 1000 <= stop]
        bytes_now, bytes_then = a["wsBytes"] + a["rtpBytes"], b["wsBytes"] + b["rtpBytes"]
        by_id[session_id] = PageResult(presented, {}, {}, (bytes_now - bytes_then) / (stop - start), (a["drawn"] - b["drawn"]) / (stop - start),
                                       a["errors"], window=(start, stop))  # fmt: skip
    for session_id, result in by_id.items():
        probe = server.probes.pop(session_id, None)
        result.left, result.sent = (probe.left, probe.sent) if probe is not None else ({}, {})
    for session_id, latency in server.responses[first_metrics:]:
        if session_id in by_id:
            by_id[session_id].responses.append(latency)
    load = {"cpu_cores": cpu / wall, "browser_cpu_cores": browser_s / wall, "rss_mb_above_idle": (peak_rss - idle_rss) / 2**20}
    return list(by_id.values()), load


class BenchServer(ProbeServer):
    """The probe server, remembering each turn's response latency by session."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.responses: list[tuple[str, float]] = []
        self.on_event = self._record

    def _record(self, session_id: str, event: dict[str, Any]) -> None:
        if event.get("type") == "metrics" and event.get("response_latency_s") is not None:
            self.responses.append((session_id, float(event["response_latency_s"])))


def summarize(results: list[PageResult], fps: float) -> dict[str, Any]:
    """One run's figures across its tabs."""
    late, missing, presented, delays, sent_late, after_sent = [], 0, 0, [], [], []
    all_sent_late, all_sent, sent_missing = [], 0, 0  # every frame sent in the window, whether the page showed it or not
    for result in results:
        each, gone = lateness(result.presented, fps)
        late.append(each)
        missing += gone
        presented += len(each)
        delays.append(frame_delays(result.presented, result.left))
        sent = [(i, result.sent[i]) for i, _ in result.presented if i in result.sent]
        sent_late.append(lateness(sent, fps)[0])
        after_sent.append(frame_delays(result.presented, result.sent))
        each_sent, skipped = lateness(result.sent_in_window(), fps)
        all_sent_late.append(each_sent)
        all_sent, sent_missing = all_sent + len(each_sent), sent_missing + skipped
    late_all = np.concatenate(late) if late else np.zeros(0)
    delay_all = np.concatenate(delays) if delays else np.zeros(0)
    sent_late_all = np.concatenate(sent_late) if sent_late else np.zeros(0)
    after_sent_all = np.concatenate(after_sent) if after_sent else np.zeros(0)
    all_sent_late_all = np.concatenate(all_sent_late) if all_sent_late else np.zeros(0)
    errors = sorted({e for r in results for e in r.errors})
    unsent = sum(not r.sent_in_window() for r in results)  # pages the server sent nothing to in the window
    medians = [statistics.median(r.responses) if r.responses else None for r in results]
    return {
        "max_late_s": float(late_all.max()) if len(late_all) else None,
        "p99_late_s": float(np.percentile(late_all, 99)) if len(late_all) else None,
        "frames_presented": presented, "frames_missing": missing,
        "held": bool(len(late_all) and late_all.max() <= LATE_S and missing <= MISSING_MAX * (presented + missing)),
        "delay_median_s": float(np.median(delay_all)) if len(delay_all) else None,
        "delay_p95_s": float(np.percentile(delay_all, 95)) if len(delay_all) else None,
        "sent_max_late_s": float(sent_late_all.max()) if len(sent_late_all) else None,
        "sent_p99_late_s": float(np.percentile(sent_late_all, 99)) if len(sent_late_all) else None,
        "sent_to_page_median_s": float(np.median(after_sent_all)) if len(after_sent_all) else None,
        "sent_to_page_p99_s": float(np.percentile(after_sent_all, 99)) if len(after_sent_all) else None,
        "sent_all_max_late_s": float(all_sent_late_all.max()) if len(all_sent_late_all) else None,
        "sent_all_missing": sent_missing,
        "held_as_sent": None if not len(all_sent_late_all) else bool(  # None: no time stamps at sending (websocket)
            all_sent_late_all.max() <= LATE_S and not errors and not unsent and sent_missing <= MISSING_MAX * (all_sent + sent_missing)),
        "bytes_per_s": [round(r.bytes_per_s) for r in results],
        "frames_drawn_per_s": [round(r.drawn_per_s, 1) for r in results],
        "response_median_s": [None if m is None else round(m, 3) for m in medians],
        "turns": [len(r.responses) for r in results],
        "errors": errors,
    }  # fmt: skip


def _bench_persona(path: Path) -> Persona:
    """The persona with its script repeating (a scripted persona would fall silent after its last line)."""
    persona = load_persona(path, check_face=True)
    if persona.dialogue_backend == "scripted":
        persona = persona.model_copy(update={"dialogue_options": persona.dialogue_options.model_copy(update={"repeat": True})})
    return persona


async def _capacity(out: IO[str], label: str, path: Path, counts: list[int], wav: Path, size: int, transport: str,
                    response_goal_s: float | None = None, pages_yield: bool = False, **context: object) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Runs with each of `counts` sessions until one (beyond 2) is not held; a line per run (with `context`) and one
    for the most held. `pages_yield`: the pages run only on what CPU the server leaves, and a run is held when the
    server sent every frame on time (`held_as_sent`), whatever the pages then showed."""
    persona = _bench_persona(path)
    server = BenchServer([persona], ServeOptions(port=0, max_sessions=max(counts), transport=transport, size=(size, size)))
    await server.start()
    runs: dict[int, dict[str, Any]] = {}
    try:
        for count in counts:
            load_before = os.getloadavg()
            results, usage = await run_pages(server, count, persona.name, wav, pages_yield)
            figures = summarize(results, server.options.fps)
            held = bool(figures["held_as_sent"]) if pages_yield else figures["held"]
            figures["held"] = held = held and (response_goal_s is None or _median_ok(figures, response_goal_s))
            runs[count] = figures
            emit(out, f"serve_{label}_sessions", count, "sessions", transport=transport, size=[size, size], **figures,
                 cpu_cores_per_session=round(usage["cpu_cores"] / count, 3), rss_mb_per_session=round(usage["rss_mb_above_idle"] / count, 1),
                 browser_cpu_cores_per_tab=round(usage["browser_cpu_cores"] / count, 3),
                 load_before=[round(x, 2) for x in load_before], load_after=[round(x, 2) for x in os.getloadavg()], **context)  # fmt: skip
            if not held and count >= 2:  # 1 and 2 sessions are always measured (response latency at each)
                break
    finally:
        await server.aclose()
    best = 0
    for count in sorted(runs):  # the most sessions held with every smaller count held too
        if not runs[count]["held"]:
            break
        best = count
    emit(out, f"serve_{label}_sessions_held", best, "sessions", transport=transport, window_s=WINDOW_S, late_limit_s=LATE_S,
         response_goal_s=response_goal_s, judged="as sent by the server" if pages_yield else "at the page", **context)  # fmt: skip
    return runs


def _median_ok(figures: dict[str, Any], goal_s: float) -> bool:
    medians = [m for m in figures["response_median_s"] if m is not None]
    return bool(medians) and max(medians) <= goal_s


def bench_serve(out: IO[str], size: int = 512, max_scripted: int = 6, max_cascade: int = 3) -> None:
    """Sessions held at real time (scripted and cascade personas), bytes and frame delay over WebRTC vs the websocket."""
    with tempfile.TemporaryDirectory() as folder:
        wav = question_wav(Path(folder) / "questions.wav", QUESTION_EVERY_S + SETTLE_S + WINDOW_S + 20)
        emit(out, "serve_load_at_start", os.getloadavg()[0], "load", load=[round(x, 2) for x in os.getloadavg()], cores=os.cpu_count())
        scripted = asyncio.run(_capacity(out, "scripted", EXAMPLES / "nova.yaml", list(range(1, max_scripted + 1)), wav, size, "webrtc"))
        asyncio.run(_capacity(out, "cascade", EXAMPLES / "nova-live.yaml", list(range(1, max_cascade + 1)), wav, size, "webrtc",
                              response_goal_s=1.0))  # fmt: skip
        asyncio.run(_capacity(out, "scripted_server_side", EXAMPLES / "nova.yaml", list(range(min(3, max_scripted), max_scripted + 1)),
                              wav, size, "webrtc", pages_yield=True))  # the pages as if on other machines  # fmt: skip
        websocket = asyncio.run(_capacity(out, "scripted_websocket", EXAMPLES / "nova.yaml", [1], wav, size, "websocket"))
        with lossy_link(FAR_LINK) as link:  # one page far away: its packets late and some lost (testing/lossy_link.py)
            asyncio.run(_capacity(out, "scripted_far", EXAMPLES / "nova.yaml", [1], wav, size, "webrtc", link=FAR_LINK.describe()))
        emit(out, "serve_far_link_lost", link.dropped / max(link.sent, 1), "share", packets=link.sent, dropped=link.dropped, **FAR_LINK.describe())
    rtc, ws = scripted.get(1), websocket.get(1)
    if rtc and ws:
        rtc_bps, ws_bps = rtc["bytes_per_s"][0], ws["bytes_per_s"][0]
        emit(out, "serve_bytes_per_s_webrtc_over_websocket", rtc_bps / ws_bps, "ratio", webrtc=rtc_bps, websocket=ws_bps, goal=0.25, size=[size, size])
        emit(out, "serve_frame_delay_webrtc_s", rtc["delay_median_s"], "s", p95=rtc["delay_p95_s"], websocket_median=ws["delay_median_s"],
             websocket_p95=ws["delay_p95_s"], measured="server hands the frame to its page sink -> the page presents it, localhost")  # fmt: skip
