"""Two Qwen3-Omni agents talking by voice: the tiny model behind the local server, rendered to MP4."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import av
import numpy as np

from liveavatar.agent.config import load_duet
from liveavatar.agent.render import render_duet
from liveavatar.testing.omni_standin import OmniWireServer
from omni_tiny import TinyOmniSource

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write_duet(folder: Path, base_url: str) -> Path:
    shutil.copy(EXAMPLES / "portraits" / "nova.jpg", folder / "a.jpg")
    shutil.copy(EXAMPLES / "portraits" / "iris.jpg", folder / "b.jpg")
    for name, voice in (("a", "Chelsie"), ("b", "Aiden")):
        (folder / f"{name}.yaml").write_text(
            f"name: {name.upper()}\nportrait: {name}.jpg\nsystem_prompt: You are {name.upper()}.\n"
            f"dialogue:\n  backend: omni_server\n  options:\n    base_url: {base_url}\n    voice: {voice}\n"
            "avatar:\n  backend: portrait\n  options: {head_motion: 0.5}\n"
        )
    duet = folder / "duet.yaml"
    duet.write_text("agents: [a.yaml, b.yaml]\nsize: [128, 128]\nopening: Say hello.\nmax_turns: 3\nlead_in_s: 0.2\ntail_s: 0.2\n")
    return duet


def test_each_agents_speech_is_the_others_turn(tmp_path: Path, tiny_server: OmniWireServer, tiny_source: TinyOmniSource) -> None:
    duet = load_duet(write_duet(tmp_path, tiny_server.base_url))
    result = asyncio.run(render_duet(duet.plan, duet.personas, tmp_path / "duet.mp4"))
    turns = result.turns
    assert [t.speaker for t in turns] == ["A", "B", "A"] and result.errors == []
    generations = tiny_source.generations
    assert len(generations) == 3
    assert generations[0].prompt_audio_clips == 0  # A hears only the opening text
    assert generations[1].prompt_audio_clips == 1 and generations[2].prompt_audio_clips == 1  # then each hears the other
    for turn, generation in zip(turns, generations):
        spoken = generation.samples  # 24 kHz from the model; the video's audio is 24 kHz too
        assert spoken <= turn.samples < spoken + 960  # all of it, padded to whole frames
    with av.open(str(tmp_path / "duet.mp4")) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    a = turns[0]
    heard = audio[a.first_frame * 960 : (a.last_frame + 1) * 960]
    model = generations[0].pcm
    assert np.corrcoef(heard[: len(model)], model)[0, 1] > 0.95  # the model's own speech is in the MP4
