"""TPP faults end in a clear error within 5 s and leave no process behind; nothing hangs.

- a worker killed mid-stream (SIGKILL): the consumer's next frame raises TPPWorkerError naming the worker;
- a worker that hangs (SIGSTOP: alive, but silent): the same, from the missed heartbeats;
- a worker that fails while starting (an unusable device): TPPStartError with the worker's own reason;
- the master port already in use: TPPStartError naming the port, before any process is spawned;
- a generator dropped without aclose(): garbage collection stops its workers.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import time

import pytest

from liveavatar.avatar.liveavatar.backend import LiveAvatarGenerator, Options
from liveavatar.avatar.liveavatar.tpp.pool import TPPStartError, TPPWorkerError
from liveavatar.media import AudioChunk
from stream_helpers import RATE, alive, make_setup, speech, take, worker_children

FAULT_DEADLINE_S = 5.0


async def _fault_mid_stream(gen: LiveAvatarGenerator, victim_rank: int, sig: signal.Signals) -> tuple[float, BaseException, list[int]]:
    """Stream, hit one worker with `sig`, then pull frames until the error; (seconds to the error, error, pids)."""
    stream = gen.frames()
    gen.push(AudioChunk(speech(6.0), RATE), generation=1)
    await take(stream, 24)
    pids = gen.runner.worker_pids
    hit = time.monotonic()
    os.kill(pids[victim_rank], sig)
    with pytest.raises(TPPWorkerError) as info:
        while time.monotonic() - hit < 30:
            await asyncio.wait_for(anext(stream), 30)
    elapsed = time.monotonic() - hit
    await gen.aclose()
    return elapsed, info.value, pids


def test_a_killed_worker_raises_within_5_s_and_nothing_is_left():
    gen = LiveAvatarGenerator(Options(dit_workers=2), make_setup("silence"))
    elapsed, error, pids = asyncio.run(_fault_mid_stream(gen, 1, signal.SIGKILL))
    assert elapsed < FAULT_DEADLINE_S, f"the error took {elapsed:.2f} s"
    message = str(error)
    assert "DiT worker 1 (steps 2-3)" in message and "died mid-stream" in message and "SIGKILL" in message
    assert len(pids) == 3 and alive(pids) == [], "the other workers were stopped and reaped"
    assert not worker_children()


def test_a_hung_worker_raises_within_5_s_and_nothing_is_left():
    gen = LiveAvatarGenerator(Options(dit_workers=1), make_setup("silence"))  # default heartbeat_timeout_s (3 s)
    elapsed, error, pids = asyncio.run(_fault_mid_stream(gen, 1, signal.SIGSTOP))  # the decode worker freezes
    assert elapsed < FAULT_DEADLINE_S, f"the error took {elapsed:.2f} s"
    assert "decode worker" in str(error) and "not responding" in str(error)
    assert alive(pids) == [], "a stopped worker is killed too"
    assert not worker_children()


def test_a_worker_failing_at_start_gives_its_reason_and_nothing_is_left():
    async def run():
        gen = LiveAvatarGenerator(Options(dit_workers=2, device="cuda:99"), make_setup())
        started = time.monotonic()
        with pytest.raises(TPPStartError) as info:
            await asyncio.wait_for(anext(gen.frames()), 120)
        elapsed = time.monotonic() - started
        pids = gen.runner.worker_pids
        await gen.aclose()
        return info.value, elapsed, pids

    error, elapsed, pids = asyncio.run(run())
    assert "cuda:99" in str(error) and "not usable" in str(error)
    assert len(pids) == 3 and alive(pids) == []
    assert elapsed < 60


def test_a_master_port_in_use_is_a_clear_error_before_anything_starts():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def run():
            gen = LiveAvatarGenerator(Options(dit_workers=1, master_port=port), make_setup())
            with pytest.raises(TPPStartError) as info:
                await asyncio.wait_for(anext(gen.frames()), 60)
            pids = gen.runner.worker_pids
            await gen.aclose()
            return info.value, pids

        error, pids = asyncio.run(run())
    assert f"master port {port}" in str(error) and "in use" in str(error)
    assert pids == [], "no worker was spawned"


def test_garbage_collection_stops_the_workers():
    async def run():
        gen = LiveAvatarGenerator(Options(dit_workers=1, decode_worker=False), make_setup("silence"))
        await take(gen.frames(), 12)
        return gen, gen.runner.worker_pids

    gen, pids = asyncio.run(run())  # the loop ends without aclose()
    assert len(alive(pids)) == 1
    del gen
    gc.collect()
    assert alive(pids) == []
