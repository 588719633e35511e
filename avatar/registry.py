"""Avatar backends by name: each module exposes `Options` (a pydantic model) and `create(options, setup)`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from liveavatar.avatar.base import AvatarGenerator, Underrun
from liveavatar.media.plugins import BackendRegistry

# name -> module path; modules are imported only when that backend is used (torch stays unimported).
BACKENDS: dict[str, str] = {
    "portrait": "liveavatar.avatar.portrait.backend",
    "liveavatar": "liveavatar.avatar.liveavatar.backend",
}
REGISTRY = BackendRegistry("avatar", BACKENDS)


@dataclass(frozen=True)
class AvatarSetup:
    """What every backend gets besides its own options: the persona's portrait and the stream format."""

    portrait: np.ndarray  # RGB uint8, H×W×3, as loaded from the persona's portrait file
    portrait_path: Path
    fps: float = 25.0
    size: tuple[int, int] = (512, 512)  # (width, height) in pixels
    audio_rate: int = 24000
    underrun: Underrun = "silence"
    seed: int = 0
    shared: Any = None  # media.plugins.SharedModels: what a server's sessions share (None: compute it here)


def options_model(backend: str) -> type[BaseModel]:
    """The pydantic model that validates `avatar.options` for `backend`."""
    return REGISTRY.options_model(backend)


def create_avatar(backend: str, options: BaseModel | dict[str, Any], setup: AvatarSetup) -> AvatarGenerator:
    """Build the named backend's generator."""
    return REGISTRY.create(backend, options, setup)
