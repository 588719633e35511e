"""Voice shaping with the WORLD vocoder: move pitch and formants independently, keep every sample's timing."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np

with warnings.catch_warnings():  # pyworld's __init__ still imports the deprecated pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    import pyworld

FRAME_PERIOD_MS = 5.0  # WORLD analysis hop (10 ms is faster but shifts pitch less accurately)
PART_MARGIN_S = 0.05  # audio analysed on each side of a part (seconds), so WORLD sees about what it sees in the whole
CROSSFADE_S = 0.01  # half the overlap (seconds) over which consecutive parts are blended, so the seam makes no click


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


def shape_voice_parts(pcm: np.ndarray, rate: int, pitch_semitones: float, formant_shift: float,
                      cuts: Sequence[int]) -> Iterator[np.ndarray]:  # fmt: skip
    """`shape_voice` part by part, cut at the sample indices `cuts`: each part is ready after its own share of the
    work, so the first can play while the rest is shaped. The parts joined have the input's length; they differ from
    the whole shaped at once only within CROSSFADE_S of each cut (cuts closer than that to an end are ignored).
    """
    n, fade = len(pcm), int(CROSSFADE_S * rate)
    margin = max(int(PART_MARGIN_S * rate), fade)
    bounds = [0, *sorted({c for c in cuts if fade < c < n - fade}), n]
    ramp = ((np.arange(2 * fade) + 0.5) / (2 * fade)).astype(np.float32)
    carry = None  # the part before's own output over [cut - fade, cut + fade): blended into this part's start
    for start, end in zip(bounds, bounds[1:]):
        low, high = max(0, start - margin), min(n, end + margin)
        shaped = shape_voice(pcm[low:high], rate, pitch_semitones, formant_shift)
        first, last = (0 if carry is None else start - fade), (n if end == n else end - fade)
        part = shaped[first - low : last - low].copy()
        if carry is not None:
            part[: 2 * fade] = carry * (1.0 - ramp) + part[: 2 * fade] * ramp
        carry = shaped[end - fade - low : end + fade - low] if end < n else None
        yield part
