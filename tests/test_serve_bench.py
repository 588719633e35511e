"""The serve benchmark's measures on known inputs: the frame stamp the page reads, lateness and delays."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from liveavatar.testing.serve_bench import STAMP_BITS, PageResult, frame_delays, lateness, stamp, summarize, yield_cpu_to_server


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


def _page(sent_stall_s: float = 0.0, page_stall_s: float = 0.0, errors: list[str] | None = None, fps: float = 25.0) -> PageResult:
    """A tab's 200 frames: sent at their pace (a stall of `sent_stall_s` before frame 120), presented 50 ms after
    sending (plus `page_stall_s` from frame 60 on); the window is frames 20-199: the 5 s stall before frame 20 is
    outside it and does not count."""
    sent = {i: 100.0 + i / fps - (5.0 if i < 20 else 0.0) + (sent_stall_s if i >= 120 else 0.0) for i in range(200)}
    presented = [(i, at + 0.05 + (page_stall_s if i >= 60 else 0.0)) for i, at in sent.items() if i >= 20]
    return PageResult(presented, {}, sent, 0.0, 0.0, errors or [], window=(100.0 + 20 / fps, 100.0 + 200 / fps + 1.0))


def test_held_as_sent_judges_every_frame_the_server_sent_in_the_window() -> None:
    late_page = summarize([_page(page_stall_s=0.5), _page()], 25.0)
    assert not late_page["held"] and late_page["held_as_sent"]  # the page fell behind, the server did not
    assert late_page["sent_all_max_late_s"] == pytest.approx(0.0, abs=1e-9) and late_page["sent_all_missing"] == 0
    late_server = summarize([_page(), _page(sent_stall_s=0.15)], 25.0)
    assert late_server["held_as_sent"] is False and late_server["sent_all_max_late_s"] == pytest.approx(0.15)
    hidden = _page(sent_stall_s=0.15)  # the stalled frames never reached the page: still judged as sent
    hidden.presented = [(i, at) for i, at in hidden.presented if i < 120]
    assert summarize([hidden], 25.0)["held_as_sent"] is False
    skipped = _page()
    for i in range(100, 110):  # ten frames (of 180) never sent: more than 1 %
        del skipped.sent[i]
    assert summarize([skipped], 25.0)["sent_all_missing"] == 10 and summarize([skipped], 25.0)["held_as_sent"] is False
    assert summarize([_page(errors=["the media connection failed"])], 25.0)["held_as_sent"] is False
    unconnected = _page()
    unconnected.sent, unconnected.presented = {}, []  # a page that never connected: the server sent it nothing
    assert summarize([_page(), unconnected], 25.0)["held_as_sent"] is False
    websocket = _page()
    websocket.sent = {}
    assert summarize([websocket], 25.0)["held_as_sent"] is None  # nothing is stamped at sending over the websocket


def test_the_pages_can_give_way_to_the_server(tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess
    import sys

    import psutil

    stand_in = tmp_path / "chromium-stand-in"  # a process named like a tab, in a session (and so a CPU group) of its own
    shutil.copy(shutil.which("sleep") or "/bin/sleep", stand_in)
    child = subprocess.Popen([str(stand_in), "30"], start_new_session=True)
    ours = Path(f"/proc/{os.getpid()}/autogroup")
    try:
        before = ours.read_text() if ours.exists() else None
        if sys.platform.startswith("linux") and ours.exists():
            assert yield_cpu_to_server(psutil.Process()) == 1
            assert Path(f"/proc/{child.pid}/autogroup").read_text().split()[-2:] == ["nice", "19"]
            assert ours.read_text() == before  # the server's own group keeps its weight
        else:  # no CPU groups to weigh: nothing is set, and a run that asks for it stops with an error
            assert yield_cpu_to_server(psutil.Process()) == 0
    finally:
        child.kill()
        child.wait()
