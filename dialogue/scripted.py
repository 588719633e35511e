"""The `scripted` dialogue backend: the persona's own lines, one per turn, spoken through local TTS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from dialogue.base import DialogueBackend, ReplyEvent, TextDelta, UserTurn
from dialogue.registry import DialogueSetup
from dialogue.speech.piper_tts import PiperTTS
from dialogue.speech.voice import VoiceOptions


class Options(BaseModel):
    """`dialogue.options` for `backend: scripted`."""

    model_config = ConfigDict(extra="forbid")
    lines: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    """What the persona says, one entry per turn, in order."""
    repeat: bool = False
    """Start again from the first line after the last one (otherwise the persona falls silent)."""


class ScriptedDialogue(DialogueBackend):
    """Replies with the next scripted line whatever was said; keeps the heard history."""

    def __init__(self, options: Options, tts: PiperTTS) -> None:
        self.options = options
        self.tts = tts
        self.history: list[tuple[str, str]] = []  # (role, text): "user" / "assistant"
        self._next = 0

    @property
    def exhausted(self) -> bool:
        """True when every line has been said and the script does not repeat."""
        return self._next >= len(self.options.lines) and not self.options.repeat

    async def reply(self, turn: UserTurn) -> AsyncIterator[ReplyEvent]:
        """The next line: its text first, then its speech sentence by sentence (nothing when exhausted)."""
        if turn.text:
            self.history.append(("user", turn.text))
        if self.exhausted:
            return
        line = self.options.lines[self._next % len(self.options.lines)]
        self._next += 1
        self.history.append(("assistant", line))
        yield TextDelta(line)
        async for chunk in self.tts.stream(line):
            yield chunk

    def record_played(self, text: str) -> None:
        """Keep only what was heard of the last line."""
        if self.history and self.history[-1][0] == "assistant":
            self.history[-1] = ("assistant", text)


def create(options: Options, setup: DialogueSetup) -> ScriptedDialogue:
    """Build the scripted backend with the persona's voice."""
    voice = setup.voice if isinstance(setup.voice, VoiceOptions) else VoiceOptions()
    return ScriptedDialogue(options, PiperTTS(voice, setup.base_dir))
