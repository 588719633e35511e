"""Starting the browser device with a scripted agent, and a real headless Chromium whose microphone is a WAV file."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import shutil
import time
from pathlib import Path

import av
import numpy as np
import soundfile
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from websockets.asyncio.client import connect

from liveavatar.agent.chat import make_agent, serve_browser
from liveavatar.agent.config import load_persona
from liveavatar.agent.metrics import MetricsLog
from liveavatar.devices.browser.server import BrowserServer
from liveavatar.dialogue.scripted import Options as ScriptOptions
from liveavatar.dialogue.scripted import ScriptedDialogue
from liveavatar.media import resample

CHROMIUM = "/usr/lib/chromium/chromium"
CHROMIUM_FLAGS = [
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking", "--disable-component-update", "--no-first-run", "--no-default-browser-check",
    "--disable-dev-shm-usage", "--no-sandbox", "--disable-gpu",
]  # fmt: skip


def chromium_path() -> str:
    """The Debian Chromium binary; its absence is a setup error, not a reason to skip."""
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        raise RuntimeError("Chromium is not installed: apt-get install -y chromium (make test does this)")
    return path


def write_mic_wav(path: Path, utterances: list[tuple[float, np.ndarray]], seconds: float, rate: int = 16000) -> Path:
    """A 16-bit WAV with each utterance (16 kHz float32) at its time, silence elsewhere."""
    wav = np.zeros(int(seconds * rate), np.float32)
    for at, pcm in utterances:
        start = int(at * rate)
        wav[start : start + len(pcm)] += pcm[: len(wav) - start]
    soundfile.write(str(path), wav, rate, subtype="PCM_16")
    return path


@contextlib.asynccontextmanager
async def scripted_server(examples: Path, lines: list[str], size: tuple[int, int] = (256, 256), **server_options):  # noqa: ANN201
    """A running browser server whose agent says `lines`; yields (server, agent, metrics, events)."""
    persona = load_persona(examples / "nova.yaml")
    agent = make_agent(persona, size)
    agent.dialogue = ScriptedDialogue(ScriptOptions(lines=lines), agent.dialogue.tts)  # type: ignore[attr-defined]
    metrics, events, started = MetricsLog(), [], asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_browser(agent, server_options.pop("host", "127.0.0.1"), 0, server_options.pop("token", None),
                                             metrics, on_event=events.append, ready=started.set_result, **server_options))  # fmt: skip
    server: BrowserServer = await asyncio.wait_for(started, 30)
    try:
        yield server, agent, metrics, events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await agent.aclose()


def scripted_persona(folder: Path, examples: Path, name: str, lines: list[str], pitch: int = 0) -> Path:
    """A scripted persona file named `name` who says `lines` (the example portrait, the bundled voice)."""
    import yaml

    spec = {"name": name, "portrait": str(examples / "portraits" / "nova.jpg"), "voice": {"model": "joe", "pitch_semitones": pitch},
            "dialogue": {"backend": "scripted", "options": {"lines": lines, "repeat": True}}, "avatar": {"backend": "portrait"}}  # fmt: skip
    path = folder / f"{name.lower()}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@contextlib.asynccontextmanager
async def session_server(personas: list[Path], size: tuple[int, int] = (128, 128), **options):  # noqa: ANN201
    """A running `liveavatar serve` server for these persona files; yields (SessionServer, events as (session, event))."""
    from liveavatar.agent.serve import ServeOptions, SessionServer

    events: list[tuple[str, dict]] = []
    server = SessionServer([load_persona(p) for p in personas], ServeOptions(port=0, size=size, **options), lambda s, e: events.append((s, e)))
    await server.start()
    try:
        yield server, events
    finally:
        await server.aclose()


class SpeechTrack(MediaStreamTrack):
    """A microphone for a Python WebRTC peer: `pcm` (16 kHz) at real time, then silence."""

    kind = "audio"

    def __init__(self, pcm: np.ndarray) -> None:
        super().__init__()
        self._speech = (np.clip(resample(pcm, 16000, 48000), -1, 1) * 32767).astype(np.int16)
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        self._start = self._start or time.monotonic()
        wait = self._start + self._sent / 48000 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        block = np.zeros(960, np.int16)
        part = self._speech[self._sent : self._sent + 960]
        block[: len(part)] = part
        frame = av.AudioFrame.from_ndarray(block[None, :], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._sent, fractions.Fraction(1, 48000)
        self._sent += 960
        return frame


async def webrtc_page(url: str, persona: str | None = None, speech: np.ndarray | None = None):  # noqa: ANN201
    """A Python stand-in for the page: connects, says hello (picking `persona`), offers WebRTC with `speech` as its
    microphone and no camera. Returns (websocket, peer connection, {kind: remote track}); close both when done."""
    ws = await connect(url)
    config = json.loads(await ws.recv())
    if config["type"] == "error":
        await ws.close()
        raise RuntimeError(config["message"])
    await ws.send(json.dumps({"type": "hello", "persona": persona}))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(SpeechTrack(np.zeros(0, np.float32) if speech is None else speech), "sendrecv")
    pc.addTransceiver("video", "recvonly")  # no camera: a 640×480 test pattern would cost more than the session
    tracks: dict = {}
    pc.on("track", lambda track: tracks.setdefault(track.kind, track))
    await pc.setLocalDescription(await pc.createOffer())
    await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "answer":
            break
        if message["type"] == "error":
            raise RuntimeError(message["message"])
    await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "answer"))
    return ws, pc, tracks
