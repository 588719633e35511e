"""TurnTaker on scripted VAD timelines (and scripted end-of-turn model verdicts): deterministic, no audio, no clocks."""

from __future__ import annotations

import pytest

from liveavatar.agent.turn_options import TurnOptions
from liveavatar.agent.turns import QUIET_TAIL_MAX_S, EndOfTurnProposed, Floor, TurnTaker, UserPaused, UserTurnEnded
from liveavatar.agent.unfinished import ends_mid_sentence

W = 0.032  # one silero window
SILENCE_ONLY = {"end_of_turn_model": False}
VOICE_DB, QUIET_ROOM_DB = -18.0, -70.0  # a voice's loudness, a quiet room's (dBFS)


def play(taker: TurnTaker, timeline: list[tuple[float, float, float]], agent: list[tuple[float, bool]] = (), until: float | None = None,
         model: list[tuple[float | None, float]] = (), start: float = 0.0, words: list[tuple] = ()):  # fmt: skip
    """Feed windows: (from_s, to_s, probability[, level_dBFS]) spans, plus avatar speaking changes; returns the events.
    Spans without a level give none (the loudness rule stays out of it); with levels, the gaps between spans are at
    QUIET_ROOM_DB.

    `model` scripts the end-of-turn model: one (probability, seconds it takes) per proposal it is asked about (as the
    conversation asks: when `asks_model_now` says so), in order; a probability of None never answers. Each verdict is
    handed back at the proposal's time plus its delay.
    `words` scripts an early transcript (as the cascade makes one): one (text, seconds it takes[, the recognizer's
    sentence-end probability]) per pause, in order, announced at the pause (`words_coming`); a text of None never comes.
    """
    events, changes, answers, heard, pending = [], sorted(agent), list(model), list(words), []
    end = until if until is not None else max(t for _, t, _ in timeline)
    t = start
    while t < end - 1e-9:
        while changes and changes[0][0] <= t + 1e-9:
            events += taker.agent_speaking(*changes.pop(0))
        new = []
        for due, pause, answer in sorted([v for v in pending if v[0] <= t + 1e-9], key=lambda v: v[0]):
            pending.remove((due, pause, answer))
            if isinstance(answer, tuple):
                new += taker.words_heard(due, pause.onset, pause.speech_end, *answer)
            else:
                new += taker.end_of_turn_verdict(due, pause.onset, pause.speech_end, answer)
        span = next((span for span in timeline if span[0] - 1e-9 <= t < span[1] - 1e-9), (t, t, 0.0, QUIET_ROOM_DB))
        prob, level = span[2], (span[3] if len(span) > 3 else None)
        new += taker.vad(t, t + W, prob, level)
        for event in new:
            if isinstance(event, EndOfTurnProposed) and answers and taker.asks_model_now(event):
                probability, delay = answers.pop(0)
                if probability is not None:
                    pending.append((round(event.t + delay, 6), event, probability))
            if isinstance(event, UserPaused) and heard:
                text, delay, *sentence_end = heard.pop(0)
                taker.words_coming(event.onset, event.speech_end)
                if text is not None:
                    pending.append((round(event.t + delay, 6), event, (text, *sentence_end)))
        events += new
        t = round(t + W, 6)
    return events


def kinds(events):
    return [type(e).__name__ for e in events]


def test_without_the_model_a_user_turn_starts_after_0_2_s_of_speech_and_ends_after_the_silence_window() -> None:
    taker = TurnTaker(TurnOptions(**SILENCE_ONLY))
    events = play(taker, [(1.0, 2.5, 0.9)], until=4.0)
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "UserTurnEnded"]
    started, paused, ended = events
    assert started.onset == pytest_approx(1.0) and started.t - started.onset == pytest_approx(0.2)
    assert paused.t - ended.speech_end == pytest_approx(TurnOptions().prepare_silence_s)
    assert ended.speech_end == pytest_approx(2.5) and ended.t - ended.speech_end == pytest_approx(0.6) and not ended.over_agent
    assert taker.floor == Floor.IDLE


def pytest_approx(x: float):  # noqa: ANN201
    import pytest

    return pytest.approx(x, abs=W)


def test_short_noise_is_ignored() -> None:
    taker = TurnTaker(TurnOptions())
    bursts = [(1.0, 1.1, 0.9), (1.15, 1.28, 0.95), (2.0, 2.1, 0.8)]  # each under 0.2 s of continuous speech
    assert play(taker, bursts, until=4.0) == []
    assert taker.floor == Floor.IDLE


def test_a_pause_inside_the_turn_prepares_then_continues() -> None:
    taker = TurnTaker(TurnOptions(**SILENCE_ONLY))
    events = play(taker, [(1.0, 2.0, 0.9), (2.4, 3.0, 0.9)], until=4.0)  # a 0.4 s pause in the middle
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "UserResumed", "UserPaused", "UserTurnEnded"]
    assert events[-1].onset == pytest_approx(1.0) and events[-1].speech_end == pytest_approx(3.0)


@pytest.mark.parametrize("prepare_s", [0.032, 0.064, 0.2])
def test_the_answer_is_prepared_after_the_prepare_silence_and_dropped_when_the_person_goes_on(prepare_s: float) -> None:
    taker = TurnTaker(TurnOptions(prepare_silence_s=prepare_s, **SILENCE_ONLY))
    gap = round(prepare_s + W, 6)  # one window longer than the prepare silence: the person goes on after it
    events = play(taker, [(1.0, 2.0, 0.9), (2.0 + gap, 3.0, 0.9)], until=4.0)
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "UserResumed", "UserPaused", "UserTurnEnded"]
    first, resumed, last, ended = events[1:]
    # at the end of the first window that completes the prepare silence
    assert first.speech_end == pytest_approx(2.0) and prepare_s - 1e-6 <= first.t - first.speech_end < prepare_s + W
    assert resumed.t == pytest_approx(2.0 + gap + W)
    assert prepare_s - 1e-6 <= last.t - last.speech_end < prepare_s + W and ended.speech_end == pytest_approx(3.0)


def fading(end: float, quiet_from: float, quiet_db: float) -> list[tuple[float, float, float, float]]:
    """Speech from 1.0 s to `end` that silero hears throughout, its voice `quiet_db` below VOICE_DB from `quiet_from` on."""
    return [(1.0, quiet_from, 0.9, VOICE_DB), (quiet_from, end, 0.9, VOICE_DB - quiet_db)]


def test_silence_counts_from_where_the_voice_fell_quiet_so_the_answer_is_prepared_and_the_turn_ends_sooner() -> None:
    taker = TurnTaker(TurnOptions(**SILENCE_ONLY))  # end_of_speech_quiet_db: 30 dB by default
    events = play(taker, fading(end=2.496, quiet_from=2.4, quiet_db=40.0), until=4.0)
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "UserTurnEnded"]
    _, paused, ended = events
    assert ended.speech_end == pytest.approx(2.4, abs=1e-6), "the speech should end where the voice fell quiet"
    assert paused.t == pytest.approx(2.4 + TurnOptions().prepare_silence_s, abs=1e-6), "the answer should be prepared once quiet"
    assert paused.speech_end == ended.speech_end, "the answer prepared while quiet should be the one the turn's end releases"
    assert ended.t == pytest.approx(2.4 + 0.6, abs=W), "the silence rule should count from the quiet voice"
    [same] = [e for e in play(TurnTaker(TurnOptions(end_of_speech_quiet_db=None, **SILENCE_ONLY)),
                              fading(end=2.496, quiet_from=2.4, quiet_db=40.0), until=4.0) if isinstance(e, UserTurnEnded)]  # fmt: skip
    assert same.speech_end == pytest.approx(2.496, abs=1e-6) and same.t == pytest.approx(2.496 + 0.6, abs=W), "None: as before"


@pytest.mark.parametrize("quiet_db", [20.0, 29.0])
def test_a_voice_not_quiet_enough_or_a_noisy_room_changes_nothing(quiet_db: float) -> None:
    [ended] = [e for e in play(TurnTaker(TurnOptions(**SILENCE_ONLY)), fading(end=2.496, quiet_from=2.4, quiet_db=quiet_db), until=4.0)
               if isinstance(e, UserTurnEnded)]  # fmt: skip
    assert ended.speech_end == pytest.approx(2.496, abs=1e-6) and ended.t == pytest.approx(2.496 + 0.6, abs=W)


def test_a_quiet_moment_inside_the_speech_is_not_silence() -> None:
    timeline = [(1.0, 1.792, 0.9, VOICE_DB), (1.792, 1.952, 0.9, VOICE_DB - 45.0), (1.952, 2.496, 0.9, VOICE_DB)]  # a stop's closure
    events = play(TurnTaker(TurnOptions(**SILENCE_ONLY)), timeline, until=4.0)
    # an answer is prepared in it (the voice was quiet for the prepare silence) and thrown away when the voice comes back
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "UserResumed", "UserPaused", "UserTurnEnded"]
    assert events[1].t == pytest.approx(1.792 + TurnOptions().prepare_silence_s, abs=1e-6) and events[2].t == pytest.approx(1.984)
    assert events[-1].speech_end == pytest.approx(2.496, abs=1e-6) and events[-1].t == pytest.approx(2.496 + 0.6, abs=W)
    events = play(TurnTaker(TurnOptions(prepare_when_quiet=False, **SILENCE_ONLY)), timeline, until=4.0)
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "UserTurnEnded"]
    assert events[-1].speech_end == pytest.approx(2.496, abs=1e-6)


def test_at_most_a_quarter_second_of_quiet_voice_counts_as_silence() -> None:
    [ended] = [e for e in play(TurnTaker(TurnOptions(**SILENCE_ONLY)), fading(end=2.496, quiet_from=1.792, quiet_db=40.0), until=4.0)
               if isinstance(e, UserTurnEnded)]  # fmt: skip
    assert ended.speech_end == pytest.approx(2.496 - QUIET_TAIL_MAX_S, abs=1e-6)


def test_a_voice_quiet_but_heard_for_longer_than_the_vad_lags_throws_the_answer_prepared_in_it_away() -> None:
    events = play(TurnTaker(TurnOptions(**SILENCE_ONLY)), fading(end=2.496, quiet_from=1.792, quiet_db=40.0), until=4.0)
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "UserResumed", "UserPaused", "UserTurnEnded"]
    _, early, resumed, paused, ended = events
    assert early.speech_end == pytest.approx(1.792) and early.t == pytest.approx(1.792 + TurnOptions().prepare_silence_s)
    assert resumed.t == pytest.approx(1.792 + QUIET_TAIL_MAX_S + W, abs=W), "quiet speech longer than a VAD's lag is speech"
    assert paused.speech_end == ended.speech_end == pytest.approx(2.496 - QUIET_TAIL_MAX_S, abs=1e-6)


def test_words_and_a_verdict_on_an_answer_prepared_while_the_voice_is_quiet_count() -> None:
    # the words come while silero still hears the faded voice; the model is asked at its first silent window, on the same speech
    fade = fading(end=2.496, quiet_from=2.4, quiet_db=40.0)
    unfinished = play(TurnTaker(TurnOptions()), fade, until=4.5, model=[(0.9, 0.05)], words=[("Tell me about", 0.02)])
    [paused], [proposed], [ended] = only(unfinished, "UserPaused"), only(unfinished, "EndOfTurnProposed"), only(unfinished, "UserTurnEnded")
    assert paused.t < 2.496 and proposed.t == pytest.approx(2.496 + W) and proposed.speech_end == paused.speech_end == ended.speech_end
    assert ended.cause == "fallback" and ended.t - ended.speech_end == pytest_approx(1.0)
    finished = play(TurnTaker(TurnOptions()), fade, until=4.5, model=[(0.9, 0.05)], words=[("I saw a shooting star last night.", 0.02, 0.95)])
    [ended] = only(finished, "UserTurnEnded")
    assert ended.cause == "model" and ended.speech_end == pytest.approx(2.4) and ended.t == pytest.approx(2.496 + 0.2, abs=W)


def test_the_model_hears_the_proposal_silence_as_the_vad_hears_it() -> None:
    # Smart Turn needs that much trailing silence: asked sooner, it calls complete statements incomplete (README).
    proposal = TurnOptions().end_of_turn_proposal_silence_s
    for ahead in (True, False):
        events = play(TurnTaker(TurnOptions(end_of_turn_ask_ahead=ahead)), fading(end=2.496, quiet_from=2.4, quiet_db=40.0), until=4.0,
                      model=[(0.9, 0.1)])  # fmt: skip
        [proposed] = [e for e in events if isinstance(e, EndOfTurnProposed)]
        [ended] = [e for e in events if isinstance(e, UserTurnEnded)]
        assert proposed.speech_end == pytest.approx(2.4, abs=1e-6)
        assert proposed.t + proposed.ahead_s == pytest.approx(2.496 + proposal, abs=W)  # the silence the model hears
        if ahead:  # asked when the answer is prepared (silero's first silent window), the pause lengthened to match
            assert proposed.t < 2.496 + proposal - W and proposed.ahead_s > W
        else:
            assert proposed.ahead_s == 0.0
        assert ended.cause == "model" and ended.t == pytest.approx(max(proposed.t + 0.1, 2.496 + proposal), abs=W)


AHEAD = {"end_of_turn_ask_ahead": True}


def test_asked_ahead_the_model_hears_the_pause_when_the_answer_is_prepared_and_its_verdict_waits_for_the_proposal_silence() -> None:
    options = TurnOptions(**AHEAD)
    events = play(TurnTaker(options), [(1.0, 2.5, 0.9)], until=4.0, model=[(0.9, 0.05)])  # answered within 0.05 s
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "EndOfTurnProposed", "UserTurnEnded"]
    _, paused, proposed, ended = events
    assert proposed.t == paused.t and proposed.t - proposed.speech_end == pytest_approx(options.prepare_silence_s)
    assert proposed.ahead_s == pytest_approx(options.end_of_turn_proposal_silence_s - options.prepare_silence_s)
    # "complete" came 0.05 s after the pause was asked about, but ends the turn only once the silence has lasted 0.2 s
    assert ended.cause == "model" and ended.t - ended.speech_end == pytest_approx(options.end_of_turn_proposal_silence_s)
    slow = play(TurnTaker(options), [(1.0, 2.5, 0.9)], until=4.0, model=[(0.9, 0.3)])  # a verdict later than that acts when it comes
    [late] = only(slow, "UserTurnEnded")
    assert late.cause == "model" and late.t == pytest.approx(only(slow, "EndOfTurnProposed")[0].t + 0.3)


def test_asked_ahead_an_early_verdict_is_dropped_when_the_person_speaks_before_the_proposal_silence() -> None:
    hesitation = [(1.0, 2.0, 0.9), (2.16, 3.0, 0.9)]  # a 0.16 s gap: prepared and asked, but not the 0.2 s of silence
    events = play(TurnTaker(TurnOptions(**AHEAD)), hesitation, until=4.5, model=[(0.95, 0.05), (0.1, 0.05)])
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "EndOfTurnProposed", "UserResumed", "UserPaused", "EndOfTurnProposed",
                             "UserTurnEnded"]  # fmt: skip
    [ended] = only(events, "UserTurnEnded")  # the second pause's "incomplete" holds it to the fallback silence
    assert ended.cause == "fallback" and ended.speech_end == pytest_approx(3.0)
    assert ended.t - ended.speech_end == pytest_approx(TurnOptions().end_of_turn_fallback_silence_s)


def test_asked_ahead_incomplete_and_words_still_hold_the_turn() -> None:
    incomplete = play(TurnTaker(TurnOptions(**AHEAD)), [(1.0, 2.0, 0.9)], until=4.0, model=[(0.2, 0.05)])
    [ended] = only(incomplete, "UserTurnEnded")
    assert ended.cause == "fallback"
    unfinished = play(TurnTaker(TurnOptions(**AHEAD)), [(1.0, 2.0, 0.9)], until=4.0, model=[(0.9, 0.05)], words=[("I was thinking that", 0.1)])
    [ended] = only(unfinished, "UserTurnEnded")
    assert ended.cause == "fallback"
    asked_at_once = TurnOptions(end_of_turn_words_first=False, **AHEAD)  # the model asked beside the recognizer
    finished = play(TurnTaker(asked_at_once), [(1.0, 2.0, 0.9)], until=4.0, model=[(0.9, 0.05)], words=[("I saw a star.", 0.25)])
    [ended] = only(finished, "UserTurnEnded")  # "complete", held for the words, which came after the proposal silence
    assert ended.cause == "model" and ended.t == pytest.approx(only(finished, "UserPaused")[0].t + 0.25)


def test_a_gap_shorter_than_the_prepare_silence_prepares_nothing() -> None:
    taker = TurnTaker(TurnOptions(prepare_silence_s=0.096, **SILENCE_ONLY))
    events = play(taker, [(1.0, 2.0, 0.9), (2.064, 3.0, 0.9)], until=4.0)  # two silent windows inside the words
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "UserTurnEnded"]
    assert events[1].speech_end == pytest_approx(3.0)


def test_speech_over_the_avatar_pauses_it_then_a_real_turn_interrupts() -> None:
    taker = TurnTaker(TurnOptions(interruption_min_speech_s=0.25, **SILENCE_ONLY))
    events = play(taker, [(2.0, 3.0, 0.9)], agent=[(0.5, True)], until=3.7)
    assert kinds(events) == ["PauseAgent", "UserTurnStarted", "UserPaused", "UserTurnEnded"]
    pause = events[0]
    assert pause.onset == pytest_approx(2.0) and pause.t - pause.onset == pytest_approx(0.25)  # 0.25 s after the user began
    assert events[-1].over_agent and taker.floor == Floor.PAUSED
    assert kinds(taker.commit_turn(3.7)) == ["InterruptAgent"]
    assert taker.floor == Floor.IDLE


def test_a_false_interruption_resumes_when_nothing_real_follows() -> None:
    taker = TurnTaker(TurnOptions(interruption_min_speech_s=0.25, false_interruption_timeout_s=2.0, **SILENCE_ONLY))
    events = play(taker, [(2.0, 2.4, 0.9)], agent=[(0.5, True)], until=6.0)  # a cough-length burst
    assert kinds(events) == ["PauseAgent", "UserTurnStarted", "UserPaused", "UserTurnEnded", "ResumeAgent"]
    resumed = events[-1]
    assert resumed.t - events[3].t == pytest_approx(2.0)  # the false-interruption timeout after the turn ended
    taker2 = TurnTaker(TurnOptions(interruption_min_speech_s=0.25, **SILENCE_ONLY))
    play(taker2, [(2.0, 2.4, 0.9)], agent=[(0.5, True)], until=3.1)
    assert kinds(taker2.reject_turn(3.1)) == ["ResumeAgent"]  # the conversation found no words: resume at once


def test_speech_shorter_than_the_interruption_threshold_does_not_touch_the_avatar() -> None:
    taker = TurnTaker(TurnOptions(interruption_min_speech_s=0.5))
    assert play(taker, [(2.0, 2.4, 0.9)], agent=[(0.5, True)], until=4.0) == []
    assert taker.floor == Floor.AGENT


def test_without_pause_support_barge_in_interrupts_at_once() -> None:
    taker = TurnTaker(TurnOptions(interruption_min_speech_s=0.25), can_pause=False)
    events = play(taker, [(2.0, 3.0, 0.9)], agent=[(0.5, True)], until=2.4)
    assert kinds(events) == ["InterruptAgent", "UserTurnStarted"]


def test_interruptions_off_and_echo_guard() -> None:
    off = TurnTaker(TurnOptions(interruptions=False))
    assert play(off, [(2.0, 3.0, 0.9)], agent=[(0.5, True)], until=3.0) == []
    guarded = TurnTaker(TurnOptions(interruption_min_speech_s=0.25, echo_guard_s=3.0))
    assert play(guarded, [(1.0, 2.0, 0.9)], agent=[(0.5, True)], until=2.5) == []  # within 3 s of the avatar starting
    assert kinds(play(guarded, [(4.0, 4.5, 0.9)], until=4.5)) == ["PauseAgent", "UserTurnStarted"]


def test_a_question_ends_the_turn_after_a_shorter_silence() -> None:
    taker = TurnTaker(TurnOptions(end_of_turn_silence_s=0.6, question_end_silence_s=0.35, **SILENCE_ONLY))
    events = play(taker, [(1.0, 2.0, 0.9)], until=2.2)
    paused = events[-1]
    assert kinds(events) == ["UserTurnStarted", "UserPaused"]
    assert taker.words_heard(2.2, paused.onset + 1.0, paused.speech_end, "Where are you?") == []  # a stale transcript is ignored
    assert taker.words_heard(2.2, paused.onset, paused.speech_end, "Where are you?") == []  # only 0.2 s of silence so far
    rest = []
    t = 2.208
    while not rest:
        rest = taker.vad(t, t + W, 0.0)
        t = round(t + W, 6)
    [ended] = rest
    assert isinstance(ended, UserTurnEnded) and ended.t - ended.speech_end == pytest_approx(0.35)
    late = TurnTaker(TurnOptions(question_end_silence_s=0.35, **SILENCE_ONLY))
    events = play(late, [(1.0, 2.0, 0.9)], until=2.45)  # the transcript arrives after 0.4 s of silence
    [now] = late.words_heard(2.45, events[-1].onset, events[-1].speech_end, "Where are you?")
    assert isinstance(now, UserTurnEnded) and now.t == 2.45


# ---------------------------------------------------------------------------------- with the end-of-turn model


def only(events, kind):  # noqa: ANN001, ANN201
    return [e for e in events if type(e).__name__ == kind]


def test_the_model_saying_complete_ends_the_turn_as_soon_as_it_answers() -> None:
    taker = TurnTaker(TurnOptions(end_of_turn_proposal_silence_s=0.2, end_of_turn_ask_ahead=False))  # asked ahead: see below
    events = play(taker, [(1.0, 2.5, 0.9)], until=4.0, model=[(0.9, 0.07)])
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "EndOfTurnProposed", "UserTurnEnded"]
    _, _, proposed, ended = events
    assert proposed.t - proposed.speech_end == pytest_approx(0.2) and proposed.onset == pytest_approx(1.0)
    assert ended.cause == "model" and ended.t == pytest.approx(proposed.t + 0.07)  # not a window later
    assert (ended.onset, ended.speech_end) == (proposed.onset, proposed.speech_end)
    assert ended.t - ended.speech_end < 0.6 - 0.25  # well before the silence rule
    assert taker.floor == Floor.IDLE


def test_a_hesitation_the_model_calls_incomplete_is_not_cut_and_the_next_pause_is_asked_again() -> None:
    hesitation = [(1.0, 2.0, 0.9), (2.7, 3.5, 0.9)]  # "I was thinking ... (0.7 s) ... that we could go to Mars"
    taker = TurnTaker(TurnOptions())
    events = play(taker, hesitation, until=5.0, model=[(0.1, 0.07), (0.95, 0.07)])
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "EndOfTurnProposed", "UserResumed", "UserPaused", "EndOfTurnProposed",
                             "UserTurnEnded"]  # fmt: skip
    [ended] = only(events, "UserTurnEnded")
    assert ended.cause == "model" and ended.onset == pytest_approx(1.0) and ended.speech_end == pytest_approx(3.5)
    cut = play(TurnTaker(TurnOptions(**SILENCE_ONLY)), hesitation, until=5.0)  # the silence rule alone cuts it
    assert [e.speech_end for e in only(cut, "UserTurnEnded")] == [pytest_approx(2.0), pytest_approx(3.5)]


def test_when_the_model_keeps_saying_incomplete_the_fallback_silence_ends_the_turn() -> None:
    for fallback in (1.0, 1.5):
        taker = TurnTaker(TurnOptions(end_of_turn_fallback_silence_s=fallback))
        events = play(taker, [(1.0, 2.0, 0.9)], until=4.0, model=[(0.2, 0.07)])
        [ended] = only(events, "UserTurnEnded")
        assert ended.cause == "fallback" and ended.t - ended.speech_end == pytest_approx(fallback)


def test_a_slow_model_does_not_stall_the_turn() -> None:
    for answer in [(0.9, 0.8), (0.1, 0.8), (None, 0.0)]:  # complete or incomplete after 0.8 s of thinking, or never
        taker = TurnTaker(TurnOptions(end_of_turn_silence_s=0.6))
        events = play(taker, [(1.0, 2.0, 0.9)], until=4.0, model=[answer])
        [ended] = only(events, "UserTurnEnded")
        assert ended.cause == "silence" and ended.t - ended.speech_end == pytest_approx(0.6), answer
        assert taker.end_of_turn_verdict(3.0, ended.onset, ended.speech_end, 0.99) == []  # the late verdict changes nothing


def test_a_verdict_on_a_pause_the_user_has_spoken_after_is_ignored() -> None:
    taker = TurnTaker(TurnOptions())
    events = play(taker, [(1.0, 2.0, 0.9), (2.3, 2.6, 0.9)], until=2.6)  # proposed at 2.2, then the user went on
    [proposed] = only(events, "EndOfTurnProposed")
    assert not taker.awaits_verdict(proposed.onset, proposed.speech_end)  # the conversation need not even run the model
    assert taker.end_of_turn_verdict(2.62, proposed.onset, proposed.speech_end, 0.99) == []
    assert taker.floor == Floor.USER


def test_the_threshold_is_the_probability_that_ends_the_turn() -> None:
    for threshold, cause in [(0.3, "model"), (0.5, "fallback")]:
        taker = TurnTaker(TurnOptions(end_of_turn_threshold=threshold))
        [ended] = only(play(taker, [(1.0, 2.0, 0.9)], until=4.0, model=[(0.4, 0.05)]), "UserTurnEnded")
        assert ended.cause == cause


def test_a_question_transcript_ends_the_turn_whatever_the_model_said_or_before_it_answers() -> None:
    for answer in [(0.1, 0.05), (None, 0.0)]:  # the model said "incomplete" at 2.3 s; or it has not answered yet
        taker = TurnTaker(TurnOptions(question_end_silence_s=0.3))
        events = play(taker, [(1.0, 2.0, 0.9)], until=2.4, model=[answer])
        [proposed] = only(events, "EndOfTurnProposed")
        [ended] = taker.words_heard(2.4, proposed.onset, proposed.speech_end, "Where are you?")
        assert ended.cause == "question" and ended.t == 2.4
        assert only(play(taker, [], until=4.0, start=2.4), "UserTurnEnded") == []  # and it ended once


def test_speech_over_the_paused_avatar_ends_by_the_models_verdict_and_is_then_committed() -> None:
    taker = TurnTaker(TurnOptions(interruption_min_speech_s=0.25))
    events = play(taker, [(2.0, 3.0, 0.9)], agent=[(0.5, True)], until=3.6, model=[(0.8, 0.07)])
    assert kinds(events) == ["PauseAgent", "UserTurnStarted", "UserPaused", "EndOfTurnProposed", "UserTurnEnded"]
    assert events[-1].over_agent and events[-1].cause == "model" and taker.floor == Floor.PAUSED
    assert kinds(taker.commit_turn(3.6)) == ["InterruptAgent"] and taker.floor == Floor.IDLE


def test_options_keep_the_silences_in_order() -> None:
    with pytest.raises(ValueError, match="end_of_turn_proposal_silence_s < end_of_turn_silence_s <= end_of_turn_fallback_silence_s"):
        TurnOptions(end_of_turn_proposal_silence_s=0.7, end_of_turn_silence_s=0.6)
    with pytest.raises(ValueError, match="got 0.2 s, 0.6 s, 0.5 s"):  # fallback shorter than the silence rule
        TurnOptions(end_of_turn_fallback_silence_s=0.5)
    assert TurnOptions(end_of_turn_model=False, end_of_turn_fallback_silence_s=0.5).end_of_turn_fallback_silence_s == 0.5
    with pytest.raises(ValueError, match="prepare_silence_s < end_of_turn_silence_s.*got 0.6 s and 0.6 s"):
        TurnOptions(prepare_silence_s=0.6)


def test_a_reply_that_starts_while_the_user_has_gone_on_is_held_as_if_they_had_barged_in() -> None:
    # The turn ended inside a hesitation; the user goes on at 2.9 s; the reply to the fragment starts playing at 3.2 s.
    taker = TurnTaker(TurnOptions())
    events = play(taker, [(1.0, 2.0, 0.9), (2.9, 4.0, 0.9)], agent=[(3.2, True)], until=5.0, model=[(0.9, 0.05), (0.9, 0.05)])
    first, second = only(events, "UserTurnEnded")
    assert not first.over_agent and first.speech_end == pytest_approx(2.0)
    [pause] = only(events, "PauseAgent")
    assert pause.t == pytest_approx(3.2) and pause.onset == pause.t  # the overlap begins when the reply does
    assert second.over_agent and second.speech_end == pytest_approx(4.0)  # so the conversation commits it or resumes the reply
    blunt = TurnTaker(TurnOptions(), can_pause=False)
    events = play(blunt, [(1.0, 2.0, 0.9), (2.9, 4.0, 0.9)], agent=[(3.2, True)], until=5.0, model=[(0.9, 0.05), (0.9, 0.05)])
    assert kinds(only(events, "InterruptAgent")) == ["InterruptAgent"] and not only(events, "UserTurnEnded")[1].over_agent


# ---------------------------------------------------------------------------------- with the early transcript's words


def test_a_complete_verdict_waits_for_the_words_and_ends_the_turn_when_they_come() -> None:
    for delay in (0.05, 0.2, 0.3):  # the words come before the verdict (0.08 s after the proposal), or after it
        taker = TurnTaker(TurnOptions(end_of_turn_ask_ahead=False, end_of_turn_words_first=False))
        events = play(taker, [(1.0, 2.0, 0.9)], until=4.0, model=[(0.9, 0.08)], words=[("I saw a shooting star last night.", delay)])
        [paused] = only(events, "UserPaused")
        [proposed] = only(events, "EndOfTurnProposed")
        [ended] = only(events, "UserTurnEnded")
        assert ended.cause == "model" and ended.t == pytest.approx(max(proposed.t + 0.08, paused.t + delay)), delay


def test_words_that_end_mid_sentence_keep_the_turn_open_whatever_the_model_said_until_the_fallback_silence() -> None:
    hesitation = [(1.0, 2.0, 0.9), (2.8, 3.6, 0.9)]  # "Tell me about ... (0.8 s) ... the biggest storm you have seen."
    for model in (True, False):
        taker = TurnTaker(TurnOptions(end_of_turn_model=model))
        words = [("Tell me about", 0.15), ("Tell me about the biggest storm you have seen.", 0.15)]
        events = play(taker, hesitation, until=5.0, model=[(0.9, 0.05), (0.9, 0.05)], words=words)
        [ended] = only(events, "UserTurnEnded")  # not at 2.25 s (the model) nor at 2.6 s (the silence rule)
        assert ended.speech_end == pytest_approx(3.6) and ended.cause == ("model" if model else "silence"), model
        [alone] = only(play(TurnTaker(TurnOptions(end_of_turn_model=model)), [(1.0, 2.0, 0.9)], until=4.0, model=[(0.9, 0.05)],
                            words=[("Tell me about, um", 0.15)]), "UserTurnEnded")  # fmt: skip
        assert alone.cause == "fallback" and alone.t - alone.speech_end == pytest_approx(1.0), model


def test_words_the_recognizer_doubts_end_a_sentence_keep_the_turn_open_until_the_fallback_silence() -> None:
    def ended(options: TurnOptions, words: tuple) -> UserTurnEnded:
        [event] = only(play(TurnTaker(options), [(1.0, 2.0, 0.9)], until=4.0, model=[(0.9, 0.05)], words=[words]), "UserTurnEnded")
        return event

    doubted = ended(TurnOptions(), ("Yesterday I watched.", 0.15, 0.18))  # the model says complete; the full stop is unsure
    assert doubted.cause == "fallback" and doubted.t - doubted.speech_end == pytest_approx(1.0)
    sure = ended(TurnOptions(), ("I saw a shooting star last night.", 0.15, 0.93))
    assert sure.cause == "model" and sure.t - sure.speech_end < 0.5
    for unknown in (("Yesterday I watched.", 0.15), ("Yesterday I watched.", 0.15, None)):  # a backend that does not say
        assert ended(TurnOptions(), unknown).cause == "model"
    assert ended(TurnOptions(sentence_end_min_probability=None), ("Yesterday I watched.", 0.15, 0.18)).cause == "model"
    assert ended(TurnOptions(sentence_end_min_probability=0.1), ("Yesterday I watched.", 0.15, 0.18)).cause == "model"
    assert ended(TurnOptions(end_of_turn_words=False), ("Yesterday I watched.", 0.15, 0.18)).cause == "model"
    question = ended(TurnOptions(), ("Could you tell me?", 0.15, 0.5))  # an unsure "?" does not end the turn early either
    assert question.cause == "fallback" and question.t - question.speech_end == pytest_approx(1.0)
    asked = ended(TurnOptions(end_of_turn_model=False), ("Where are you?", 0.15, 0.95))
    assert asked.cause == "question" and asked.t - asked.speech_end == pytest_approx(0.3)


def test_words_the_language_model_finds_unfinished_keep_the_turn_open_even_as_a_sure_question() -> None:
    def ended(options: TurnOptions, words: tuple, verdict: float = 0.9) -> UserTurnEnded:
        [event] = only(play(TurnTaker(options), [(1.0, 2.0, 0.9)], until=4.0, model=[(verdict, 0.05)], words=[words]), "UserTurnEnded")
        return event

    # Whisper is sure of its mark on these fragments; the language model, reading the words alone, is not.
    for fragment in (("I have been learning.", 0.15, 0.92, 0.0003), ("What?", 0.15, 0.83, 0.0), ("Could you tell me?", 0.15, 0.9, 0.0001)):
        held = ended(TurnOptions(), fragment)
        assert held.cause == "fallback" and held.t - held.speech_end == pytest_approx(1.0), fragment
        assert ended(TurnOptions(language_end_min_probability=None), fragment).cause in ("model", "question"), fragment
        assert ended(TurnOptions(end_of_turn_words=False), fragment).cause == "model", fragment
    whole = ended(TurnOptions(), ("I saw a shooting star last night.", 0.15, 0.93, 0.2))  # likely enough, not sure: the model decides
    assert whole.cause == "model" and whole.t - whole.speech_end < 0.5
    unknown = ended(TurnOptions(), ("I saw a shooting star last night.", 0.15, 0.93, None))  # a chat server does not say
    assert unknown.cause == "model"


def test_words_the_language_model_is_sure_of_end_the_turn_at_the_proposal_silence_whatever_the_model_heard() -> None:
    statement = [(1.0, 2.0, 0.9)]  # "We went hiking in the mountains last weekend." Smart Turn: incomplete (0.16)
    words = ("We went hiking in the mountains last weekend.", 0.15, 0.92, 0.62)
    for delay in (0.05, 0.3):  # the words before the proposal silence has passed, or after it
        events = play(TurnTaker(TurnOptions(end_of_turn_ask_ahead=False)), statement, until=4.0, model=[(0.16, 0.05)],
                      words=[(*words[:1], delay, *words[2:])])  # fmt: skip
        [paused] = only(events, "UserPaused")
        [proposed] = only(events, "EndOfTurnProposed")
        [ended] = only(events, "UserTurnEnded")
        assert ended.cause == "words" and ended.t == pytest.approx(max(proposed.t, paused.t + delay)), delay
    options = {"not sure enough": TurnOptions(language_end_sure_probability=0.7), "rule off": TurnOptions(language_end_sure_probability=None),
               "words off": TurnOptions(end_of_turn_words=False)}  # fmt: skip
    for name, changed in options.items():
        [held] = only(play(TurnTaker(changed), statement, until=4.0, model=[(0.16, 0.05)], words=[words]), "UserTurnEnded")
        assert held.cause == "fallback", name
    unsure_mark = ("We went hiking in the mountains last weekend.", 0.15, 0.5, 0.62)  # Whisper doubts it: still held
    [held] = only(play(TurnTaker(TurnOptions()), statement, until=4.0, model=[(0.16, 0.05)], words=[unsure_mark]), "UserTurnEnded")
    assert held.cause == "fallback"
    fairly_sure_mark = ("Tell me about the rings of Saturn.", 0.15, 0.75, 0.91)  # below 0.8, but the language model vouches for it
    for options, cause in ((TurnOptions(), "words"), (TurnOptions(sentence_end_min_probability_if_sure=None), "fallback"),
                           (TurnOptions(language_end_sure_probability=None), "fallback")):  # fmt: skip
        [ended] = only(play(TurnTaker(options), statement, until=4.0, model=[(0.16, 0.05)], words=[fairly_sure_mark]), "UserTurnEnded")
        assert ended.cause == cause, options
    likely_only = ("Tell me about the rings of Saturn.", 0.15, 0.75, 0.2)  # the language model not sure: Whisper's 0.8 holds
    [held] = only(play(TurnTaker(TurnOptions()), statement, until=4.0, model=[(0.9, 0.05)], words=[likely_only]), "UserTurnEnded")
    assert held.cause == "fallback"
    silence = TurnTaker(TurnOptions(end_of_turn_model=False))  # without the end-of-turn model, silence decides as before
    [ended] = only(play(silence, statement, until=4.0, words=[words]), "UserTurnEnded")
    assert ended.cause == "silence" and ended.t - ended.speech_end == pytest_approx(0.6)
    # speech after the words throws them away with the pause: the next pause decides afresh
    went_on = [(1.0, 2.0, 0.9), (2.15, 3.0, 0.9)]
    events = play(TurnTaker(TurnOptions()), went_on, until=5.0, model=[(0.16, 0.05), (0.1, 0.05)],
                  words=[(*words[:1], 0.05, *words[2:]), ("We went hiking in the mountains last weekend and", 0.1, 0.1, 0.01)])  # fmt: skip
    [ended] = only(events, "UserTurnEnded")
    assert ended.cause == "fallback" and ended.speech_end == pytest_approx(3.0)


def test_words_first_the_model_is_asked_only_when_the_words_leave_the_end_open() -> None:
    statement = [(1.0, 2.0, 0.9)]
    cases = {  # words (text, delay, Whisper's mark, the LLM's probability) -> how the turn ends, and whether the model was asked
        "sure": (("We went hiking in the mountains last weekend.", 0.25, 0.92, 0.62), "words", False),
        "mid-sentence": (("I was thinking that", 0.25, 0.3, 0.0), "fallback", False),
        "the LLM says unfinished": (("I have been learning.", 0.25, 0.95, 0.01), "fallback", False),
        "a question": (("Is it cold up there?", 0.25, 0.9, 0.2), "question", False),
        "open, the model says complete": (("The museum opens at nine.", 0.25, 0.9, 0.07), "model", True),
    }
    for name, (words, cause, asked) in cases.items():
        taker = TurnTaker(TurnOptions())
        events = play(taker, statement, until=4.0, model=[(0.9, 0.05)], words=[words])
        [paused], [ended] = only(events, "UserPaused"), only(events, "UserTurnEnded")
        proposals = only(events, "EndOfTurnProposed")
        assert ended.cause == cause, name
        assert len(proposals) == (2 if asked else 1), name  # the pause's own, then the words' when they leave it open
        if asked:  # proposed again when the words came, the rest of the proposal silence still to be assumed
            again = proposals[1]
            assert again.t == pytest.approx(paused.t + 0.25) and again.ahead_s == pytest.approx(0.0)
            assert ended.t == pytest.approx(again.t + 0.05)
    # the words come before the proposal silence has passed: the model hears the pause as if it had
    quick = play(TurnTaker(TurnOptions()), statement, until=4.0, model=[(0.9, 0.05)], words=[("The museum opens at nine.", 0.05, 0.9, 0.07)])
    [paused], [_, again], [ended] = only(quick, "UserPaused"), only(quick, "EndOfTurnProposed"), only(quick, "UserTurnEnded")
    assert again.ahead_s > 0.0 and ended.cause == "model" and ended.t - ended.speech_end == pytest_approx(0.2)
    # open words and an "incomplete": the fallback silence, as when the model was asked at once
    held = play(TurnTaker(TurnOptions()), statement, until=4.0, model=[(0.1, 0.05)], words=[("The museum opens at nine.", 0.25, 0.9, 0.07)])
    assert only(held, "UserTurnEnded")[0].cause == "fallback"
    # words later than the silence rule (a busy machine): the turn waits for them, up to the fallback silence
    late = play(TurnTaker(TurnOptions()), statement, until=4.0, model=[(0.1, 0.05)], words=[("Tell me about him.", 0.7, 0.79, 0.04)])
    [ended] = only(late, "UserTurnEnded")
    assert ended.cause == "fallback" and ended.t - ended.speech_end == pytest_approx(1.0), "held by its words, not cut at 0.6 s"
    late_open = play(TurnTaker(TurnOptions()), statement, until=4.0, model=[(0.9, 0.05)], words=[("The museum opens at nine.", 0.7, 0.9, 0.07)])
    [paused], [ended] = only(late_open, "UserPaused"), only(late_open, "UserTurnEnded")
    assert ended.cause == "model" and ended.t == pytest.approx(paused.t + 0.75), "asked once they came, past the silence rule"
    # words that never come: the model was never asked, the fallback silence ends the turn
    [ended] = only(play(TurnTaker(TurnOptions()), statement, until=4.0, model=[(0.9, 0.05)], words=[(None, 0.0)]), "UserTurnEnded")
    assert ended.cause == "fallback"
    # a backend that does not transcribe first: the model is asked on the pause, as before
    [ended] = only(play(TurnTaker(TurnOptions()), statement, until=4.0, model=[(0.9, 0.05)]), "UserTurnEnded")
    assert ended.cause == "model" and ended.t - ended.speech_end == pytest_approx(0.2)


def test_words_first_off_asks_the_model_beside_the_recognizer() -> None:
    open_words = ("The museum opens at nine.", 0.45, 0.9, 0.07)  # late words that leave the end open
    ends = {}
    for first in (True, False):
        events = play(TurnTaker(TurnOptions(end_of_turn_words_first=first)), [(1.0, 2.0, 0.9)], until=4.0,
                      model=[(0.9, 0.05)], words=[open_words])  # fmt: skip
        [paused], [ended] = only(events, "UserPaused"), only(events, "UserTurnEnded")
        assert ended.cause == "model"
        ends[first] = ended.t - paused.t
    assert ends[False] == pytest.approx(0.45), "asked at the pause, its verdict waited for the words"
    assert ends[True] == pytest.approx(0.45 + 0.05), "asked once the words came"


def test_language_model_options_keep_their_order() -> None:
    with pytest.raises(ValueError, match="language_end_sure_probability >= language_end_min_probability"):
        TurnOptions(language_end_min_probability=0.5, language_end_sure_probability=0.3)
    TurnOptions(language_end_min_probability=None, language_end_sure_probability=0.3)


def test_words_that_never_come_hold_a_complete_verdict_no_longer_than_the_silence_rule() -> None:
    taker = TurnTaker(TurnOptions(end_of_turn_silence_s=0.6, end_of_turn_words_first=False))  # the model asked beside the words
    [ended] = only(play(taker, [(1.0, 2.0, 0.9)], until=4.0, model=[(0.9, 0.05)], words=[(None, 0.0)]), "UserTurnEnded")
    assert ended.cause == "silence" and ended.t - ended.speech_end == pytest_approx(0.6)
    off = TurnTaker(TurnOptions(end_of_turn_words=False))  # words do not count: the verdict ends the turn at once
    [ended] = only(play(off, [(1.0, 2.0, 0.9)], until=4.0, model=[(0.9, 0.05)], words=[("Tell me about", 0.3)]), "UserTurnEnded")
    assert ended.cause == "model" and ended.t - ended.speech_end == pytest_approx(0.25)


@pytest.mark.parametrize(("text", "unfinished"), [
    ("Tell me about", True), ("I wonder if uh", True), ("I wonder if uh.", True), ("Maybe we could", True), ("The thing is", True),
    ("I was thinking...", True), ("I was thinking,", True), ("Yesterday I watched, um", True), ("My brother and", True),
    ("I saw a shooting star last night.", False), ("Yes I can.", False), ("Come in.", False), ("What are you thinking of?", False),
    ("I was thinking", True), ("Stop!", False), ("", False), ("...", False), ("I told her", True), ("And the", True),
    ("I told her.", False), ("My sister told me", True), ("Tell me about him", True), ('He said "go away."', False),
    ("I was born in 1990.", False), ("Could you tell me?", False), ("我去过月球。", False), ("我想", True), ("Um.", True),
])  # fmt: skip
def test_a_transcript_that_stops_where_a_sentence_cannot_end_is_unfinished(text: str, unfinished: bool) -> None:
    assert ends_mid_sentence(text) == unfinished
