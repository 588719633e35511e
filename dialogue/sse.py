"""Server-sent events (text/event-stream) parsed incrementally from network bytes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event's `data` and the time (perf_counter s) its last byte was received."""

    data: str
    received: float


class SseDecoder:
    """Incremental text/event-stream parser: feed network bytes, get complete events.

    Lines end in LF, CRLF or CR; `data:` lines of one event are joined with LF; a blank line ends the
    event; comments (`:` keep-alives) and other fields are ignored.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes, received: float) -> list[SseEvent]:
        """Events completed by `chunk`, which arrived at `received`."""
        self._buffer += chunk
        events: list[SseEvent] = []
        while True:
            line, found = self._next_line()
            if not found:
                return events
            if not line:
                if self._data:
                    events.append(SseEvent("\n".join(self._data), received))
                    self._data = []
                continue
            name, _, value = line.partition(":")
            if name == "data":
                self._data.append(value[1:] if value.startswith(" ") else value)

    def close(self, received: float) -> SseEvent | None:
        """At end of stream: the event left without its closing blank line (possibly cut short), if any."""
        events = self.feed(b"\n\n", received)
        return events[0] if events else None

    def _next_line(self) -> tuple[str, bool]:
        buf = self._buffer
        lf, cr = buf.find(b"\n"), buf.find(b"\r")
        if lf < 0 and cr < 0:
            return "", False
        if cr >= 0 and (lf < 0 or cr < lf):
            if cr == len(buf) - 1:
                return "", False  # a CR at the end may be the first half of CRLF: wait for more
            end, skip = cr, 2 if buf[cr + 1 : cr + 2] == b"\n" else 1
        else:
            end, skip = lf, 1
        self._buffer = buf[end + skip :]
        return buf[:end].decode("utf-8", errors="replace"), True
