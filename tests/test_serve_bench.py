"""The serve benchmark's measures on known inputs: the frame stamp the page reads, lateness and delays."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from liveavatar.testing.serve_bench import STAMP_BITS, frame_delays, lateness, stamp


ROOT = Path(__file__).resolve().parent.parent


def read_stamp_like_the_page(image: np.ndarray) -> int:
    """The page's readStamp(): row 8, the middle of each 16-pixel cell, green above 128 is a 1."""
    return sum(1 << bit for bit in range(STAMP_BITS) if image[8, bit * 16 + 8, 1] > 128)


def test_the_stamp_is_what_the_page_reads() -> None:
    script = (ROOT / "devices/browser/static/app.js").read_text()
    assert re.search(r"getImageData\(0, 8, 256, 1\)", script) and "(bit * 16 + 8) * 4 + 1] > 128" in script
    image = np.full((64, 300, 3), 90, np.uint8)
    for index in (0, 1, 2, 12345, 65535):
        assert read_stamp_like_the_page(stamp(image, index)) == index
    assert (stamp(image, 7)[16:] == 90).all()  # only the corner strip changes


def test_the_stamp_survives_as_luma_where_the_webrtc_probe_reads_it() -> None:
    import cv2

    script = (ROOT / "devices/browser/static/app.js").read_text()
    assert "luma.offset + 8 * luma.stride" in script and "corner[row + bit * 16 + 8] > 128" in script
    image = np.full((64, 300, 3), 90, np.uint8)
    image[:, :, 0] = 200  # a coloured picture: only the luma of the cells matters
    for index in (0, 1, 2, 12345, 65535):
        luma = cv2.cvtColor(stamp(image, index)[:, :256], cv2.COLOR_RGB2YUV_I420)[:64]  # the I420 Y plane
        assert sum(1 << bit for bit in range(STAMP_BITS) if luma[8, bit * 16 + 8] > 128) == index


def test_lateness_counts_stalls_and_gaps_but_not_a_steady_delay() -> None:
    fps = 25.0
    steady = [(i, 100.0 + 0.3 + i / fps) for i in range(100)]  # 0.3 s behind, always: not late
    late, missing = lateness(steady, fps)
    assert late.max() == pytest.approx(0.0, abs=1e-9) and missing == 0
    stalled = [(i, 100.0 + i / fps + (0.15 if 50 <= i < 55 else 0.0)) for i in range(100) if i != 70]
    late, missing = lateness(stalled, fps)
    assert late.max() == pytest.approx(0.15) and missing == 1
    wrapped = [((65530 + i) % 65536, 100.0 + i / fps) for i in range(20)]  # the 16-bit stamp wraps
    late, missing = lateness(wrapped, fps)
    assert len(late) == 20 and late.max() == pytest.approx(0.0, abs=1e-9) and missing == 0


def test_delay_is_counted_from_the_first_presentation() -> None:
    presented = [(1, 10.05), (2, 10.10), (2, 10.12), (3, 10.2)]
    assert frame_delays(presented, {1: 10.0, 2: 10.04, 4: 11.0}).tolist() == pytest.approx([0.05, 0.06])
