"""YAML files read with the line of every key, so config errors can point at the exact place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]


class YamlError(ValueError):
    """A YAML file that cannot be read or parsed; the message names the file and line."""


def load_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """The parsed document and a map from key path to 1-based line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlError(f"{path}: cannot read: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlError(f"{where}: not valid YAML: {problem}") from None
    if node is None:
        return None, {}
    lines: dict[KeyPath, int] = {}
    _walk(node, (), lines, path)
    return yaml.safe_load(text), lines


def _walk(node: yaml.Node, at: KeyPath, lines: dict[KeyPath, int], path: Path) -> None:
    lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise YamlError(f"{path}:{key_node.start_mark.line + 1}: {_dotted(at + (key,))}: key appears twice")
            seen.add(key)
            lines[at + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, at + (key,), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, at + (i,), lines, path)


def _dotted(at: KeyPath) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def dotted(at: KeyPath) -> str:
    """A key path as written in messages: avatar.options.face.eyes[0]."""
    return _dotted(at)


def line_of(lines: dict[KeyPath, int], at: KeyPath) -> int | None:
    """The line of the deepest known prefix of `at` (None when only the document itself is known)."""
    for cut in range(len(at), 0, -1):
        if at[:cut] in lines:
            return lines[at[:cut]]
    return None
