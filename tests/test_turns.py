"""TurnTaker on scripted VAD timelines: deterministic, no audio, no clocks."""

from __future__ import annotations

from agent.turn_options import TurnOptions
from agent.turns import PREEMPT_SILENCE_S, Floor, TurnTaker, UserTurnEnded

W = 0.032  # one silero window


def play(taker: TurnTaker, timeline: list[tuple[float, float, float]], agent: list[tuple[float, bool]] = (), until: float | None = None):
    """Feed windows: (from_s, to_s, probability) spans, plus avatar speaking changes; returns (t, event) pairs."""
    events, changes = [], sorted(agent)
    end = until if until is not None else max(t for _, t, _ in timeline)
    t = 0.0
    while t < end - 1e-9:
        while changes and changes[0][0] <= t + 1e-9:
            events += taker.agent_speaking(*changes.pop(0))
        prob = next((p for a, b, p in timeline if a - 1e-9 <= t < b - 1e-9), 0.0)
        events += taker.vad(t, t + W, prob)
        t = round(t + W, 6)
    return events


def kinds(events):
    return [type(e).__name__ for e in events]


def test_a_user_turn_starts_after_0_2_s_of_speech_and_ends_after_the_silence_window() -> None:
    taker = TurnTaker(TurnOptions())
    events = play(taker, [(1.0, 2.5, 0.9)], until=4.0)
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "UserTurnEnded"]
    started, paused, ended = events
    assert started.onset == pytest_approx(1.0) and started.t - started.onset == pytest_approx(0.2)
    assert paused.t - ended.speech_end == pytest_approx(PREEMPT_SILENCE_S)
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
    taker = TurnTaker(TurnOptions())
    events = play(taker, [(1.0, 2.0, 0.9), (2.4, 3.0, 0.9)], until=4.0)  # a 0.4 s pause in the middle
    assert kinds(events) == ["UserTurnStarted", "UserPaused", "UserResumed", "UserPaused", "UserTurnEnded"]
    assert events[-1].onset == pytest_approx(1.0) and events[-1].speech_end == pytest_approx(3.0)


def test_speech_over_the_avatar_pauses_it_then_a_real_turn_interrupts() -> None:
    taker = TurnTaker(TurnOptions(interruption_min_speech_s=0.25))
    events = play(taker, [(2.0, 3.0, 0.9)], agent=[(0.5, True)], until=3.7)
    assert kinds(events) == ["PauseAgent", "UserTurnStarted", "UserPaused", "UserTurnEnded"]
    pause = events[0]
    assert pause.onset == pytest_approx(2.0) and pause.t - pause.onset == pytest_approx(0.25)  # 0.25 s after the user began
    assert events[-1].over_agent and taker.floor == Floor.PAUSED
    assert kinds(taker.commit_turn(3.7)) == ["InterruptAgent"]
    assert taker.floor == Floor.IDLE


def test_a_false_interruption_resumes_when_nothing_real_follows() -> None:
    taker = TurnTaker(TurnOptions(interruption_min_speech_s=0.25, false_interruption_timeout_s=2.0))
    events = play(taker, [(2.0, 2.4, 0.9)], agent=[(0.5, True)], until=6.0)  # a cough-length burst
    assert kinds(events) == ["PauseAgent", "UserTurnStarted", "UserPaused", "UserTurnEnded", "ResumeAgent"]
    resumed = events[-1]
    assert resumed.t - events[3].t == pytest_approx(2.0)  # the false-interruption timeout after the turn ended
    taker2 = TurnTaker(TurnOptions(interruption_min_speech_s=0.25))
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
    taker = TurnTaker(TurnOptions(end_of_turn_silence_s=0.6, question_end_silence_s=0.35))
    events = play(taker, [(1.0, 2.0, 0.9)], until=2.2)
    paused = events[-1]
    assert kinds(events) == ["UserTurnStarted", "UserPaused"]
    assert taker.turn_is_a_question(2.2, paused.onset + 1.0, paused.speech_end) == []  # a stale transcript is ignored
    assert taker.turn_is_a_question(2.2, paused.onset, paused.speech_end) == []  # only 0.2 s of silence so far
    rest = []
    t = 2.208
    while not rest:
        rest = taker.vad(t, t + W, 0.0)
        t = round(t + W, 6)
    [ended] = rest
    assert isinstance(ended, UserTurnEnded) and ended.t - ended.speech_end == pytest_approx(0.35)
    late = TurnTaker(TurnOptions(question_end_silence_s=0.35))
    events = play(late, [(1.0, 2.0, 0.9)], until=2.45)  # the transcript arrives after 0.4 s of silence
    [now] = late.turn_is_a_question(2.45, events[-1].onset, events[-1].speech_end)
    assert isinstance(now, UserTurnEnded) and now.t == 2.45
