"""A far network between an in-process server and its pages: the RTP packets the server sends arrive late, and some
never arrive.

This machine's kernel has no netem (`tc qdisc add dev lo root netem` fails: "Specified qdisc kind is unknown") and
headless Chromium ignores WebRTC's fake-network field trials, so the link is emulated where the server hands its
packets to aiortc's DTLS transport: each RTP packet (voice, video and their retransmissions; not RTCP) is dropped
with probability `loss` or sent `delay_s` ± `jitter_s` later (so packets may also arrive out of order). What the
page and the server do about it is the real thing: the browser's jitter buffers, its NACKs answered by aiortc from
its history, its keyframe requests, Opus concealing lost voice. The page's own packets (microphone, camera, RTCP)
travel as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Link:
    """The emulated path from the server to its pages: `loss` (0-1) of RTP packets dropped, the others `delay_s`
    (seconds) ± `jitter_s` (uniform) late."""

    loss: float = 0.02
    delay_s: float = 0.05
    jitter_s: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0 or self.delay_s < 0.0 or not 0.0 <= self.jitter_s <= self.delay_s:
            raise ValueError(f"{self}: expected 0 <= loss < 1 and 0 <= jitter_s <= delay_s")

    def describe(self) -> dict[str, float]:
        """The link's settings, for a benchmark line."""
        return {"loss": self.loss, "delay_s": self.delay_s, "jitter_s": self.jitter_s}


@dataclass
class LinkCounts:
    """RTP packets that went onto the link (`sent`) and those it dropped."""

    sent: int = 0
    dropped: int = 0
    _in_flight: set[asyncio.Task | asyncio.TimerHandle] = field(default_factory=set, repr=False)


@contextlib.contextmanager
def lossy_link(link: Link, seed: int = 0) -> Iterator[LinkCounts]:
    """While inside, every peer connection of this process sends its RTP over `link`; yields the packets counted."""
    from aiortc.rtcdtlstransport import RTCDtlsTransport
    from aiortc.rtp import is_rtcp

    original = RTCDtlsTransport._send_rtp
    chance = random.Random(seed)
    counts = LinkCounts()

    async def send_over_link(transport: RTCDtlsTransport, data: bytes) -> None:
        if is_rtcp(data):
            return await original(transport, data)
        counts.sent += 1
        if chance.random() < link.loss:
            counts.dropped += 1
            return
        loop = asyncio.get_running_loop()
        late = link.delay_s + chance.uniform(-link.jitter_s, link.jitter_s)
        handle = loop.call_later(late, lambda: _start(counts, handle, original(transport, data)))
        counts._in_flight.add(handle)

    RTCDtlsTransport._send_rtp = send_over_link  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        RTCDtlsTransport._send_rtp = original  # type: ignore[method-assign]
        for waiting in list(counts._in_flight):  # packets still on the link when it goes are lost with it
            waiting.cancel()


def _start(counts: LinkCounts, handle: asyncio.TimerHandle, sending: Coroutine[Any, Any, None]) -> None:
    counts._in_flight.discard(handle)
    task = asyncio.ensure_future(_quietly(sending))
    counts._in_flight.add(task)
    task.add_done_callback(counts._in_flight.discard)


async def _quietly(sending: Coroutine[Any, Any, None]) -> None:
    """A delayed packet whose connection closed meanwhile is simply lost."""
    with contextlib.suppress(ConnectionError):
        await sending
