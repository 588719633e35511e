"""Silero VAD through onnxruntime: speech is found where it is, and torch is never imported on this path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from liveavatar.devices.vad import WINDOW, SileroVAD
from test_conversation import speech_span
from user_speech import user_says


def test_speech_probability_follows_the_voice() -> None:
    pcm = user_says("Hello there, how are you today?")
    signal = np.concatenate([np.zeros(16000, np.float32), pcm, np.zeros(16000, np.float32)])
    vad = SileroVAD()
    windows = []
    for start in range(0, len(signal), 320):  # 20 ms chunks, as a microphone delivers them
        windows += vad.feed(signal[start : start + 320])
    assert len(windows) == len(signal) // WINDOW
    onset, end = (1.0 + t for t in speech_span(pcm))
    inside = [w.probability for w in windows if onset + 0.15 < w.start_s and w.end_s < end - 0.15]
    outside = [w.probability for w in windows if w.end_s < onset - 0.1 or w.start_s > end + 0.3]
    assert np.mean(np.array(inside) > 0.5) > 0.7 and max(outside) < 0.2  # the comma pause may dip


def test_the_live_audio_path_never_imports_torch() -> None:
    probe = (
        "import sys, numpy as np\n"
        "from liveavatar.devices.vad import SileroVAD\n"
        "from liveavatar.agent.turns import TurnTaker\n"
        "from liveavatar.agent.conversation import Conversation\n"
        "SileroVAD().feed(np.zeros(16000, np.float32))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
