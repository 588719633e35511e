"""The README's main job: two personas take turns, rendered to a playable MP4 a viewer can check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest

from liveavatar.agent.agents import Agent, build_agent
from liveavatar.agent.config import load_duet
from liveavatar.agent.duet_plan import DuetPlan
from liveavatar.agent.render import render, render_duet
from liveavatar.dialogue.base import DialogueBackend, DialogueError, ReplyEvent, UserTurn
import soundfile

from helpers import dark_pixels, mouth_box, run

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
    result = asyncio.run(render_duet(duet.plan.model_copy(update={"max_turns": 4}), duet.personas, out))
    return duet, out, result


def test_turns_alternate_in_script_order(rendered) -> None:
    duet, _, result = rendered
    turns = result.turns
    nova, iris = (p.dialogue_options.lines for p in duet.personas)  # type: ignore[attr-defined]
    assert [(t.speaker, t.text) for t in turns] == [("Nova", nova[0]), ("Iris", iris[0]), ("Nova", nova[1]), ("Iris", iris[1])]
    for before, after in zip(turns, turns[1:]):
        gap = after.first_frame - before.last_frame - 1  # type: ignore[operator]
        assert gap == round(duet.spec.turn_gap_s * duet.spec.fps)  # a fixed pause, however slow the machine


def test_mp4_is_playable_with_audio_and_video_of_equal_length(rendered) -> None:
    duet, out, result = rendered
    images, audio, durations = decode(out)
    n = result.frames
    assert len(images) == n and images[0].shape == (512, 1024, 3)
    assert durations["video"] == pytest.approx(n / 25) and durations["audio"] == pytest.approx(n / 25, abs=1e-6)
    assert n * 960 <= len(audio) < n * 960 + 1024  # the decoder may add at most one AAC packet of padding


def test_lips_move_when_and_only_when_that_persona_speaks(rendered, examples: Path) -> None:
    duet, out, result = rendered
    images, audio, _ = decode(out)
    tiles = [build_agent(p, (512, 512), 25.0, 24000, "wait").avatar for p in duet.personas]
    boxes = [mouth_box(tiles[0]), mouth_box(tiles[1], offset=(512, 0))]
    closed = [dark_pixels(images[0], box) for box in boxes]
    opening = np.array([[dark_pixels(img, box) - c for box, c in zip(boxes, closed)] for img in images])
    speaker_of = np.full(len(images), -1)
    for turn in result.turns:
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


def test_the_live_duet_takes_the_same_turns_and_ends_by_itself(rendered, examples: Path) -> None:
    """The engine on a real-time clock (run 2× faster) with nobody speaking: the rendered duet's turns, then the tail."""
    from liveavatar.agent.clock import Clock
    from liveavatar.agent.conversation import Conversation
    from liveavatar.devices.recording import RecordingSink
    from liveavatar.devices.sources import ScriptedSpeech

    duet, _, result = rendered
    plan = duet.plan.model_copy(update={"max_turns": 4})
    agents = [build_agent(p, (128, 128), 25.0, 24000, "silence") for p in duet.personas]
    clock = Clock(speed=2.0)
    sink = RecordingSink(clock.now)
    conversation = Conversation(agents, ScriptedSpeech(clock, []), [sink], clock, duet=plan)
    run(conversation.run(until=plan.max_seconds))
    live = conversation.metrics.turns
    assert [(t.speaker, t.reply_text) for t in live] == [(t.speaker, t.text) for t in result.turns]
    assert [t.heard_from for t in live] == ["opening", "agent", "agent", "agent"]
    last_voiced = max(a.t for a in sink.arrivals if a.generation is not None)
    assert clock.now() - last_voiced == pytest.approx(plan.turn_gap_s + plan.tail_s, abs=0.3)  # then it ended by itself


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
    result = asyncio.run(render(agents, DuetPlan(max_turns=3, lead_in_s=0, tail_s=0), [MemorySink()]))  # type: ignore[list-item]
    assert [t.speaker for t in result.turns] == ["Nova", "Nova"]
    assert result.errors == ["Iris: cannot reach the server"]


def test_a_live_duet_follows_the_files_layout_and_captions(examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`liveavatar duet --wav --out` (live, real time) lays the avatars out as the duet file says: stacked, no captions."""
    from liveavatar.agent.cli import main
    from liveavatar.agent.compose import Compositor
    from helpers import luma, take

    config = tmp_path / "duet.yaml"
    config.write_text(f"agents: [{examples / 'nova.yaml'}, {examples / 'iris.yaml'}]\nlayout: stacked\ncaptions: false\n"
                      "size: [128, 128]\nlead_in_s: 0.2\nmax_seconds: 2.5\n")  # fmt: skip
    wav, out = tmp_path / "quiet.wav", tmp_path / "live.mp4"
    soundfile.write(str(wav), np.zeros(16000, np.float32), 16000)  # the person says nothing
    assert main(["duet", str(config), "--wav", str(wav), "--out", str(out)]) == 0
    images, _, _ = decode(out)
    assert images[0].shape == (256, 128, 3)  # two 128×128 tiles, one above the other
    agents = [build_agent(p, (128, 128), 25.0, 24000, "silence") for p in load_duet(config).personas]
    first = [run(take(a.avatar.frames(), 1))[0] for a in agents]  # each avatar's frame 0, as the live run began
    top, bottom = luma(images[0][:128]), luma(images[0][128:])
    nova, iris = luma(first[0].image), luma(first[1].image)
    assert np.abs(top - nova).mean() < 4 < 12 < np.abs(top - iris).mean(), "Nova is not the top tile"
    assert np.abs(bottom - iris).mean() < 4 < 12 < np.abs(bottom - nova).mean(), "Iris is not the bottom tile"
    strip = slice(128 - 18, 128)  # where a caption would darken each tile's bottom and write its name
    captioned = luma(Compositor((128, 128), 2, "stacked", ["Nova", "Iris"]).compose(first).image)
    assert np.abs(captioned[strip] - nova[strip]).mean() > 10  # what a caption would do to the pixels
    assert np.abs(top[strip] - nova[strip]).mean() < 4 and np.abs(bottom[strip] - iris[strip]).mean() < 4, "a caption was drawn"
    assert "Nova: …Hi Iris!" in capsys.readouterr().err, "Nova did not start the duet"
