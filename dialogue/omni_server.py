"""`omni_server`: Qwen3-Omni served by vLLM-Omni, over its OpenAI-compatible streaming chat API.

Start the server with `vllm serve Qwen/Qwen3-Omni-30B-A3B-Instruct --omni --port 8091` (mainline vLLM
serves only the text thinker; speech needs vLLM-Omni). Each reply is one `POST /v1/chat/completions`
with `stream: true`, `modalities: ["text", "audio"]`, the persona's system prompt and the history kept
here; user audio goes as a 16 kHz WAV `input_audio` part. Speech chunks are yielded the moment their
SSE event is complete, so the avatar starts on the first chunk, never on the whole reply.

Failures (server down, HTTP errors with the server's own message, malformed or cut streams, stalls)
raise `DialogueError` with a message a user can act on; cancelling the consuming task closes the HTTP
stream at once (the connection is dropped, so the server stops generating).

Uses httpx only; the SSE framing is parsed here (dialogue.omni.wire) to time-stamp each event.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from liveavatar.dialogue.base import DialogueError, ReplyEvent, TextDelta, UserTurn
from liveavatar.dialogue.omni.history import HistoryBackend, OmniHistory
from liveavatar.dialogue.omni.wire import (
    DEFAULT_OUTPUT_RATE,
    DONE,
    QWEN_SYSTEM_PROMPT,
    AudioDecoder,
    chat_messages,
    error_message,
    parse_chunk,
    request_body,
)
from liveavatar.dialogue.registry import DialogueSetup
from liveavatar.dialogue.sse import SseDecoder, SseEvent

LOOKS_AT_CAMERA = True  # the newest user turn carries the webcam's latest frame (see dialogue.registry.looks_at_camera)

log = logging.getLogger(__name__)

T = TypeVar("T")


class Options(BaseModel):
    """`dialogue.options` of a persona whose brain is Qwen3-Omni behind vLLM-Omni (or a compatible server)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        "http://127.0.0.1:8091/v1",
        description="OpenAI-compatible API root of the server, ending in /v1. Default http://127.0.0.1:8091/v1.",
    )
    model: str = Field(
        "Qwen/Qwen3-Omni-30B-A3B-Instruct",
        description="Model name as the server serves it. Default Qwen/Qwen3-Omni-30B-A3B-Instruct.",
    )
    voice: str = Field(
        "Ethan",
        description="Speaker: Ethan, Chelsie or Aiden for Qwen3-Omni (DashScope has others). Default Ethan.",
    )
    audio_format: Literal["pcm16", "wav"] = Field(
        "pcm16",
        description="Encoding the server uses for each speech chunk: raw 16-bit PCM or a WAV file per chunk. "
        "Default pcm16.",
    )
    api_key: str | None = Field(
        None, description="Bearer token for the server; when unset, read from the `api_key_env` variable. Default none."
    )
    api_key_env: str = Field(
        "OMNI_API_KEY", description="Environment variable holding the API key when `api_key` is unset. Default OMNI_API_KEY."
    )
    connect_timeout_s: float = Field(3.0, gt=0, description="Seconds to open the TCP connection. Default 3.0.")
    first_byte_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Seconds from sending the request to the first stream event (covers prefill and queueing). "
        "Default 60.0.",
    )
    chunk_timeout_s: float = Field(
        10.0, gt=0, description="Seconds without any data mid-stream before the reply counts as stalled. Default 10.0."
    )
    max_tokens: int | None = Field(
        None, gt=0, description="Upper bound on the reply's text tokens; none = the server's default. Default none."
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra request fields merged last, e.g. temperature, top_p, sampling_params_list "
        "(one dict per vLLM-Omni stage). Default {}.",
    )
    history_exchanges: int = Field(
        16,
        ge=1,
        description="User turns (with their replies) sent as context, the current one included; older ones are "
        "forgotten so requests stay bounded. Default 16.",
    )
    send_text_with_audio: bool = Field(
        False,
        description="Also send a user turn's text when it has audio (it is usually a transcript of the same "
        "words). Default false.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL like http://127.0.0.1:8091/v1, got {value!r}")
        return value.rstrip("/")


@dataclass
class ReplyTrace:
    """When one reply's milestones happened (time.perf_counter seconds); None until they happen."""

    started: float
    request_built: float | None = None  # the request body is ready to go (history encoded)
    request_bytes: int | None = None  # its size
    headers: float | None = None
    first_event: float | None = None
    first_text: float | None = None
    first_audio_received: float | None = None  # the network read completing the first audio event
    first_audio_ready: float | None = None  # its AudioChunk decoded, about to be yielded
    finished: float | None = None
    prompt_tokens: int | None = None  # the prompt's length as the server counted it (its `usage`), when sent


class OmniServerBackend(HistoryBackend):
    """Streams Qwen3-Omni replies (text deltas, 24 kHz speech chunks) from a vLLM-Omni server."""

    def __init__(self, options: Options, system_prompt: str) -> None:
        self.options = options
        self._history = OmniHistory(system_prompt.strip() or QWEN_SYSTEM_PROMPT, options.history_exchanges)
        self._client: httpx.AsyncClient | None = None
        self._http()  # building the client (its TLS context) takes tens of ms: do it now, not on the first reply
        self.last_trace: ReplyTrace | None = None

    @property
    def history(self) -> OmniHistory:
        """The conversation as this agent remembers it."""
        return self._history

    async def reply(self, turn: UserTurn) -> AsyncIterator[ReplyEvent]:
        """Stream the reply to `turn`; raises DialogueError on failures (see the module docstring).

        Iterate it inside `contextlib.aclosing` or from a task that gets cancelled: either way the HTTP
        stream is closed as soon as the iteration stops.
        """
        exchange = self._history.begin(turn)
        trace = ReplyTrace(started=time.perf_counter())
        self.last_trace = trace
        body = request_body(
            model=self.options.model,
            messages=chat_messages(self._history, self.options.send_text_with_audio),
            voice=self.options.voice,
            audio_format=self.options.audio_format,
            max_tokens=self.options.max_tokens,
            extra=self.options.extra_body,
        )
        try:
            async for event in self._stream(body, trace):
                if isinstance(event, TextDelta):
                    exchange.reply_text += event.text
                yield event
        except DialogueError:
            if not exchange.reply_text:
                self._history.forget(exchange)  # nothing was said: the user will likely repeat the turn
            raise

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ------------------------------------------------------------ one request

    async def _stream(self, body: dict[str, Any], trace: ReplyTrace) -> AsyncIterator[ReplyEvent]:
        opts = self.options
        client = self._http()
        request = client.build_request("POST", f"{opts.base_url}/chat/completions", json=body, headers=self._headers())
        trace.request_built, trace.request_bytes = time.perf_counter(), len(request.content)
        try:
            response = await _within(client.send(request, stream=True), opts.first_byte_timeout_s, self._no_first_byte())
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, trace) from None
        try:
            trace.headers = time.perf_counter()
            await self._check_response(response)
            async for event in self._reply_events(response, trace):
                yield event
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, trace) from None
        finally:
            await response.aclose()

    async def _reply_events(self, response: httpx.Response, trace: ReplyTrace) -> AsyncIterator[ReplyEvent]:
        opts = self.options
        audio = AudioDecoder(DEFAULT_OUTPUT_RATE)
        events = _sse_events(response)
        saw_content_text = finished = done = False
        try:
            while True:
                if trace.first_event is None:
                    timeout = max(0.0, trace.started + opts.first_byte_timeout_s - time.perf_counter())
                    on_timeout = self._no_first_byte()
                else:
                    timeout, on_timeout = opts.chunk_timeout_s, f"vLLM-Omni stream stalled: no data for {opts.chunk_timeout_s:.1f} s"
                try:
                    event = await _within(anext(events), timeout, on_timeout)
                except StopAsyncIteration:
                    break
                if trace.first_event is None:
                    trace.first_event = event.received
                if event.data.strip() == DONE:
                    # Stop here: the response is closed unread, which drops the connection instead of pooling
                    # it — no reuse of a keep-alive socket the server may close between turns.
                    done = True
                    break
                content = parse_chunk(event.data)
                if content.prompt_tokens is not None:
                    trace.prompt_tokens = content.prompt_tokens
                saw_content_text = saw_content_text or bool(content.text)
                for text in content.text or ([] if saw_content_text else content.transcript):
                    if trace.first_text is None:
                        trace.first_text = event.received
                    yield TextDelta(text)
                for payload in content.audio:
                    chunk = audio.decode(payload)
                    if chunk is None:
                        continue
                    if trace.first_audio_received is None:
                        trace.first_audio_received = event.received
                        trace.first_audio_ready = time.perf_counter()
                    yield chunk
                if content.finish_reason:
                    finished = True
                    if content.finish_reason == "length":
                        log.info("omni_server: reply cut at max_tokens")
        finally:
            await events.aclose()
        trace.finished = time.perf_counter()
        if not done and not finished:
            raise DialogueError(
                "vLLM-Omni stream ended without [DONE] or a finish_reason — the reply is incomplete "
                "(did the server restart?)"
            )
        if not done:
            log.warning("omni_server: stream ended after finish_reason but without [DONE]")
        if trace.first_text is not None and trace.first_audio_received is None:
            log.warning(
                "omni_server: the reply from %s had text but no speech — is it vLLM-Omni (`vllm serve … --omni`)? "
                "Mainline vLLM serves Qwen3-Omni's text only.", opts.base_url,
            )

    async def _check_response(self, response: httpx.Response) -> None:
        where, status = self.options.base_url, response.status_code
        if status >= 400:
            body = await self._read_error_body(response)
            message = error_message(body, response.reason_phrase)
            hint = ""
            if status in (401, 403):
                hint = f" — check `api_key` (or ${self.options.api_key_env})"
            elif status == 404:
                hint = f" — check `base_url` (it should end in /v1) and that the server serves {self.options.model!r}"
            verb = "failed" if status >= 500 else "rejected the request"
            raise DialogueError(f"vLLM-Omni at {where} {verb} (HTTP {status}): {message}{hint}")
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            body = await self._read_error_body(response)
            raise DialogueError(
                f"vLLM-Omni at {where} answered with {content_type or 'no content type'} instead of an event "
                f"stream: {error_message(body, response.reason_phrase)}"
            )

    async def _read_error_body(self, response: httpx.Response) -> bytes:
        try:
            return await _within(response.aread(), self.options.chunk_timeout_s, "error body timed out")
        except (DialogueError, httpx.HTTPError):
            return b""

    # ------------------------------------------------------------ helpers

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Our own deadlines (first byte, between chunks) bound reads; httpx only bounds the connect.
            timeout = httpx.Timeout(connect=self.options.connect_timeout_s, read=None, write=None, pool=None)
            self._client = httpx.AsyncClient(timeout=timeout)
        return self._client

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        key = self.options.api_key or os.environ.get(self.options.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _no_first_byte(self) -> str:
        return (
            f"vLLM-Omni at {self.options.base_url} sent nothing for {self.options.first_byte_timeout_s:.1f} s after "
            "the request (first-byte timeout) — is it overloaded or still loading the model?"
        )

    def _transport_error(self, exc: httpx.HTTPError, trace: ReplyTrace) -> DialogueError:
        opts = self.options
        where = opts.base_url
        if isinstance(exc, httpx.ConnectTimeout):
            return DialogueError(
                f"cannot reach vLLM-Omni at {where}: no answer within {opts.connect_timeout_s:.1f} s "
                "(connect timeout) — is the host up and the port open?"
            )
        if isinstance(exc, httpx.ConnectError):
            port = urlsplit(where).port or (443 if where.startswith("https") else 80)
            return DialogueError(
                f"cannot reach vLLM-Omni at {where}: {_connect_reason(exc)} — is "
                f"`vllm serve {opts.model} --omni --port {port}` running?"
            )
        detail = str(exc) or type(exc).__name__
        if trace.headers is None:
            return DialogueError(f"vLLM-Omni at {where} closed the connection before answering ({detail})")
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
            return DialogueError(
                f"the vLLM-Omni stream from {where} broke off mid-reply ({detail}) — did the server crash or restart?"
            )
        return DialogueError(f"request to vLLM-Omni at {where} failed: {type(exc).__name__}: {detail}")


async def _sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """The response's SSE events, each stamped with the time its last byte arrived."""
    decoder = SseDecoder()
    async for data in response.aiter_bytes():
        for event in decoder.feed(data, time.perf_counter()):
            yield event
    tail = decoder.close(time.perf_counter())
    if tail is not None and tail.data.strip() == DONE:  # lenient: [DONE] without its blank line
        yield tail


async def _within(awaitable: Awaitable[T], seconds: float, message: str) -> T:
    """Await `awaitable`, raising DialogueError(message) if it takes longer than `seconds`."""
    try:
        if hasattr(asyncio, "timeout"):  # Python ≥ 3.11: no extra task, cancellation stays exact
            async with asyncio.timeout(seconds):
                return await awaitable
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise DialogueError(message) from None
    except asyncio.TimeoutError:  # Python 3.10: not yet the builtin TimeoutError
        raise DialogueError(message) from None


def _connect_reason(exc: BaseException) -> str:
    """'connection refused', 'host name not found', ... from an exception chain (including exception groups)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError) or getattr(current, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "host name not found"
        stack.extend(getattr(current, "exceptions", ()))
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return str(exc) or type(exc).__name__


def create(options: Options, setup: DialogueSetup) -> OmniServerBackend:
    """Build the backend for one persona (its system prompt); nothing connects until the first reply."""
    return OmniServerBackend(options, setup.system_prompt)


__all__ = ["OmniServerBackend", "Options", "ReplyTrace", "create"]
