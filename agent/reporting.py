"""What the outside hears of a conversation: JSON-ready events for the page and the console, finished turns for
the metrics log and for whoever collects replies (the offline render)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from liveavatar.agent.metrics import MetricsLog, TurnMetrics
from liveavatar.agent.replies import Reply

EventCallback = Callable[[dict[str, Any]], None]


class Status(enum.Enum):
    """What the page shows the conversation doing (the `state` event)."""

    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    SPEAKING = "speaking"
    PAUSED = "paused"
    LISTENING = "listening"


class Reporter:
    """Turns what happens into events (`on_event`) and finished turns (`metrics`, `on_reply_closed`)."""

    def __init__(self, metrics: MetricsLog, on_event: EventCallback | None = None,
                 on_reply_closed: Callable[[Reply], None] | None = None) -> None:  # fmt: skip
        self.metrics = metrics
        self.on_event = on_event or (lambda event: None)
        self.on_reply_closed = on_reply_closed or (lambda reply: None)

    def status(self, status: Status) -> None:
        """The conversation changed what it is doing."""
        self.on_event({"type": "state", "state": status.value})

    def user_said(self, text: str, generation: int) -> None:
        """What the backend understood the user to say (for the reply `generation`)."""
        self.on_event({"type": "transcript", "role": "user", "text": text, "generation": generation})

    def agent_says(self, reply: Reply, text: str, delta: bool = False) -> None:
        """Text of `reply` as it is released (`delta`: a piece that follows what was shown)."""
        event: dict[str, Any] = {"type": "transcript", "role": "agent", "text": text, "generation": reply.generation}
        if delta:
            event["delta"] = True
        event["speaker"] = reply.speaker.name
        self.on_event(event)

    def end_of_turn(self, probability: float, seconds: float) -> None:
        """The end-of-turn model said how likely the person's pause ends their turn, after `seconds` of work."""
        self.on_event({"type": "end_of_turn", "probability": round(probability, 3), "seconds": round(seconds, 3)})

    def interrupted(self, reply: Reply, heard: str) -> None:
        """`reply` was cut off; `heard` is what the listener heard of it."""
        self.on_event({"type": "interrupted", "generation": reply.generation, "heard": heard})

    def closed(self, reply: Reply, metrics: TurnMetrics | None) -> None:
        """`reply` is over; its turn's figures (if its turn was committed) go to the log and the page."""
        if metrics is not None:
            self.metrics.add(metrics)
            if reply.error:
                self.on_event({"type": "error", "message": reply.error})
            self.on_event({"type": "metrics", **metrics.as_dict()})
        self.on_reply_closed(reply)
