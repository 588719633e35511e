"""YAML files read with the line of every key, so config errors can point at the exact place.

Files come from other people (`liveavatar check` is what one runs on them), so the document is
bounded before any Python object is built: the file's size, the nesting depth, the number of
aliases, and the number of values the aliases expand to (a "billion laughs" file is a few hundred
bytes that would expand to a billion strings). Each limit is named in the message that enforces it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from liveavatar.agent.files import file_problem

KeyPath = tuple[str | int, ...]

MAX_FILE_BYTES = 1024 * 1024
"""A persona or duet file is a few kB; 1 MiB leaves room for very long scripts."""
MAX_DEPTH = 64
"""Nesting levels of lists and mappings (persona files use five or six)."""
MAX_ALIASES = 100
"""`*name` references in one file."""
MAX_VALUES = 100_000
"""Scalars, lists and mappings in the document once aliases are expanded."""


class YamlError(ValueError):
    """A YAML file that cannot be read or parsed; the message names the file and line."""


class _OverLimit(yaml.YAMLError):
    """A limit was reached while composing; carries where and which."""

    def __init__(self, mark: yaml.Mark | None, problem: str) -> None:
        super().__init__(problem)
        self.problem_mark = mark
        self.problem = problem


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents nested too deeply or with too many aliases while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:  # noqa: D102 - PyYAML's hook
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _OverLimit(self.peek_event().start_mark, f"more than {MAX_ALIASES} aliases (*name) in one file (the limit)")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _OverLimit(self.peek_event().start_mark, f"nested more than {MAX_DEPTH} levels deep (the limit)")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:  # noqa: D102 - PyYAML's hook
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:  # 2024-13-45 has the shape of a date but is none
            raise yaml.constructor.ConstructorError(None, None, f"{node.value} is not a date ({exc}); quote it if it is text", node.start_mark) from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", _BoundedLoader.construct_yaml_timestamp)


def load_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """The parsed document and a map from key path to 1-based line number."""
    text = _read_text(path)
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _check_expansion(node)
        lines: dict[KeyPath, int] = {}
        _walk(node, (), lines, path)
        return loader.construct_document(node), lines
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise YamlError(f"{path}:{line}: not valid YAML: the control character U+{exc.character:04X} is not allowed") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlError(f"{where}: not valid YAML: {problem}" if not isinstance(exc, _OverLimit) else f"{where}: {problem}") from None
    except YamlError:
        raise
    except (ValueError, OverflowError) as exc:  # a value PyYAML recognizes but cannot build, e.g. the date 2024-13-45
        raise YamlError(f"{path}: not valid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_text(path: Path) -> str:
    """The file as text, refusing folders, devices, files over MAX_FILE_BYTES and bytes that are not UTF-8."""
    problem = file_problem(path, "a YAML file")
    if problem is not None:
        raise YamlError(problem)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
            if len(raw) > MAX_FILE_BYTES:
                size = max(path.stat().st_size, len(raw))
                raise YamlError(f"{path}: the file is {size / 2**20:.1f} MiB; the limit for a YAML file is {MAX_FILE_BYTES // 2**20} MiB")
    except OSError as exc:
        raise YamlError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} in column {column}); save the file as UTF-8") from None


def _check_expansion(root: yaml.Node) -> None:
    """Refuse recursive aliases, and documents that, once aliases are expanded, nest deeper than MAX_DEPTH or
    hold more than MAX_VALUES values (counted on the node graph, never built)."""
    measured: dict[int, tuple[int, int]] = {}  # node -> (values, levels) of its expansion
    open_nodes: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in open_nodes:
            raise _OverLimit(node.start_mark, "an alias refers to a list or mapping that contains it (a recursive alias)")
        if key not in measured:
            if depth > MAX_DEPTH:
                raise _OverLimit(node.start_mark, f"aliases nest this more than {MAX_DEPTH} levels deep (the limit)")
            open_nodes.add(key)
            if isinstance(node, yaml.MappingNode):
                children = [measure(n, depth + 1) for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = [measure(n, depth + 1) for n in node.value]
            else:
                children = []
            open_nodes.discard(key)
            values = 1 + sum(c[0] for c in children)
            if values > MAX_VALUES:
                raise _OverLimit(node.start_mark, f"aliases expand this to more than {MAX_VALUES:,} values (the limit)")
            measured[key] = (values, 1 + max((c[1] for c in children), default=0))
        values, levels = measured[key]
        if depth + levels - 1 > MAX_DEPTH:
            raise _OverLimit(node.start_mark, f"aliases nest this more than {MAX_DEPTH} levels deep (the limit)")
        return values, levels

    measure(root, 1)


def _walk(node: yaml.Node, at: KeyPath, lines: dict[KeyPath, int], path: Path) -> None:
    lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(f"{path}:{key_node.start_mark.line + 1}: {_dotted(at)}: a key must be a name, not a list or mapping")
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
