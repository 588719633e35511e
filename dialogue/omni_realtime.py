"""`omni_realtime`: Qwen3-Omni behind vLLM-Omni, hearing the user over the WebSocket `/v1/realtime` API.

The user's audio goes up while they speak: when a user turn starts, this backend opens a realtime
session (`session.update`, then `input_audio_buffer.commit` with `final: false`, which starts the
server's generation over audio still arriving) and streams the turn's 16 kHz audio as it is captured
(`input_audio_buffer.append`, `append_ms` at a time). When the turn ends, only the rest of the audio
and `input_audio_buffer.commit` with `final: true` are left to send; the reply's text
(`transcription.delta`) and 24 kHz speech (`response.output_audio.delta`, or the documented
`response.audio.delta`) are yielded the moment they arrive.

One connection carries one user turn and its reply (vLLM-Omni 0.30 runs one generation per connection
and clears its audio buffer after each), so a server that closes the connection between turns costs
nothing, and a barge-in simply drops the connection: the server cancels that generation, the next turn
opens a new one. When a reply is prepared at a pause in the user's speech, its session is committed and
a new one, holding the turn so far, goes on listening, in case the user goes on and the reply is
dropped. A turn with no live session (an agent's voice in a duet) is uploaded whole at the end.

What the realtime endpoint cannot do, vLLM-Omni 0.30's chat-completions API does: turns without audio
(text, e.g. a duet's opening line) go through `/v1/chat/completions` exactly as `omni_server` sends
them. The realtime prompt is the user's audio alone: no system prompt, no history, no image, and the
server's default voice; the history is still kept, for the chat-completions turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from pydantic import Field

from liveavatar.dialogue import omni_server
from liveavatar.dialogue.base import DialogueError, ReplyEvent, TextDelta, UserTurn
from liveavatar.dialogue.omni import realtime_wire as wire
from liveavatar.dialogue.registry import DialogueSetup
from liveavatar.media import AudioChunk, StreamResampler, resample

log = logging.getLogger(__name__)

MAX_TURN_S = 120.0  # a user turn longer than this keeps only its last MAX_TURN_S seconds for a re-upload


class Options(omni_server.Options):
    """`dialogue.options` of a persona that hears the user through vLLM-Omni's realtime API.

    `base_url` is the server's API root as for `omni_server` (http://HOST:PORT/v1); the realtime
    endpoint is its `/realtime` over ws:// (wss:// for https). The chat-completions options apply to
    turns without audio.
    """

    append_ms: int = Field(
        100, ge=20, le=1000,
        description="Audio per input_audio_buffer.append event while the user speaks, in ms. Default 100.",
    )


@dataclass
class RealtimeTrace:
    """When one realtime reply's milestones happened (time.perf_counter seconds); None until they happen."""

    started: float  # reply() was called: the user's turn is over
    committed: float | None = None  # the last audio and the final commit were sent
    uploaded_at_end_s: float = 0.0  # seconds of user audio still to send when the turn ended
    first_text: float | None = None
    first_audio_received: float | None = None
    first_audio_ready: float | None = None
    finished: float | None = None
    prompt_tokens: int | None = None  # the prompt's length as the server counted it (transcription.done)


class OmniRealtimeBackend(omni_server.OmniServerBackend):
    """Streams the user's speech to vLLM-Omni's `/v1/realtime` as it is captured; see the module docstring."""

    listens_while_user_speaks = True

    def __init__(self, options: Options, system_prompt: str) -> None:
        super().__init__(options, system_prompt)
        self.options: Options = options
        self._url = realtime_url(options.base_url)
        self._live: _Upload | None = None  # the turn the user is speaking, streaming up
        self._turn_pts: float | None = None
        self._turn_audio: list[np.ndarray] = []  # the current user turn at 16 kHz, as captured
        self._turn_samples = 0
        self._resampler: StreamResampler | None = None
        self._uploads: set[_Upload] = set()
        self._warned_image = False
        self.last_realtime_trace: RealtimeTrace | None = None

    # ------------------------------------------------------------ while the user speaks

    def user_turn_started(self, audio: AudioChunk) -> None:
        """The user began a turn; `audio` is what was captured of it so far. Opens the turn's session."""
        self._drop_live()
        self._turn_pts = audio.pts
        self._resampler = None
        pcm = self._to_input_rate(audio)
        self._turn_audio, self._turn_samples = [pcm], len(pcm)
        self._live = self._open(pcm)

    def user_audio(self, chunk: AudioChunk) -> None:
        """More of the current user turn, as captured: sent on at once (in `append_ms` batches)."""
        if self._turn_pts is None:
            return
        pcm = self._to_input_rate(chunk)
        self._turn_audio.append(pcm)
        self._turn_samples += len(pcm)
        if self._turn_samples > MAX_TURN_S * wire.INPUT_RATE:  # bounded: its first chunk (names the turn), the rest recent
            self._turn_samples -= len(self._turn_audio.pop(1 if len(self._turn_audio) > 1 else 0))
        if self._live is not None and not self._live.finished:
            self._live.feed(pcm)

    # ------------------------------------------------------------ the reply

    async def reply(self, turn: UserTurn) -> AsyncIterator[ReplyEvent]:
        """Stream the reply to `turn`: over the realtime session when it has audio, else chat completions."""
        if turn.audio is None or not len(turn.audio.pcm):
            async for event in super().reply(turn):
                yield event
            return
        if turn.image is not None and not self._warned_image:
            self._warned_image = True
            log.warning("omni_realtime: the realtime API takes audio only; camera images are not sent")
        exchange = self._history.begin(turn)
        trace = RealtimeTrace(started=time.perf_counter())
        self.last_realtime_trace = trace
        upload = self._upload_for(turn, trace)
        finished = False
        try:
            async for event in self._realtime_events(upload, trace):
                if isinstance(event, TextDelta):
                    exchange.reply_text += event.text
                yield event
            finished = True
        except DialogueError:
            if not exchange.reply_text:
                self._history.forget(exchange)
            raise
        finally:
            self._uploads.discard(upload)
            if finished:
                await upload.close()
            else:
                upload.abort()  # cancelled (barge-in) or failed: drop the connection now

    async def aclose(self) -> None:
        """Close every realtime connection and the HTTP pool."""
        self._drop_live()
        for upload in list(self._uploads):
            upload.abort()
        self._uploads.clear()
        await super().aclose()

    # ------------------------------------------------------------ internals

    def _upload_for(self, turn: UserTurn, trace: RealtimeTrace) -> "_Upload":
        """The live session of this very turn (same start), or a new one carrying the turn's whole audio."""
        assert turn.audio is not None
        live, self._live = self._live, None
        same_turn = self._is_live_turn(turn.audio)
        if live is not None and same_turn and not live.finished and live.failed is None:
            trace.uploaded_at_end_s = live.unsent_s
            live.finish()
            # This reply may be one prepared at a pause, dropped if the user goes on: keep a session open
            # that already holds the turn so far and goes on listening, for the reply to the whole turn.
            self._live = self._open(np.concatenate(self._turn_audio))
            return live
        if live is not None:
            live.abort()
            self._uploads.discard(live)
        pcm = self._to_input_rate(turn.audio, stream=False)
        upload = self._open(pcm)
        trace.uploaded_at_end_s = len(pcm) / wire.INPUT_RATE
        upload.finish()
        return upload

    def _is_live_turn(self, audio: AudioChunk) -> bool:
        """`audio` is the turn being captured: it starts where that turn started, with the same samples."""
        if self._turn_pts is None or abs(audio.pts - self._turn_pts) > 1e-6 or audio.rate != wire.INPUT_RATE:
            return False
        captured = self._turn_audio[0] if self._turn_audio else np.zeros(0, np.float32)
        n = min(len(captured), len(audio.pcm), wire.INPUT_RATE // 10)
        return n > 0 and np.array_equal(captured[:n], np.asarray(audio.pcm[:n], np.float32))

    async def _realtime_events(self, upload: "_Upload", trace: RealtimeTrace) -> AsyncIterator[ReplyEvent]:
        opts = self.options
        seconds = 0.0
        text_done = audio_done = False
        first = True
        first_deadline = trace.started + opts.first_byte_timeout_s
        while not audio_done:
            if first:  # until the reply's first event (session.created and the like do not count)
                timeout = max(0.0, first_deadline - time.perf_counter())
                on_timeout = (f"vLLM-Omni realtime at {self._url} sent nothing for {opts.first_byte_timeout_s:.1f} s "
                              "after the turn ended (first-event timeout) — is it overloaded or still loading the model?")
            else:
                timeout = opts.chunk_timeout_s
                on_timeout = f"vLLM-Omni realtime stream stalled: no data for {timeout:.1f} s"
            event = await omni_server._within(upload.next_event(), timeout, on_timeout)
            if trace.committed is None:
                trace.committed = upload.committed_at
            first = first and isinstance(event, wire.Other)
            if isinstance(event, wire.TextEvent):
                if event.text:
                    trace.first_text = trace.first_text or time.perf_counter()
                    yield TextDelta(event.text)
            elif isinstance(event, wire.AudioEvent):
                if len(event.pcm):
                    now = time.perf_counter()
                    chunk = AudioChunk(event.pcm, event.rate, pts=seconds)
                    seconds += chunk.duration
                    if trace.first_audio_received is None:
                        trace.first_audio_received, trace.first_audio_ready = upload.last_received, now
                    yield chunk
            elif isinstance(event, wire.TextDone):
                text_done = True
                trace.prompt_tokens = event.prompt_tokens
            elif isinstance(event, wire.AudioDone):
                audio_done = True
        trace.finished = time.perf_counter()
        if not text_done:
            log.info("omni_realtime: the speech ended before transcription.done")

    def _open(self, pcm: np.ndarray) -> "_Upload":
        upload = _Upload(self._url, self.options, self._headers_ws(), pcm)
        self._uploads.add(upload)
        return upload

    def _drop_live(self) -> None:
        live, self._live = self._live, None
        self._turn_pts = None
        if live is not None and not live.finished:
            live.abort()
            self._uploads.discard(live)

    def _to_input_rate(self, audio: AudioChunk, stream: bool = True) -> np.ndarray:
        pcm = np.asarray(audio.pcm, np.float32)
        if audio.rate == wire.INPUT_RATE:
            return pcm
        if not stream:
            return resample(pcm, audio.rate, wire.INPUT_RATE)
        if self._resampler is None or self._resampler.rate_in != audio.rate:
            self._resampler = StreamResampler(audio.rate, wire.INPUT_RATE)
        return self._resampler.process(pcm)

    def _headers_ws(self) -> dict[str, str]:
        return {k: v for k, v in self._headers().items() if k == "Authorization"}


class _Upload:
    """One realtime connection: the user's audio of one turn going up, then that turn's reply coming down."""

    def __init__(self, url: str, options: Options, headers: dict[str, str], initial: np.ndarray) -> None:
        self.url = url
        self.options = options
        self.headers = headers
        self.finished = False  # no more audio will be fed (the final commit follows)
        self.failed: BaseException | None = None
        self.committed_at: float | None = None
        self.last_received: float | None = None
        self._pending: list[np.ndarray] = [initial] if len(initial) else []
        self._wake = asyncio.Event()
        self._wake.set()
        self._socket: Any = None
        self._sender = asyncio.create_task(self._send_all(), name="omni-realtime-upload")
        self._sender.add_done_callback(self._note_failure)

    @property
    def unsent_s(self) -> float:
        """Seconds of audio fed but not yet sent."""
        return sum(len(p) for p in self._pending) / wire.INPUT_RATE

    def feed(self, pcm: np.ndarray) -> None:
        if len(pcm) and not self.finished:
            self._pending.append(pcm)
            self._wake.set()

    def finish(self) -> None:
        """Send what is left, then the final commit."""
        self.finished = True
        self._wake.set()

    async def next_event(self) -> wire.ServerEvent:
        """The next server event after the final commit; raises DialogueError on errors and closed connections."""
        if not self._sender.done():
            await asyncio.shield(self._sender)
        if self.failed is not None:
            raise self._as_dialogue_error(self.failed)
        from websockets.exceptions import ConnectionClosed

        try:
            message = await self._socket.recv()
        except ConnectionClosed as exc:
            raise DialogueError(f"vLLM-Omni realtime at {self.url} closed the connection mid-reply "
                                f"({exc.rcvd.code if exc.rcvd else 'no close frame'}) — did the server restart?") from None
        self.last_received = time.perf_counter()
        return wire.parse_event(message)

    async def close(self) -> None:
        """Close after a complete reply (the closing handshake is short on a healthy connection)."""
        self._sender.cancel()
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._socket.close(), 1.0)

    def abort(self) -> None:
        """Drop the connection at once (barge-in, failure): the server cancels the generation."""
        self.finished = True
        self._sender.cancel()
        if self._socket is not None:
            transport = getattr(self._socket, "transport", None)
            if transport is not None:
                transport.abort()

    # ------------------------------------------------------------ sending

    async def _send_all(self) -> None:
        from websockets.asyncio.client import connect

        opts = self.options
        try:
            self._socket = await connect(self.url, additional_headers=self.headers, open_timeout=opts.connect_timeout_s,
                                         max_size=None, compression=None, close_timeout=1.0, ping_interval=None)
        except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
            raise DialogueError(self._connect_failure(exc)) from None
        except Exception as exc:  # websockets' handshake errors (HTTP status, bad response)
            raise DialogueError(f"vLLM-Omni realtime at {self.url} refused the session: {exc}") from None
        await self._socket.send(wire.session_update(opts.model))
        await self._socket.send(wire.start_generation())
        batch = max(1, opts.append_ms * wire.INPUT_RATE // 1000)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and (self.finished or sum(len(p) for p in self._pending) >= batch):
                pcm = np.concatenate(self._pending)
                self._pending = []
                for start in range(0, len(pcm), batch):
                    part = pcm[start : start + batch]
                    if len(part) < batch and not self.finished:
                        self._pending = [part]  # wait for a full batch while the user speaks
                        break
                    await self._socket.send(wire.append_audio(part))
            if self.finished and not self._pending:
                await self._socket.send(wire.finish_input())
                self.committed_at = time.perf_counter()
                return

    def _note_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failed = task.exception()

    def _connect_failure(self, exc: BaseException) -> str:
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return (f"cannot reach vLLM-Omni realtime at {self.url}: no answer within "
                    f"{self.options.connect_timeout_s:.1f} s (connect timeout) — is the host up and the port open?")
        port = urlsplit(self.url).port
        return (f"cannot reach vLLM-Omni realtime at {self.url}: {omni_server._connect_reason(exc)} — is "
                f"`vllm serve {self.options.model} --omni --port {port}` running?")

    def _as_dialogue_error(self, exc: BaseException) -> DialogueError:
        if isinstance(exc, DialogueError):
            return exc
        return DialogueError(f"sending the user's audio to vLLM-Omni realtime at {self.url} failed: "
                             f"{type(exc).__name__}: {exc}")


def realtime_url(base_url: str) -> str:
    """The realtime WebSocket URL for an OpenAI-style API root: http://h:p/v1 -> ws://h:p/v1/realtime."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path + "/realtime", "", ""))


def create(options: Options, setup: DialogueSetup) -> OmniRealtimeBackend:
    """Build the backend for one persona; nothing connects until the user's first turn."""
    return OmniRealtimeBackend(options, setup.system_prompt)


__all__ = ["OmniRealtimeBackend", "Options", "RealtimeTrace", "create", "realtime_url"]
