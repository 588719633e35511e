"""Config mistakes: each gives one clear message naming the file, the line, the key and what was expected."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from liveavatar.agent.config import ConfigError, load_duet, load_persona

GOOD = """\
name: Tester
portrait: face.jpg
voice:
  pitch_semitones: 3
dialogue:
  backend: scripted
  options:
    lines: [Hello there.]
avatar:
  backend: portrait
"""


@pytest.fixture()
def folder(tmp_path: Path, examples: Path) -> Path:
    shutil.copy(examples / "portraits" / "nova.jpg", tmp_path / "face.jpg")
    return tmp_path


def write(folder: Path, text: str, name: str = "persona.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        (load_duet if "agents" in path.read_text() else load_persona)(path, **kwargs)  # type: ignore[operator]
    return info.value.problems


def test_the_good_persona_loads_with_defaults_filled_in(folder: Path) -> None:
    persona = load_persona(write(folder, GOOD), check_face=True)
    assert persona.name == "Tester" and persona.portrait.shape == (400, 400, 3)
    assert persona.voice.pitch_semitones == 3 and persona.turn_taking.end_of_turn_silence_s == 0.6
    assert persona.dialogue_options.lines == ["Hello there."]  # type: ignore[attr-defined]


def test_unknown_key_names_line_and_the_keys_expected(folder: Path) -> None:
    path = write(folder, GOOD.replace("  pitch_semitones: 3", "  pitch_semitones: 3\n  pitchh: 4"))
    [message] = problems(path)
    assert message.startswith(f"{path}:5: voice.pitchh: unknown key; expected one of: engine, model, pitch_semitones")


def test_wrong_type_says_what_was_expected_and_what_was_given(folder: Path) -> None:
    path = write(folder, GOOD.replace("pitch_semitones: 3", "pitch_semitones: high"))
    assert problems(path) == [f"{path}:4: voice.pitch_semitones: expected a number, got 'high'"]


def test_out_of_range_value(folder: Path) -> None:
    path = write(folder, GOOD.replace("pitch_semitones: 3", "pitch_semitones: 30"))
    assert problems(path) == [f"{path}:4: voice.pitch_semitones: input should be less than or equal to 12, got 30"]


def test_missing_required_key(folder: Path) -> None:
    path = write(folder, GOOD.replace("name: Tester\n", ""))
    assert problems(path) == [f"{path}: name: required key is missing"]


def test_missing_portrait_file(folder: Path) -> None:
    path = write(folder, GOOD.replace("face.jpg", "nobody.png"))
    assert problems(path) == [f"{path}:2: portrait: file not found: {folder / 'nobody.png'}"]


def test_unreadable_image(folder: Path) -> None:
    (folder / "broken.png").write_bytes(b"this is not a png")
    path = write(folder, GOOD.replace("face.jpg", "broken.png"))
    assert problems(path) == [f"{path}:2: portrait: cannot read {folder / 'broken.png'} as an image (expected a PNG or JPEG file)"]


def test_unknown_backend_lists_the_known_ones(folder: Path) -> None:
    path = write(folder, GOOD.replace("backend: portrait", "backend: hologram"))
    assert problems(path) == [f"{path}:10: avatar.backend: unknown backend 'hologram'; expected one of: portrait, liveavatar"]


def test_backend_options_are_checked_by_the_backends_schema(folder: Path) -> None:
    path = write(folder, GOOD.replace("  backend: portrait", "  backend: portrait\n  options:\n    face: {eyes: [[1, 2]], mouth: [[1, 2], [3, 4]]}"))
    [message] = problems(path)
    assert message.startswith(f"{path}:12: avatar.options.face.eyes: list should have at least 2 items")


def test_scripted_backend_needs_lines(folder: Path) -> None:
    path = write(folder, GOOD.replace("    lines: [Hello there.]", "    lines: []"))
    assert problems(path)[0].startswith(f"{path}:8: dialogue.options.lines: list should have at least 1 item")


def test_several_mistakes_are_reported_together(folder: Path) -> None:
    path = write(folder, GOOD.replace("face.jpg", "gone.jpg").replace("backend: portrait", "backend: nope"))
    assert len(problems(path)) == 2


def test_invalid_yaml_and_duplicate_keys(folder: Path) -> None:
    path = write(folder, "name: [unclosed\nportrait: face.jpg\n")
    [message] = problems(path)
    assert message == f"{path}:2: not valid YAML: expected ',' or ']', but got ':'"
    path = write(folder, GOOD + "name: Again\n")
    assert problems(path) == [f"{path}:11: name: key appears twice"]


def test_not_a_mapping(folder: Path) -> None:
    path = write(folder, "- just\n- a list\n")
    assert problems(path) == [f"{path}: expected a mapping of keys (name: ..., portrait: ...), got list"]


def test_no_face_found_explains_how_to_give_positions_by_hand(folder: Path) -> None:
    import cv2

    cv2.imwrite(str(folder / "wall.png"), np.full((300, 300, 3), 128, np.uint8))
    path = write(folder, GOOD.replace("face.jpg", "wall.png"))
    [message] = problems(path, check_face=True)
    assert message.startswith(f"{path}:2: portrait: no face found in {folder / 'wall.png'}")
    assert "face:\n        eyes: [[x, y], [x, y]]" in message and "mouth: [[x, y], [x, y]]" in message
    hinted = GOOD.replace("face.jpg", "wall.png").replace(
        "  backend: portrait", "  backend: portrait\n  options:\n    face: {eyes: [[110, 120], [190, 120]], mouth: [[120, 200], [180, 200]]}"
    )
    assert load_persona(write(folder, hinted), check_face=True).name == "Tester"


def test_duet_errors_point_into_the_right_file(folder: Path) -> None:
    write(folder, GOOD.replace("pitch_semitones: 3", "pitch_semitones: loud"), "bad.yaml")
    write(folder, GOOD, "good.yaml")
    duet = write(folder, "agents: [good.yaml, bad.yaml, third.yaml]\n", "duet.yaml")
    assert problems(duet) == [f"{duet}:1: agents: list should have at most 2 items after validation, not 3, got ['good.yaml', 'bad.yaml', 'third.yaml']"]
    duet = write(folder, "agents: [good.yaml, missing.yaml]\nfps: fast\n", "duet.yaml")
    assert problems(duet) == [f"{duet}:2: fps: expected a number, got 'fast'"]
    duet = write(folder, "agents: [good.yaml, missing.yaml]\n", "duet.yaml")
    assert problems(duet) == [f"{duet}:1: agents[1]: persona file not found: {folder / 'missing.yaml'}"]
    duet = write(folder, "agents: [good.yaml, bad.yaml]\n", "duet.yaml")
    assert problems(duet) == [f"{folder / 'bad.yaml'}:4: voice.pitch_semitones: expected a number, got 'loud'"]


def test_check_command_reports_errors_without_a_traceback(folder: Path, examples: Path) -> None:
    bad = write(folder, GOOD.replace("backend: portrait", "backend: hologram"))
    cli = [sys.executable, "-m", "liveavatar.agent.cli", "check"]
    good = subprocess.run(cli + [str(examples / "duet.yaml"), str(examples / "nova.yaml")], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    assert "ok" in good.stderr and "(duet)" in good.stderr
    failed = subprocess.run(cli + [str(bad)], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2
    assert "avatar.backend: unknown backend 'hologram'" in failed.stderr.replace("\n", "")
    assert "Traceback" not in failed.stderr


def test_only_a_persona_whose_dialogue_takes_images_looks_at_the_camera(examples: Path) -> None:
    assert load_persona(examples / "omni" / "nova.yaml").looks_at_camera  # Qwen3-Omni gets the webcam's frame
    assert not load_persona(examples / "omni" / "nova-realtime.yaml").looks_at_camera  # the realtime API takes audio only
    assert not load_persona(examples / "nova.yaml").looks_at_camera
    assert not load_persona(examples / "nova-live.yaml").looks_at_camera
