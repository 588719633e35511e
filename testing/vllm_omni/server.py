"""The real `vllm serve DIR --omni` on 127.0.0.1, started in its own process group and stopped completely.

`VllmOmniServer(setup)` starts the server from the cached env (`env.ensure_env`) with our CPU plugin on
PYTHONPATH, the tiny checkpoint and the CPU deploy config, served under the real model's name; `start()`
returns once `GET /v1/models` answers. If the server exits or does not answer in time, `ServerFailed`
carries the tail of its log. `stop()` ends the whole process group (and any descendant that left it):
SIGTERM, then SIGKILL after a grace period; `leftover()` lists anything still alive afterwards.

The server runs on every CPU but one (`server_cpus`): its engine cores and workers poll one another with
yields, and spread over every CPU of a small virtual machine they freeze the whole machine while they
stream (on this 2-core host: 200,000-340,000 context switches a second and every process, the tests' own
included, stalled for 3-5 s at a time; pinned to one CPU: about 11,000 a second and no stall). The tests'
process keeps every CPU. In production the server has a GPU machine of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from liveavatar.testing.vllm_omni import env as server_env

SERVED_MODEL = "Qwen/Qwen3-Omni-30B-A3B-Instruct"
DEPLOY_CONFIG = Path(__file__).resolve().with_name("deploy_cpu.yaml")
CHECKPOINT_BUILDER = Path(__file__).resolve().parent.parent / "omni_tiny.py"
START_TIMEOUT_S = 900.0  # about 2 min 10 s on an idle 2-core host; much more while other jobs run
STOP_GRACE_S = 20.0


class ServerFailed(RuntimeError):
    """The server could not be started (or died): the message ends with its log's last lines."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tiny_checkpoint(env: server_env.ServerEnv, plugin: Path) -> Path:
    """The vLLM-shaped tiny Qwen3-Omni, built once by the server env's own transformers and cached."""
    key = server_env._digest(CHECKPOINT_BUILDER.read_bytes(), env.root.name.encode())
    target = server_env.cache_root() / f"qwen3-omni-tiny-vllm-{key}"
    if (target / ".complete").exists():
        return target
    with server_env._locked(target.with_name(target.name + ".lock")):
        if (target / ".complete").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        done = subprocess.run([str(env.python), str(CHECKPOINT_BUILDER), "--vllm", str(staging)],
                              capture_output=True, text=True, env=_server_env(plugin), check=False)
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise ServerFailed("building the tiny Qwen3-Omni checkpoint failed:\n" + _tail(done.stderr + done.stdout))
        (staging / ".complete").write_text("")
        os.replace(staging, target)
        return target


@dataclass
class ServerSetup:
    """Everything one server run needs: env, plugin folder, checkpoint, deploy config, where to log."""

    env: server_env.ServerEnv
    plugin: Path
    model_dir: Path
    log_path: Path
    deploy_config: Path = DEPLOY_CONFIG
    extra_args: tuple[str, ...] = ()
    cpus: frozenset[int] | None = field(default_factory=lambda: server_cpus())  # None: wherever the OS puts it

    @classmethod
    def prepare(cls, log_path: Path) -> "ServerSetup":
        """Build (or find) the cached env, plugin and checkpoint."""
        env = server_env.ensure_env()
        plugin = server_env.plugin_dir(env)
        return cls(env, plugin, tiny_checkpoint(env, plugin), log_path)


@dataclass
class VllmOmniServer:
    """One `vllm serve --omni` process group; see the module docstring."""

    setup: ServerSetup
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started_in_s: float | None = None
    _seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def realtime_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def command(self) -> list[str]:
        """`vllm serve ... --omni`, started on `setup.cpus` (its every thread and child process inherits them)."""
        s = self.setup
        serve = [str(s.env.vllm), "serve", str(s.model_dir), "--omni", "--deploy-config", str(s.deploy_config),
                 "--served-model-name", SERVED_MODEL, "--host", "127.0.0.1", "--port", str(self.port), *s.extra_args]
        if s.cpus is None:
            return serve
        pin = "import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')}); os.execv(sys.argv[2], sys.argv[2:])"
        return [sys.executable, "-c", pin, ",".join(map(str, sorted(s.cpus))), *serve]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "VllmOmniServer":
        """Start the server and wait until `/v1/models` answers; raises ServerFailed with the log's tail."""
        environ = _server_env(self.setup.plugin)
        self.setup.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.setup.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=environ, start_new_session=True)
        try:
            self._wait_ready(started + timeout_s)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - started
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def models(self, timeout_s: float = 5.0) -> list[str]:
        """The served model names (`GET /v1/models`)."""
        import json

        with urllib.request.urlopen(f"{self.base_url}/models", timeout=timeout_s) as response:
            return [m["id"] for m in json.load(response)["data"]]

    def processes(self) -> list[psutil.Process]:
        """Every live process of this server: its process group and every descendant ever seen."""
        self._remember()
        return [p for p in self._seen.values() if _running(p)]

    def stop(self) -> None:
        """End every process this server started (process group first, then stragglers); idempotent."""
        if self.process is None:
            return
        self._remember()
        pgid = self.process.pid  # start_new_session: the group id is the leader's pid
        _signal_group(pgid, signal.SIGTERM)
        for proc in self._seen.values():
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and (self.process.poll() is None or self.leftover()):
            time.sleep(0.1)
        _signal_group(pgid, signal.SIGKILL)
        for proc in self._seen.values():
            _signal(proc, signal.SIGKILL)
        self.process.wait(timeout=10)
        psutil.wait_procs(list(self._seen.values()), timeout=10)

    def leftover(self) -> list[psutil.Process]:
        """Processes of this server still running (after `stop()`: must be empty)."""
        alive = [p for p in self._seen.values() if _running(p)]
        if self.process is not None:
            for proc in psutil.process_iter():
                try:
                    if os.getpgid(proc.pid) == self.process.pid and proc.pid not in self._seen and _running(proc):
                        alive.append(proc)
                except (ProcessLookupError, psutil.Error):
                    continue
        return alive

    def log_tail(self, lines: int = 60) -> str:
        try:
            return _tail(self.setup.log_path.read_text(errors="replace"), lines)
        except OSError:
            return "(no log)"

    def __enter__(self) -> "VllmOmniServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ internals

    def _wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise ServerFailed(f"vllm serve --omni exited with {self.process.returncode} before it answered; "
                                   f"log {self.setup.log_path}:\n{self.log_tail()}")
            self._remember()
            try:
                if SERVED_MODEL in self.models(timeout_s=2.0):
                    return
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise ServerFailed(f"vllm serve --omni did not answer /v1/models within the start timeout; "
                                   f"log {self.setup.log_path}:\n{self.log_tail()}")
            time.sleep(1.0)

    def _remember(self) -> None:
        """Note every current descendant, so that none escapes `stop()` by leaving the process group."""
        if self.process is None:
            return
        try:
            root = psutil.Process(self.process.pid)
            for proc in [root, *root.children(recursive=True)]:
                self._seen.setdefault(proc.pid, proc)
        except psutil.Error:
            pass


def server_cpus() -> frozenset[int] | None:
    """The CPUs the server may use: all this process may use but the lowest (None where there is only one)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    mine = sorted(os.sched_getaffinity(0))
    return frozenset(mine[1:]) if len(mine) > 1 else None


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(proc: psutil.Process, sig: int) -> None:
    try:
        if proc.is_running():
            proc.send_signal(sig)
    except psutil.Error:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _server_env(plugin: Path) -> dict[str, str]:
    """The environment of a server-env process: offline, our plugin (and its import fixes) on the path."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = str(plugin)
    environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                    "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"})
    for name in ("PYTHONHOME", "VIRTUAL_ENV"):  # the server env is its own venv
        environ.pop(name, None)
    return environ


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    """`python -m liveavatar.testing.vllm_omni.server [--log FILE]`: run the server until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "vllm-omni-server.log")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill PID` stops the server cleanly too
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    server = VllmOmniServer(ServerSetup.prepare(args.log), **({"port": args.port} if args.port else {}))
    try:
        server.start()
        print(f"serving {SERVED_MODEL} at {server.base_url} (ready in {server.started_in_s:.0f} s; log {args.log})",
              file=sys.stderr, flush=True)
        server.process.wait()  # type: ignore[union-attr]
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
