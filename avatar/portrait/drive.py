"""Speech → mouth: visemes from phoneme timings when the voice gives them, loudness otherwise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from liveavatar.media import PhonemeSpan

# IPA symbol -> (opening 0..1, spread -1 rounded .. 1 spread). Stress and length marks, spaces and
# punctuation are absent: they take the shape of their neighbours through smoothing.
VISEMES: dict[str, tuple[float, float]] = {
    **{c: (0.95, 0.15) for c in "aɑæɐä"},
    "ʌ": (0.75, 0.1), "ɔ": (0.8, -0.5), "ɒ": (0.8, -0.45), "o": (0.6, -0.7),
    "u": (0.35, -0.85), "ʊ": (0.4, -0.75), "y": (0.3, -0.6),
    **{c: (0.5, 0.0) for c in "əɜɚɝ"},
    "e": (0.6, 0.45), "ɛ": (0.65, 0.4), "i": (0.35, 0.7), "ɪ": (0.4, 0.6), "ᵻ": (0.4, 0.3),
    **{c: (0.0, 0.0) for c in "pbm"},
    "f": (0.12, 0.1), "v": (0.12, 0.1), "θ": (0.25, 0.1), "ð": (0.25, 0.1),
    **{c: (0.25, 0.2) for c in "tdnlszɾ"},
    "ʃ": (0.25, -0.4), "ʒ": (0.25, -0.4), "ɹ": (0.3, -0.3), "r": (0.3, -0.3), "w": (0.2, -0.9),
    "j": (0.3, 0.5), **{c: (0.35, 0.0) for c in "kgŋhxɡ"}, "ʔ": (0.2, 0.0),
}

SILENCE_DBFS = -50.0  # below this a frame counts as silent: the mouth closes
DYNAMIC_RANGE_DB = 32.0  # loudness mapped to opening over this range under the recent peak
PEAK_DECAY_PER_FRAME = 0.02  # dB the loudness reference sinks per frame, so quiet voices still open the mouth
VISEME_LEAD_S = 0.04  # lips move slightly ahead of the sound they make
ATTACK, RELEASE = 0.75, 0.5  # per-frame smoothing towards a larger / smaller opening


@dataclass
class MouthState:
    """Smoothed mouth opening and spread carried from frame to frame."""

    jaw: float = 0.0
    spread: float = 0.0


class MouthDriver:
    """Turns each frame's audio (and phonemes on the same sample clock) into a jaw opening and lip spread."""

    def __init__(self, audio_rate: int, gain: float = 1.0) -> None:
        self.audio_rate = audio_rate
        self.gain = gain
        self._peak_db = -20.0
        self.state = MouthState()

    def loudness(self, pcm: np.ndarray) -> float:
        """Opening from loudness alone, 0..1, against a slowly adapting peak."""
        rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) if len(pcm) else 0.0
        db = 20.0 * math.log10(max(rms, 1e-9))
        if db < SILENCE_DBFS:
            return 0.0
        self._peak_db = max(db, self._peak_db - PEAK_DECAY_PER_FRAME)
        return float(np.clip((db - (self._peak_db - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0.0, 1.0))

    def viseme(self, spans: list[PhonemeSpan], start: int, stop: int) -> tuple[float, float] | None:
        """Overlap-weighted (opening, spread) of the phonemes inside samples [start, stop), or None."""
        lead = int(VISEME_LEAD_S * self.audio_rate)
        start, stop = start + lead, stop + lead
        total, acc_open, acc_spread = 0.0, 0.0, 0.0
        for span in spans:
            shape = VISEMES.get(span.phoneme)
            if shape is None:
                continue
            overlap = min(stop, span.start + span.length) - max(start, span.start)
            if overlap > 0:
                total += overlap
                acc_open += overlap * shape[0]
                acc_spread += overlap * shape[1]
        return None if total == 0 else (acc_open / total, acc_spread / total)

    def step(self, pcm: np.ndarray, spans: list[PhonemeSpan], start: int) -> MouthState:
        """Advance one frame whose audio is `pcm`, beginning at absolute sample `start`."""
        level = self.loudness(pcm)
        shape = self.viseme(spans, start, start + len(pcm))
        if level == 0.0:
            target_jaw, target_spread = 0.0, 0.0
        elif shape is None:
            target_jaw, target_spread = 0.75 * level**0.8, 0.0
        else:
            target_jaw, target_spread = shape[0] * (0.3 + 0.55 * level), shape[1]
        target_jaw = min(1.0, target_jaw * self.gain)
        s = self.state
        rate = ATTACK if target_jaw > s.jaw else RELEASE
        s.jaw += (target_jaw - s.jaw) * rate
        s.spread += (target_spread - s.spread) * 0.6
        if target_jaw == 0.0 and s.jaw < 0.03:
            s.jaw = 0.0
        if target_jaw == 0.0 and abs(s.spread) < 0.03:
            s.spread = 0.0
        return MouthState(s.jaw, s.spread)

    def rest(self) -> MouthState:
        """Advance one silent frame (the mouth relaxes shut)."""
        return self.step(np.zeros(0, np.float32), [], 0)
