"""vLLM-Omni's `/v1/chat/completions` wire format: request bodies, SSE framing, stream chunks, error bodies.

Pure functions and small stateful decoders, no I/O. The stream shapes accepted (see
../shared/docs/qwen3-omni-serving.md §1.3, §1.5):

* vLLM-Omni: separate text and audio chunks told apart by a top-level `"modality"`; both carry their
  payload in `choices[0].delta.content`; audio is base64 of the chunk encoded on its own in the
  requested `audio.format` (raw PCM16 for `pcm16`, a whole WAV file with its own header for `wav`),
  with `choices[0].audio_metadata.sample_rate_hz`; empty audio chunks occur; `finish_reason` is set
  on exactly one chunk; an optional usage-only chunk has `choices: []`; then `data: [DONE]`.
* DashScope (OpenAI-compatible mode): audio as base64 raw PCM16 at 24 kHz in `delta.audio.data`, the
  spoken text in `delta.audio.transcript`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liveavatar.dialogue.base import DialogueError
from liveavatar.dialogue.omni.history import INPUT_RATE, OmniHistory
from liveavatar.dialogue.wav import WavError, decode_wav, encode_wav, is_wav
from liveavatar.media import AudioChunk

DEFAULT_OUTPUT_RATE = 24000
"""Qwen3-Omni speaks at 24 kHz; used when a chunk states no rate."""
MIN_RATE, MAX_RATE = 8000, 192000
"""Sample rates (Hz) taken from a server; anything else is a malformed event, not a crash further down."""
MAX_REPLY_SPEECH_S = 600.0
"""Speech taken for one reply (ten minutes); a server that goes on streaming is cut off, so memory stays bounded."""

QWEN_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech."
)
"""The system prompt Qwen's own examples use with speech output; the fallback when a persona has none."""

DONE = "[DONE]"


# ---------------------------------------------------------------- request


def chat_messages(history: OmniHistory, send_text_with_audio: bool = False) -> list[dict[str, Any]]:
    """OpenAI chat messages for `history`: system, then alternating user/assistant.

    User audio goes as a 16 kHz WAV `input_audio` part. A user turn's text goes along with its audio only
    when `send_text_with_audio` (it is usually a transcript of the same words). Replies that said
    nothing are left out and the user turns around them merged, so roles always alternate.
    """
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": history.system_prompt}]}
    ]
    pending_user: list[dict[str, Any]] = []
    exchanges = history.exchanges
    for exchange in exchanges:
        if exchange.user_image is not None and exchange is exchanges[-1]:
            pending_user.append({"type": "image_url", "image_url": {"url": jpeg_data_url(exchange.user_image)}})
        if exchange.user_audio is not None:
            wav = base64.b64encode(encode_wav(exchange.user_audio, INPUT_RATE)).decode("ascii")
            pending_user.append({"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}})
        if exchange.user_text and (exchange.user_audio is None or send_text_with_audio):
            pending_user.append({"type": "text", "text": exchange.user_text})
        if exchange.reply_text:
            messages.append({"role": "user", "content": pending_user})
            messages.append({"role": "assistant", "content": exchange.reply_text})
            pending_user = []
    if pending_user:
        messages.append({"role": "user", "content": pending_user})
    return messages


def jpeg_data_url(image: np.ndarray, quality: int = 80) -> str:
    """An RGB image as a data: URL holding a JPEG."""
    import cv2

    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")


def request_body(
    *,
    model: str,
    messages: list[dict[str, Any]],
    voice: str,
    audio_format: str,
    max_tokens: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The streaming chat-completions body asking for text and speech.

    The voice goes top-level (where vLLM-Omni reads it) and in `audio.voice` (OpenAI/DashScope);
    `extra` (sampling parameters, `sampling_params_list`, ...) is merged in last and wins.
    """
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "modalities": ["text", "audio"],
        "audio": {"format": audio_format, "voice": voice},
        "voice": voice,
        "messages": messages,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra or {})
    return body


# ---------------------------------------------------------------- SSE framing


# ---------------------------------------------------------------- stream chunks


@dataclass(frozen=True)
class AudioPayload:
    """Encoded audio from one chunk (raw PCM16 LE or a WAV file) and the sample rate the chunk states."""

    data: bytes
    rate: int | None


@dataclass
class ChunkContent:
    """What one stream chunk carries, in order: reply text, spoken transcript, audio, the finish reason."""

    text: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    audio: list[AudioPayload] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int | None = None  # from the chunk's `usage` (vLLM-Omni puts it on every audio chunk)


def parse_chunk(data: str) -> ChunkContent:
    """Decode one SSE `data` payload; raises DialogueError for malformed JSON, fields of the wrong type or
    impossible values (every field used is checked), or an error the server streamed."""
    try:
        chunk = json.loads(data)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise DialogueError(f"vLLM-Omni sent a malformed stream event (not JSON: {reason}): {_clip(data)}") from None
    if not isinstance(chunk, dict):
        raise DialogueError(f"vLLM-Omni sent a malformed stream event (not a JSON object): {_clip(data)}")
    error = _error_text(chunk)
    if error is not None:
        raise DialogueError(f"vLLM-Omni reported an error mid-reply: {error}")
    content = ChunkContent()
    usage = chunk.get("usage")  # informational (a metric): never a reason to drop the reply
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int) and usage["prompt_tokens"] >= 0:
        content.prompt_tokens = usage["prompt_tokens"]
    modality = _optional(chunk, "modality", str, "")
    choices = _optional(chunk, "choices", list, "")
    for i, choice in enumerate(choices or []):
        at = f"choices[{i}]"
        if not isinstance(choice, dict):
            raise _malformed(f"{at}: expected an object, got {_shown(choice)}")
        index = _optional(choice, "index", int, at)
        if index not in (None, 0):
            continue
        delta = _optional(choice, "delta", dict, at) or {}
        text = _optional(delta, "content", str, f"{at}.delta")
        if text:
            if modality == "audio":
                content.audio.append(AudioPayload(_b64(text), _stated_rate(choice, chunk, at)))
            elif modality in (None, "text"):
                content.text.append(text)
        audio = _optional(delta, "audio", dict, f"{at}.delta")
        if audio:
            data_b64 = _optional(audio, "data", str, f"{at}.delta.audio")
            if data_b64:
                content.audio.append(AudioPayload(_b64(data_b64), _stated_rate(choice, chunk, at)))
            transcript = _optional(audio, "transcript", str, f"{at}.delta.audio")
            if transcript:
                content.transcript.append(transcript)
        finish = _optional(choice, "finish_reason", str, at)
        if finish:
            content.finish_reason = finish
    return content


class AudioDecoder:
    """Turns a reply's audio payloads into `AudioChunk`s with running time stamps.

    A payload is decoded by what it is, not by what was asked for: a RIFF header means a WAV file
    (its header gives the rate), anything else is raw little-endian PCM16 at the stated rate. An odd
    trailing byte of raw PCM is kept for the next payload.
    """

    def __init__(self, default_rate: int = DEFAULT_OUTPUT_RATE) -> None:
        self.default_rate = default_rate
        self._carry = b""
        self._seconds = 0.0

    def decode(self, payload: AudioPayload) -> AudioChunk | None:
        """The payload's samples as a chunk, or None when it holds none."""
        if is_wav(payload.data):
            try:
                pcm, rate = decode_wav(payload.data)
            except WavError as exc:
                raise DialogueError(f"vLLM-Omni sent an unreadable WAV audio chunk: {exc}") from None
            if not MIN_RATE <= rate <= MAX_RATE:
                raise _malformed(f"the WAV audio chunk states {rate} Hz; expected {MIN_RATE} to {MAX_RATE}")
        else:
            raw = self._carry + payload.data
            even = len(raw) - len(raw) % 2
            self._carry = raw[even:]
            pcm = np.frombuffer(raw[:even], "<i2").astype(np.float32) / 32768.0
            rate = payload.rate or self.default_rate
        if not len(pcm):
            return None
        if self._seconds + len(pcm) / rate > MAX_REPLY_SPEECH_S:
            raise DialogueError(f"vLLM-Omni sent over {MAX_REPLY_SPEECH_S / 60:.0f} minutes of speech for one reply; the rest was cut off")
        chunk = AudioChunk(pcm, rate, pts=self._seconds)
        self._seconds += chunk.duration
        return chunk


# ---------------------------------------------------------------- errors


def error_message(body: bytes, reason: str = "") -> str:
    """The human-readable message in an error response body (vLLM, OpenAI, FastAPI or plain text)."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return _clip(text, 300) or reason or "no details"
    if isinstance(parsed, dict):
        found = _error_text(parsed)
        if found is None and "detail" in parsed:
            found = _detail_text(parsed["detail"])
        if found:
            return found
    return _clip(text, 300) or reason or "no details"


def _error_text(obj: dict[str, Any]) -> str | None:
    """The message of an error object: {"error": {...}}, {"error": "..."} or {"object": "error", ...}."""
    error = obj.get("error")
    if isinstance(error, dict):
        return _clip(str(error.get("message") or error.get("type") or json.dumps(error)), 300)
    if isinstance(error, str) and error:
        return _clip(error, 300)
    if obj.get("object") == "error":
        return _clip(str(obj.get("message") or obj.get("type") or "unknown error"), 300)
    return None


def _detail_text(detail: Any) -> str:
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = item.get("loc") or []
                where = ".".join(str(p) for p in (loc if isinstance(loc, list) else [loc]))
                parts.append(f"{where}: {item.get('msg', item)}" if where else str(item.get("msg", item)))
            else:
                parts.append(str(item))
        return _clip("; ".join(parts), 300)
    return _clip(str(detail), 300)


def _stated_rate(choice: dict[str, Any], chunk: dict[str, Any], at: str) -> int | None:
    """The sample rate a chunk states for its audio, checked to be a plausible whole number of Hz."""
    for meta, where in ((choice.get("audio_metadata"), f"{at}.audio_metadata"), (chunk.get("audio_metadata"), "audio_metadata"), (chunk, "")):
        if isinstance(meta, dict):
            for key in ("sample_rate_hz", "sample_rate"):
                value = meta.get(key)
                if value is None:
                    continue
                whole = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
                if not whole or not MIN_RATE <= value <= MAX_RATE:
                    name = f"{where}.{key}" if where else key
                    raise _malformed(f"{name}: expected a whole number of Hz from {MIN_RATE} to {MAX_RATE}, got {_shown(value)}")
                return int(value)
    return None


def _optional(obj: dict[str, Any], key: str, kind: type, at: str) -> Any:
    """`obj[key]` when it is absent, null or of `kind`; anything else is a malformed event."""
    value = obj.get(key)
    if value is None or (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        return value
    expected = {str: "text", dict: "an object", list: "a list", int: "a whole number"}[kind]
    raise _malformed(f"{at + '.' if at else ''}{key}: expected {expected}, got {_shown(value)}")


def _malformed(problem: str) -> DialogueError:
    return DialogueError(f"vLLM-Omni sent a malformed stream event ({problem})")


def _shown(value: Any) -> str:
    """A value from the server as it was written in JSON, clipped."""
    return _clip(json.dumps(value, ensure_ascii=False), 60)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DialogueError(f"vLLM-Omni sent audio that is not valid base64: {_clip(text)}") from None


def _clip(text: str, limit: int = 120) -> str:
    """`text` on one line (runs of whitespace become one space), at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
