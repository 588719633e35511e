"""Dialogue backends by name: each module exposes `Options` (a pydantic model) and `create(options, setup)`."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from liveavatar.dialogue.base import DialogueBackend
from liveavatar.media.plugins import BackendRegistry

# name -> module path; imported only when used.
BACKENDS: dict[str, str] = {
    "scripted": "liveavatar.dialogue.scripted",
    "omni_server": "liveavatar.dialogue.omni_server",
    "omni_realtime": "liveavatar.dialogue.omni_realtime",
    "omni_local": "liveavatar.dialogue.omni_local",
    "cascade": "liveavatar.dialogue.cascade",
}
REGISTRY = BackendRegistry("dialogue", BACKENDS)


@dataclass(frozen=True)
class DialogueSetup:
    """What every backend gets besides its own options: who it speaks as."""

    name: str
    system_prompt: str
    voice: Any = None  # dialogue.tts.VoiceOptions for backends that synthesize speech locally
    base_dir: Path = field(default_factory=Path.cwd)  # the persona file's folder, for relative paths
    shared: Any = None  # media.plugins.SharedModels: models loaded once for every session of a server (None: load own)
    executor: Executor | None = None  # where blocking work (ASR, LLM, TTS) runs; None: the event loop's default


def options_model(backend: str) -> type[BaseModel]:
    """The pydantic model that validates `dialogue.options` for `backend`."""
    return REGISTRY.options_model(backend)


def looks_at_camera(backend: str) -> bool:
    """Whether the named backend takes the webcam's frames (its module's LOOKS_AT_CAMERA; False where absent), so a
    page asks for the camera only when someone looks at it."""
    return bool(getattr(REGISTRY.module(backend), "LOOKS_AT_CAMERA", False))


def create_dialogue(backend: str, options: BaseModel | dict[str, Any], setup: DialogueSetup) -> DialogueBackend:
    """Build the named dialogue backend."""
    return REGISTRY.create(backend, options, setup)
