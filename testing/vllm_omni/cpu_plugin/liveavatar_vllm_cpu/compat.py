"""Import fixes for the CPU-only server env, applied in every server process (from `sitecustomize`).

PyPI's torchvision 0.28 is a CUDA build whose C operators cannot load here, yet its package import
registers fake/autograd kernels for those operators and fails; torchaudio 2.11's C extension does not
load with torch 2.13, yet vLLM-Omni imports torchaudio unconditionally. Neither C part is on the
serving path. An import hook makes exactly those steps non-fatal: the two torchvision registration
modules load empty when their operators are missing, and torchaudio's library loader reports "not
available" instead of raising. Nothing else is touched; no installed file is modified.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

# Modules whose execution may fail for want of torchvision's C operators: they then load empty.
OPTIONAL_REGISTRATIONS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")
TORCHAUDIO_LIB_LOADER = "torchaudio._extension.utils"


def _tolerant_load_lib(load_lib: Callable[[str], bool]) -> Callable[[str], bool]:
    def load(lib: str) -> bool:
        try:
            return load_lib(lib)
        except OSError:  # a C extension built for another torch: treated like one that is not there
            return False

    return load


class _FixingLoader(importlib.abc.Loader):
    """Runs the real loader, then applies this module's fix (or swallows its known failure)."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        if self._name in OPTIONAL_REGISTRATIONS:
            try:
                self._loader.exec_module(module)
            except RuntimeError as exc:
                if "does not exist" not in str(exc):
                    raise
            return
        self._loader.exec_module(module)
        if self._name == TORCHAUDIO_LIB_LOADER:
            module._load_lib = _tolerant_load_lib(module._load_lib)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the modules named above the usual way and hands them to `_FixingLoader`."""

    names = frozenset((*OPTIONAL_REGISTRATIONS, TORCHAUDIO_LIB_LOADER))

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _FixingLoader(spec.loader, fullname)
        return spec


def install() -> None:
    """Put the import hook first on `sys.meta_path` (once per process)."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
