"""The `portrait` avatar backend: options from the persona YAML, and the factory the registry calls."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from liveavatar.avatar.portrait.framing import Framing, frame_portrait
from liveavatar.avatar.portrait.generator import PortraitAvatar
from liveavatar.avatar.portrait.landmarks import detect_faces, face_mesh
from liveavatar.avatar.portrait.layout import FaceLayout, layout_from_mesh, layout_from_points
from liveavatar.avatar.portrait.rig import PortraitRig
from liveavatar.avatar.registry import AvatarSetup

Point = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=2, max_length=2)]

FACE_HINT = """give the eye and mouth positions by hand in the persona YAML, in pixels of the portrait image:
  avatar:
    options:
      face:
        eyes: [[x, y], [x, y]]    # centres of the two eyes
        mouth: [[x, y], [x, y]]   # the two mouth corners"""


class NoFaceFound(ValueError):
    """The portrait has no face the detector can find."""


class FacePointOutside(ValueError):
    """A hand-given face point lies outside the portrait; `key` names it, e.g. ("eyes", 0)."""

    def __init__(self, message: str, key: tuple[str, int]) -> None:
        super().__init__(message)
        self.key = key


class FaceHint(BaseModel):
    """Eye centres and mouth corners in portrait pixels, for photos the detector cannot read."""

    model_config = ConfigDict(extra="forbid")
    eyes: Annotated[list[Point], Field(min_length=2, max_length=2)]
    mouth: Annotated[list[Point], Field(min_length=2, max_length=2)]


class Options(BaseModel):
    """`avatar.options` for `backend: portrait`."""

    model_config = ConfigDict(extra="forbid")
    face: FaceHint | None = None
    """Hand-given face positions; when absent the face is found automatically."""
    framing: Framing = "auto"
    """"auto" crops around the face like a video call; "full" shows the whole photo."""
    face_width: Annotated[float, Field(gt=0.1, le=1.0)] = 0.4
    """With auto framing: the face's width as a fraction of the frame's width."""
    head_motion: Annotated[float, Field(ge=0.0, le=3.0)] = 1.0
    """Scale of idle and talking head motion (0 = head still; blinks go on)."""
    mouth_gain: Annotated[float, Field(gt=0.0, le=2.0)] = 1.0
    """Scale of lip movement."""
    blink_interval_s: tuple[Annotated[float, Field(gt=0.2)], Annotated[float, Field(gt=0.2)]] = (2.0, 5.0)
    """Seconds between blinks: drawn uniformly between these two values."""


def locate_face(image: np.ndarray, options: Options, source: Path) -> tuple[FaceLayout, tuple[float, float, float, float]]:
    """The face layout and face box in portrait pixels; raises NoFaceFound with the manual-positions hint."""
    if options.face is not None:
        _check_inside(options.face, image.shape[1], image.shape[0])
        layout = layout_from_points([tuple(p) for p in options.face.eyes], [tuple(p) for p in options.face.mouth])  # type: ignore[misc]
    else:
        faces = detect_faces(image)
        points = face_mesh(image, faces[0]) if faces else None
        if points is None:
            raise NoFaceFound(f"no face found in {source}; {FACE_HINT}")
        layout = layout_from_mesh(points)
    (cx, cy), (hw, hh) = layout.face_centre, layout.face_half_size
    return layout, (cx - hw, cy - hh, cx + hw, cy + hh)


def _check_inside(face: FaceHint, width: int, height: int) -> None:
    for part in ("eyes", "mouth"):
        for i, (x, y) in enumerate(getattr(face, part)):
            if not (0 <= x < width and 0 <= y < height):
                raise FacePointOutside(f"the point ({x:g}, {y:g}) is outside the {width}×{height} portrait", (part, i))


def create(options: Options, setup: AvatarSetup) -> PortraitAvatar:
    """Build a portrait avatar for the persona's photo (its face located once per server when `setup.shared` is given)."""
    locate = lambda: locate_face(setup.portrait, options, setup.portrait_path)  # noqa: E731
    if setup.shared is None:
        layout, box = locate()
    else:
        key = ("portrait-face", str(setup.portrait_path), options.face.model_dump_json() if options.face else None)
        layout, box = setup.shared.get(key, locate)
    framed, scale, offset = frame_portrait(setup.portrait, box, setup.size, options.face_width, options.framing)
    rig = PortraitRig(framed, layout.transformed(scale, offset))
    return PortraitAvatar(
        rig,
        fps=setup.fps,
        audio_rate=setup.audio_rate,
        underrun=setup.underrun,
        seed=setup.seed,
        head_motion=options.head_motion,
        mouth_gain=options.mouth_gain,
        blink_interval_s=options.blink_interval_s,
    )
