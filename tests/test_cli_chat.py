"""`liveavatar chat` and the live duet from the command line, headless (a WAV file is the microphone)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from liveavatar.agent.cli import main
from liveavatar.devices.local import DeviceError, _check_device
from user_speech import GREETING, user_says


def test_chat_with_a_wav_file_records_the_answer(tmp_path: Path, examples: Path, capsys: pytest.CaptureFixture) -> None:
    question = user_says(GREETING)
    wav = tmp_path / "question.wav"
    soundfile.write(str(wav), question, 16000)
    out, metrics = tmp_path / "reply.mp4", tmp_path / "turns.jsonl"
    assert main(["chat", str(examples / "nova.yaml"), "--wav", str(wav), "--out", str(out), "--size", "128", "--metrics", str(metrics)]) == 0
    printed = capsys.readouterr().err
    assert "Nova: Hi Iris!" in printed.replace("\n", " ") and "answered you: response" in printed
    with av.open(str(out)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert np.sqrt(np.mean(audio**2)) > 0.01, "the recorded avatar never spoke"
    [line] = metrics.read_text().splitlines()
    assert '"speaker": "Nova"' in line and '"response_latency_s"' in line


def test_missing_audio_devices_name_the_device_and_the_alternatives() -> None:
    class NoSoundCard:
        def query_devices(self) -> list:
            return [{"name": "hdmi", "max_input_channels": 0, "max_output_channels": 2}]

        def check_output_settings(self, **kwargs: object) -> None:
            raise RuntimeError("Invalid sample rate")

    with pytest.raises(DeviceError, match=r"no microphone found: .*use --browser .* or --wav FILE"):
        _check_device(NoSoundCard(), None, "input")
    with pytest.raises(DeviceError, match=r"cannot open the default speaker: Invalid sample rate; use --browser"):
        _check_device(NoSoundCard(), None, "output")


def test_wrong_wav_and_wrong_dit_workers_are_clear_errors(tmp_path: Path, examples: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["chat", str(examples / "nova.yaml"), "--wav", str(tmp_path / "none.wav")]) == 2
    assert main(["duet", str(examples / "duet.yaml"), "--dit-workers", "2"]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "--wav: cannot read" in err and "--dit-workers: no persona uses the liveavatar avatar backend" in err
    assert "Traceback" not in err
