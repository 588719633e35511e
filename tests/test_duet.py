"""The README's main job: two personas take turns, rendered to a playable MP4 a viewer can check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest

from agent.agents import Agent, build_agent
from agent.compose import Compositor
from agent.config import load_duet
from agent.duet import DuetLimits, DuetRenderer
from agent.render import render_duet
from dialogue.base import DialogueBackend, DialogueError, ReplyEvent, UserTurn
from helpers import dark_pixels, mouth_box

OPEN_PX = 20


def near(mask: np.ndarray, before: int, after: int) -> np.ndarray:
    """Frames within `before` frames after, or `after` frames before, any frame of `mask`."""
    out = mask.copy()
    for k in range(1, before + 1):
        out[k:] |= mask[:-k]
    for k in range(1, after + 1):
        out[:-k] |= mask[k:]
    return out


def decode(path: Path) -> tuple[list[np.ndarray], np.ndarray, dict[str, float]]:
    """Video frames, audio samples and each stream's duration in seconds, read back from the file."""
    with av.open(str(path)) as container:
        kinds = {s.type: s.codec_context.name for s in container.streams}
        durations = {s.type: float(s.duration * s.time_base) for s in container.streams}
        images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert kinds == {"video": "h264", "audio": "aac"}
    return images, audio, durations


@pytest.fixture(scope="module")
def rendered(examples: Path, tmp_path_factory: pytest.TempPathFactory):
    duet = load_duet(examples / "duet.yaml")
    out = tmp_path_factory.mktemp("duet") / "duet.mp4"
    stats = asyncio.run(render_duet(duet, out, max_turns=4))
    return duet, out, stats


def test_turns_alternate_in_script_order(rendered) -> None:
    duet, _, stats = rendered
    turns = stats.result.turns
    nova, iris = (p.dialogue_options.lines for p in duet.personas)  # type: ignore[attr-defined]
    assert [(t.speaker, t.text) for t in turns] == [("Nova", nova[0]), ("Iris", iris[0]), ("Nova", nova[1]), ("Iris", iris[1])]
    for before, after in zip(turns, turns[1:]):
        gap = after.first_frame - before.last_frame - 1  # type: ignore[operator]
        assert gap == round(duet.spec.turn_gap_s * duet.spec.fps)  # a fixed pause, however slow the machine


def test_mp4_is_playable_with_audio_and_video_of_equal_length(rendered) -> None:
    duet, out, stats = rendered
    images, audio, durations = decode(out)
    n = stats.result.frames
    assert len(images) == n and images[0].shape == (512, 1024, 3)
    assert durations["video"] == pytest.approx(n / 25) and durations["audio"] == pytest.approx(n / 25, abs=1e-6)
    assert n * 960 <= len(audio) < n * 960 + 1024  # the decoder may add at most one AAC packet of padding


def test_lips_move_when_and_only_when_that_persona_speaks(rendered, examples: Path) -> None:
    duet, out, stats = rendered
    images, audio, _ = decode(out)
    tiles = [build_agent(p, (512, 512), 25.0, 24000, "wait").avatar for p in duet.personas]
    boxes = [mouth_box(tiles[0]), mouth_box(tiles[1], offset=(512, 0))]
    closed = [dark_pixels(images[0], box) for box in boxes]
    opening = np.array([[dark_pixels(img, box) - c for box, c in zip(boxes, closed)] for img in images])
    speaker_of = np.full(len(images), -1)
    for turn in stats.result.turns:
        speaker_of[turn.first_frame : turn.last_frame + 1] = 0 if turn.speaker == "Nova" else 1
    for who in (0, 1):
        talking = speaker_of == who
        quiet = ~near(speaker_of == who, before=6, after=0)  # 6 frames for the lips to settle
        assert (opening[talking, who] > OPEN_PX).mean() > 0.6, f"agent {who} barely opens its mouth while speaking"
        assert (opening[quiet, who] > OPEN_PX).mean() < 0.01, f"agent {who} moves its lips while silent"
    frame_rms = np.sqrt(np.mean(audio[: len(images) * 960].reshape(-1, 960) ** 2, axis=1))
    assert np.median(frame_rms[speaker_of >= 0]) > 0.03
    silent = ~near(speaker_of >= 0, before=3, after=3)
    assert frame_rms[silent].max() < 0.01


class Failing(DialogueBackend):
    """A brain that always errors, like a server that is down."""

    async def reply(self, turn: UserTurn) -> AsyncIterator[ReplyEvent]:
        raise DialogueError("cannot reach the server")
        yield  # pragma: no cover - makes this an async generator


class MemorySink:
    def __init__(self) -> None:
        self.frames = 0

    async def write(self, frame) -> None:  # noqa: ANN001
        self.frames += 1

    async def aclose(self) -> None:
        pass


def test_a_failing_agent_is_reported_and_the_other_keeps_talking(examples: Path) -> None:
    duet = load_duet(examples / "duet.yaml")
    agents = [build_agent(p, (128, 128), 25.0, 24000, "wait") for p in duet.personas]
    agents[1] = Agent(agents[1].persona, Failing(), agents[1].avatar)
    renderer = DuetRenderer((agents[0], agents[1]), Compositor((128, 128), 2), MemorySink(), DuetLimits(max_turns=3, lead_in_s=0, tail_s=0))  # type: ignore[arg-type]
    result = asyncio.run(renderer.run())
    assert [t.speaker for t in result.turns] == ["Nova", "Nova"]
    assert result.errors == ["Iris: cannot reach the server"]
