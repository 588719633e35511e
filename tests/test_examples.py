"""The Python API examples run as a user would run them, and produce what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import soundfile

from user_speech import GREETING, user_says

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str | Path, cwd: Path) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def read_mp4(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    with av.open(str(path)) as container:
        images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return images, audio


def test_talk_to_a_persona_from_a_wav_file(tmp_path: Path) -> None:
    wav, out = tmp_path / "question.wav", tmp_path / "answer.mp4"
    soundfile.write(str(wav), user_says(GREETING), 16000)
    printed = run_example("talk_to_wav.py", EXAMPLES / "nova.yaml", wav, out, cwd=tmp_path)
    assert printed.startswith("Nova: Hi Iris! Can you believe") and "answered in" in printed
    images, audio = read_mp4(out)
    assert images[0].shape == (256, 256, 3) and np.sqrt(np.mean(audio**2)) > 0.01  # the avatar spoke on the recording


def test_render_two_agents_to_mp4_from_code(tmp_path: Path) -> None:
    printed = run_example("render_duet.py", "duet.mp4", cwd=tmp_path).splitlines()
    assert printed[0].endswith("Nova: Hi Iris! Can you believe we are talking without a single graphics card?")
    assert "  Iris: Hello Nova. No graphics card" in printed[1] and printed[2].startswith("wrote duet.mp4")
    images, audio = read_mp4(tmp_path / "duet.mp4")
    assert images[0].shape == (512, 256, 3)  # two 256×256 avatars, stacked
    assert len(images) * 960 <= len(audio) < len(images) * 960 + 1024 and np.sqrt(np.mean(audio**2)) > 0.01
