"""Backends chosen by name in a YAML file, each a module imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class BackendRegistry:
    """Maps backend names to modules that expose `Options` (a pydantic model) and `create(options, setup)`."""

    def __init__(self, kind: str, modules: dict[str, str]) -> None:
        self.kind = kind
        self.modules = modules

    def module(self, name: str) -> Any:
        """The backend's module (imported now); KeyError names the known backends."""
        if name not in self.modules:
            raise KeyError(f"unknown {self.kind} backend {name!r}; expected one of: {', '.join(self.modules)}")
        return importlib.import_module(self.modules[name])

    def options_model(self, name: str) -> type[BaseModel]:
        """The pydantic model that validates the backend's `options`."""
        return self.module(name).Options

    def create(self, name: str, options: BaseModel | dict[str, Any], setup: Any) -> Any:
        """Build the named backend from its options (a model or a plain dict) and the shared setup."""
        module = self.module(name)
        if isinstance(options, dict):
            options = module.Options(**options)
        return module.create(options, setup)


class SharedModels:
    """Loaded models kept by key and handed to every backend that asks for the same one (one server, many sessions).

    `get(key, load)` loads once, under a lock, and returns the same object ever after; only models that are safe to
    call from several conversations at once belong here (read-only weights, thread-safe runtimes).
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._models: dict[Any, Any] = {}

    def get(self, key: Any, load: Callable[[], T]) -> T:
        """The model under `key`, loading it with `load()` the first time."""
        with self._lock:
            if key not in self._models:
                self._models[key] = load()
            return self._models[key]

    def __len__(self) -> int:
        return len(self._models)
