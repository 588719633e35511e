"""One conversation engine: a person talking with one agent, or two agents talking to each other whom the person
may interrupt — live on a real-time clock, or rendered offline on a frame clock.

Three tasks do the work. The `Listener` feeds the microphone through the VAD into the TurnTaker; the
`Presenter` shows the avatars on every sink; and one dispatcher reads every event — turn-taking,
replies, playback, scheduled agent turns — from one queue and acts on it in `_dispatch`. The
person's turns are answered by `UserTurns`, a duet's by `DuetTurns`; the `Stage` plays, pauses,
resumes and cuts off replies.

Offline (a `FrameClock`, no source, avatars that wait for speech), time is frames / fps: everything
due at a frame is handled before the frame is made, so the same turns, gaps and limits come out
however fast the machine renders.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from liveavatar.agent.agents import Agent
from liveavatar.agent.clock import Clock, FrameClock
from liveavatar.agent.duet import AgentTurnDue, DuetTurns, TailDue
from liveavatar.agent.duet_plan import DuetPlan
from liveavatar.agent.events import EventQueue
from liveavatar.agent.listening import Listener
from liveavatar.agent.metrics import MetricsLog
from liveavatar.agent.presenter import AgentVoice, PlaybackNews, Presenter, ReplyHeard, ReplyPlayedOut, compositor_for
from liveavatar.agent.replies import Reply, ReplyBook, ReplyFinished, ReplyNews, ReplyProduced, ReplyStreamed, UserSpan
from liveavatar.agent.reporting import EventCallback, Reporter, Status
from liveavatar.agent.stage import Stage
from liveavatar.agent.user_turns import UserTurns
from liveavatar.agent.turn_options import TurnOptions
from liveavatar.agent.turn_verdicts import EndOfTurnVerdict, TurnVerdicts
from liveavatar.agent.turns import (EndOfTurnProposed, Floor, InterruptAgent, PauseAgent, ResumeAgent, TurnEvent, TurnTaker, UserPaused,
                                    UserResumed, UserTurnEnded, UserTurnStarted)  # fmt: skip
from liveavatar.devices.end_of_turn import SmartTurn
from liveavatar.devices.sink import FrameSink
from liveavatar.devices.sources import AudioSource
from liveavatar.devices.vad import SileroVAD
from liveavatar.dialogue.base import TextDelta, Transcript


@dataclass(frozen=True)
class SourceEnded:
    """The person's source has ended (a file); see `run(play_out=True)`."""


Event = TurnEvent | EndOfTurnVerdict | ReplyNews | PlaybackNews | AgentTurnDue | TailDue | SourceEnded


class Conversation:
    """A person (through `source` and `sinks`) talking with `agent` — or with two agents talking to each other
    when `duet` is given — until cancelled, `run(until)`, the source ends, or the duet is over.
    `source` None: nobody listens (an offline render). `end_of_turn`: the end-of-turn model to share (else the
    conversation loads its own when the turn options want one and somebody listens)."""

    def __init__(
        self,
        agent: Agent | Sequence[Agent],
        source: AudioSource | None,
        sinks: list[FrameSink],
        clock: Clock | FrameClock,
        options: TurnOptions | None = None,
        metrics: MetricsLog | None = None,
        on_event: EventCallback | None = None,
        preempt: bool = True,
        vad: SileroVAD | None = None,
        camera: Callable[[], np.ndarray | None] | None = None,
        duet: DuetPlan | None = None,
        on_reply_closed: Callable[[Reply], None] | None = None,
        end_of_turn: SmartTurn | None = None,
    ) -> None:
        self.agents = [agent] if isinstance(agent, Agent) else list(agent)
        self.source = source
        self.clock = clock
        self.options = options or self.agents[0].persona.turn_taking
        self.metrics = metrics or MetricsLog()
        self.preempt = preempt
        self.taker = TurnTaker(self.options, can_pause=all(a.avatar.can_pause for a in self.agents))
        self.replies = ReplyBook()
        self.report = Reporter(self.metrics, on_event, on_reply_closed)
        self.events: EventQueue[Event] = EventQueue(self._act)
        self._source_ended = False
        self._post = self.events.post
        self.listener = None if source is None else Listener(source, self.taker, self._post, vad, camera)
        self.verdicts = None
        if self.listener is not None and self.options.end_of_turn_model:
            # The end-of-turn model hears the person's voice, whatever the dialogue backend (cascade, Omni, Omni realtime).
            model = end_of_turn if end_of_turn is not None else SmartTurn()
            self.verdicts = TurnVerdicts(model, self.listener.audio_between, self._awaits_verdict, self._post, owns_model=end_of_turn is None)
        self.duet = None if duet is None else DuetTurns(duet, self.agents, clock, self._post)
        self.presenter = Presenter(self.agents, sinks, clock, self.replies, self._post, compositor_for(self.agents, duet), self.events.settled)
        self.stage = Stage(self.agents, self.replies, self.presenter, self.report, clock.now, self.duet)
        self.user = UserTurns(self.listener, self.replies, self.stage, self.taker, self.report, clock.now, self._post, self._handle,
                              keeps_voice=duet is not None)  # fmt: skip

    @property
    def frames_presented(self) -> int:
        """Frames written to the sinks so far."""
        return self.presenter.frames_presented

    @property
    def samples_presented(self) -> int:
        """Audio samples written to the sinks so far (always the exact count for the frames)."""
        return self.presenter.samples_presented

    async def run(self, until: float | None = None, play_out: bool = False) -> None:
        """Listen, present and act until clock time `until` (None: until cancelled, the source ends or the duet is over).

        `play_out` (file sources): when the source ends, go on until every reply under way has played to its
        end on the sinks, so a recording never stops mid-reply.
        """
        listen = None if self.listener is None else asyncio.create_task(self.listener.run(), name="conversation-listen")
        tasks = {asyncio.create_task(self.events.run(), name="conversation-dispatch"),
                 asyncio.create_task(self.presenter.run(), name="conversation-present")} | ({listen} if listen else set())  # fmt: skip
        limit = None if until is None else self.clock.call_at(until, self.presenter.stop)
        if self.duet is not None:
            self.duet.begin()
        try:
            waiting = set(tasks)
            while True:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if not (play_out and done == {listen}):
                    break
                self._source_ended = True  # the presenter stops once nothing is under way (see _act)
                self.events.post(SourceEnded())
        finally:
            if limit is not None:
                limit.cancel()
            await self._teardown(tasks)

    async def _teardown(self, tasks: set[asyncio.Task]) -> None:
        """Symmetric shutdown: replies first (their streams close), then the tasks; open turns are reported."""
        if self.duet is not None:
            self.duet.hold()
        await self.stage.cancel_open()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.verdicts is not None:
            await self.verdicts.close()
        self.stage.close_open()

    async def _act(self, event: Event) -> None:
        await self._dispatch(event)
        if self._source_ended and self._nothing_under_way():
            self.presenter.stop()  # run(play_out=True): the source has ended and every reply has played

    def _nothing_under_way(self) -> bool:
        r = self.replies
        pending = self.duet is not None and self.duet.pending
        return r.current is None and r.prepared is None and r.deciding is None and not pending and not any(r.open_replies())

    async def _dispatch(self, event: Event) -> None:
        """Every event of the conversation is acted on here."""
        match event:
            case UserTurnStarted(onset=onset):
                if self.listener is not None:
                    self.listener.turn_started(onset, self.stage.speaker.dialogue)
                if self.duet is not None:
                    self.duet.hold()  # the person takes the floor before the next agent does
                await self.user.drop_deciding()  # the person went on: an answer to their previous turn is stale
                self.report.status(Status.USER_SPEAKING)
            case UserPaused(onset=onset, speech_end=speech_end) if self.preempt:
                await self.user.prepare(UserSpan(onset, speech_end))
            case UserResumed():
                await self.user.drop_prepared()
            case EndOfTurnProposed() if self.verdicts is not None:
                if self.taker.asks_model_now(event):  # not while the pause's words may settle it (words first)
                    self.verdicts.ask(event)  # the model runs off the event loop; its verdict comes back as an event
            case EndOfTurnVerdict(span=span, verdict=verdict):
                self.report.end_of_turn(verdict.probability, verdict.seconds)
                await self._handle(self.taker.end_of_turn_verdict(self.clock.now(), span.onset, span.speech_end, verdict.probability))
            case UserTurnEnded(onset=onset, speech_end=speech_end):
                span = UserSpan(onset, speech_end)
                await self.user.ended(event, None if self.verdicts is None else self.verdicts.take(span))
            case PauseAgent(onset=onset):
                await self.stage.pause(onset)
            case ResumeAgent():
                self.stage.resume()
            case InterruptAgent(onset=onset):
                if onset is not None:
                    await self.stage.stop_playback(onset)
                await self.stage.interrupt()
            case ReplyStreamed(reply=reply, event=Transcript(text=text) as transcript):
                self.report.user_said(text, reply.generation)
                await self.user.heard_words(reply, transcript)
            case ReplyStreamed(reply=reply, event=TextDelta(text=text), after_release=True):
                self.report.agent_says(reply, text, delta=True)
            case ReplyProduced(reply=reply) if reply is self.replies.deciding:
                await self.user.commit(reply)
            case ReplyFinished(reply=reply) if reply.failure is not None:
                raise reply.failure
            case ReplyFinished(reply=reply) if reply is self.replies.deciding:
                await self.user.reject()
            case ReplyFinished(reply=reply) if reply.released and not reply.closed and not reply.spoke:
                self.stage.end(reply, self.clock.now())  # it never showed on a frame: nothing to say, or an error
            case ReplyHeard(reply=reply, t=t):
                self.stage.heard(reply, t)
            case ReplyPlayedOut(reply=reply, t=t) if not reply.closed:
                self.stage.end(reply, t)
            case AgentVoice(speaking=speaking, t=t):
                await self._handle(self.taker.agent_speaking(t, speaking))
            case AgentTurnDue(step=step) if self.duet is not None and not self._busy():
                await self.user.drop_deciding()  # a late answer to the person would cut the agent's turn off
                await self.stage.play(self.duet.reply_for(step, self.replies, self.user.turns, self._post))
            case TailDue() if self.duet is not None and not self._busy():
                self.duet.end_after_tail(self.presenter.stop)

    def _awaits_verdict(self, span: UserSpan) -> bool:
        """Whether the model's verdict on the pause after `span` could still end the person's turn (any thread)."""
        return self.taker.awaits_verdict(span.onset, span.speech_end)

    async def _handle(self, events: list[TurnEvent]) -> None:
        """Act on events the TurnTaker returned in answer to a call, in order, before anything else."""
        for event in events:
            await self._dispatch(event)

    # ------------------------------------------------------------------------------ two agents

    def _busy(self) -> bool:
        """The person is speaking or being answered: the duet goes on after that."""
        return self.replies.current is not None or self.taker.floor in (Floor.USER, Floor.PAUSED)

