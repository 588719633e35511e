"""What is wrong with a path a user gave, in words, without ever raising (too long, a folder, a device, ...)."""

from __future__ import annotations

import stat
from pathlib import Path


def file_problem(path: Path, expected: str) -> str | None:
    """None when `path` is a regular file; otherwise the problem, naming the path and `expected` (e.g. "a YAML file")."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"file not found: {path}"
    except OSError as exc:  # a name too long, a loop of links, no permission to look, ...
        return f"cannot open {path}: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return f"{path} is a folder; expected {expected}"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file; expected {expected}"
    return None


def is_folder(path: Path) -> bool:
    """True when `path` is a folder (False for anything that cannot be looked at)."""
    try:
        return path.is_dir()
    except OSError:
        return False
