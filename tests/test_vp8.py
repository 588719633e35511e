"""The avatar's VP8 encoder: its bitrate ceiling, the receiver's estimate below it, keyframes on request, clean pictures."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from liveavatar.devices.browser.vp8 import Vp8Stream

TIME_BASE = fractions.Fraction(1, 90000)
FPS = 25.0


def moving_picture(index: int, size: int = 128) -> np.ndarray:
    """A shaded, checkered background and a bright square, all moving (every frame costs bits to code)."""
    y, x = np.mgrid[0:size, 0:size]
    checks = (((x + 2 * index) // 4 + (y + index) // 4) % 2) * 60
    image = np.stack([(x + index) % 256, (y * 2) % 256, 90 + checks], axis=-1).astype(np.uint8)
    at = 10 + (index * 3) % (size - 40)
    image[at : at + 30, at : at + 30] = 240
    return image


def encode(stream: Vp8Stream, indices: range, target: int | None = None) -> list[av.Packet]:
    return [stream.encode(moving_picture(i), round(i * 90000 / FPS), FPS, target) for i in indices]


def kbps(packets: list[av.Packet]) -> float:
    return sum(p.size for p in packets) * 8 / (len(packets) / FPS) / 1000


def test_the_ceiling_holds_whatever_the_receiver_allows() -> None:
    stream = Vp8Stream(150_000, TIME_BASE)
    packets = encode(stream, range(0, 100)) + encode(stream, range(100, 200), target=5_000_000)
    assert stream.starts == [150_000]  # an estimate above the ceiling changes nothing
    assert kbps(packets[25:]) < 150 * 1.2  # after the first second (the keyframe), at the ceiling or under it
    decoder = av.CodecContext.create("libvpx", "r")
    pictures = [f.to_ndarray(format="rgb24") for p in packets for f in decoder.decode(p)]
    assert len(pictures) == 200
    error = [np.abs(pictures[150].astype(int) - moving_picture(i).astype(int)).mean() for i in (150, 149)]
    assert error[0] < error[1] / 2  # the picture is the one rendered, not a smeared earlier one


def test_a_lower_estimate_lowers_the_rate_and_a_keyframe_comes_when_asked() -> None:
    stream = Vp8Stream(400_000, TIME_BASE)
    high = encode(stream, range(0, 50))
    low = encode(stream, range(50, 150), target=100_000)
    assert stream.starts == [400_000, 100_000]  # the encoder restarted at the receiver's estimate
    assert kbps(low[25:]) < 100 * 1.2 < kbps(high[10:])
    assert low[0].is_keyframe and not any(p.is_keyframe for p in low[1:])
    asked = stream.encode(moving_picture(150), 150 * 3600, FPS, 100_000, keyframe=True)
    assert asked.is_keyframe and asked.pts == 150 * 3600 and asked.time_base == TIME_BASE
    assert stream.keyframes == 3  # the first, the restart's and the one asked for


def test_a_ceiling_too_low_to_show_a_face_is_refused() -> None:
    with pytest.raises(ValueError, match="video bitrate 50000 bit/s: expected at least 100000"):
        Vp8Stream(50_000, TIME_BASE)
