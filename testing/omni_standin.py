"""A vLLM-Omni-compatible HTTP server on 127.0.0.1, for tests and benchmarks: real sockets, real SSE.

`OmniWireServer(source)` serves `POST /v1/chat/completions` (and `GET /v1/models`) from a background
thread with its own event loop. What is said comes from a `ReplySource` (text deltas and float32
speech arrays); how it goes on the wire, and which fault is injected, from `server.behaviour`:
vLLM-Omni chunks as the real 0.30 server sends them (an opening role chunk, `modality` + base64
`delta.content`, `token_ids`/`metrics` on text chunks, `usage` and `audio_metadata` on every audio chunk,
raw PCM16 or a WAV file per chunk by the request's `audio.format`, optional empty chunks, one
`finish_reason` on the last chunk, an optional usage-only chunk, `[DONE]`) or DashScope chunks (`delta.audio.data`
and `delta.audio.transcript`); faults: an HTTP status with vLLM's JSON error body, a malformed event,
an error event, a connection cut mid-stream, a stall, a missing `[DONE]`, delayed headers.

Like vLLM-Omni it checks the model name (404), the voice (400 "Invalid speaker ...") and
`audio.format` (400). It records every request body and when a client dropped a stream early.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from liveavatar.dialogue.wav import encode_wav
from liveavatar.media import to_int16

SERVED_MODEL = "Qwen/Qwen3-Omni-30B-A3B-Instruct"
SPEAKERS = ("chelsie", "ethan", "aiden")  # Qwen3-Omni's talker_config.speaker_id keys
AUDIO_FORMATS = {"pcm16": "pcm", "pcm": "pcm", "wav": "wav"}  # request audio.format -> chunk encoding


@dataclass(frozen=True)
class Speech:
    """A piece of the reply's speech: float32 mono samples at `rate` Hz."""

    pcm: np.ndarray
    rate: int = 24000


ReplyPart = str | Speech
ReplySource = Callable[[dict[str, Any]], AsyncIterator[ReplyPart]]
"""Given the parsed request body, yields the reply: text deltas (str) and speech pieces, in order."""


@dataclass(frozen=True)
class Behaviour:
    """How the server puts replies on the wire, and which fault it injects (event counts include every event)."""

    dialect: Literal["vllm_omni", "dashscope"] = "vllm_omni"
    speak: bool = True  # False: text only even when audio is asked for (as mainline vLLM would answer)
    empty_audio_chunks: bool = False  # an empty audio chunk before every audio chunk (vLLM-Omni sends these)
    usage_chunk: bool = False  # a final usage-only chunk (choices: []) even without stream_options
    event_interval_s: float = 0.0  # pause between events
    headers_delay_s: float = 0.0  # pause before the status line
    status: int | None = None  # answer with this HTTP status and vLLM's JSON error body
    status_message: str = "Internal server error"
    raw_error_body: bytes | None = None  # answer `status` with exactly these bytes instead
    malformed_after: int | None = None  # after n events, one event that is not JSON
    error_event_after: int | None = None  # after n events, a streamed {"error": ...} then [DONE]
    cut_after: int | None = None  # after n events, drop the connection (chunked body left unfinished)
    stall_after: int | None = None  # after n events, send nothing more until the client leaves
    omit_finish: bool = False  # no finish_reason on any chunk
    omit_done: bool = False  # end the body cleanly without data: [DONE]


@dataclass
class ServerLog:
    """What the server saw: requests, perf_counter times when clients dropped unfinished responses, completions."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    request_headers: list[dict[str, str]] = field(default_factory=list)
    early_disconnects: list[float] = field(default_factory=list)
    completed_responses: int = 0


class OmniWireServer:
    """The server; use as a context manager (`with OmniWireServer(source) as server: server.base_url`)."""

    def __init__(self, source: ReplySource, *, model: str = SERVED_MODEL, host: str = "127.0.0.1", port: int = 0) -> None:
        self.source = source
        self.model = model
        self.behaviour = Behaviour()
        self.log = ServerLog()
        self._host, self._port = host, port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def base_url(self) -> str:
        """The API root clients use, e.g. http://127.0.0.1:43117/v1."""
        return f"http://{self._host}:{self._port}/v1"

    def start(self) -> "OmniWireServer":
        """Listen (on a free port when port=0) and serve from a background thread; returns when ready."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="omni-wire-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._startup_error is not None:
            raise RuntimeError(f"test server failed to start: {self._startup_error}") from self._startup_error
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket; join the thread."""
        if self._loop is not None and self._stop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> "OmniWireServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------ loop

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await self._serve_connection(reader, writer)
            finally:
                handlers.discard(task)

        try:
            server = await asyncio.start_server(on_connect, self._host, self._port)
        except OSError as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is None:
                return
            method, path, headers, body = request
            if method == "GET" and path.rstrip("/").endswith("/models"):
                await _send_json(writer, 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
            elif method == "POST" and path.rstrip("/").endswith("/chat/completions"):
                self.log.request_headers.append(headers)
                await self._chat(reader, writer, body)
            else:
                await _send_json(writer, 404, _vllm_error(f"no route {method} {path}", "NotFoundError", 404))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # ------------------------------------------------------------ chat completions

    async def _chat(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        behaviour = self.behaviour
        try:
            payload = json.loads(body)
        except json.JSONDecodeError as exc:
            await _send_json(writer, 400, _vllm_error(f"invalid JSON body: {exc.msg}", "BadRequestError", 400))
            return
        self.log.requests.append(payload)
        watcher = asyncio.create_task(_wait_for_client_to_leave(reader))
        finished = False
        try:
            finished = await self._answer(writer, payload, behaviour, watcher)
        finally:
            if not finished and watcher.done() and not watcher.cancelled() and watcher.result() is not None:
                self.log.early_disconnects.append(watcher.result())
            watcher.cancel()
        if finished:
            self.log.completed_responses += 1

    async def _answer(
        self, writer: asyncio.StreamWriter, payload: dict[str, Any], behaviour: Behaviour, watcher: asyncio.Task[float | None]
    ) -> bool:
        """Answer one chat request; True when the whole response went out (an error response counts)."""
        if behaviour.headers_delay_s:
            await asyncio.wait({watcher}, timeout=behaviour.headers_delay_s)
            if watcher.done():
                return False
        if behaviour.status is not None:
            if behaviour.raw_error_body is not None:
                await _send_raw(writer, behaviour.status, "text/plain", behaviour.raw_error_body)
            else:
                kind = "BadRequestError" if behaviour.status < 500 else "InternalServerError"
                await _send_json(writer, behaviour.status, _vllm_error(behaviour.status_message, kind, behaviour.status))
            return True
        problem = self._validate(payload)
        if problem is not None:
            await _send_json(writer, problem[0], _vllm_error(problem[1], problem[2], problem[0]))
            return True
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        await writer.drain()
        return await self._stream(writer, payload, behaviour, watcher)

    def _validate(self, payload: dict[str, Any]) -> tuple[int, str, str] | None:
        if payload.get("model") != self.model:
            return 404, f"The model `{payload.get('model')}` does not exist.", "NotFoundError"
        voice = payload.get("voice") or payload.get("speaker")
        if voice is not None and str(voice).lower() not in SPEAKERS:
            return 400, f"Invalid speaker '{voice}'. Supported: {', '.join(sorted(SPEAKERS))}", "BadRequestError"
        audio_format = (payload.get("audio") or {}).get("format", "wav")
        if audio_format not in AUDIO_FORMATS:
            return 400, f"Unsupported audio format '{audio_format}'. Supported: {', '.join(AUDIO_FORMATS)}", "BadRequestError"
        return None

    async def _stream(
        self, writer: asyncio.StreamWriter, payload: dict[str, Any], behaviour: Behaviour, watcher: asyncio.Task[float | None]
    ) -> bool:
        """Send the reply's events with the behaviour's fault; True when the stream ended normally."""
        events = _events(self.source(payload), payload, behaviour, self.model)
        try:
            async with contextlib.aclosing(events):
                return await self._send_events(writer, events, behaviour, watcher)
        except OSError:  # the client went away: nothing to tell it
            raise
        except Exception as exc:  # the source failed: tell the client in-stream, as vLLM does
            error = _vllm_error(f"{type(exc).__name__}: {exc}", "InternalServerError", 500)
            await _send_chunk(writer, _sse(json.dumps(error)) + _sse("[DONE]"))
            await _send_chunk(writer, b"")
            return True

    async def _send_events(
        self, writer: asyncio.StreamWriter, events: AsyncIterator[str], behaviour: Behaviour, watcher: asyncio.Task[float | None]
    ) -> bool:
        sent = 0
        async for event in events:
            if watcher.done():
                return False
            if behaviour.stall_after == sent:
                await watcher
                return False
            if behaviour.cut_after == sent:
                writer.transport.abort()
                return False
            if behaviour.malformed_after == sent:
                event = '{"id": "chatcmpl-broken", "choices": [{"delta": {"content": "he'
            if behaviour.error_event_after == sent:
                error = _vllm_error("CUDA out of memory while decoding audio", "InternalServerError", 500)
                await _send_chunk(writer, _sse(json.dumps(error)) + _sse("[DONE]"))
                await _send_chunk(writer, b"")
                return True
            await _send_chunk(writer, _sse(event))
            sent += 1
            if behaviour.event_interval_s:
                await asyncio.wait({watcher}, timeout=behaviour.event_interval_s)
        if behaviour.stall_after is not None and behaviour.stall_after >= sent:
            await watcher
            return False
        if not behaviour.omit_done:
            await _send_chunk(writer, _sse("[DONE]"))
        await _send_chunk(writer, b"")
        return True


# ---------------------------------------------------------------- wire encoding


async def _events(
    parts: AsyncIterator[ReplyPart], payload: dict[str, Any], behaviour: Behaviour, model: str
) -> AsyncIterator[str]:
    """The reply as SSE `data` payloads in the behaviour's dialect, each sent as soon as its part exists.

    vLLM-Omni's stream, as the real 0.30 server sends it (../shared/docs/qwen3-omni-serving.md §4): an opening chunk
    (role, empty content, `prompt_token_ids`/`prompt_text` null); text chunks with `token_ids` and an empty
    `metrics`; audio chunks that repeat the role and carry `usage` and `audio_metadata`; exactly one
    `finish_reason`, on the last chunk of the reply: an empty audio chunk when it spoke (each audio chunk
    goes out the moment it exists, so the last one cannot know it is last), an empty text chunk otherwise.
    A usage-only chunk follows only when asked for.
    """
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    speak = behaviour.speak and "audio" in (payload.get("modalities") or ["text", "audio"])
    encoding = AUDIO_FORMATS.get((payload.get("audio") or {}).get("format", "wav"), "wav")
    include_usage = behaviour.usage_chunk or bool((payload.get("stream_options") or {}).get("include_usage"))
    dashscope = behaviour.dialect == "dashscope"
    usage = {"prompt_tokens": prompt_token_estimate(payload), "total_tokens": prompt_token_estimate(payload), "completion_tokens": 0}

    def chunk(delta: dict[str, Any], modality: str | None, top: dict[str, Any] | None = None, **choice_extra: Any) -> dict[str, Any]:
        out = dict(base)
        out["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None, **choice_extra}]
        if not dashscope:
            out.update(top or {})
            if modality is not None:
                out["modality"] = modality
        return out

    def audio_chunk(raw: bytes, rate: int, frames: int) -> dict[str, Any]:
        content = base64.b64encode(raw).decode("ascii")
        return chunk({"role": "assistant", "content": content}, "audio", {"usage": usage, "metrics": None},
                     stop_reason=None, token_ids=None, audio_metadata=_metadata(encoding, rate, frames))

    spoke_at: int | None = None  # the rate of the reply's speech, once it spoke
    if not dashscope:
        yield json.dumps(chunk({"role": "assistant", "content": ""}, "text", {"prompt_token_ids": None, "prompt_text": None}))
    async for part in parts:
        if isinstance(part, str):
            if dashscope:
                yield json.dumps(chunk({"audio": {"transcript": part}}, "text"))
            else:
                yield json.dumps(chunk({"content": part}, "text", {"metrics": {}}, token_ids=None))
            continue
        if not speak:
            continue
        if dashscope:  # DashScope sends raw PCM16 at 24 kHz whatever format was asked for
            data = base64.b64encode(to_int16(part.pcm).astype("<i2").tobytes()).decode("ascii")
            yield json.dumps(chunk({"audio": {"data": data}}, "audio"))
            continue
        if behaviour.empty_audio_chunks:
            yield json.dumps(audio_chunk(b"", part.rate, 0))
        raw = encode_wav(part.pcm, part.rate) if encoding == "wav" else to_int16(part.pcm).astype("<i2").tobytes()
        yield json.dumps(audio_chunk(raw, part.rate, len(part.pcm)))
        spoke_at = part.rate
    if spoke_at is not None and not dashscope:
        last = audio_chunk(b"", spoke_at, 0)
    else:
        last = chunk({} if dashscope else {"content": ""}, "text")
    if not behaviour.omit_finish:
        last["choices"][0]["finish_reason"] = "stop"
    yield json.dumps(last)
    if include_usage:
        yield json.dumps({**base, "choices": [], "usage": {**usage, "completion_tokens": 7, "total_tokens": usage["prompt_tokens"] + 7}})


def prompt_token_estimate(payload: dict[str, Any]) -> int:
    """A stand-in for the server's prompt count: 4 per message, 1 per word, 13 per second of 16 kHz WAV audio."""
    total = 0
    for message in payload.get("messages") or []:
        total += 4
        content = message.get("content")
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content or []:
            if part.get("type") == "text":
                total += len(str(part.get("text", "")).split())
            elif part.get("type") == "input_audio":
                total += 13 * max(1, len(part.get("input_audio", {}).get("data", "")) * 3 // 4 // 32000)
    return total


def _metadata(encoding: str, rate: int, frames: int) -> dict[str, Any]:
    return {"format": encoding, "sample_rate_hz": rate, "frame_count": frames, "channels": 1}


def _vllm_error(message: str, kind: str, code: int) -> dict[str, Any]:
    """vLLM's ErrorResponse body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _sse(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


# ---------------------------------------------------------------- HTTP/1.1, just enough


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


async def _wait_for_client_to_leave(reader: asyncio.StreamReader) -> float | None:
    """perf_counter time at which the client closed its side (EOF or reset); None if it sent data instead."""
    try:
        data = await reader.read(1)
    except (ConnectionError, OSError):
        return time.perf_counter()
    return time.perf_counter() if not data else None


async def _send_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    """One HTTP/1.1 chunk (an empty `data` ends the body)."""
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def _send_json(writer: asyncio.StreamWriter, status: int, obj: dict[str, Any]) -> None:
    await _send_raw(writer, status, "application/json", json.dumps(obj).encode())


async def _send_raw(writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes) -> None:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error",
              503: "Service Unavailable"}.get(status, "Status")
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
        f"connection: close\r\n\r\n".encode() + body
    )
    await writer.drain()


# ---------------------------------------------------------------- a synthetic source


def synthetic_speech(seconds: float, rate: int = 24000, pitch_hz: float = 220.0) -> np.ndarray:
    """A quiet tone with a slow loudness wobble, `seconds` long: stands in for a reply's speech."""
    t = np.arange(int(round(seconds * rate)), dtype=np.float64) / rate
    return (0.3 * np.sin(2 * np.pi * pitch_hz * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t))).astype(np.float32)


def synthetic_source(
    text: str = "Hello there, nice to meet you.",
    seconds: float = 1.0,
    chunk_s: float = 0.25,
    rate: int = 24000,
    interval_s: float = 0.0,
) -> ReplySource:
    """A source replying `text` word by word, then `synthetic_speech(seconds)` in `chunk_s` pieces."""
    speech = synthetic_speech(seconds, rate)
    step = max(1, int(round(chunk_s * rate)))

    async def reply(_: dict[str, Any]) -> AsyncIterator[ReplyPart]:
        words = text.split(" ")
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
        for start in range(0, len(speech), step):
            if interval_s:
                await asyncio.sleep(interval_s)
            yield Speech(speech[start : start + step], rate)

    return reply


def with_behaviour(server: OmniWireServer, **changes: Any) -> Behaviour:
    """Set `server.behaviour` to the default with `changes`; returns it."""
    server.behaviour = replace(Behaviour(), **changes)
    return server.behaviour


def main(argv: list[str] | None = None) -> None:
    """Serve a synthetic reply until stdin closes; prints {"base_url": ...} as one JSON line when ready."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the synthetic speech in seconds")
    parser.add_argument("--chunk-s", type=float, default=0.5, help="speech per audio chunk in seconds")
    parser.add_argument("--interval-s", type=float, default=0.0, help="pause before each audio chunk in seconds")
    args = parser.parse_args(argv)
    source = synthetic_source(seconds=args.seconds, chunk_s=args.chunk_s, interval_s=args.interval_s)
    with OmniWireServer(source, port=args.port) as server:
        print(json.dumps({"base_url": server.base_url}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or dies)


if __name__ == "__main__":
    main()
