"""Per-turn latency figures, as the user experiences them; written as JSON lines."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO


@dataclass
class TurnMetrics:
    """One user turn and the reply to it. Times are clock seconds; durations are seconds."""

    turn: int
    generation: int
    user_onset: float  # the user's speech began (VAD)
    user_speech_end: float  # ... and ended (VAD), i.e. before the end-of-turn silence
    turn_end: float  # the turn was over (see turn_end_cause)
    turn_end_cause: str = "silence"  # silence | model (end-of-turn model said complete) | question (transcript) | fallback
    end_of_turn_probability: float | None = None  # the end-of-turn model's verdict on the last pause, if it came in time
    end_of_turn_model_s: float | None = None  # ... and how long it took
    transcript: str | None = None
    sentence_end_probability: float | None = None  # the recognizer's, that a sentence ends where the transcript does
    language_end_probability: float | None = None  # the language model's, from the transcript's words alone
    reply_text: str = ""
    heard_text: str = ""
    reply_started_s: float | None = None  # turn end -> the reply began (negative: prepared during the pause before it)
    asr_s: float | None = None  # turn end -> transcript (backends with speech recognition)
    llm_first_text_s: float | None = None  # turn end -> first text of the reply
    tts_first_audio_s: float | None = None  # turn end -> first speech chunk
    first_voiced_frame: float | None = None  # clock time the first frame with the reply's voice reached the sink
    response_latency_s: float | None = None  # user speech end -> first voiced frame at the sink
    barge_in_latency_s: float | None = None  # user speech onset -> this reply's audio stopped at the sink
    interrupted: bool = False
    resumed: bool = False  # paused by the user, then resumed (a false interruption)
    error: str | None = None
    prepared_early: bool = False  # the reply was started during the user's pause, before the turn ended
    speech_s: float = 0.0  # seconds of speech the reply produced (all of it, heard or not)
    played_s: float = 0.0  # seconds the reply was on the sinks (live: with any gaps where its speech came late)
    speaker: str = ""  # the agent who answered
    heard_from: str = "user"  # what was answered: "user", "agent" (the other agent in a duet) or "opening"

    def as_dict(self) -> dict:
        """JSON-ready fields, rounded to the millisecond."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


TURNS_KEPT = 1000
"""Finished turns kept in memory (a page server runs for days: its memory must stay flat); the file keeps all."""


@dataclass
class MetricsLog:
    """Keeps the last TURNS_KEPT finished turns and counts all; appends each as one JSON line to `path` (if given)."""

    path: Path | None = None
    turns: list[TurnMetrics] = field(default_factory=list)
    count: int = 0  # turns finished in all
    _file: IO[str] | None = None

    def add(self, metrics: TurnMetrics) -> None:
        """Record a finished turn."""
        self.turns.append(metrics)
        self.count += 1
        if len(self.turns) > 2 * TURNS_KEPT:  # trimmed in halves: appending stays O(1) on average
            del self.turns[:-TURNS_KEPT]
        if self.path is not None:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(json.dumps(metrics.as_dict()) + "\n")
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
