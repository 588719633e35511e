"""The serve scheduler: conversation compute on low-priority threads (and the threads they start), frames on normal ones."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest

from liveavatar.agent.scheduler import COMPUTE_NICENESS, ComputeScheduler


def niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are per thread on Linux only")
def test_compute_yields_to_frames() -> None:
    async def scenario():
        scheduler = ComputeScheduler(max_sessions=2)
        loop = asyncio.get_running_loop()
        scheduler.install(loop)
        base = niceness()

        def compute_and_its_helper() -> tuple[int, int]:
            seen = []
            helper = threading.Thread(target=lambda: seen.append(niceness()))  # as a library's own pool thread would
            helper.start()
            helper.join()
            return niceness(), seen[0]

        compute, helper = await scheduler.run(compute_and_its_helper)
        frame = await loop.run_in_executor(None, niceness)  # where aiortc encodes video
        names = await loop.run_in_executor(None, lambda: threading.current_thread().name)
        await scheduler.aclose()
        after = await loop.run_in_executor(None, lambda: threading.current_thread().name)  # the loop has a default again
        return base, compute, helper, frame, names, after

    base, compute, helper, frame, name, after = asyncio.run(scenario())
    assert compute == helper == max(base, COMPUTE_NICENESS) and frame == base
    assert name.startswith("realtime") and after.startswith("asyncio")
