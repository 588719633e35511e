"""The person in the tests: the lines they say and their voice (the bundled Piper voice shaped lower, at 16 kHz)."""

from __future__ import annotations

import numpy as np

from liveavatar.dialogue.speech.piper_tts import PiperTTS
from liveavatar.dialogue.speech.voice import VoiceOptions
from liveavatar.media import resample

GREETING = "Hello there how are you today?"
"""One breath (its longest inner pause about 0.1 s): a comma would pause about 0.4 s, long enough for the
end-of-turn model to end the turn there, which on a fast machine it does before the rest is said."""
STOP_PLEASE = "Stop and tell me something else."
"""A barge-in in one breath (longest inner pause about 0.12 s); "Wait, stop, ..." pauses 0.4 s at each comma."""


def user_says(text: str) -> np.ndarray:
    """The user's voice saying `text`, at 16 kHz (what the VAD hears as speech)."""
    tts = PiperTTS(VoiceOptions(pitch_semitones=-3, formant_shift=0.95))
    return resample(np.concatenate([c.pcm for c in tts.synthesize(text)]), tts.rate, 16000)
