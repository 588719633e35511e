"""The duet plan: how two agents talk on their own, read from the duet YAML and used alike live and offline."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from liveavatar.agent.fields import FramePixels, SomeText

Layout = Literal["side_by_side", "stacked"]


class DuetPlan(BaseModel):
    """The picture (layout, size, captions), the first turn, the pause between turns and when to stop.

    The same plan drives `liveavatar duet --out` (rendered on a frame clock) and the live duet
    (`--browser`, `--wav`): both share turn order, history, limits, layout and captions.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    layout: Layout = "side_by_side"
    size: tuple[FramePixels, FramePixels] = (512, 512)
    """Each avatar's frame (width, height) in pixels; even, as H.264 video needs."""
    fps: Annotated[float, Field(ge=1, le=60)] = 25.0
    audio_rate: Literal[16000, 22050, 24000, 32000, 44100, 48000] = 24000
    """Sample rate of the output audio in Hz."""
    opening: SomeText | None = None
    """What the first agent hears before its first turn (as text), if anything."""
    max_turns: Annotated[int, Field(ge=1)] = 12
    """Stop after this many agent turns in all (answers to the person not counted)."""
    max_seconds: Annotated[float, Field(gt=0)] = 300.0
    """Stop at this length of video, in seconds."""
    turn_gap_s: Annotated[float, Field(ge=0, le=5)] = 0.4
    """Silence between one agent's last word and the other's first, in seconds."""
    lead_in_s: Annotated[float, Field(ge=0, le=10)] = 0.8
    """Idle video before the first turn, in seconds."""
    tail_s: Annotated[float, Field(ge=0, le=10)] = 1.0
    """Idle video after the last turn, in seconds."""
    captions: bool = True
    """Draw each agent's name under its video."""
