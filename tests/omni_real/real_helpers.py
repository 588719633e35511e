"""Helpers for the tests against the real vLLM-Omni server: backends, the avatar check, personas."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from liveavatar.agent.agents import build_agent
from liveavatar.agent.config import load_persona
from liveavatar.devices.sources import ScriptedSpeech
from liveavatar.media import AudioChunk

SAMPLES_PER_FRAME = 1920  # one codec frame of Qwen3-Omni's speech at 24 kHz
SAMPLES_LOST_PER_DECODE = 555
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def codec_frames(samples: int) -> int | None:
    """How many codec frames a reply of `samples` is (n·1920 − 555), or None when it is not of that form."""
    frames, rest = divmod(samples + SAMPLES_LOST_PER_DECODE, SAMPLES_PER_FRAME)
    return frames if rest == 0 and frames > 0 else None


def assert_continuous(chunks: list[AudioChunk], rate: int = 24000) -> None:
    """Every chunk has samples at `rate`, and each starts where the previous one ended."""
    assert chunks and all(len(c.pcm) > 0 and c.rate == rate for c in chunks)
    for before, after in zip(chunks, chunks[1:]):
        assert math.isclose(after.pts, before.end_pts, abs_tol=1e-9)


async def through_avatar(chunks: list[AudioChunk], size: int = 96) -> tuple[int, np.ndarray]:
    """Push a reply into a portrait avatar as it would stream, and pull frames until it is spoken.

    Returns the number of frames that carried the reply and the audio they carried.
    """
    agent = build_agent(load_persona(EXAMPLES / "nova.yaml"), (size, size), 25.0, 24000, underrun="wait")
    try:
        for chunk in chunks:
            agent.avatar.push(chunk, 7)
        agent.avatar.end(7)
        carried: list[np.ndarray] = []
        idle_after = 0
        async for frame in agent.avatar.frames():
            if frame.generation == 7:
                carried.append(frame.audio)
            elif carried:
                idle_after += 1
                if idle_after == 3:
                    break
        return len(carried), np.concatenate(carried)
    finally:
        await agent.aclose()


class ReactiveSpeech(ScriptedSpeech):
    """Scripted microphone audio to which a test can add an utterance while the conversation runs."""

    def say(self, pcm: np.ndarray, in_s: float = 0.0) -> float:
        """Start `pcm` `in_s` seconds from now; returns when (source seconds) it starts."""
        assert self.started_at is not None, "the source has not started"
        at = self.clock.now() - self.started_at + in_s
        self._utterances.append((at, pcm))
        return at


def tone_turn_pcm(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def persona_file(folder: Path, name: str, backend: str, base_url: str, **options: object) -> Path:
    """A persona YAML whose brain is the real server through `backend` (omni_server or omni_realtime)."""
    import shutil

    portrait = folder / f"{name}.jpg"
    shutil.copy(EXAMPLES / "portraits" / ("nova.jpg" if len(name) % 2 else "iris.jpg"), portrait)
    extra = "".join(f"    {key}: {value}\n" for key, value in options.items())
    path = folder / f"{name.lower()}.yaml"
    path.write_text(
        f"name: {name}\nportrait: {portrait.name}\nsystem_prompt: You are {name}.\n"
        f"dialogue:\n  backend: {backend}\n  options:\n    base_url: {base_url}\n{extra}"
        "avatar:\n  backend: portrait\n  options: {head_motion: 0.5}\n"
    )
    return path
