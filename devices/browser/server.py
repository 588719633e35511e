"""The browser device's server: serves the page and holds each page's session (signalling and events on one websocket;
media over WebRTC, or over the same websocket as a fallback).

Binds 127.0.0.1 unless told otherwise; any other address needs a token. The Host and Origin headers
must name this server (so a web page elsewhere, or a DNS-rebinding trick, cannot connect), messages
are size-capped, a malformed message gets an error event and the connection lives on. At most
`max_sessions` pages hold a conversation at once; the next one is turned away with a message saying so
(and, when the server holds several, the page itself says that all seats are taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import resources
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from liveavatar.devices.browser.protocol import (MAX_MESSAGE_BYTES, PLAYBACK_LEAD_S, CameraImage, MicAudio, ProtocolError,
                                                 decode_binary, decode_text, encode_frame)  # fmt: skip
from liveavatar.devices.browser.vp8 import DEFAULT_VIDEO_BITRATE
from liveavatar.devices.sink import FrameSink
from liveavatar.devices.sources import AudioSource
from liveavatar.media import AudioChunk, AVFrame

log = logging.getLogger(__name__)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/capture-worklet.js": ("capture-worklet.js", "text/javascript; charset=utf-8")}  # fmt: skip
HANDOVER_S = 5.0  # how long a new page waits for a closed page's session to wind down
MIC_QUEUE_CHUNKS = 500  # ~10 s of 20 ms chunks; beyond that the conversation is stuck and audio is dropped
ONE_PAGE = "another page is already in this conversation; close it first"
Transport = Literal["webrtc", "websocket"]
SEATS_TAKEN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>All seats taken</title><style>body{{font-family:system-ui,sans-serif;background:#111;color:#eee;display:grid;
place-items:center;height:90vh}}</style></head><body><main><h1>All seats are taken</h1><p>{busy} of {seats}
conversations are in progress on this server. This page tries again every 10 seconds.</p></main></body></html>"""


class PageError(OSError):
    """The page cannot be served; the message says why in one line."""


class BrowserSession(AudioSource, FrameSink):
    """One connected page: its microphone is an AudioSource, its screen and speaker a FrameSink."""

    rate = 16000

    def __init__(self, websocket: ServerConnection, now: Callable[[], float], transport: Transport = "websocket",
                 ice_servers: tuple = (), video_bitrate: int = DEFAULT_VIDEO_BITRATE) -> None:  # fmt: skip
        self.websocket = websocket
        self.now = now
        self.transport = transport
        self._camera: Any = None  # the latest webcam image (RGB) sent over the websocket
        self._mic: asyncio.Queue[AudioChunk | None] = asyncio.Queue(maxsize=MIC_QUEUE_CHUNKS)
        self.frames_sent = 0
        self._sent_since_flush_s = 0.0  # audio sent since the last flush (the page holds at most PLAYBACK_LEAD_S of it)
        self.played: dict[str, Any] = {}
        self.hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()  # the page's first words
        self.ended = asyncio.Event()  # set once the session's conversation has been torn down
        self.rtc = None
        if transport == "webrtc":
            from liveavatar.devices.browser.webrtc import WebRTCMedia  # aiortc is imported only when used

            self.rtc = WebRTCMedia(self._hear, ice_servers, video_bitrate)

    @property
    def camera(self) -> np.ndarray | None:
        """The webcam's latest image (RGB uint8), for backends that take video."""
        return self.rtc.camera_image() if self.rtc is not None else self._camera

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        """Microphone audio as it arrives; ends when the page disconnects."""
        while (chunk := await self._mic.get()) is not None:
            yield chunk

    def _hear(self, pcm: np.ndarray) -> None:
        """16 kHz microphone samples that just arrived."""
        try:
            self._mic.put_nowait(AudioChunk(pcm, self.rate, pts=self.now() - len(pcm) / self.rate))
        except asyncio.QueueFull:
            log.warning("microphone audio dropped: the conversation is not keeping up")

    async def write(self, frame: AVFrame) -> None:
        """Send one frame with its audio."""
        if self.rtc is not None:
            self.rtc.write(frame)
            self.frames_sent += 1
            return
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.send(encode_frame(frame))
            self.frames_sent += 1
            self._sent_since_flush_s += len(frame.audio) / frame.audio_rate

    async def flush(self) -> float:
        """Make the page drop everything it has not played yet; returns the seconds of audio that was.

        Over the websocket the page holds its playback lead, PLAYBACK_LEAD_S; over WebRTC see WebRTCMedia.flush.
        """
        if self.rtc is not None:
            dropped, until_rtp = self.rtc.flush()
            await self.send_event({"type": "flush", "until_rtp": until_rtp})
            return dropped
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
            if self.rtc is not None:
                raise ProtocolError("this server takes the microphone and camera over WebRTC, not the websocket")
            if isinstance(item, MicAudio):
                self._hear(item.pcm)
            elif isinstance(item, CameraImage):
                self._camera = item.image
            return
        event = decode_text(message)
        kind = event["type"]
        if kind == "played":
            self.played = event
            if self.rtc is not None and isinstance(event.get("playout_s"), (int, float)):
                self.rtc.report(float(event["playout_s"]))
        elif kind == "hello":
            if not self.hello.done():
                self.hello.set_result(event)
        elif kind == "offer":
            await self._answer(event)
        elif kind != "stop":
            raise ProtocolError(f"unknown message type {kind!r}")

    async def _answer(self, event: dict[str, Any]) -> None:
        if self.rtc is None:
            raise ProtocolError("this server sends media over the websocket (--transport websocket); no WebRTC offer expected")
        if not isinstance(event.get("sdp"), str):
            raise ProtocolError('an offer needs an "sdp" string')
        try:
            sdp = await self.rtc.answer(event["sdp"])
        except ValueError as exc:
            raise ProtocolError(f"cannot accept this WebRTC offer: {exc}") from None
        await self.send_event({"type": "answer", "sdp": sdp})


SessionRunner = Callable[[BrowserSession], Awaitable[None]]


@dataclass
class BrowserServer:
    """Serves the page at http://host:port/ and runs `run_session` for each connected page, up to `max_sessions` at once."""

    run_session: SessionRunner
    now: Callable[[], float]
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # sent to the page on connect (fps, size, ...)
    transport: Transport = "webrtc"
    ice_servers: tuple = ()  # webrtc.IceServer entries; none by default: no STUN or TURN server is contacted
    video_bitrate: int = DEFAULT_VIDEO_BITRATE  # webrtc: the avatar video's ceiling, bits per second
    max_sessions: int = 1
    busy_message: str = ONE_PAGE
    _server: Server | None = None
    _active: dict[BrowserSession, asyncio.Task] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK and not self.token:
            raise ValueError(f"serving on {self.host} makes the page reachable from other machines: give a --token")
        if self.transport not in ("webrtc", "websocket"):
            raise ValueError(f"unknown transport {self.transport!r}; expected webrtc or websocket")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")

    @property
    def url(self) -> str:
        """The page's address (with the token, when there is one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={quote(self.token, safe='')}" if self.token else "")

    @property
    def sessions(self) -> list[BrowserSession]:
        """The pages holding a conversation now."""
        return list(self._active)

    async def start(self) -> None:
        """Start listening (port 0 picks a free port); a port in use or an address not of this machine is a PageError."""
        try:
            self._server = await serve(self._connection, self.host, self.port, process_request=self._http,
                                       max_size=MAX_MESSAGE_BYTES, max_queue=64, compression=None)  # fmt: skip
        except OSError as exc:
            reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise PageError(f"cannot serve the page on {self.host}:{self.port}: {reason}") from None
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening, end every session and wait for their tasks."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._active.values()):
            task.cancel()
        for task in list(self._active.values()):
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
        if url.path == "/" and self.max_sessions > 1 and self._seats_left() == 0:
            page = SEATS_TAKEN_PAGE.format(busy=len(self._active), seats=self.max_sessions)
            response = self._reply(HTTPStatus.SERVICE_UNAVAILABLE, page, "text/html; charset=utf-8")
            response.headers["Retry-After"] = "10"
            return response
        if url.path in STATIC:
            name, kind = STATIC[url.path]
            body = resources.files("liveavatar.devices.browser").joinpath("static", name).read_bytes()
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

    def _seats_left(self) -> int:
        return self.max_sessions - len(self._active)

    async def _connection(self, websocket: ServerConnection) -> None:
        closing = [s for s in self._active if s.websocket.state in (State.CLOSING, State.CLOSED)]
        if self._seats_left() == 0 and closing:  # a reloaded page: let the old session finish
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.wait([asyncio.ensure_future(s.ended.wait()) for s in closing],
                                                    return_when=asyncio.FIRST_COMPLETED), HANDOVER_S)  # fmt: skip
        if self._seats_left() == 0:
            await websocket.send(json.dumps({"type": "error", "code": "busy", "message": self.busy_message}))
            await websocket.close(1013, "busy")
            return
        session = BrowserSession(websocket, self.now, self.transport, self.ice_servers, self.video_bitrate)
        task = asyncio.current_task()
        assert task is not None
        self._active[session] = task
        receiver = asyncio.create_task(session.receive(), name="browser-receive")
        runner = asyncio.create_task(self.run_session(session), name="browser-session")
        try:
            ice = [s.as_page_config() for s in self.ice_servers]
            await session.send_event({"type": "config", "jitter_s": PLAYBACK_LEAD_S, "transport": self.transport,
                                      "ice_servers": ice, **self.config})  # fmt: skip
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
            if session.rtc is not None:
                with contextlib.suppress(Exception):
                    await session.rtc.aclose()
            self._active.pop(session, None)
            session.ended.set()

