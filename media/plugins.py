"""Backends chosen by name in a YAML file, each a module imported only when used."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel


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
