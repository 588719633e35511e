"""Server-sent events (text/event-stream) parsed incrementally from network bytes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from liveavatar.dialogue.base import DialogueError

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The largest event taken (a speech chunk is tens of kB); a server sending more without an end is cut off."""
_LINE_END = re.compile(rb"\r\n|\r|\n")


class EventTooLarge(DialogueError):
    """The server sent a line or an event larger than MAX_EVENT_BYTES."""


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event's `data` and the time (perf_counter s) its last byte was received."""

    data: str
    received: float


class SseDecoder:
    """Incremental text/event-stream parser: feed network bytes, get complete events.

    Lines end in LF, CRLF or CR; `data:` lines of one event are joined with LF; a blank line ends the
    event; comments (`:` keep-alives) and other fields are ignored. Work is linear in the bytes fed
    and memory bounded by `max_event_bytes` (EventTooLarge beyond it).
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = bytearray()
        self._data: list[str] = []
        self._data_bytes = 0

    def feed(self, chunk: bytes, received: float, final: bool = False) -> list[SseEvent]:
        """Events completed by `chunk`, which arrived at `received` (`final`: no more bytes follow)."""
        self._buffer += chunk
        events: list[SseEvent] = []
        pos = 0
        buf = self._buffer
        while (end := _LINE_END.search(buf, pos)) is not None:
            if end.group() == b"\r" and end.end() == len(buf) and not final:
                break  # a CR at the end may be the first half of CRLF: wait for more
            line = buf[pos : end.start()].decode("utf-8", errors="replace")
            pos = end.end()
            if not line:
                if self._data:
                    events.append(SseEvent("\n".join(self._data), received))
                    self._data, self._data_bytes = [], 0
                continue
            name, _, value = line.partition(":")
            if name == "data":
                self._data.append(value[1:] if value.startswith(" ") else value)
                self._data_bytes += len(value)
        del buf[:pos]
        if len(buf) + self._data_bytes > self.max_event_bytes:
            self._buffer, self._data, self._data_bytes = bytearray(), [], 0
            raise EventTooLarge(f"the server sent a stream event over {self.max_event_bytes // 2**20} MiB; the reply was cut off")
        return events

    def close(self, received: float) -> SseEvent | None:
        """At end of stream: the event left without its closing blank line (possibly cut short), if any."""
        events = self.feed(b"\n\n", received, final=True)
        return events[0] if events else None
