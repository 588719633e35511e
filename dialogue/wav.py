"""WAV bytes in memory: encode mono float32 as PCM16, decode the PCM16/float32 WAVs that servers send.

The decoder walks the RIFF chunks itself instead of using `wave`, because streaming servers write
placeholder sizes (0 or 0xFFFFFFFF) in headers they cannot seek back into, and may add chunks
(LIST, fact) before `data`.
"""

from __future__ import annotations

import struct

import numpy as np

from liveavatar.media import to_float32, to_int16

_PCM = 1
_IEEE_FLOAT = 3
_EXTENSIBLE = 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)


class WavError(ValueError):
    """The bytes are not a WAV file this module can read."""


def is_wav(data: bytes) -> bool:
    """True when `data` starts with a RIFF/WAVE header."""
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def encode_wav(pcm: np.ndarray, rate: int) -> bytes:
    """A complete mono 16-bit PCM WAV file holding `pcm` (float in [-1, 1] or int16) at `rate` Hz."""
    samples = to_int16(to_float32(pcm)).astype("<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + len(samples), b"WAVE",
        b"fmt ", 16, _PCM, 1, rate, rate * 2, 2, 16,
        b"data", len(samples),
    )
    return header + samples


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """(mono float32 samples, sample rate) of a PCM16/PCM32/float32 WAV; channels are averaged."""
    if not is_wav(data):
        raise WavError("not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise WavError("truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _EXTENSIBLE and size >= 40:
                tag = struct.unpack_from("<H", data, body + 24)[0]
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("data chunk before fmt chunk")
            end = len(data) if size in _UNKNOWN_SIZES else min(len(data), body + size)
            return _samples(data[body:end], *fmt), fmt[2]
        pos = body + size + (size & 1)
    raise WavError("no data chunk")


def _samples(raw: bytes, tag: int, channels: int, rate: int, bits: int) -> np.ndarray:
    if channels < 1 or rate <= 0:
        raise WavError(f"bad WAV format: {channels} channels at {rate} Hz")
    if tag == _PCM and bits == 16:
        pcm = np.frombuffer(raw[: len(raw) - len(raw) % (2 * channels)], "<i2").astype(np.float32) / 32768.0
    elif tag == _PCM and bits == 32:
        pcm = np.frombuffer(raw[: len(raw) - len(raw) % (4 * channels)], "<i4").astype(np.float32) / 2147483648.0
    elif tag == _IEEE_FLOAT and bits == 32:  # float samples may hold anything: NaN, infinities, 1e30
        pcm = np.frombuffer(raw[: len(raw) - len(raw) % (4 * channels)], "<f4").astype(np.float32)
        pcm = np.clip(np.nan_to_num(pcm, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    else:
        raise WavError(f"unsupported WAV encoding (format tag {tag}, {bits} bits)")
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1)
    return np.ascontiguousarray(pcm, dtype=np.float32)
