"""Voice shaping with the WORLD vocoder: move pitch and formants independently, keep every sample's timing."""

from __future__ import annotations

import warnings

import numpy as np

with warnings.catch_warnings():  # pyworld's __init__ still imports the deprecated pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    import pyworld

FRAME_PERIOD_MS = 5.0  # WORLD analysis hop (10 ms is faster but shifts pitch less accurately)


def shape_voice(pcm: np.ndarray, rate: int, pitch_semitones: float, formant_shift: float) -> np.ndarray:
    """Float32 mono speech with its F0 scaled by 2^(semitones/12) and its spectral envelope by `formant_shift`.

    The output has exactly the input's length, so phoneme timings stay valid.
    """
    if len(pcm) < rate // 50:
        return pcm.astype(np.float32, copy=True)
    x = pcm.astype(np.float64)
    f0, times = pyworld.dio(x, rate, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(x, f0, times, rate)
    envelope = pyworld.cheaptrick(x, f0, times, rate)
    aperiodicity = pyworld.d4c(x, f0, times, rate)
    if formant_shift != 1.0:  # the same frequency warp for every frame: one gather and one blend
        bins = envelope.shape[1]
        warped = np.clip(np.arange(bins) / formant_shift, 0, bins - 1)
        low = np.floor(warped).astype(int)
        high = np.minimum(low + 1, bins - 1)
        weight = warped - low
        envelope = np.ascontiguousarray(envelope[:, low] * (1.0 - weight) + envelope[:, high] * weight)
    y = pyworld.synthesize(f0 * 2.0 ** (pitch_semitones / 12.0), envelope, aperiodicity, rate, FRAME_PERIOD_MS)
    out = np.zeros(len(pcm), np.float32)
    n = min(len(out), len(y))
    out[:n] = y[:n]
    return out
