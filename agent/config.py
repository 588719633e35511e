"""Persona and duet configs: typed schemas, paths relative to the YAML file, one clear error per mistake."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from liveavatar.agent.duet_plan import DuetPlan
from liveavatar.agent.fields import SomeText
from liveavatar.agent.files import file_problem
from liveavatar.agent.turn_options import TurnOptions
from liveavatar.agent.yamlfile import KeyPath, YamlError, dotted, line_of, load_yaml
from liveavatar.avatar import registry as avatar_registry
from liveavatar.dialogue import registry as dialogue_registry
from liveavatar.dialogue.speech.piper_tts import VoiceNotFound, load_voice, voice_files
from liveavatar.dialogue.speech.voice import VoiceOptions
from liveavatar.media.images import MAX_IMAGE_BYTES, ImageError, NotAnImage, decode_image

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

    name: SomeText
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

    @property
    def looks_at_camera(self) -> bool:
        """Whether this persona's dialogue takes the webcam's frames (pages ask for the camera only then)."""
        return dialogue_registry.looks_at_camera(self.dialogue_backend)

    def __eq__(self, other: object) -> bool:
        """Personas are compared by identity (field by field would compare portrait arrays, which has no truth value)."""
        return self is other

    __hash__ = object.__hash__


class DuetFile(DuetPlan):
    """The duet YAML as written: the plan and the two persona files."""

    agents: Annotated[list[str], Field(min_length=2, max_length=2)]
    """The two persona files, relative to this YAML; the first one speaks first."""


class Duet(BaseModel):
    """A validated duet: both personas loaded."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    source: Path
    spec: DuetFile
    personas: tuple[Persona, Persona]

    @property
    def plan(self) -> DuetPlan:
        """How the two agents talk (the file's settings)."""
        return self.spec


# ---------------------------------------------------------------------------------------------- loading


def load_persona(path: Path | str, check_face: bool = False) -> Persona:
    """Read and validate a persona YAML; `check_face` also locates the face in the portrait."""
    path = Path(path)
    data, lines = _read(path)
    if _is_duet(data):
        raise ConfigError([f"{path}: a duet file (it lists agents:); expected a persona file here — play a duet with `liveavatar duet {path}`"])
    spec = _validate(PersonaFile, data, path, lines, ())
    problems: list[str] = []
    portrait_path = (path.parent / spec.portrait).resolve()
    portrait = _read_image(portrait_path, path, lines, ("portrait",), problems)
    dialogue_options = _backend_options("dialogue", spec.dialogue, dialogue_registry, path, lines, problems)
    avatar_options = _backend_options("avatar", spec.avatar, avatar_registry, path, lines, problems)
    try:
        model, config = voice_files(spec.voice.model, path.parent)
        if check_face:  # a thorough check: the voice must load, not merely exist (the run loads it the same way)
            load_voice(model, config)
    except VoiceNotFound as exc:
        problems.append(_where(path, lines, ("voice", "model")) + str(exc))
    except Exception as exc:  # noqa: BLE001 - Piper and onnx raise many kinds of error for a file that is not a voice
        problems.append(_where(path, lines, ("voice", "model")) + f"cannot load {spec.voice.model} as a Piper voice: "
                        + (" ".join(str(exc).split())[:200] or type(exc).__name__))  # fmt: skip
    if problems:
        raise ConfigError(problems)
    persona = Persona(
        source=path.resolve(), name=spec.name, portrait_path=portrait_path, portrait=portrait,
        system_prompt=spec.system_prompt, voice=spec.voice, dialogue_backend=spec.dialogue.backend,
        dialogue_options=dialogue_options, avatar_backend=spec.avatar.backend, avatar_options=avatar_options,
        turn_taking=spec.turn_taking,
    )  # fmt: skip
    if check_face and persona.avatar_backend == "portrait":
        from liveavatar.avatar.portrait.backend import FacePointOutside, NoFaceFound, locate_face

        try:
            locate_face(persona.portrait, persona.avatar_options, persona.portrait_path)  # type: ignore[arg-type]
        except FacePointOutside as exc:
            raise ConfigError([_where(path, lines, ("avatar", "options", "face", *exc.key)) + str(exc)]) from None
        except (NoFaceFound, ValueError) as exc:
            at = ("avatar", "options", "face") if persona.avatar_options.face is not None else ("portrait",)  # type: ignore[attr-defined]
            raise ConfigError([_where(path, lines, at) + str(exc)]) from None
    return persona


def load_duet(path: Path | str, check_face: bool = False) -> Duet:
    """Read and validate a duet YAML and both of its personas."""
    path = Path(path)
    data, lines = _read(path)
    if not _is_duet(data) and "name" in data:
        raise ConfigError([f"{path}: a persona file; expected a duet file with `agents: [first.yaml, second.yaml]` — "
                           f"talk with one persona using `liveavatar chat {path}`"])  # fmt: skip
    spec = _validate(DuetFile, data, path, lines, ())
    personas, problems = [], []
    for i, rel in enumerate(spec.agents):
        persona_path, where = path.parent / rel, _where(path, lines, ("agents", i))
        problem = file_problem(persona_path, "a persona file")
        if problem is not None:
            problems.append(where + problem.replace("file not found", "persona file not found"))
            continue
        if persona_path.resolve() == path.resolve():
            problems.append(where + f"{rel} is this duet file; expected a persona file")
            continue
        try:
            if _is_duet(_read(persona_path)[0]):
                problems.append(where + f"{persona_path} is a duet file; expected a persona file")
                continue
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
    if _is_duet(data):
        return load_duet(path, check_face)
    return load_persona(path, check_face)


# ---------------------------------------------------------------------------------------------- helpers


def _is_duet(data: dict[str, Any]) -> bool:
    """Duet files are told from persona files by their `agents` key."""
    return "agents" in data


def _read(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    try:
        data, lines = load_yaml(path)
    except YamlError as exc:
        raise ConfigError([str(exc)]) from None
    if data is None:
        raise ConfigError([f"{path}: the file is empty; expected a mapping of keys (name: ..., portrait: ...)"])
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping of keys (name: ..., portrait: ...), got {type(data).__name__}"])
    return data, lines


def _where(path: Path, lines: dict[KeyPath, int], at: KeyPath) -> str:
    line = line_of(lines, at)
    return f"{path}{f':{line}' if line else ''}: {dotted(at)}: "


def _validate(model: type[BaseModel], data: Any, path: Path, lines: dict[KeyPath, int], prefix: KeyPath) -> Any:
    not_finite = list(_not_finite(data, prefix))
    if not_finite:  # no setting of any backend takes NaN or an infinity (`.nan`, `.inf` in YAML)
        raise ConfigError([_where(path, lines, at) + f"expected a finite number, got {value}" for at, value in not_finite])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_where(path, lines, prefix + tuple(e["loc"])) + _explain(e, model, prefix) for e in exc.errors()]) from None


def _not_finite(data: Any, at: KeyPath) -> Iterator[tuple[KeyPath, float]]:
    """Key paths of the NaN and infinite numbers in `data`."""
    if isinstance(data, float) and not math.isfinite(data):
        yield at, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _not_finite(value, at + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _not_finite(value, at + (i,))


_EXPECTED = {
    "float_parsing": "expected a number", "float_type": "expected a number",
    "int_parsing": "expected a whole number", "int_type": "expected a whole number", "int_from_float": "expected a whole number",
    "bool_parsing": "expected true or false", "bool_type": "expected true or false",
    "string_type": "expected text", "list_type": "expected a list", "tuple_type": "expected a list",
    "dict_type": "expected a mapping of keys", "model_type": "expected a mapping of keys",
    "finite_number": "expected a finite number",
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
    if kind == "value_error" and "error" in error.get("ctx", {}):  # our own validators write whole messages
        return str(error["ctx"]["error"])
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
    """The portrait, size-checked from its header before its pixels are decoded."""
    where = _where(path, lines, at)
    nothing = np.zeros((1, 1, 3), np.uint8)
    problem = file_problem(image_path, "a PNG or JPEG file")
    if problem is not None:
        problems.append(where + problem)
        return nothing
    if image_path.suffix.lower() not in IMAGE_SUFFIXES:
        problems.append(where + f"expected a PNG or JPEG image, got {image_path.name}")
        return nothing
    try:
        if image_path.stat().st_size > MAX_IMAGE_BYTES:
            raise ImageError(f"the file is {image_path.stat().st_size / 2**20:.0f} MiB; the limit for an image is {MAX_IMAGE_BYTES // 2**20} MiB")
        image = decode_image(image_path.read_bytes())
    except OSError as exc:
        problems.append(where + f"cannot read {image_path}: {exc.strerror or exc}")
        return nothing
    except NotAnImage:
        problems.append(where + f"cannot read {image_path} as an image (expected a PNG or JPEG file)")
        return nothing
    except ImageError as exc:
        problems.append(where + f"{image_path}: {exc}")
        return nothing
    if min(image.shape[:2]) < 64:
        problems.append(where + f"image is {image.shape[1]}×{image.shape[0]} pixels; expected at least 64×64")
    return image


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
