"""The browser device's server: serves the page and speaks the media protocol over one websocket.

Binds 127.0.0.1 unless told otherwise; any other address needs a token. The Host and Origin headers
must name this server (so a web page elsewhere, or a DNS-rebinding trick, cannot connect), messages
are size-capped, a malformed message gets an error event and the connection lives on, and one page
at a time holds the conversation: a second one is turned away with a message saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.http11 import Request, Response

from devices.browser.protocol import MAX_MESSAGE_BYTES, PLAYBACK_LEAD_S, CameraImage, MicAudio, ProtocolError, decode_binary, decode_text, encode_frame
from devices.sink import FrameSink
from devices.sources import AudioSource
from media import AudioChunk, AVFrame

log = logging.getLogger(__name__)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/capture-worklet.js": ("capture-worklet.js", "text/javascript; charset=utf-8")}  # fmt: skip
HANDOVER_S = 5.0  # how long a new page waits for a closed page's session to wind down
MIC_QUEUE_CHUNKS = 500  # ~10 s of 20 ms chunks; beyond that the conversation is stuck and audio is dropped


class BrowserSession(AudioSource, FrameSink):
    """One connected page: its microphone is an AudioSource, its screen and speaker a FrameSink."""

    rate = 16000

    def __init__(self, websocket: ServerConnection, now: Callable[[], float]) -> None:
        self.websocket = websocket
        self.now = now
        self.camera: Any = None  # the latest webcam image (RGB), for backends that take video
        self._mic: asyncio.Queue[AudioChunk | None] = asyncio.Queue(maxsize=MIC_QUEUE_CHUNKS)
        self.frames_sent = 0
        self._sent_since_flush_s = 0.0  # audio sent since the last flush (the page holds at most PLAYBACK_LEAD_S of it)
        self.played: dict[str, Any] = {}
        self.ended = asyncio.Event()  # set once the session's conversation has been torn down

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        """Microphone audio as it arrives; ends when the page disconnects."""
        while (chunk := await self._mic.get()) is not None:
            yield chunk

    async def write(self, frame: AVFrame) -> None:
        """Send one frame with its audio."""
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.send(encode_frame(frame))
            self.frames_sent += 1
            self._sent_since_flush_s += len(frame.audio) / frame.audio_rate

    async def flush(self) -> float:
        """Tell the page to drop everything it has not played yet: about its playback lead, PLAYBACK_LEAD_S."""
        await self.send_event({"type": "flush"})
        dropped, self._sent_since_flush_s = min(PLAYBACK_LEAD_S, self._sent_since_flush_s), 0.0
        return dropped

    async def aclose(self) -> None:
        """End the microphone stream."""
        with contextlib.suppress(asyncio.QueueFull):
            self._mic.put_nowait(None)

    async def send_event(self, event: dict[str, Any]) -> None:
        """A JSON event for the page (state, transcript, metrics, errors)."""
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.send(json.dumps(event))

    async def receive(self) -> None:
        """Read the page's messages until it disconnects; malformed ones get an error event."""
        try:
            async for message in self.websocket:
                try:
                    await self._handle(message)
                except ProtocolError as exc:
                    await self.send_event({"type": "error", "message": f"bad message: {exc}"})
        except ConnectionClosed:
            pass
        finally:
            await self.aclose()

    async def _handle(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            item = decode_binary(message)
            if isinstance(item, MicAudio):
                chunk = AudioChunk(item.pcm, self.rate, pts=self.now() - len(item.pcm) / self.rate)
                try:
                    self._mic.put_nowait(chunk)
                except asyncio.QueueFull:
                    log.warning("microphone audio dropped: the conversation is not keeping up")
            elif isinstance(item, CameraImage):
                self.camera = item.image
            return
        event = decode_text(message)
        if event["type"] == "played":
            self.played = event
        elif event["type"] not in ("hello", "stop"):
            raise ProtocolError(f"unknown message type {event['type']!r}")


SessionRunner = Callable[[BrowserSession], Awaitable[None]]


@dataclass
class BrowserServer:
    """Serves the page at http://host:port/ and runs `run_session` for the one connected page."""

    run_session: SessionRunner
    now: Callable[[], float]
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # sent to the page on connect (fps, size, ...)
    _server: Server | None = None
    _active: BrowserSession | None = None
    _sessions: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK and not self.token:
            raise ValueError(f"serving on {self.host} makes the page reachable from other machines: give a --token")

    @property
    def url(self) -> str:
        """The page's address (with the token, when there is one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    async def start(self) -> None:
        """Start listening (port 0 picks a free port)."""
        self._server = await serve(self._connection, self.host, self.port, process_request=self._http,
                                   max_size=MAX_MESSAGE_BYTES, max_queue=64, compression=None)  # fmt: skip
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening, end every session and wait for their tasks."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._sessions):
            task.cancel()
        for task in list(self._sessions):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------------------ HTTP

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        host = request.headers.get("Host", "")
        if not self._host_allowed(host):
            return self._reply(HTTPStatus.FORBIDDEN, f"unexpected Host header {host!r}")
        if url.path == "/ws":
            if self.token and not hmac.compare_digest(parse_qs(url.query).get("token", [""])[0], self.token):
                return self._reply(HTTPStatus.UNAUTHORIZED, "missing or wrong token")
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != host:
                return self._reply(HTTPStatus.FORBIDDEN, f"origin {origin!r} may not connect")
            return None  # go on with the websocket handshake
        if url.path in STATIC:
            name, kind = STATIC[url.path]
            body = resources.files("devices.browser").joinpath("static", name).read_bytes()
            return self._reply(HTTPStatus.OK, body, kind)
        if url.path == "/favicon.ico":
            return self._reply(HTTPStatus.NO_CONTENT, b"")
        return self._reply(HTTPStatus.NOT_FOUND, "not found")

    def _host_allowed(self, host: str) -> bool:
        """The Host header must name this server (stops DNS rebinding); a wildcard bind relies on the token."""
        name, _, port = host.rpartition(":")
        if port != str(self.port):
            return False
        name = name.strip("[]")
        if self.host in LOOPBACK:
            return name in LOOPBACK
        return self.host in ("0.0.0.0", "::") or name in (self.host, *LOOPBACK)

    @staticmethod
    def _reply(status: HTTPStatus, body: str | bytes, kind: str = "text/plain; charset=utf-8") -> Response:
        data = body.encode() if isinstance(body, str) else body
        headers = Headers([("Content-Type", kind), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")])
        return Response(status.value, status.phrase, headers, data)

    # ------------------------------------------------------------------------------ websocket

    async def _connection(self, websocket: ServerConnection) -> None:
        if self._active is not None and self._active.websocket.state in (State.CLOSING, State.CLOSED):
            with contextlib.suppress(asyncio.TimeoutError):  # a reloaded page: let the old session finish
                await asyncio.wait_for(self._active.ended.wait(), HANDOVER_S)
        if self._active is not None:
            await websocket.send(json.dumps({"type": "error", "message": "another page is already in this conversation; close it first"}))
            await websocket.close(1013, "busy")
            return
        session = BrowserSession(websocket, self.now)
        self._active = session
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        receiver = asyncio.create_task(session.receive(), name="browser-receive")
        runner = asyncio.create_task(self.run_session(session), name="browser-session")
        try:
            await session.send_event({"type": "config", "jitter_s": PLAYBACK_LEAD_S, **self.config})
            done, _ = await asyncio.wait({receiver, runner}, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                if finished is runner and not finished.cancelled() and finished.exception() is not None:
                    log.error("conversation failed", exc_info=finished.exception())
                    await session.send_event({"type": "error", "message": f"conversation failed: {finished.exception()}"})
        finally:
            for child in (runner, receiver):
                child.cancel()
            for child in (runner, receiver):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await child
            self._active = None
            session.ended.set()
            self._sessions.discard(task)
