"""One agent's conversation memory: its system prompt, the user turns it heard and what it was heard saying."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liveavatar.dialogue.base import DialogueBackend, UserTurn
from liveavatar.media import resample

INPUT_RATE = 16000
"""Qwen3-Omni's audio encoder takes 16 kHz mono; user audio is stored at this rate."""


@dataclass
class Exchange:
    """One user turn (16 kHz audio and/or text) and the reply text that belongs to it.

    `reply_text` grows while the reply streams; `record_played` later replaces it with what was heard.
    """

    user_audio: np.ndarray | None
    user_text: str | None
    reply_text: str = ""
    user_image: np.ndarray | None = None  # the webcam frame at the turn (sent with the newest turn only)
    turn: UserTurn | None = None  # the object the exchange was begun with (looked up by identity)


class OmniHistory:
    """The system prompt plus the last `max_exchanges` exchanges (older ones are forgotten: bounded state)."""

    def __init__(self, system_prompt: str, max_exchanges: int) -> None:
        if max_exchanges < 1:
            raise ValueError(f"max_exchanges must be at least 1 (the turn being answered), got {max_exchanges}")
        self.system_prompt = system_prompt
        self.max_exchanges = max_exchanges
        self._exchanges: list[Exchange] = []

    @property
    def exchanges(self) -> list[Exchange]:
        """Oldest first; the last one is the turn being (or last) answered."""
        return list(self._exchanges)

    def begin(self, turn: UserTurn) -> Exchange:
        """Append `turn` (audio resampled to 16 kHz) as the newest exchange and return it."""
        audio = None
        if turn.audio is not None and len(turn.audio.pcm):
            audio = resample(turn.audio.pcm, turn.audio.rate, INPUT_RATE)
        text = turn.text.strip() if turn.text and turn.text.strip() else None
        if audio is None and text is None and turn.image is None:
            raise ValueError("a user turn needs audio or text")
        exchange = Exchange(audio, text, user_image=turn.image, turn=turn)
        self._exchanges.append(exchange)
        del self._exchanges[: -self.max_exchanges]
        return exchange

    def clear(self) -> None:
        """Forget every exchange (the system prompt stays)."""
        self._exchanges = []

    def forget(self, exchange: Exchange) -> None:
        """Remove `exchange` (a failed reply that said nothing), if it is still remembered."""
        self._exchanges = [e for e in self._exchanges if e is not exchange]

    def find(self, turn: UserTurn) -> Exchange | None:
        """The exchange begun with this very turn object, if still remembered."""
        return next((e for e in self._exchanges if e.turn is turn), None)

    def record_played(self, text: str, turn: UserTurn | None = None) -> None:
        """Make the reply to `turn` (default: the newest exchange) exactly `text`, the part the listener heard."""
        exchange = self.find(turn) if turn is not None else (self._exchanges[-1] if self._exchanges else None)
        if exchange is not None:
            exchange.reply_text = text


class HistoryBackend(DialogueBackend):
    """A dialogue backend whose memory is an OmniHistory in `self._history` (what was heard, by turn)."""

    _history: OmniHistory

    def record_played(self, text: str, turn: UserTurn | None = None) -> None:
        """Make the reply to `turn` (default: the last one) in the history exactly the part that was heard."""
        self._history.record_played(text, turn)

    def reset(self) -> None:
        """A new listener: every exchange is forgotten."""
        self._history.clear()

    def discard_turn(self, turn: UserTurn) -> None:
        """Forget `turn` and its reply: it was answered early and the user went on speaking."""
        exchange = self._history.find(turn)
        if exchange is not None:
            self._history.forget(exchange)
