"""Turn-taking and barge-in parameters: the `turn_taking:` section of a persona YAML.

Defaults follow the best frameworks (see docs/conversation-anchors.md): speech must last 0.2 s to
open a user turn (pipecat `start_secs`), 0.6 s of silence ends it (pipecat's speech timeout, within
livekit's 0.5–3.0 s endpointing window), and barge-in pauses the avatar after 0.2 s of user speech,
resuming if no real turn follows within 2.0 s (livekit `false_interruption_timeout`). LiveKit waits
0.5 s before pausing; we pause sooner because a pause is undone by resuming, and users of avatar
frameworks complain most about avatars that keep talking over them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class TurnOptions(BaseModel):
    """When a user turn starts and ends, and how the avatar yields the floor."""

    model_config = ConfigDict(extra="forbid")
    vad_threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    """Speech probability (silero VAD) above which a 32 ms window counts as speech."""
    speech_start_s: Annotated[float, Field(ge=0.0, le=2.0)] = 0.2
    """Seconds of continuous speech before a user turn starts."""
    end_of_turn_silence_s: Annotated[float, Field(ge=0.1, le=5.0)] = 0.6
    """Seconds of silence after speech that end the user's turn."""
    question_end_silence_s: Annotated[float, Field(ge=0.1, le=5.0)] = 0.3
    """Seconds of silence that end a turn whose words so far end in a question mark (when the dialogue backend
    transcribes the user early, as the cascade does): questions are complete turns, so the reply comes sooner."""
    interruptions: bool = True
    """Whether the user may barge in while the avatar speaks."""
    interruption_min_speech_s: Annotated[float, Field(ge=0.0, le=3.0)] = 0.2
    """Seconds of user speech over the avatar before the avatar pauses."""
    false_interruption_timeout_s: Annotated[float, Field(ge=0.0, le=10.0)] = 2.0
    """After a pause: seconds to wait for a real user turn before the avatar resumes where it stopped."""
    resume_false_interruption: bool = True
    """Resume the paused reply after a false interruption (otherwise it is dropped)."""
    echo_guard_s: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    """With local speakers and no echo cancellation: ignore user speech this long after the avatar starts talking."""
