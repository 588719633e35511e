"""vLLM-Omni's WebSocket `/v1/realtime` protocol (0.30, turn-based): the client's events and the server's.

Pure functions, no I/O (../shared/docs/qwen3-omni-serving.md §1.4). The client sends JSON text frames:
`session.update` (the model), `input_audio_buffer.commit` with `final: false` (start a generation over
audio that is still arriving), `input_audio_buffer.append` (base64 PCM16 at 16 kHz mono, repeated) and
`input_audio_buffer.commit` with `final: true` (the audio is complete). The server answers
`session.created`, `transcription.delta` (the reply's text), `response.output_audio.delta` (base64
PCM16 speech with its `sample_rate_hz`), `transcription.done`, `response.output_audio.done`, and
`error`. The docs name the audio events `response.audio.delta` / `response.audio.done`; both are accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from liveavatar.dialogue.base import DialogueError
from liveavatar.media import to_int16

INPUT_RATE = 16000
"""The realtime endpoint takes 16 kHz mono PCM16 only."""
OUTPUT_RATE = 24000
"""Qwen3-Omni speaks at 24 kHz; used when an audio event states no rate."""

AUDIO_DELTAS = frozenset({"response.output_audio.delta", "response.audio.delta"})
AUDIO_DONES = frozenset({"response.output_audio.done", "response.audio.done"})
TEXT_DELTAS = frozenset({"transcription.delta", "response.output_audio_transcript.delta", "response.audio_transcript.delta"})


def session_update(model: str) -> str:
    """Select (and validate) the model for this connection."""
    return json.dumps({"type": "session.update", "model": model})


def start_generation() -> str:
    """Commit without `final`: the server starts generating while audio keeps arriving."""
    return json.dumps({"type": "input_audio_buffer.commit", "final": False})


def append_audio(pcm16k: np.ndarray) -> str:
    """One `input_audio_buffer.append` carrying float samples at 16 kHz as base64 PCM16."""
    data = base64.b64encode(to_int16(pcm16k).astype("<i2").tobytes()).decode("ascii")
    return json.dumps({"type": "input_audio_buffer.append", "audio": data})


def finish_input() -> str:
    """Commit with `final`: the user's audio is complete."""
    return json.dumps({"type": "input_audio_buffer.commit", "final": True})


@dataclass(frozen=True)
class TextEvent:
    """A piece of the reply's text."""

    text: str


@dataclass(frozen=True)
class AudioEvent:
    """A piece of the reply's speech: float32 samples at `rate`."""

    pcm: np.ndarray
    rate: int


@dataclass(frozen=True)
class AudioDone:
    """The reply's speech is complete (`has_audio` false: the reply had none)."""

    has_audio: bool


@dataclass(frozen=True)
class TextDone:
    """The reply's text is complete; `prompt_tokens` is the prompt's length as the server counted it."""

    text: str
    prompt_tokens: int | None = None


@dataclass(frozen=True)
class Other:
    """An event this client does not act on (session.created, ...)."""

    type: str


ServerEvent = TextEvent | AudioEvent | AudioDone | TextDone | Other


def parse_event(message: str | bytes) -> ServerEvent:
    """One server frame as an event; raises DialogueError for malformed frames and for `error` events."""
    try:
        event = json.loads(message)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DialogueError(f"vLLM-Omni realtime sent a malformed event (not JSON): {_clip(message)}") from exc
    except RecursionError:
        raise DialogueError(f"vLLM-Omni realtime sent an event nested too deeply to read: {_clip(message)}") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise DialogueError(f"vLLM-Omni realtime sent an event without a type: {_clip(message)}")
    kind = event["type"]
    if kind == "error":
        raise DialogueError(f"vLLM-Omni realtime reported an error: {error_text(event)}")
    if kind in TEXT_DELTAS:
        delta = event.get("delta")
        return TextEvent(delta if isinstance(delta, str) else "")
    if kind in AUDIO_DELTAS:
        return AudioEvent(_pcm16(event.get("audio", event.get("delta"))), _rate(event))
    if kind in AUDIO_DONES:
        return AudioDone(bool(event.get("has_audio", True)))
    if kind == "transcription.done":
        text = event.get("text")
        usage = event.get("usage")
        prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        prompt = prompt if isinstance(prompt, int) and not isinstance(prompt, bool) and prompt >= 0 else None
        return TextDone(text if isinstance(text, str) else "", prompt)
    return Other(kind)


def error_text(event: dict[str, Any]) -> str:
    """The message of an `error` event: vLLM's {"error": "...", "code": ...} or OpenAI's {"error": {...}}."""
    error = event.get("error")
    code = event.get("code")
    if isinstance(error, dict):
        code = error.get("code", code)
        error = error.get("message") or error.get("type")
    message = _clip(str(error), 300) if error else ""
    message = message or "no details"
    return f"{message} ({_clip(code, 60)})" if isinstance(code, str) and code.strip() else message


def _pcm16(data: Any) -> np.ndarray:
    if not isinstance(data, str):
        raise DialogueError("vLLM-Omni realtime sent an audio event without audio")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise DialogueError(f"vLLM-Omni realtime sent audio that is not valid base64: {_clip(data)}") from None
    raw = raw[: len(raw) - len(raw) % 2]
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0


def _rate(event: dict[str, Any]) -> int:
    for key in ("sample_rate_hz", "sample_rate"):
        value = event.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 1000 <= value <= 384000:
            return int(value)
    return OUTPUT_RATE


def _clip(text: str | bytes, limit: int = 120) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = " ".join(text.split())  # one line, whatever the server's whitespace
    return text if len(text) <= limit else text[: limit - 1] + "…"
