"""Command-line values checked before any work starts: each mistake is one usage line naming the flag.

The `type=` functions check one value as argparse reads it; `check_usage` checks what needs several
flags or the machine (a port already taken, a file to be written). Both run before a model is loaded
or a file is created.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import socket
from pathlib import Path

from liveavatar.agent.files import file_problem, is_folder
from liveavatar.devices.sources import sound_file_problem

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class UsageError(ValueError):
    """A command-line value that cannot work; `flag` is the option it belongs to."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(message)
        self.flag = flag


def positive_seconds(text: str) -> float:
    """A finite number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def whole_at_least(low: int):  # noqa: ANN201 - an argparse type
    """A whole number of at least `low`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {low}, got {text!r}")
        return value

    return parse


def frame_pixels(text: str) -> int:
    """An avatar frame side: even (H.264 needs it), 64 to 2048 pixels."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value % 2 or not 64 <= value <= 2048:
        raise argparse.ArgumentTypeError(f"expected an even number of pixels from 64 to 2048, got {text!r}")
    return value


def port_number(text: str) -> int:
    """A TCP port (0 picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return value


def secret(text: str) -> str:
    """A token the page must present: something to keep secret, not an empty string."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a secret (any text you will share with the page), got nothing")
    return text


def mp4_file(text: str) -> Path:
    """An .mp4 file that can be written (its folder is created if missing)."""
    path = Path(text)
    if is_folder(path):
        raise argparse.ArgumentTypeError(f"{path} is a folder; expected an .mp4 file name")
    if path.suffix.lower() != ".mp4":
        raise argparse.ArgumentTypeError(f"expected a file name ending in .mp4, got {path}")
    _check_writable(path)
    return path


def output_file(text: str) -> Path:
    """A file that can be written or appended to (its folder is created if missing)."""
    path = Path(text)
    if is_folder(path):
        raise argparse.ArgumentTypeError(f"{path} is a folder; expected a file name")
    _check_writable(path)
    return path


def audio_file(text: str) -> Path:
    """A sound file that exists and whose header can be read."""
    path = Path(text)
    problem = file_problem(path, "a WAV file")
    if problem is not None:
        raise argparse.ArgumentTypeError(f"cannot read {path}: file not found" if problem.startswith("file not found") else problem)
    problem = sound_file_problem(path)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return path


def _check_writable(path: Path) -> None:
    try:
        _check_writable_folder(path)
    except OSError as exc:  # a name too long, a loop of links, ...
        raise argparse.ArgumentTypeError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_writable_folder(path: Path) -> None:
    if path.exists():
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"cannot write {path}: permission denied")
        return
    folder = path.parent
    while not folder.exists():  # missing folders are created: the nearest existing one must take them
        folder = folder.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write in {folder}: it is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {folder}")


def ice_server(text: str):  # noqa: ANN201 - a devices.browser.webrtc.IceServer
    """A STUN or TURN server URL (--ice-server)."""
    from liveavatar.devices.browser.webrtc import parse_ice_server

    try:
        return parse_ice_server(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_usage(args: argparse.Namespace) -> None:
    """Checks that need several flags or the machine; raises UsageError."""
    if getattr(args, "out", None) is not None:
        if args.command == "chat" and not args.wav:
            raise UsageError("--out", "records only with --wav")
        if args.command == "duet" and args.browser:
            raise UsageError("--out", "records only without --browser (a rendered duet, or a live one with --wav)")
    if getattr(args, "browser", False) or args.command == "serve":
        if args.host not in LOOPBACK and not args.token:
            raise UsageError("--host", f"{args.host} makes the page reachable from other machines; give a --token too")
        _check_listen(args.host, args.port)


def _check_listen(host: str, port: int) -> None:
    """The page's address can be listened on (it is released at once; the server binds it again)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise UsageError("--host", f"unknown host name {host!r}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no obstacle
        try:
            probe.bind(address)
        except OSError as exc:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                raise UsageError("--port", f"{where} is already in use; choose another --port") from None
            if exc.errno == errno.EACCES:
                raise UsageError("--port", f"cannot listen on {where}: permission denied (ports below 1024 need root)") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UsageError("--host", f"{host} is not an address of this machine") from None
            raise UsageError("--port", f"cannot listen on {where}: {exc.strerror or exc}") from None
