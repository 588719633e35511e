"""The person's turns: an answer prepared while they pause (dropped if they go on), released when their turn
ends; and, when they spoke over a paused reply, pause-then-decide: words in the answer make the barge-in
real (the paused reply is interrupted), none resume the paused reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from liveavatar.agent.listening import Listener
from liveavatar.agent.metrics import TurnMetrics
from liveavatar.agent.replies import Reply, ReplyBook, ReplyNews, UserSpan
from liveavatar.agent.reporting import Reporter, Status
from liveavatar.agent.stage import Stage
from liveavatar.agent.turns import TurnEvent, TurnTaker, UserTurnEnded
from liveavatar.devices.end_of_turn import Verdict
from liveavatar.dialogue.base import Transcript


class UserTurns:
    """Answers the person's turns; the TurnTaker events its calls cause are acted on through `handle`."""

    def __init__(self, listener: Listener | None, replies: ReplyBook, stage: Stage, taker: TurnTaker, report: Reporter,
                 now: Callable[[], float], post: Callable[[ReplyNews], None], handle: Callable[[list[TurnEvent]], Awaitable[None]],
                 keeps_voice: bool = False) -> None:  # fmt: skip
        self.listener = listener
        self.replies = replies
        self.stage = stage
        self.taker = taker
        self.report = report
        self.now = now
        self.post = post
        self.handle = handle
        self.keeps_voice = keeps_voice  # a duet: the answer's audio is the other agent's next turn
        self.turns = 0  # the person's turns so far

    async def prepare(self, span: UserSpan) -> None:
        """The person paused after speaking over `span`: start answering it (held until their turn ends)."""
        await self.drop_prepared()
        self.replies.prepared = self._answer(span)
        if self.stage.speaker.dialogue.transcribes_first:
            self.taker.words_coming(span.onset, span.speech_end)  # its words may keep the turn open

    async def drop_prepared(self) -> None:
        """The person went on speaking: the answer prepared during their pause is dropped."""
        prepared, self.replies.prepared = self.replies.prepared, None
        if prepared is not None:
            await self.stage.discard(prepared)

    async def ended(self, event: UserTurnEnded, verdict: Verdict | None = None) -> None:
        """The person's turn ended: answer it (with the prepared answer if it was prepared for this very speech);
        `verdict`: the end-of-turn model's on the pause that ended it, if it came."""
        if self.listener is not None:
            self.listener.turn_ended()
        span = UserSpan(event.onset, event.speech_end)
        prepared, self.replies.prepared = self.replies.prepared, None
        if prepared is not None and prepared.answers == span:
            reply, early = prepared, True
        else:
            if prepared is not None:
                await self.stage.discard(prepared)
            reply, early = self._answer(span), False
        self.turns += 1
        reply.metrics = TurnMetrics(self.turns, reply.generation, event.onset, event.speech_end, event.t, prepared_early=early,
                                    speaker=reply.speaker.name, turn_end_cause=event.cause)  # fmt: skip
        if verdict is not None:
            reply.metrics.end_of_turn_probability, reply.metrics.end_of_turn_model_s = verdict.probability, verdict.seconds
        self.report.status(Status.THINKING)
        if not event.over_agent:
            await self.stage.play(reply)
            return
        self.replies.deciding = reply
        if reply.said_anything:
            await self.commit(reply)
        elif reply.finished.is_set():
            await self.reject()

    async def heard_words(self, reply: Reply, transcript: Transcript) -> None:
        """The backend transcribed the person while their answer is prepared: the words may end the turn (a question,
        a verdict that waited for them, a sentence the language model is sure of) or keep it open (they end mid-sentence, or
        the recognizer or the language model doubts they end)."""
        span = reply.answers
        if reply is self.replies.prepared and span is not None:
            await self.handle(self.taker.words_heard(self.now(), span.onset, span.speech_end, transcript.text,
                                                     transcript.sentence_end_probability, transcript.language_end_probability))  # fmt: skip

    async def commit(self, reply: Reply) -> None:
        """The answer has words: the barge-in was real (even if, the words being late, the paused reply resumed)."""
        self.replies.deciding = None
        await self.handle(self.taker.commit_turn(self.now()))
        await self.stage.play(reply)

    async def reject(self) -> None:
        """The answer ended without a word (a cough, an "mm-hmm"): the paused reply resumes."""
        await self.drop_deciding()
        await self.handle(self.taker.reject_turn(self.now()))

    async def drop_deciding(self) -> None:
        """An answer still awaiting its verdict is stale (the person went on, or an agent takes its turn)."""
        reply, self.replies.deciding = self.replies.deciding, None
        if reply is not None:
            reply.metrics = None  # never answered: not a turn
            await self.stage.discard(reply)

    def _answer(self, span: UserSpan) -> Reply:
        assert self.listener is not None
        turn = self.listener.user_turn(span)
        return self.replies.new(self.stage.speaker, turn, self.now, self.post, answers=span, keeps_voice=self.keeps_voice)
