"""The real vLLM-Omni server (tiny random Qwen3-Omni, CPU plugin), started once for the tests in this folder.

The session's first test that needs it builds or finds the cached server env (about 5 min once, then
nothing), builds the tiny checkpoint, and starts `vllm serve ... --omni` (about 2 min). If it cannot
start, every test here fails with the server's log tail; nothing is skipped. Tests marked
`real_server_last` run after all others in their order (the crash test leaves the server answering
"no live replica"; the lifecycle test stops it), and a test that breaks the server says so, so that a
later test gets a fresh one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from liveavatar.testing.vllm_omni.server import START_TIMEOUT_S, ServerFailed, ServerSetup, VllmOmniServer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "omni"))  # omni_helpers: collect, speech_turn


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The real server's tests run after every other test (the idle server's processes keep about one core busy,
    which the real-time tests must not share), and those marked `real_server_last(n)` last of all, in the order
    of n; every test here may take the server's start (and the env's first build) on top of its own time."""
    def order(item: pytest.Item) -> tuple[int, int, int]:
        here = int(HERE in Path(str(item.fspath)).parents)
        marker = item.get_closest_marker("real_server_last")
        return (here, 1, marker.args[0] if marker.args else 0) if marker else (here, 0, 0)

    items.sort(key=order)  # stable: everything else keeps its order
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.timeout(int(START_TIMEOUT_S) + 1200))


@dataclass
class RealServer:
    """The session's server, restarted on demand after a test broke it."""

    log_dir: Path
    server: VllmOmniServer | None = None
    broken: bool = False
    starts: list[float] = field(default_factory=list)  # seconds each start took
    failure: str | None = None  # why the server could not start (every later test fails with it at once)

    def get(self) -> VllmOmniServer:
        if self.server is not None and (self.broken or not self.server.alive()):
            self.server.stop()
            self.server = None
        if self.failure is not None:
            pytest.fail(self.failure, pytrace=False)
        if self.server is None:
            self.broken = False
            log = self.log_dir / f"server-{len(self.starts) + 1}.log"
            try:
                self.server = VllmOmniServer(ServerSetup.prepare(log)).start()
            except ServerFailed as exc:
                self.failure = f"the real vLLM-Omni server did not start: {exc}"
                pytest.fail(self.failure, pytrace=False)
            assert self.server.started_in_s is not None
            self.starts.append(self.server.started_in_s)
            print(f"\nvLLM-Omni server ready in {self.server.started_in_s:.0f} s at {self.server.base_url}")
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture(scope="session")
def real_server_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    handle = RealServer(tmp_path_factory.mktemp("vllm-omni"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def real_server(real_server_handle: RealServer) -> VllmOmniServer:
    """The running server (started on first use; a fresh one after a test broke it).

    For working on these tests, LIVEAVATAR_VLLM_OMNI_PORT=N uses a server already running on that port
    (`python -m liveavatar.testing.vllm_omni.server --port N`) instead; CI never sets it.
    """
    port = os.environ.get("LIVEAVATAR_VLLM_OMNI_PORT")
    if port:
        return VllmOmniServer(ServerSetup.__new__(ServerSetup), port=int(port))
    return real_server_handle.get()
