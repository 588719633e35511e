"""TurnTaker: who holds the floor. A pure state machine over VAD windows and the avatar's playback.

It never touches audio, models or clocks: each call passes the time, and each call returns the
events it caused. Barge-in is pause-then-decide (as LiveKit Agents does it): sustained user speech
over the avatar pauses it; the conversation then decides whether a real user turn followed
(`commit_turn`) — interrupt — or not (`reject_turn`, or nothing within the timeout) — resume.

Silence is counted from where the voice fell `end_of_speech_quiet_db` below the turn's loudest window, once the VAD
hears it (silero still hears a fading voice for about 0.1 s); the model alone is asked on the VAD's own silence. The answer
starts being prepared sooner (`prepare_when_quiet`): once the voice has been quiet for the prepare silence, whatever the
VAD still hears; it is thrown away if the voice comes back, or stays quiet but voiced longer than a VAD's lag explains.

The end of a user turn: without the end-of-turn model, a silence of `end_of_turn_silence_s` ends it
(`question_end_silence_s` when the early transcript ends in "?"). With the model, as pipecat combines
Smart Turn with its VAD, a short silence only proposes an end (`EndOfTurnProposed`); the conversation
runs the model and hands back its verdict (`end_of_turn_verdict`), which ends the turn at once when it
says "complete". "Incomplete" keeps the turn open until a verdict on a later pause says complete or the
fallback silence passes. A verdict that has not come by `end_of_turn_silence_s` is not waited for: the
silence rule ends the turn, so a slow model never stalls it. Asked ahead (`end_of_turn_ask_ahead`, the default),
the proposal comes with `UserPaused`, its `ahead_s` saying how much more silence the model is to assume; a verdict
that comes before that silence has really passed waits for it, and speech before then throws it away.

The words, when the dialogue backend transcribes the person before it answers (the cascade), count too. A
"complete" verdict waits for the early transcript of its pause (`words_coming`, then `words_heard`; the reply
needs those words anyway, so waiting costs no reply time), never past the silence rule. Words that end
mid-sentence ("um", "and", "the", "about", a trailing comma) keep the turn open until the fallback silence,
whatever the model said; words ending in "?" end it after `question_end_silence_s`. The backend's language model, when it
says how likely a sentence ends where the words end (the cascade's local LLM, from the words alone), counts as well:
below `language_end_min_probability` the words end mid-sentence ("I have been learning.", "What?"), and at or above
`language_end_sure_probability` they end the turn once the proposal silence has passed, whatever the model heard (and
Whisper's mark needs only `sentence_end_min_probability_if_sure`). With those words on their way
(`end_of_turn_words_first`), the model is not asked at once: `asks_model_now` says no, and `words_heard` proposes the
pause again only when the words leave its end open; until those words, and then that verdict, have come, only the
fallback silence ends the turn (the reply needs the words anyway).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from liveavatar.agent.turn_options import TurnOptions
from liveavatar.agent.unfinished import ends_mid_sentence


class Floor(enum.Enum):
    """Who is talking."""

    IDLE = "idle"  # nobody
    USER = "user"  # the user, the avatar silent
    AGENT = "agent"  # the avatar
    PAUSED = "paused"  # the user spoke over the avatar; its reply is on hold


@dataclass(frozen=True)
class TurnEvent:
    """Something the conversation must act on, at time `t` (seconds)."""

    t: float


@dataclass(frozen=True)
class UserTurnStarted(TurnEvent):
    """The user began a turn; `onset` is when their speech began."""

    onset: float


@dataclass(frozen=True)
class UserTurnEnded(TurnEvent):
    """The user's turn ended: speech ran from `onset` to `speech_end`; `t` = speech_end + silence window."""

    onset: float
    speech_end: float
    over_agent: bool  # spoken while the avatar was paused: the conversation must commit or reject it
    cause: str = "silence"  # what ended it: silence | model | question | words | fallback


@dataclass(frozen=True)
class UserPaused(TurnEvent):
    """The user stopped speaking for a moment; a reply may be prepared (it may still be discarded)."""

    onset: float
    speech_end: float


@dataclass(frozen=True)
class EndOfTurnProposed(TurnEvent):
    """The user has been silent for the proposal silence: ask the end-of-turn model about their speech since
    `onset` (up to `t`), then call `end_of_turn_verdict` with this `onset` and `speech_end`. Asked ahead
    (`end_of_turn_ask_ahead`), it comes `ahead_s` seconds before that silence will have passed: the model is to
    hear the pause as if it went on that long as it is (`devices.end_of_turn.as_if_silent_for`)."""

    onset: float
    speech_end: float
    ahead_s: float = 0.0


@dataclass(frozen=True)
class UserResumed(TurnEvent):
    """The user spoke again before their turn ended: discard anything prepared since `UserPaused`."""


@dataclass(frozen=True)
class PauseAgent(TurnEvent):
    """Hold the avatar's reply (it listens); `onset` is when the user's speech began."""

    onset: float


@dataclass(frozen=True)
class ResumeAgent(TurnEvent):
    """A false interruption: continue the held reply where it stopped."""


@dataclass(frozen=True)
class InterruptAgent(TurnEvent):
    """Cancel the avatar's reply for good; `onset` is the user speech that caused it, when there was one."""

    onset: float | None = None


def _below(probability: float | None, least: float | None) -> bool:
    """Whether a known `probability` is below the option `least` (never when either is None: not known, or the rule off)."""
    return least is not None and probability is not None and probability < least


SILENCE_TOLERANCE_S = 1e-6  # VAD windows' lengths are sums of floats: 2 x 0.032 s must count as 0.064 s
QUIET_TAIL_MAX_S = 0.25  # the most of a quiet tail counted as silence: silero's lag after a fade (the bench's p90: 0.24 s)


class TurnTaker:
    """Turn-taking for one conversation. Feed `vad()` every window and `agent_speaking()` on changes."""

    def __init__(self, options: TurnOptions, can_pause: bool = True) -> None:
        self.options = options
        self.can_pause = can_pause
        self.floor = Floor.IDLE
        self._speech_run = 0.0  # seconds of speech in the current run (resets after the silence window)
        self._silence_run = 0.0
        self._onset: float | None = None  # start of the current speech run
        self._speech_end: float | None = None  # end of the last speech window (or where the voice fell quiet before it)
        self._loudest_db = -math.inf  # the loudest window of the current speech run, dBFS
        self._quiet_since: float | None = None  # start of the trailing speech windows quieter than the voice by the option's dB
        self._quiet_tail = 0.0  # seconds of this pause's silence that were the voice's quiet tail (before the VAD's silence)
        self._voice_end: float | None = None  # end of the last window the VAD heard speech in
        self._paused_quiet_since: float | None = None  # the answer is being prepared for speech that fell quiet here (VAD still hears it)
        self._in_turn = False  # a speech run long enough to be a turn (or an interruption) is in progress
        self._preempted = False
        self._question = False  # the words so far end in a question mark (a hint from speech recognition)
        self._proposed = False  # this pause was put to the end-of-turn model
        self._proposal_silence_passed = False  # ...and has lasted the proposal silence (a verdict asked ahead may act)
        self._early_verdict: float | None = None  # a verdict asked ahead that came before that silence had passed
        self._incomplete = False  # ...and the model said the turn goes on
        self._words_due = False  # the early transcript of this pause is on its way
        self._held_complete = False  # the model said "complete" while the words were still due
        self._unfinished = False  # the words of this pause end mid-sentence: only the fallback silence ends the turn
        self._words_sure = False  # the words of this pause surely end a sentence: the proposal silence ends the turn
        self._ask_after_words = False  # the model is asked about this pause only if its words leave the end open
        self._verdict_due = False  # ...and they did: its verdict is on its way
        self._awaiting_verdict_since: float | None = None  # paused, user's turn ended, waiting for commit/reject
        self._agent_speaking = False
        self._agent_started_at = -1e9

    # ------------------------------------------------------------------------------ inputs

    def agent_speaking(self, t: float, speaking: bool) -> list[TurnEvent]:
        """The avatar's audio at the sink started (True) or stopped (False) carrying speech."""
        if speaking == self._agent_speaking:
            return []
        self._agent_speaking = speaking
        if speaking:
            self._agent_started_at = t
            if self.floor in (Floor.IDLE, Floor.USER) and not self._in_turn:
                self.floor = Floor.AGENT
            elif self.floor == Floor.USER and self.options.interruptions:
                # A reply to an earlier turn (one that ended inside a hesitation) begins while the user is again in
                # a turn: treat it as if the user had barged in, so the avatar does not talk over them.
                # The overlap (and so the "barge-in") begins now, not at the user's onset, which came before the reply.
                if self.can_pause:
                    self.floor = Floor.PAUSED
                    return [PauseAgent(t, t)]
                return [InterruptAgent(t, t)]
        elif self.floor == Floor.AGENT:
            self.floor = Floor.IDLE
        return []

    def vad(self, start: float, end: float, probability: float, level_db: float | None = None) -> list[TurnEvent]:
        """One VAD window [start, end) seconds with its speech probability and, when known, its loudness (dBFS)."""
        dt = end - start
        speech = probability >= self.options.vad_threshold and not self._echo(start)
        events: list[TurnEvent] = []
        if speech:
            if self._onset is None:
                self._onset, self._speech_run, self._loudest_db = start, 0.0, -math.inf
            self._speech_run += dt
            self._silence_run = 0.0
            self._voice_end = end
            self._follow_loudness(start, level_db)
            if not self._still_quiet_since_pause(end):
                if self._preempted:
                    self._preempted, self._question = False, False
                    events.append(UserResumed(end))
                self._paused_quiet_since = None
                self._clear_pause()
                self._speech_end = end
            events += self._on_speech(end)
            events += self._pause_while_quiet(end)
        elif self._onset is not None:
            if self._silence_run == 0.0:
                self._count_quiet_tail()
            self._silence_run += dt
            events += self._on_silence(end)
        events += self._check_timeout(end)
        return events

    def words_coming(self, onset: float, speech_end: float) -> None:
        """The early transcript of the speech that paused at `speech_end` is on its way (`words_heard` brings it)."""
        if self.options.end_of_turn_words and self.awaits_verdict(onset, speech_end):
            self._words_due = True

    def words_heard(self, t: float, onset: float, speech_end: float, text: str, sentence_end_probability: float | None = None,
                    language_end_probability: float | None = None) -> list[TurnEvent]:  # fmt: skip
        """The early transcript of the speech that paused at `speech_end`, how sure the recognizer was that a sentence ends
        there, and how likely the language model found it from the words alone (None: not known): it may end the turn,
        or keep it open."""
        if not self.awaits_verdict(onset, speech_end):
            return []  # the user has gone on speaking since, or the turn has already ended
        self._words_due = False
        o = self.options
        sure = o.language_end_sure_probability is not None and (language_end_probability or 0.0) >= o.language_end_sure_probability
        least_mark = o.sentence_end_min_probability
        if sure and least_mark is not None and o.sentence_end_min_probability_if_sure is not None:
            least_mark = min(least_mark, o.sentence_end_min_probability_if_sure)  # the language model vouches for the words
        if o.end_of_turn_words and (ends_mid_sentence(text) or _below(sentence_end_probability, least_mark)
                                    or _below(language_end_probability, o.language_end_min_probability)):  # fmt: skip
            self._unfinished, self._held_complete = True, False
            return []
        if text.rstrip().endswith("?"):
            # Words that form a question end the turn even when the end-of-turn model heard the voice go on: Whisper's
            # "?" comes from the words and their intonation, and the model misses some long wh-questions (README).
            self._question = True
            if self._silence_run >= self.options.question_end_silence_s:
                return self._end_turn(t, "question")
        if o.end_of_turn_words and o.end_of_turn_model and sure:
            self._words_sure = True  # they end the turn once the proposal silence has passed, whatever the model says
            if self._proposal_silence_passed:
                return self._end_turn(t, "model" if self._held_complete else "words")
            return []
        if self._held_complete:
            return self._end_turn(t, "model")
        if self._ask_after_words and not self._question:
            self._verdict_due = True  # the words leave the end open: the model decides, as if asked ahead
            return [self._proposal(t)]
        return []

    def asks_model_now(self, proposal: EndOfTurnProposed) -> bool:
        """Whether to ask the end-of-turn model about `proposal` now (the conversation asks only then). No while the pause's
        early transcript, on its way, may settle the end without it (`end_of_turn_words_first`: the pause is then
        remembered, and `words_heard` proposes it again if the words do not settle it), or once they have settled it
        (mid-sentence, a question, a sentence the language model is sure of), or when the person went on."""
        if not self.awaits_verdict(proposal.onset, proposal.speech_end):
            return False
        if not (self.options.end_of_turn_words_first and self.options.end_of_turn_words):
            return True
        if self._words_due:
            self._ask_after_words = True
            return False
        return not (self._unfinished or self._question or self._words_sure)

    def awaits_verdict(self, onset: float, speech_end: float) -> bool:
        """Whether a verdict on the pause after `speech_end` (of the turn begun at `onset`) could still end the turn."""
        return self._in_turn and (self._onset, self._speech_end) == (onset, speech_end)

    def end_of_turn_verdict(self, t: float, onset: float, speech_end: float, probability: float) -> list[TurnEvent]:
        """The end-of-turn model's verdict on the pause proposed at `speech_end`: the probability that the turn is over."""
        if not self.awaits_verdict(onset, speech_end):
            return []  # the user has gone on speaking since, or the turn has already ended
        self._verdict_due = False
        if not self._proposal_silence_passed:
            self._early_verdict = probability  # asked ahead: it acts once the silence has lasted the proposal silence
            return []
        if probability < self.options.end_of_turn_threshold:
            self._incomplete = True
        elif self._words_due:
            self._held_complete = True  # the words decide: they may end mid-sentence
        elif not self._unfinished:
            return self._end_turn(t, "model")
        return []

    def commit_turn(self, t: float) -> list[TurnEvent]:
        """The user's turn over the paused avatar was real (it had words): interrupt the held reply."""
        if self.floor != Floor.PAUSED:
            return []
        self._awaiting_verdict_since = None
        self.floor = Floor.IDLE
        return [InterruptAgent(t)]

    def reject_turn(self, t: float) -> list[TurnEvent]:
        """It was noise, a cough, a backchannel: resume the held reply (or drop it, per options)."""
        if self.floor != Floor.PAUSED:
            return []
        return self._false_interruption(t)

    # ------------------------------------------------------------------------------ rules

    def _echo(self, t: float) -> bool:
        """Speech right after the avatar starts talking is taken for echo while the guard lasts."""
        return self._agent_speaking and t - self._agent_started_at < self.options.echo_guard_s

    def _follow_loudness(self, start: float, level_db: float | None) -> None:
        """Track the speech run's loudest window and whether the voice has fallen quiet since (`end_of_speech_quiet_db`)."""
        quiet_db = self.options.end_of_speech_quiet_db
        if quiet_db is None or level_db is None:
            self._quiet_since = None
            return
        self._loudest_db = max(self._loudest_db, level_db)
        if level_db >= self._loudest_db - quiet_db:
            self._quiet_since = None
        elif self._quiet_since is None:
            self._quiet_since = start

    def _count_quiet_tail(self) -> None:
        """The VAD's first silent window: the silence began where the voice fell quiet, if it did (at most QUIET_TAIL_MAX_S back)."""
        assert self._voice_end is not None
        quiet_since = self._voice_end if self._quiet_since is None else self._quiet_since
        self._speech_end = max(quiet_since, self._voice_end - QUIET_TAIL_MAX_S)  # where a pause taken while quiet put it
        self._quiet_tail = self._voice_end - self._speech_end
        self._silence_run = self._quiet_tail
        self._quiet_since, self._paused_quiet_since = None, None

    def _pause_while_quiet(self, t: float) -> list[TurnEvent]:
        """`prepare_when_quiet`: the voice has been quiet for the prepare silence though the VAD still hears it (silero
        lags a fading voice): the answer starts being prepared now, for speech that ended where the voice fell quiet."""
        o = self.options
        if not (o.prepare_when_quiet and self._in_turn and not self._preempted and self._quiet_since is not None):
            return []
        if not o.prepare_silence_s <= t - self._quiet_since + SILENCE_TOLERANCE_S <= QUIET_TAIL_MAX_S + SILENCE_TOLERANCE_S:
            return []
        assert self._onset is not None
        self._preempted, self._paused_quiet_since, self._speech_end = True, self._quiet_since, self._quiet_since
        return [UserPaused(t, self._onset, self._quiet_since)]

    def _still_quiet_since_pause(self, t: float) -> bool:
        """A pause taken while the voice was quiet still holds: the voice has stayed quiet, and not for longer than a
        VAD's lag can explain (QUIET_TAIL_MAX_S)."""
        since = self._paused_quiet_since
        return since is not None and self._quiet_since == since and t - since <= QUIET_TAIL_MAX_S + SILENCE_TOLERANCE_S

    def _on_speech(self, t: float) -> list[TurnEvent]:
        o = self.options
        assert self._onset is not None
        if self._in_turn:
            return []
        if self.floor == Floor.AGENT:
            if not o.interruptions or self._speech_run < o.interruption_min_speech_s:
                return []
            self._in_turn = True
            if self.can_pause:
                self.floor = Floor.PAUSED
                return [PauseAgent(t, self._onset), UserTurnStarted(t, self._onset)]
            self.floor = Floor.USER
            return [InterruptAgent(t, self._onset), UserTurnStarted(t, self._onset)]
        if self._speech_run < o.speech_start_s:
            return []
        self._in_turn = True
        if self.floor == Floor.PAUSED:
            self._awaiting_verdict_since = None  # the user goes on: decide when this turn ends
        else:
            self.floor = Floor.USER
        return [UserTurnStarted(t, self._onset)]

    def _on_silence(self, t: float) -> list[TurnEvent]:
        o = self.options
        if not self._in_turn:
            self._onset, self._speech_run = None, 0.0  # a start needs continuous speech: a gap resets it
            return []
        events: list[TurnEvent] = []
        assert self._onset is not None and self._speech_end is not None
        if not self._preempted and o.prepare_silence_s <= self._silence_run + SILENCE_TOLERANCE_S < o.end_of_turn_silence_s:
            self._preempted = True
            events.append(UserPaused(t, self._onset, self._speech_end))
        heard_silence = self._heard_silence()
        if o.end_of_turn_model and not self._proposed and (self._preempted and o.end_of_turn_ask_ahead or
                                                           heard_silence + SILENCE_TOLERANCE_S >= o.end_of_turn_proposal_silence_s):  # fmt: skip
            self._proposed = True
            events.append(self._proposal(t))
        if self._proposed and not self._proposal_silence_passed and heard_silence + SILENCE_TOLERANCE_S >= o.end_of_turn_proposal_silence_s:
            self._proposal_silence_passed = True
            if self._early_verdict is not None:
                events += self.end_of_turn_verdict(t, self._onset, self._speech_end, self._early_verdict)
                if not self._in_turn:
                    return events  # the verdict ended the turn
        if self._words_sure and self._proposal_silence_passed:
            return events + self._end_turn(t, "words")
        # words first: while the pause's words, and then the model's verdict on them, are on their way, the reply cannot
        # start anyway, so only the fallback silence ends the turn before they come (a slow recognizer on a busy machine
        # must not let the silence rule cut a hesitation short)
        held_open = self._incomplete or self._unfinished or (self._ask_after_words and (self._words_due or self._verdict_due))
        if self._question and self._silence_run >= o.question_end_silence_s:
            events += self._end_turn(t, "question")
        elif held_open and self._silence_run >= max(o.end_of_turn_fallback_silence_s, o.end_of_turn_silence_s):
            events += self._end_turn(t, "fallback")
        elif not held_open and self._silence_run >= o.end_of_turn_silence_s:
            events += self._end_turn(t, "silence")
        return events

    def _heard_silence(self) -> float:
        """This pause's silence as the VAD hears it (without the voice's quiet tail): the model needs that (README)."""
        return self._silence_run - self._quiet_tail

    def _proposal(self, t: float) -> EndOfTurnProposed:
        """This pause put to the end-of-turn model at `t`, with the rest of the proposal silence it is to assume."""
        assert self._onset is not None and self._speech_end is not None
        return EndOfTurnProposed(t, self._onset, self._speech_end, max(0.0, self.options.end_of_turn_proposal_silence_s - self._heard_silence()))

    def _clear_pause(self) -> None:
        """The user spoke: what was known about their last pause no longer holds."""
        self._proposed, self._proposal_silence_passed, self._early_verdict, self._incomplete = False, False, None, False
        self._words_due, self._held_complete, self._unfinished, self._words_sure = False, False, False, False
        self._ask_after_words, self._verdict_due = False, False

    def _end_turn(self, t: float, cause: str) -> list[TurnEvent]:
        assert self._onset is not None and self._speech_end is not None
        over_agent = self.floor == Floor.PAUSED
        event = UserTurnEnded(t, self._onset, self._speech_end, over_agent, cause)
        self._in_turn, self._preempted, self._question, self._onset = False, False, False, None
        self._clear_pause()
        if over_agent:
            self._awaiting_verdict_since = t
        elif self.floor == Floor.USER:
            self.floor = Floor.IDLE
        return [event]

    def _check_timeout(self, t: float) -> list[TurnEvent]:
        if self._awaiting_verdict_since is None:
            return []
        if t - self._awaiting_verdict_since >= self.options.false_interruption_timeout_s:
            return self._false_interruption(t)
        return []

    def _false_interruption(self, t: float) -> list[TurnEvent]:
        self._awaiting_verdict_since = None
        if self.options.resume_false_interruption:
            self.floor = Floor.AGENT if self._agent_speaking else Floor.IDLE
            return [ResumeAgent(t)]
        self.floor = Floor.IDLE
        return [InterruptAgent(t)]
