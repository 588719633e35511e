"""Field types the config schemas share (personas, duet plans): even frame sizes, text that says something."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field


def even_pixels(value: int) -> int:
    """An even number of pixels (H.264 video needs one)."""
    if value % 2:
        raise ValueError(f"expected an even number of pixels (H.264 video needs one), got {value}")
    return value


def says_something(text: str) -> str:
    """Text with something besides spaces in it."""
    if not text.strip():
        raise ValueError(f"expected some text, got {'only spaces' if text else 'nothing'}")
    return text


FramePixels = Annotated[int, Field(ge=64, le=2048), AfterValidator(even_pixels)]
SomeText = Annotated[str, AfterValidator(says_something)]
