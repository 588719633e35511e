"""The `scripted` dialogue backend: the persona's own lines, one per turn, spoken through local TTS."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from liveavatar.dialogue.base import DialogueBackend, ReplyEvent, TextDelta, UserTurn
from liveavatar.dialogue.registry import DialogueSetup
from liveavatar.dialogue.speech.piper_tts import PiperTTS
from liveavatar.dialogue.speech.sentences import split_sentences
from liveavatar.dialogue.speech.voice import VoiceOptions


HISTORY_KEPT = 64  # history entries remembered (each holds its turn, audio included)


def _speakable(line: str) -> str:
    """A scripted line must have a word to speak; a blank one would silently skip the persona's turn."""
    if not line.strip():
        raise ValueError(f"a line must say something; got {'only spaces' if line else 'an empty line'}")
    if not re.search(r"\w", line):
        raise ValueError(f"a line must say something; {line.strip()!r} has no word to speak")
    return line


class Options(BaseModel):
    """`dialogue.options` for `backend: scripted`."""

    model_config = ConfigDict(extra="forbid")
    lines: Annotated[list[Annotated[str, AfterValidator(_speakable)]], Field(min_length=1)]
    """What the persona says, one entry per turn, in order."""
    repeat: bool = False
    """Start again from the first line after the last one (otherwise the persona falls silent)."""


class ScriptedDialogue(DialogueBackend):
    """Replies with the next scripted line whatever was said; keeps the heard history."""

    def __init__(self, options: Options, tts: PiperTTS) -> None:
        self.options = options
        self.tts = tts
        self._entries: list[tuple[UserTurn | None, str, str]] = []  # (turn answered, role, text), the last HISTORY_KEPT
        self._next = 0

    @property
    def history(self) -> list[tuple[str, str]]:
        """(role, text) pairs: "user" / "assistant", oldest first."""
        return [(role, text) for _, role, text in self._entries]

    @property
    def exhausted(self) -> bool:
        """True when every line has been said and the script does not repeat."""
        return self._next >= len(self.options.lines) and not self.options.repeat

    async def reply(self, turn: UserTurn) -> AsyncIterator[ReplyEvent]:
        """The next line: each sentence's text, then its speech (nothing when the script is spent)."""
        del self._entries[: max(0, len(self._entries) - HISTORY_KEPT)]  # bounded: an endless conversation stays small
        if turn.text:
            self._entries.append((turn, "user", turn.text))
        if self.exhausted:
            return
        line = self.options.lines[self._next % len(self.options.lines)]
        self._next += 1
        self._entries.append((turn, "assistant", line))
        for i, sentence in enumerate(split_sentences(line)):
            yield TextDelta(sentence if i == 0 else " " + sentence)  # each sentence's text just before its speech
            async for chunk in self.tts.stream(sentence):
                yield chunk

    def record_played(self, text: str, turn: UserTurn | None = None) -> None:
        """Keep only what was heard of the line that answered `turn` (default: the last line)."""
        for i in range(len(self._entries) - 1, -1, -1):
            owner, role, _ = self._entries[i]
            if role == "assistant" and (turn is None or owner is turn):
                self._entries[i] = (owner, role, text)
                return

    def reset(self) -> None:
        """A new listener: the history is forgotten and the script starts again from its first line."""
        self._entries = []
        self._next = 0

    def discard_turn(self, turn: UserTurn) -> None:
        """Take back the line said to `turn`: the script goes back one line if it was the latest."""
        lines = [e for e in self._entries if e[1] == "assistant"]
        if lines and lines[-1][0] is turn:
            self._next -= 1  # the line will be said on the next turn instead
        self._entries = [e for e in self._entries if e[0] is not turn]


def create(options: Options, setup: DialogueSetup) -> ScriptedDialogue:
    """Build the scripted backend with the persona's voice."""
    voice = setup.voice if isinstance(setup.voice, VoiceOptions) else VoiceOptions()
    return ScriptedDialogue(options, PiperTTS(voice, setup.base_dir, setup.executor))
