"""Two Qwen3-Omni agents talking through the real vLLM-Omni: `liveavatar duet` to an MP4, and live with a person."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from liveavatar.agent.cli import main
from liveavatar.dialogue.wav import encode_wav
from liveavatar.testing.vllm_omni.server import VllmOmniServer
from real_helpers import persona_file
from user_speech import STOP_PLEASE, user_says


def write_duet(folder: Path, base_url: str, max_turns: int) -> Path:
    """A duet of Ada (chat completions, voice Chelsie) and Bo (realtime: hears Ada's voice over /v1/realtime)."""
    persona_file(folder, "Ada", "omni_server", base_url, voice="Chelsie")
    persona_file(folder, "Bo", "omni_realtime", base_url)
    duet = folder / "duet.yaml"
    duet.write_text(f"agents: [ada.yaml, bo.yaml]\nsize: [96, 96]\nopening: Say hello.\nmax_turns: {max_turns}\n"
                    "lead_in_s: 0.2\ntail_s: 0.3\nturn_gap_s: 0.3\n")
    return duet


def voiced_spans(pcm: np.ndarray, rate: int, window_s: float = 0.04, level: float = 0.02) -> list[tuple[float, float]]:
    """(start, end) seconds of the stretches whose 40 ms windows are louder than `level` RMS."""
    n = int(window_s * rate)
    frames = pcm[: len(pcm) // n * n].reshape(-1, n)
    loud = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) > level
    spans, start = [], None
    for i, on in enumerate([*loud, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            spans.append((start * window_s, i * window_s))
            start = None
    return spans


def mp4_audio(path: Path) -> tuple[np.ndarray, int, int, tuple[int, int]]:
    """The MP4's audio track (mono float), its rate, its number of video frames and their size."""
    with av.open(str(path)) as container:
        frames = [f for f in container.decode(video=0)]
        size = (frames[0].width, frames[0].height)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        return audio, stream.rate, len(frames), size


def test_liveavatar_duet_renders_two_omni_agents_talking_to_an_mp4(real_server: VllmOmniServer, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "duet.mp4"
    assert main(["duet", str(write_duet(tmp_path, real_server.base_url, 3)), "--out", str(out)]) == 0
    printed = capsys.readouterr().err
    assert "dialogue error" not in printed, printed
    assert [line.split(":")[0].strip() for line in printed.splitlines() if line.strip().startswith(("Ada:", "Bo:"))] \
        == ["Ada", "Bo", "Ada"]
    audio, rate, frames, size = mp4_audio(out)
    assert size == (192, 96) and rate == 24000
    assert frames == pytest.approx(len(audio) / rate * 25, abs=3)
    spans = voiced_spans(audio, rate)
    # three replies in the video, one after the other, each a codec-frame multiple of ~0.08 s long
    assert len(spans) == 3, spans
    assert all(0.3 < end - start < 10 for start, end in spans), spans


def test_a_person_barges_in_on_the_live_omni_duet(real_server: VllmOmniServer, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    stop = user_says(STOP_PLEASE)
    silence = lambda seconds: np.zeros(int(seconds * 16000), np.float32)  # noqa: E731
    # The person speaks into the opening reply, whose speech runs from about 1.0-1.4 s to 2.9-3.3 s (begun at 2.5 s,
    # the person paused it only after it had ended in one run of five; begun at 1.9 s, it was paused at 2.7 s),
    # then again much later. Were the reply late to start, it would begin inside the person's turn: paused too.
    voice = tmp_path / "person.wav"
    voice.write_bytes(encode_wav(np.concatenate([silence(1.6), stop, silence(7.0), stop]), 16000))
    out = tmp_path / "live.mp4"
    code = main(["duet", str(write_duet(tmp_path, real_server.base_url, 8)), "--wav", str(voice), "--out", str(out),
                 "--max-seconds", "24"])
    printed = capsys.readouterr().err
    assert code == 0, printed
    assert "error" not in printed, printed
    assert "answered you" in printed, printed  # the person was heard and answered ...
    assert "answered the other agent" in printed, printed  # ... and the agents talked to each other
    assert "interrupted" in printed, printed  # at least once the person cut an agent off
    audio, rate, frames, size = mp4_audio(out)
    assert size == (192, 96) and len(voiced_spans(audio, rate)) >= 3
