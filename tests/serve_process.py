"""A session server in a process of its own, for tests that watch what it holds: `python serve_process.py MAX_SESSIONS
PERSONA.yaml...` prints {"port": N}, then answers each line on stdin: "sessions" with {"sessions": n}, "trace" (start
tracing Python's allocations) with {"tracing": true}, "snapshot" with a snapshot of itself (JSON); it ends with stdin."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import tracemalloc
from pathlib import Path

from liveavatar.agent.memory import settle_allocator

settle_allocator()  # first, as `liveavatar serve` does: before any thread has its own heap

POOLS = ("compute_", "realtime_", "asyncio_")
SESSION_PARTS = ("BrowserSession", "WebRTCMedia", "RTCPeerConnection", "Conversation", "Agent", "PortraitAvatar", "ScriptedDialogue")


def snapshot() -> dict:
    """Tasks, threads (pool threads counted apart), live objects of a session's parts, file descriptors, child processes,
    memory (RSS; and, once tracing, what Python allocated since and still holds), and the objects the cyclic collector
    keeps frozen and those a full collection walks."""
    import psutil

    gc.collect()
    threads = [t.name for t in threading.enumerate()]
    me = psutil.Process()
    live = {name: 0 for name in SESSION_PARTS}
    for obj in gc.get_objects():
        if type(obj).__name__ in live:
            live[type(obj).__name__] += 1
    return {"tasks": sorted(t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()), "live": live,
            "threads": sorted(n for n in threads if not n.startswith(POOLS)), "pool_threads": sum(n.startswith(POOLS) for n in threads),
            "os_threads": me.num_threads(), "fds": len(os.listdir("/proc/self/fd")), "children": len(me.children(recursive=True)),
            "rss_mb": me.memory_info().rss / 2**20, "gc_frozen": gc.get_freeze_count(), "gc_swept": len(gc.get_objects()),
            "python_held_mb": tracemalloc.get_traced_memory()[0] / 2**20 if tracemalloc.is_tracing() else None}  # fmt: skip


async def main(max_sessions: int, personas: list[Path]) -> None:
    from liveavatar.agent.config import load_persona
    from liveavatar.agent.serve import ServeOptions, SessionServer

    server = SessionServer([load_persona(p) for p in personas], ServeOptions(port=0, size=(128, 128), max_sessions=max_sessions))
    await server.start()
    print(json.dumps({"port": server.server.port}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while command := (await reader.readline()).decode().strip():
        match command:
            case "sessions":
                answer = {"sessions": len(server.server.sessions)}
            case "trace":
                tracemalloc.start()
                answer = {"tracing": True}
            case _:
                answer = snapshot()
        print(json.dumps(answer), flush=True)
    await server.aclose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), [Path(p) for p in sys.argv[2:]]))
