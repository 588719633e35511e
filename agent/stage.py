"""The stage: carries out what the conversation decides about replies — which one the avatars speak, pausing,
resuming and cutting it off, and closing replies (their metrics reported).

Interrupting generation G cancels its dialogue stream, clears its avatar and flushes every sink; from
then on any frame still stamped with G is silenced by the presenter before it reaches a sink.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from liveavatar.agent.agents import Agent
from liveavatar.agent.duet import DuetTurns
from liveavatar.agent.presenter import Presenter
from liveavatar.agent.replies import Reply, ReplyBook, ReplyState
from liveavatar.agent.reporting import Reporter, Status


class Stage:
    """The replies on stage: `replies.current` is the one the avatars speak; `speaker` is who spoke last (and so
    answers the person). In a duet, each reply that ends hands the turn on (`duet.after`)."""

    def __init__(self, agents: Sequence[Agent], replies: ReplyBook, presenter: Presenter, report: Reporter, now: Callable[[], float],
                 duet: DuetTurns | None = None) -> None:  # fmt: skip
        self.agents = list(agents)
        self.replies = replies
        self.presenter = presenter
        self.report = report
        self.now = now
        self.duet = duet
        self.speaker = self.agents[0]

    async def play(self, reply: Reply) -> None:
        """Make `reply` the one the avatars speak; whatever they were speaking is interrupted."""
        if self.replies.current is not None and self.replies.current is not reply:
            await self.interrupt()
        self._resume_avatars()  # an avatar left paused by a barge-in speaks the new reply
        self.replies.current = reply
        self.speaker = reply.speaker
        reply.release()
        if reply.text:
            self.report.agent_says(reply, reply.text)
        if reply.finished.is_set() and not reply.spoke:
            self.end(reply, self.now())

    def end(self, reply: Reply, t: float) -> None:
        """`reply` has played to its end, or ended without speech (nothing to say, or an error), at clock time `t`."""
        if self.duet is not None:
            self.duet.after(reply, t)
        self.close(reply, ReplyState.DONE)
        self.report.status(Status.LISTENING)

    async def interrupt(self) -> None:
        """Cut off the current reply for good; its history keeps what was heard."""
        reply, self.replies.current = self.replies.current, None
        if reply is None:
            return
        reply.state = ReplyState.INTERRUPTED
        self.replies.retire(reply)  # from now on its frames are silenced
        await reply.cancel()
        reply.speaker.avatar.clear()
        self._resume_avatars()
        await self.presenter.flush()
        heard = reply.heard_text()
        reply.speaker.dialogue.record_played(heard, reply.turn)
        if reply.metrics is not None:
            reply.metrics.interrupted = True
        self.close(reply, ReplyState.INTERRUPTED, heard)
        self.report.interrupted(reply, heard)

    async def discard(self, reply: Reply) -> None:
        """Cancel a reply that never reached the avatar, and take it back out of the history."""
        await reply.cancel()
        self.close(reply, ReplyState.DISCARDED)
        reply.speaker.dialogue.discard_turn(reply.turn)

    def close(self, reply: Reply, state: ReplyState, heard: str | None = None) -> None:
        """End `reply` in `state` and report its turn (`heard`: what was heard of it, default all of it)."""
        metrics = reply.close(state, heard)
        self.replies.retire(reply)
        if self.replies.current is reply:
            self.replies.current = None
        self.report.closed(reply, metrics)

    async def cancel_open(self) -> None:
        """The conversation ends: stop every reply's stream."""
        for reply in self.replies.open_replies():
            await reply.cancel()

    def close_open(self) -> None:
        """The conversation ends: every reply whose turn began is reported, with only what was heard of it."""
        for reply in self.replies.open_replies():
            if reply.metrics is not None:
                heard = reply.heard_text() if reply.spoke else None
                reply.metrics.interrupted = heard is not None and heard != reply.text
                self.close(reply, ReplyState.INTERRUPTED if reply.metrics.interrupted else ReplyState.DONE, heard)

    async def pause(self, onset: float) -> None:
        """The person speaks over the current reply: hold it; what the sinks dropped unplayed is replayed on resume."""
        self.presenter.holding = True
        for agent in self.agents:
            if agent.avatar.can_pause:
                agent.avatar.pause()
        self.presenter.unheard_s = await self.presenter.flush()
        reply = self.replies.current
        if reply is not None:
            reply.unhear(self.presenter.unheard_s)
            reply.state = ReplyState.PAUSED
        self._note_barge_in(onset)
        self.report.status(Status.PAUSED)

    def resume(self) -> None:
        """A false interruption: the held reply goes on where it paused."""
        reply = self.replies.current
        if reply is not None:
            reply.state = ReplyState.PLAYING
            if reply.metrics is not None:
                reply.metrics.resumed = True
        self._resume_avatars(self.presenter.unheard_s)
        self.presenter.unheard_s = 0.0
        self.report.status(Status.SPEAKING)

    async def stop_playback(self, onset: float) -> None:
        """The person barged in (at `onset`) on an avatar that cannot pause: silence the sinks at once."""
        dropped = await self.presenter.flush()
        if self.replies.current is not None:
            self.replies.current.unhear(dropped)
        self._note_barge_in(onset)

    def heard(self, reply: Reply, t: float) -> None:
        """The first frame with `reply`'s voice reached the sinks at `t`."""
        metrics = reply.metrics
        if metrics is not None and metrics.first_voiced_frame is None:
            metrics.first_voiced_frame = t
            metrics.response_latency_s = t - metrics.user_speech_end
            self.report.status(Status.SPEAKING)

    def _note_barge_in(self, onset: float) -> None:
        reply = self.replies.current
        metrics = reply.metrics if reply is not None else None
        if metrics is not None and metrics.barge_in_latency_s is None and metrics.first_voiced_frame is not None:
            metrics.barge_in_latency_s = self.now() - onset

    def _resume_avatars(self, replay_s: float = 0.0) -> None:
        self.presenter.holding = False
        for agent in self.agents:
            if agent.avatar.can_pause:
                agent.avatar.resume(replay_s)
