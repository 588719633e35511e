"""Persona and duet configs: typed schemas, paths relative to the YAML file, one clear error per mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.turn_options import TurnOptions
from agent.yamlfile import KeyPath, YamlError, dotted, line_of, load_yaml
from avatar import registry as avatar_registry
from dialogue import registry as dialogue_registry
from dialogue.speech.piper_tts import VoiceNotFound, voice_files
from dialogue.speech.voice import VoiceOptions

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ConfigError(ValueError):
    """A config mistake; `str()` is the message a user reads: file:line: key.path: what was expected."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Unchecked(BaseModel):
    """Stands in for backend options that could not be validated (the error is already recorded)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendChoice(_Strict):
    """A backend by name with its own options (validated by that backend's schema)."""

    backend: str
    options: dict[str, Any] = Field(default_factory=dict)


class DialogueChoice(BackendChoice):
    """`dialogue:` — which brain speaks for the persona."""

    backend: str = "scripted"


class AvatarChoice(BackendChoice):
    """`avatar:` — which generator animates the persona."""

    backend: str = "portrait"


class PersonaFile(_Strict):
    """The persona YAML as written."""

    name: Annotated[str, Field(min_length=1)]
    portrait: str
    """Path to a PNG or JPEG portrait, relative to the YAML file."""
    system_prompt: str = "You are a friendly, concise conversation partner. Answer in one or two sentences."
    voice: VoiceOptions = Field(default_factory=VoiceOptions)
    dialogue: DialogueChoice = Field(default_factory=DialogueChoice)
    avatar: AvatarChoice = Field(default_factory=AvatarChoice)
    turn_taking: TurnOptions = Field(default_factory=TurnOptions)


class Persona(BaseModel):
    """A validated persona: resolved paths, the portrait loaded, backend options parsed."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    source: Path
    name: str
    portrait_path: Path
    portrait: np.ndarray  # RGB uint8
    system_prompt: str
    voice: VoiceOptions
    dialogue_backend: str
    dialogue_options: BaseModel
    avatar_backend: str
    avatar_options: BaseModel
    turn_taking: TurnOptions

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the persona are resolved against."""
        return self.source.parent


class DuetFile(_Strict):
    """The duet YAML as written."""

    agents: Annotated[list[str], Field(min_length=2, max_length=2)]
    """The two persona files, relative to this YAML; the first one speaks first."""
    layout: Literal["side_by_side", "stacked"] = "side_by_side"
    size: tuple[Annotated[int, Field(ge=64, le=2048)], Annotated[int, Field(ge=64, le=2048)]] = (512, 512)
    """Each avatar's frame (width, height) in pixels."""
    fps: Annotated[float, Field(gt=0, le=60)] = 25.0
    audio_rate: Literal[16000, 22050, 24000, 32000, 44100, 48000] = 24000
    """Sample rate of the output audio in Hz."""
    opening: str | None = None
    """What the first agent hears before its first turn (as text), if anything."""
    max_turns: Annotated[int, Field(ge=1)] = 12
    """Stop after this many turns in all."""
    max_seconds: Annotated[float, Field(gt=0)] = 300.0
    """Stop the render at this length of video, in seconds."""
    turn_gap_s: Annotated[float, Field(ge=0, le=5)] = 0.4
    """Silence between one agent's last word and the other's first, in seconds."""
    lead_in_s: Annotated[float, Field(ge=0, le=10)] = 0.8
    """Idle video before the first turn, in seconds."""
    tail_s: Annotated[float, Field(ge=0, le=10)] = 1.0
    """Idle video after the last turn, in seconds."""
    captions: bool = True
    """Draw each agent's name under its video."""


class Duet(BaseModel):
    """A validated duet: both personas loaded."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    source: Path
    spec: DuetFile
    personas: tuple[Persona, Persona]


# ---------------------------------------------------------------------------------------------- loading


def load_persona(path: Path | str, check_face: bool = False) -> Persona:
    """Read and validate a persona YAML; `check_face` also locates the face in the portrait."""
    path = Path(path)
    data, lines = _read(path)
    spec = _validate(PersonaFile, data, path, lines, ())
    problems: list[str] = []
    portrait_path = (path.parent / spec.portrait).resolve()
    portrait = _read_image(portrait_path, path, lines, ("portrait",), problems)
    dialogue_options = _backend_options("dialogue", spec.dialogue, dialogue_registry, path, lines, problems)
    avatar_options = _backend_options("avatar", spec.avatar, avatar_registry, path, lines, problems)
    try:
        voice_files(spec.voice.model, path.parent)
    except VoiceNotFound as exc:
        problems.append(_where(path, lines, ("voice", "model")) + str(exc))
    if problems:
        raise ConfigError(problems)
    persona = Persona(
        source=path.resolve(), name=spec.name, portrait_path=portrait_path, portrait=portrait,
        system_prompt=spec.system_prompt, voice=spec.voice, dialogue_backend=spec.dialogue.backend,
        dialogue_options=dialogue_options, avatar_backend=spec.avatar.backend, avatar_options=avatar_options,
        turn_taking=spec.turn_taking,
    )  # fmt: skip
    if check_face and persona.avatar_backend == "portrait":
        from avatar.portrait.backend import NoFaceFound, locate_face

        try:
            locate_face(persona.portrait, persona.avatar_options, persona.portrait_path)  # type: ignore[arg-type]
        except (NoFaceFound, ValueError) as exc:
            raise ConfigError([_where(path, lines, ("portrait",)) + str(exc)]) from None
    return persona


def load_duet(path: Path | str, check_face: bool = False) -> Duet:
    """Read and validate a duet YAML and both of its personas."""
    path = Path(path)
    data, lines = _read(path)
    spec = _validate(DuetFile, data, path, lines, ())
    personas, problems = [], []
    for i, rel in enumerate(spec.agents):
        persona_path = path.parent / rel
        if not persona_path.is_file():
            problems.append(_where(path, lines, ("agents", i)) + f"persona file not found: {persona_path}")
            continue
        try:
            personas.append(load_persona(persona_path, check_face))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return Duet(source=path.resolve(), spec=spec, personas=(personas[0], personas[1]))


def load_any(path: Path | str, check_face: bool = True) -> Persona | Duet:
    """A persona or a duet, told apart by its keys (duets have `agents`)."""
    path = Path(path)
    data, _ = _read(path)
    if isinstance(data, dict) and "agents" in data:
        return load_duet(path, check_face)
    return load_persona(path, check_face)


# ---------------------------------------------------------------------------------------------- helpers


def _read(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    try:
        data, lines = load_yaml(path)
    except YamlError as exc:
        raise ConfigError([str(exc)]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping of keys (name: ..., portrait: ...), got {type(data).__name__}"])
    return data, lines


def _where(path: Path, lines: dict[KeyPath, int], at: KeyPath) -> str:
    line = line_of(lines, at)
    return f"{path}{f':{line}' if line else ''}: {dotted(at)}: "


def _validate(model: type[BaseModel], data: Any, path: Path, lines: dict[KeyPath, int], prefix: KeyPath) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_where(path, lines, prefix + tuple(e["loc"])) + _explain(e, model, prefix) for e in exc.errors()]) from None


_EXPECTED = {
    "float_parsing": "expected a number", "float_type": "expected a number",
    "int_parsing": "expected a whole number", "int_type": "expected a whole number", "int_from_float": "expected a whole number",
    "bool_parsing": "expected true or false", "bool_type": "expected true or false",
    "string_type": "expected text", "list_type": "expected a list", "tuple_type": "expected a list",
    "dict_type": "expected a mapping of keys", "model_type": "expected a mapping of keys",
}  # fmt: skip


def _explain(error: Any, model: type[BaseModel], prefix: KeyPath) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, tuple(error["loc"][:-1]))
        return f"unknown key{f'; expected one of: {allowed}' if allowed else ''}"
    if kind == "missing":
        return "required key is missing"
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {value!r}"
    if kind == "literal_error":
        return f"expected one of {error['ctx']['expected']}, got {value!r}"
    return f"{error['msg'][0].lower()}{error['msg'][1:]}" + (f", got {value!r}" if not isinstance(value, dict) else "")


def _allowed_keys(model: type[BaseModel], at: tuple) -> str:
    current: Any = model
    for part in at:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        current = field.annotation if field else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return ", ".join(current.model_fields)
    return ""


def _read_image(image_path: Path, path: Path, lines: dict[KeyPath, int], at: KeyPath, problems: list[str]) -> np.ndarray:
    where = _where(path, lines, at)
    if not image_path.is_file():
        problems.append(where + f"file not found: {image_path}")
        return np.zeros((1, 1, 3), np.uint8)
    if image_path.suffix.lower() not in IMAGE_SUFFIXES:
        problems.append(where + f"expected a PNG or JPEG image, got {image_path.name}")
        return np.zeros((1, 1, 3), np.uint8)
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        problems.append(where + f"cannot read {image_path} as an image (expected a PNG or JPEG file)")
        return np.zeros((1, 1, 3), np.uint8)
    if min(image.shape[:2]) < 64:
        problems.append(where + f"image is {image.shape[1]}×{image.shape[0]} pixels; expected at least 64×64")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _backend_options(section: str, choice: BackendChoice, registry: Any, path: Path, lines: dict[KeyPath, int], problems: list[str]) -> BaseModel:
    if choice.backend not in registry.BACKENDS:
        problems.append(_where(path, lines, (section, "backend")) + f"unknown backend {choice.backend!r}; expected one of: {', '.join(registry.BACKENDS)}")
        return _Unchecked()
    try:
        model = registry.options_model(choice.backend)
    except ImportError as exc:
        problems.append(_where(path, lines, (section, "backend")) + f"backend {choice.backend!r} is not installed: {exc}")
        return _Unchecked()
    try:
        return _validate(model, choice.options, path, lines, (section, "options"))
    except ConfigError as exc:
        problems.extend(exc.problems)
        return _Unchecked()
