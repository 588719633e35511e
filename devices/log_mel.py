"""Whisper's log-mel spectrogram in numpy: the input features of Whisper-encoder models (Smart Turn v3).

Whisper's recipe: 16 kHz audio, a 400-sample periodic Hann window every 160 samples (25 ms / 10 ms),
centred frames (reflect padding), power spectrum, 80 Slaney-normalised triangular mel filters from 0 to
8 kHz, log10 floored at 1e-10, a dynamic range clamp of 8 (80 dB) below the maximum, then (x + 4) / 4.
Smart Turn also normalises the waveform to zero mean and unit variance first (transformers'
`do_normalize`). tests/test_end_of_turn.py checks this against transformers' WhisperFeatureExtractor.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms window
HOP = 160  # 10 ms: 100 frames per second
N_MELS = 80
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0  # log10 units (80 dB) kept below the loudest bin
VARIANCE_EPS = 1e-7


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    linear = 3.0 * hz / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of `_hz_to_mel`."""
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0), 200.0 * mel / 3.0)


def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular filters, equally spaced on the mel scale from 0 to rate/2, each of unit area: [n_mels, n_fft//2 + 1]."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate / 2), n_mels + 2))
    bins = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (upper - lower))  # Slaney normalisation: equal area per filter


_FILTERS = mel_filters()  # a constant of the recipe
_WINDOW = np.hanning(N_FFT + 1)[:-1]  # periodic Hann


def log_mel(audio: np.ndarray, frames: int = 800, normalize: bool = True) -> np.ndarray:
    """Features of the last `frames` × 10 ms of 16 kHz `audio` (zero-padded at the front when shorter): [80, frames] float32."""
    n = frames * HOP
    x = np.asarray(audio, np.float32)[-n:]
    if len(x) < n:
        x = np.concatenate([np.zeros(n - len(x), np.float32), x])
    x = x.astype(np.float64)
    if normalize:
        x = (x - x.mean()) / np.sqrt(x.var() + VARIANCE_EPS)
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    windows = sliding_window_view(padded, N_FFT)[::HOP][:frames]  # the recipe's last (frames + 1)th frame is dropped
    power = np.abs(np.fft.rfft(windows * _WINDOW, axis=-1)) ** 2
    log = np.log10(np.maximum(_FILTERS @ power.T, LOG_FLOOR))
    log = np.maximum(log, log.max() - DYNAMIC_RANGE)
    return ((log + 4.0) / 4.0).astype(np.float32)
