"""Starting the browser device with a scripted agent, and a real headless Chromium whose microphone is a WAV file."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import numpy as np
import soundfile

from agent.chat import make_agent, serve_browser
from agent.config import load_persona
from agent.metrics import MetricsLog
from devices.browser.server import BrowserServer
from dialogue.scripted import Options as ScriptOptions
from dialogue.scripted import ScriptedDialogue

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
                                             metrics, on_event=events.append, ready=started.set_result))  # fmt: skip
    server: BrowserServer = await asyncio.wait_for(started, 30)
    try:
        yield server, agent, metrics, events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await agent.aclose()
