"""The end-of-turn model's side of turn-taking: each pause the TurnTaker proposes is put to the model off the
event loop, and its verdict comes back to the conversation as an `EndOfTurnVerdict` event on its one queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from liveavatar.agent.replies import UserSpan
from liveavatar.agent.turns import EndOfTurnProposed
from liveavatar.devices.end_of_turn import SPEECH_LEAD_S, SmartTurn, Verdict, as_if_silent_for

VERDICTS_KEPT = 64  # verdicts remembered for turns not yet ended (the rest were pauses the person spoke on after)


@dataclass(frozen=True)
class EndOfTurnVerdict:
    """The end-of-turn model's verdict on the pause after the person's speech over `span`."""

    span: UserSpan
    verdict: Verdict


class TurnVerdicts:
    """Runs `model` on the audio of each proposed pause (`ask`) and posts its `EndOfTurnVerdict`; remembers each
    verdict until its turn ends (`take`) for the turn's metrics."""

    def __init__(self, model: SmartTurn, audio_between: Callable[[float, float], np.ndarray], still_wanted: Callable[[UserSpan], bool],
                 post: Callable[[EndOfTurnVerdict], None], owns_model: bool = False) -> None:  # fmt: skip
        self.model = model
        self.audio_between = audio_between
        self.still_wanted = still_wanted
        self.post = post
        self.owns_model = owns_model
        self._asking: set[asyncio.Task] = set()
        self._verdicts: dict[UserSpan, Verdict] = {}

    def ask(self, proposal: EndOfTurnProposed) -> None:
        """Put the person's speech since `proposal.onset` (and the silence after it, lengthened when asked ahead) to the model;
        never waits."""
        span = UserSpan(proposal.onset, proposal.speech_end)
        audio = as_if_silent_for(self.audio_between(proposal.onset - SPEECH_LEAD_S, proposal.t), proposal.ahead_s)
        task = asyncio.create_task(self._judge(span, audio), name=f"end-of-turn-{span.speech_end:.2f}")
        self._asking.add(task)
        task.add_done_callback(self._asking.discard)

    async def _judge(self, span: UserSpan, audio: np.ndarray) -> None:
        verdict = await self.model.judge(audio, lambda: self.still_wanted(span))
        if verdict is None:
            return  # the person went on (or the turn ended) before the model was free to hear this pause
        self._verdicts[span] = verdict
        if len(self._verdicts) > VERDICTS_KEPT:
            del self._verdicts[next(iter(self._verdicts))]
        self.post(EndOfTurnVerdict(span, verdict))

    def take(self, span: UserSpan) -> Verdict | None:
        """The verdict on the pause that ended the turn over `span`, if it came (forgotten once taken)."""
        return self._verdicts.pop(span, None)

    async def close(self) -> None:
        """Stop asking; the model's thread stops too if this object created the model."""
        for task in list(self._asking):
            task.cancel()
        for task in list(self._asking):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.owns_model:
            self.model.close()
