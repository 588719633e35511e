"""A live conversation end to end on the real embedded parts: VAD, TurnTaker, scripted dialogue, portrait avatar.

The user is Piper speech placed on a timeline and delivered in real time; the sink records what
arrived when. Nothing stamped with an interrupted generation may reach the sink after the interrupt.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from liveavatar.agent.agents import build_agent
from liveavatar.agent.clock import Clock
from liveavatar.agent.config import load_persona
from liveavatar.agent.conversation import Conversation
from liveavatar.agent.metrics import MetricsLog
from liveavatar.devices.recording import RecordingSink
from liveavatar.devices.sources import ScriptedSpeech
from liveavatar.dialogue.base import DialogueBackend, ReplyEvent, TextDelta, Transcript, UserTurn
from liveavatar.dialogue.scripted import Options as ScriptOptions
from liveavatar.dialogue.scripted import ScriptedDialogue
from liveavatar.dialogue.speech.piper_tts import PiperTTS
from user_speech import STOP_PLEASE, user_says

FRAME_S = 0.04
LONG_LINE = ("Let me tell you a long story about the stars. It begins a very long time ago, in a galaxy that "
             "nobody has ever visited, where the nights are bright and the days are short.")  # fmt: skip


def speech_span(pcm: np.ndarray) -> tuple[float, float]:
    """Where the voice really starts and ends in an utterance (10 ms frames above -34 dBFS), in seconds."""
    frames = pcm[: len(pcm) // 160 * 160].reshape(-1, 160)
    loud = np.nonzero(np.sqrt(np.mean(frames**2, axis=1)) > 0.02)[0]
    return loud[0] * 0.01, (loud[-1] + 1) * 0.01


@pytest.fixture(scope="module")
def hello() -> np.ndarray:
    return user_says("How are you doing today Nova?")  # one breath: no pause inside it


@pytest.fixture(scope="module")
def stop_please() -> np.ndarray:
    return user_says(STOP_PLEASE)


class PlayerSink(RecordingSink):
    """A recording sink that also keeps each frame's audio and, like the page, holds `lead_s` unplayed."""

    def __init__(self, now, lead_s: float) -> None:  # noqa: ANN001
        super().__init__(now)
        self.lead_s = lead_s
        self.audio: list[tuple[int | None, np.ndarray]] = []
        self._since_flush = 0.0

    async def write(self, frame) -> None:  # noqa: ANN001
        await super().write(frame)
        self.audio.append((frame.generation, frame.audio.copy()))
        self._since_flush += len(frame.audio) / frame.audio_rate

    async def flush(self) -> float:
        await super().flush()
        dropped, self._since_flush = min(self.lead_s, self._since_flush), 0.0
        return dropped


def setup(examples: Path, end_of_turn, lines: list[str], utterances: list[tuple[float, np.ndarray]], lead_s: float = 0.0):  # noqa: ANN001, ANN201
    persona = load_persona(examples / "nova.yaml")
    agent = build_agent(persona, (128, 128), 25.0, 24000, underrun="silence")
    agent.dialogue = ScriptedDialogue(ScriptOptions(lines=lines), agent.dialogue.tts)  # type: ignore[attr-defined]
    clock = Clock()
    sink = PlayerSink(clock.now, lead_s)
    events: list[dict] = []
    conversation = Conversation(agent, ScriptedSpeech(clock, utterances), [sink], clock, metrics=MetricsLog(), on_event=events.append,
                                end_of_turn=end_of_turn)  # fmt: skip
    return agent, clock, sink, conversation, events


def test_one_spoken_turn_gets_a_spoken_answer(examples: Path, end_of_turn, hello: np.ndarray) -> None:
    agent, clock, sink, conversation, events = setup(examples, end_of_turn, ["Hi! I am doing fine, thank you."], [(0.5, hello)])
    asyncio.run(conversation.run(until=0.5 + len(hello) / 16000 + 4.0))
    [turn] = conversation.metrics.turns
    onset, end = speech_span(hello)
    t0 = conversation.source.started_at
    assert turn.user_onset - t0 == pytest.approx(0.5 + onset, abs=0.05)
    assert turn.user_speech_end - t0 == pytest.approx(0.5 + end, abs=0.15)
    assert turn.turn_end_cause == "model", "the end-of-turn model did not end the turn"  # Nova's persona leaves it on
    # sooner than the silence rule (0.6 s); on a quiet laptop about 0.45 s: 0.2 s of pause, then one model call
    assert turn.turn_end - turn.user_speech_end < agent.persona.turn_taking.end_of_turn_silence_s
    assert turn.prepared_early  # the reply prepared during the pause is the one the model's verdict released
    assert not turn.interrupted and turn.heard_text == "Hi! I am doing fine, thank you."
    assert 0 < turn.response_latency_s < 1.5  # the benchmark measures it properly; here: it answered promptly
    voiced = [a for a in sink.generation_frames(turn.generation) if a.rms > 0.01]
    assert len(voiced) > 25 and voiced[0].t >= turn.user_speech_end
    assert agent.dialogue.history == [("assistant", "Hi! I am doing fine, thank you.")]  # type: ignore[attr-defined]
    assert {"user_speaking", "thinking", "speaking", "listening"} <= {e["state"] for e in events if e["type"] == "state"}
    assert all(len(a) for a in [sink.arrivals]) and sink.samples == sink.frames * 960


def test_barge_in_stops_the_avatar_and_nothing_of_it_reaches_the_sink_again(examples: Path, end_of_turn, hello, stop_please) -> None:
    barge_at = 0.5 + len(hello) / 16000 + 3.0  # the avatar is well into its long answer by then
    agent, clock, sink, conversation, events = setup(examples, end_of_turn, [LONG_LINE, "Sure. Something else, then."], [(0.5, hello), (barge_at, stop_please)])
    asyncio.run(conversation.run(until=barge_at + len(stop_please) / 16000 + 5.0))
    first, second = conversation.metrics.turns
    assert first.interrupted and not second.interrupted
    assert 0 < first.barge_in_latency_s < 0.6
    cut = min(f for f in sink.flushes if f >= barge_at)
    assert cut - barge_at < 0.6
    late = [a for a in sink.arrivals if a.generation == first.generation and a.t > cut]
    assert late == [], "frames of the interrupted reply reached the sink after the interrupt"
    assert [a for a in sink.generation_frames(second.generation) if a.rms > 0.01], "the new reply was not spoken"
    assert 0 < len(first.heard_text) < len(LONG_LINE) and LONG_LINE.startswith(first.heard_text)
    history = agent.dialogue.history  # type: ignore[attr-defined]
    assert history == [("assistant", first.heard_text), ("assistant", "Sure. Something else, then.")]
    assert any(e["type"] == "interrupted" and e["generation"] == first.generation for e in events)


def test_a_false_interruption_resumes_the_reply_where_it_paused(examples: Path, end_of_turn, hello, stop_please) -> None:
    barge_at = 0.5 + len(hello) / 16000 + 3.0
    # One line only: the barge-in gets no answer (the script is spent), so the paused line resumes.
    # The sink plays like the page: 0.12 s behind, dropped at the pause, so those 0.12 s must be spoken again.
    agent, clock, sink, conversation, events = setup(examples, end_of_turn, [LONG_LINE], [(0.5, hello), (barge_at, stop_please)], lead_s=0.12)
    asyncio.run(conversation.run(until=barge_at + 14.0))
    [turn] = conversation.metrics.turns
    assert turn.resumed and not turn.interrupted and turn.heard_text == LONG_LINE
    frames = sink.generation_frames(turn.generation)
    paused = [a for a in sink.arrivals if barge_at + 0.4 < a.t < barge_at + len(stop_please) / 16000 and a.generation is None]
    assert paused, "the avatar did not stop talking while the user spoke"
    assert frames[-1].t > paused[-1].t, "the reply did not resume after the pause"
    reply = [(i, pcm) for i, (g, pcm) in enumerate(sink.audio) if g == turn.generation]
    gap = next(k for k in range(1, len(reply)) if reply[k][0] != reply[k - 1][0] + 1)
    before, after = np.concatenate([pcm for _, pcm in reply[:gap]]), np.concatenate([pcm for _, pcm in reply[gap:]])
    np.testing.assert_array_equal(after[:2880], before[-2880:], err_msg="the speech flushed from the player at the pause was lost")


def test_a_failing_brain_is_reported_and_the_conversation_goes_on(examples: Path, end_of_turn, hello: np.ndarray) -> None:
    from liveavatar.dialogue.omni_server import OmniServerBackend
    from liveavatar.dialogue.omni_server import Options as OmniOptions

    second_at = 0.5 + len(hello) / 16000 + 2.5
    agent, clock, sink, conversation, events = setup(examples, end_of_turn, ["unused"], [(0.5, hello), (second_at, hello)])
    agent.dialogue = OmniServerBackend(OmniOptions(base_url="http://127.0.0.1:9/v1", connect_timeout_s=0.5), "You are a test.")
    asyncio.run(conversation.run(until=second_at + len(hello) / 16000 + 2.0))
    first, second = conversation.metrics.turns
    assert "cannot reach vLLM-Omni at http://127.0.0.1:9/v1" in first.error and second.error == first.error
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert len(errors) == 2 and all("connection refused" in m for m in errors)
    assert [e["state"] for e in events if e["type"] == "state"][-1] == "listening"
    assert not [a for a in sink.arrivals if a.generation is not None and a.rms > 0]  # nothing was said


def test_two_agents_talk_on_their_own_and_the_person_can_barge_in(examples: Path, end_of_turn, stop_please: np.ndarray) -> None:
    from liveavatar.agent.duet_plan import DuetPlan

    agents = []
    for name, lines in (("nova", [LONG_LINE, "Sure, ask me anything you like."]), ("iris", ["Nova is right, of course."])):
        agent = build_agent(load_persona(examples / f"{name}.yaml"), (128, 128), 25.0, 24000, underrun="silence")
        agent.dialogue = ScriptedDialogue(ScriptOptions(lines=lines), agent.dialogue.tts)  # type: ignore[attr-defined]
        agents.append(agent)
    clock = Clock()
    sink = RecordingSink(clock.now)
    barge_at = 3.5  # Nova is telling her long story
    plan = DuetPlan(opening="Tell Iris a story.", max_turns=4, turn_gap_s=0.3, lead_in_s=0.3)
    conversation = Conversation(agents, ScriptedSpeech(clock, [(barge_at, stop_please)]), [sink], clock, metrics=MetricsLog(), duet=plan,
                                end_of_turn=end_of_turn)  # fmt: skip
    asyncio.run(conversation.run(until=barge_at + len(stop_please) / 16000 + 9.0))
    turns = conversation.metrics.turns
    story, answer, reaction = turns[:3]
    assert (story.speaker, story.heard_from, story.interrupted) == ("Nova", "opening", True)
    assert (answer.speaker, answer.heard_from, answer.heard_text) == ("Nova", "user", "Sure, ask me anything you like.")
    assert (reaction.speaker, reaction.heard_from, reaction.heard_text) == ("Iris", "agent", "Nova is right, of course.")
    cut = min(f for f in sink.flushes if f >= barge_at)
    assert not [a for a in sink.arrivals if a.generation == story.generation and a.t > cut]
    assert 0 < story.barge_in_latency_s < 0.6
    assert LONG_LINE.startswith(story.heard_text) and len(story.heard_text) < len(LONG_LINE)


class LateAnswerToTheBargeIn(DialogueBackend):
    """Says `lines[phase]`; the barge-in's answer (phase 1) comes very late: only once the next turn is answered."""

    def __init__(self, tts: PiperTTS, lines: tuple[str, str, str]) -> None:
        self.tts, self.lines = tts, lines
        self.phase = 0  # set by the test before each utterance
        self._next_turn: asyncio.Event | None = None

    async def reply(self, turn: UserTurn) -> AsyncIterator[ReplyEvent]:
        self._next_turn = self._next_turn or asyncio.Event()
        phase = self.phase
        if phase == 1:
            await self._next_turn.wait()
            await asyncio.sleep(1.0)  # well past the false-interruption timeout, while the next answer plays
        elif phase == 2:
            self._next_turn.set()
        yield TextDelta(self.lines[phase])
        async for chunk in self.tts.stream(self.lines[phase]):
            yield chunk


async def until(condition, timeout: float) -> None:  # noqa: ANN001
    """Wait (polling) until `condition()` holds; fail after `timeout` seconds."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


def test_an_answer_to_a_barge_in_that_comes_after_the_verdict_never_cuts_off_a_later_answer(examples: Path, end_of_turn, hello, stop_please) -> None:
    """Words that come too late (the paused reply already resumed) are dropped once the person has gone on."""
    from liveavatar.devices.sources import SpeechOnCue

    lines = ("I was telling you about the moon, the stars, the sea and the long road home.", "Too late, sorry.", "Sure, ask me anything.")
    agent = build_agent(load_persona(examples / "nova.yaml"), (128, 128), 25.0, 24000, underrun="silence")
    backend = agent.dialogue = LateAnswerToTheBargeIn(agent.dialogue.tts, lines)  # type: ignore[attr-defined]
    clock = Clock()
    source, sink, events = SpeechOnCue(clock), RecordingSink(clock.now), []
    conversation = Conversation(agent, source, [sink], clock, metrics=MetricsLog(), on_event=events.append, end_of_turn=end_of_turn)
    turns = conversation.metrics.turns

    async def scenario() -> None:
        runner = asyncio.create_task(conversation.run())
        try:
            source.say(hello)
            await until(lambda: any(a.generation is not None and a.rms > 0.01 for a in sink.arrivals), 20)
            await asyncio.sleep(1.0)  # into the first answer
            backend.phase = 1
            source.say(stop_please)  # over the avatar: it pauses; its answer has no words within the timeout: resume
            await until(lambda: len(turns) == 1, 40)  # the first answer played to its end
            backend.phase = 2
            source.say(hello)
            await until(lambda: len(turns) == 2, 30)
            await asyncio.sleep(2.0)  # the late words are ready by now; nothing may cut the answer off
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(scenario())
    assert [(t.reply_text, t.resumed, t.interrupted) for t in turns] == [(lines[0], True, False), (lines[2], False, False)]
    assert not [e for e in events if e["type"] == "transcript" and e["role"] == "agent" and lines[1] in e["text"]]


class HearsTheWords(DialogueBackend):
    """A cascade stand-in: the person's words first (the first of `words` for a turn heard up to its pause, the whole
    sentence after it), then an answer to them."""

    transcribes_first = True

    def __init__(self, tts: PiperTTS, words: tuple[str, str], pause_at_s: float) -> None:
        self.tts, self.words, self.pause_at_s = tts, words, pause_at_s
        self.heard: list[str] = []

    async def reply(self, turn: UserTurn) -> AsyncIterator[ReplyEvent]:
        assert turn.audio is not None
        words = self.words[0] if len(turn.audio.pcm) / turn.audio.rate < self.pause_at_s else self.words[1]
        self.heard.append(words)
        yield Transcript(words)
        answer = "Saturn has rings of ice." if words == self.words[1] else "Tell you about what?"
        yield TextDelta(answer)
        async for chunk in self.tts.stream(answer):
            yield chunk


@pytest.mark.parametrize("model", [True, False])
def test_a_person_who_pauses_after_words_that_cannot_end_a_sentence_is_not_cut_off(examples: Path, end_of_turn, model: bool) -> None:
    start, pause_s = user_says("Tell me about"), 1.0  # said alone, it sounds finished; its words do not
    rest = user_says("the rings of Saturn.")
    speech = np.concatenate([start, np.zeros(int(pause_s * 16000), np.float32), rest])
    words = ("Tell me about", "Tell me about the rings of Saturn.")
    voice_end = 0.5 + len(start) / 16000 + pause_s + speech_span(rest)[1]

    def converse(words_count: bool) -> tuple[list, HearsTheWords, float]:
        persona = load_persona(examples / "nova.yaml")
        options = persona.turn_taking.model_copy(update={"end_of_turn_model": model, "end_of_turn_words": words_count,
                                                         "end_of_turn_fallback_silence_s": 1.6})  # fmt: skip
        agent = build_agent(persona, (128, 128), 25.0, 24000, underrun="silence")
        backend = agent.dialogue = HearsTheWords(agent.dialogue.tts, words, pause_at_s=(len(start) / 16000 + 0.5 + pause_s / 2))  # type: ignore[attr-defined]
        clock = Clock()
        conversation = Conversation(agent, ScriptedSpeech(clock, [(0.5, speech)]), [RecordingSink(clock.now)], clock, options=options,
                                    metrics=MetricsLog(), end_of_turn=end_of_turn if model else None)  # fmt: skip
        asyncio.run(conversation.run(until=0.5 + len(speech) / 16000 + 3.0))
        return conversation.metrics.turns, backend, conversation.source.started_at

    turns, backend, t0 = converse(words_count=True)
    assert [t.reply_text for t in turns] == ["Saturn has rings of ice."], backend.heard  # one turn, answered once it was whole
    resumed_at = 0.5 + len(start) / 16000 + pause_s  # when the person went on after the pause
    assert resumed_at < turns[0].user_speech_end - t0 < voice_end + 0.6  # the turn ran to the sentence's end (the VAD lags it 0.1-0.2 s)
    assert "Tell me about" in backend.heard  # its words at the pause were heard, and kept the turn open
    if not model:  # silence alone, without the words, cuts the person off at the pause (1.0 s > 0.6 s)
        cut, _, t0 = converse(words_count=False)
        assert cut[0].user_speech_end - t0 < resumed_at - pause_s / 2  # the first turn ended at the pause
