"""Two agents taking turns on their own: each one's speech as heard is the other's next turn, in the duet plan's
order, with its gap and limits. `DuetTurns` schedules what follows each reply on the conversation's clock
and posts it (`AgentTurnDue`, `TailDue`) when due; the person taking the floor holds it back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from liveavatar.agent.agents import Agent
from liveavatar.agent.clock import Clock, FrameClock, Timer
from liveavatar.agent.duet_plan import DuetPlan
from liveavatar.agent.metrics import TurnMetrics
from liveavatar.agent.replies import HeardFrom, Reply, ReplyBook, ReplyNews
from liveavatar.dialogue.base import UserTurn


@dataclass(frozen=True)
class NextTurn:
    """`agent` answers `turn` in `after_s` seconds (unless the person has the floor by then)."""

    agent: Agent
    turn: UserTurn
    heard_from: HeardFrom
    after_s: float


@dataclass(frozen=True)
class DuetOver:
    """No more agent turns: the tail begins in `after_s` seconds (unless the person has the floor by then)."""

    after_s: float


@dataclass(frozen=True)
class AgentTurnDue:
    """The duet's next agent turn is due."""

    step: NextTurn


@dataclass(frozen=True)
class TailDue:
    """The duet has no more turns: after its tail, the conversation ends."""


class DuetTurns:
    """Who speaks next when two agents talk to each other, and when."""

    def __init__(self, plan: DuetPlan, agents: Sequence[Agent], clock: Clock | FrameClock, post: Callable[[AgentTurnDue | TailDue], None]) -> None:
        if len(agents) != 2:
            raise ValueError(f"a duet needs two agents, got {len(agents)}")
        self.plan = plan
        self.agents = list(agents)
        self.clock = clock
        self.post = post
        self.turns_started = 0  # agent turns (the answers to the person are not counted)
        self._silent_in_a_row = 0
        self._pending: Timer | None = None

    def begin(self) -> None:
        """Schedule the opening: the first agent hears the opening text (or nothing) after the lead-in."""
        opening = UserTurn(text=self.plan.opening) if self.plan.opening else UserTurn()
        self._schedule(NextTurn(self.agents[0], opening, "opening", self.plan.lead_in_s), self.clock.now())

    def reply_for(self, step: NextTurn, replies: ReplyBook, user_turns: int, post: Callable[[ReplyNews], None]) -> Reply:
        """The reply in which `step`'s agent takes its turn (counted as started), its metrics opened now."""
        self.turns_started += 1
        reply = replies.new(step.agent, step.turn, self.clock.now, post, heard_from=step.heard_from, keeps_voice=True)
        now = self.clock.now()
        reply.metrics = TurnMetrics(user_turns, reply.generation, now, now, now, speaker=step.agent.name, heard_from=step.heard_from)
        return reply

    def after(self, reply: Reply, t: float) -> None:
        """`reply` played to its end (or ended without a word) at clock time `t`: schedule what follows."""
        self._schedule(self._following(reply), t)

    def end_after_tail(self, stop: Callable[[], None]) -> None:
        """The duet is over: call `stop` after the tail (unless the person takes the floor first)."""
        self._at(self.clock.now() + self.plan.tail_s, stop)

    @property
    def pending(self) -> bool:
        """Whether a next turn (or the end of the duet) is scheduled."""
        return self._pending is not None

    def hold(self) -> None:
        """The person takes the floor: what was scheduled is dropped (the reply to the person schedules anew)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _following(self, reply: Reply) -> NextTurn | DuetOver:
        other = self.agents[1 - self.agents.index(reply.speaker)]
        voice = reply.heard_voice()
        if voice is not None:
            self._silent_in_a_row = 0
            following = NextTurn(other, UserTurn(audio=voice, text=reply.text or None), "agent", self.plan.turn_gap_s)
        else:  # nothing to say (or a failing backend): the other agent answers the same turn at once
            self._silent_in_a_row += 1
            if self._silent_in_a_row >= 2:
                return DuetOver(0.0)  # neither agent has anything more to say
            following = NextTurn(other, reply.turn, reply.heard_from, 0.0)
        if self.turns_started >= self.plan.max_turns:
            return DuetOver(following.after_s)
        return following

    def _schedule(self, step: NextTurn | DuetOver, t: float) -> None:
        event = AgentTurnDue(step) if isinstance(step, NextTurn) else TailDue()
        self._at(t + step.after_s, lambda: self.post(event))

    def _at(self, t: float, callback: Callable[[], None]) -> None:
        def fire() -> None:
            self._pending = None
            callback()

        self.hold()
        self._pending = self.clock.call_at(t, fire)
