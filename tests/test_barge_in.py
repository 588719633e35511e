"""Twenty barge-ins in a row on the real live loop: silero VAD, the end-of-turn model, Whisper, Piper, the portrait avatar.

The user talks over the avatar twenty times, each time 0.6 s after it started speaking: real
interruptions ("Please stop.": in one breath; "Wait, stop." pauses at the comma, where a turn may end, and Whisper tiny
hears the lone "stop." as "We start."), backchannels ("Uh-huh.": Piper's "Mm-hmm." is heard by Whisper tiny as words such as "Hey, ma'am") and a cough, and two of them less than a second
apart. Whisper hears each one; a turn with words gets a reply, a backchannel or a cough none, so the
avatar resumes. Afterwards nothing may be stuck
(floor, pause, pending decisions), no reply that was not interrupted may have lost a syllable, nothing of
an interrupted reply may reach the sink after its cut, and the avatar must still answer a question.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from liveavatar.agent.agents import build_agent
from liveavatar.agent.clock import Clock
from liveavatar.agent.config import load_persona
from liveavatar.agent.conversation import Conversation
from liveavatar.agent.metrics import MetricsLog
from liveavatar.agent.turns import Floor
from liveavatar.devices.sources import SpeechOnCue
from liveavatar.dialogue.asr import WhisperASR
from liveavatar.dialogue.base import DialogueBackend, ReplyEvent, Transcript, UserTurn
from liveavatar.dialogue.cascade import is_filler
from liveavatar.dialogue.scripted import Options as ScriptOptions
from liveavatar.dialogue.scripted import ScriptedDialogue
from liveavatar.media import resample
from liveavatar.testing.eot_corpus import say, user_voices

from test_conversation import PlayerSink  # noqa: E402 - a sink that, like the page, drops 0.12 s of unplayed audio on flush

STORY = ("The station turns once every ninety minutes. So the sun rises sixteen times a day. Every sunrise paints the panels "
         "orange. Then they turn white again. I never get tired of it. The moon looks small from here. The oceans look huge. "
         "At night the cities glow like embers.")  # fmt: skip
ANSWER = "Yes, I am still here."
PAIR_GAP_S = 0.9  # the close pair: the second barge-in begins this long after the first


class HearingScript(DialogueBackend):
    """Hears each turn with Whisper: a backchannel or a cough gets no reply, "are you still there?" gets ANSWER,
    anything else the STORY again."""

    def __init__(self, tts, asr: WhisperASR) -> None:  # noqa: ANN001 - PiperTTS
        self.asr, self.heard = asr, []
        self.story = ScriptedDialogue(ScriptOptions(lines=[STORY], repeat=True), tts)
        self.answer = ScriptedDialogue(ScriptOptions(lines=[ANSWER], repeat=True), tts)
        self._last = self.story

    async def reply(self, turn: UserTurn) -> AsyncIterator[ReplyEvent]:
        """The reply to `turn`, decided by what Whisper heard in it."""
        text = ""
        if turn.audio is not None and len(turn.audio.pcm):
            text = await asyncio.to_thread(self.asr.transcribe, resample(turn.audio.pcm, turn.audio.rate, 16000))
        self.heard.append(text)
        yield Transcript(text)
        if is_filler(text):
            return
        self._last = self.answer if "still there" in text.lower() else self.story
        async for event in self._last.reply(turn):
            yield event

    def record_played(self, text: str, turn: UserTurn | None = None) -> None:
        self._last.record_played(text, turn)

    def discard_turn(self, turn: UserTurn) -> None:
        self.story.discard_turn(turn)
        self.answer.discard_turn(turn)


def cough(seconds: float = 0.3) -> np.ndarray:
    """A dry cough: a burst of low, rough noise."""
    rng = np.random.default_rng(7)
    n = int(seconds * 16000)
    envelope = np.exp(-np.linspace(0, 6, n)) * np.minimum(1, np.linspace(0, 20, n))
    noise = np.convolve(rng.standard_normal(n), np.ones(6) / 6, mode="same")
    return (0.5 * envelope * noise / np.abs(noise).max()).astype(np.float32)


async def wait_for(predicate, timeout: float) -> bool:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def test_twenty_barge_ins_leave_nothing_stuck_or_lost_and_the_avatar_still_answers(examples: Path, end_of_turn) -> None:  # noqa: ANN001
    voice = user_voices()[1]
    hello, stop, mmhmm, question = (say(voice, text)[0] for text in ("Hello there.", "Please stop.", "Uh-huh.", "Are you still there?"))
    kinds = ["stop", "mmhmm", "stop", "cough", "stop", "mmhmm", "stop", "mmhmm", "stop", "stop",
             "mmhmm", "stop", "cough", "stop", "mmhmm", "stop", "stop", "mmhmm", "stop", "mmhmm"]  # fmt: skip
    sounds = {"stop": stop, "mmhmm": mmhmm, "cough": cough()}
    close_pair = 8  # barge-in 9 ("Please stop.") begins 0.9 s after barge-in 8 ("Uh-huh.") did, before the avatar decided on it

    persona = load_persona(examples / "nova.yaml")
    persona = persona.model_copy(update={"voice": persona.voice.model_copy(update={"pitch_semitones": 0.0, "formant_shift": 1.0})})
    agent = build_agent(persona, (128, 128), 25.0, 24000, underrun="silence")
    agent.dialogue = HearingScript(agent.dialogue.tts, WhisperASR(threads=1))  # type: ignore[attr-defined]
    clock = Clock()
    source = SpeechOnCue(clock)
    sink = PlayerSink(clock.now, lead_s=0.12)
    events: list[dict] = []
    state = {"value": "listening"}

    def on_event(event: dict) -> None:
        events.append({**event, "at": clock.now()})
        if event["type"] == "state":
            state["value"] = event["state"]

    conversation = Conversation(agent, source, [sink], clock, metrics=MetricsLog(), on_event=on_event, end_of_turn=end_of_turn)
    pushed: dict[int, int] = {}  # generation -> samples of speech the avatar was given, at its rate
    push = agent.avatar.push

    def counting_push(chunk, generation: int) -> None:  # noqa: ANN001
        pushed[generation] = pushed.get(generation, 0) + round(len(chunk.pcm) * 24000 / chunk.rate)
        push(chunk, generation)

    agent.avatar.push = counting_push  # type: ignore[method-assign]

    async def user() -> list[float]:
        runner = asyncio.create_task(conversation.run())
        onsets = []
        try:
            await asyncio.sleep(0.5)
            source.say(hello)
            for k, kind in enumerate(kinds):
                if k == close_pair:
                    continue  # spoken with the one before it
                while True:  # 0.6 s into the avatar's speech (if it stopped meanwhile, wait for it again)
                    assert await wait_for(lambda: state["value"] == "speaking", 30.0), f"the avatar was not speaking before barge-in {k + 1}"
                    await asyncio.sleep(0.6)
                    if state["value"] == "speaking":
                        break
                if k == close_pair - 1:  # the pair in one breath: its second sound begins 0.9 s after the first, however late this task wakes
                    first, second = sounds[kind], sounds[kinds[close_pair]]
                    lead = int(PAIR_GAP_S * 16000)
                    begins = source.say(np.concatenate([first[:lead], np.zeros(max(0, lead - len(first)), np.float32), second]))
                    onsets += [begins, begins + PAIR_GAP_S]
                else:
                    onsets.append(source.say(sounds[kind]))
            assert await wait_for(lambda: state["value"] in ("speaking", "listening") and not source.speaking, 30.0)
            await asyncio.sleep(1.5)  # let any decision settle, then ask
            source.say(question)
            assert await wait_for(lambda: any(t.reply_text == ANSWER for t in conversation.metrics.turns), 30.0), "the avatar did not answer"
            await asyncio.sleep(0.5)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        return onsets

    onsets = asyncio.run(user())

    assert onsets[close_pair] - onsets[close_pair - 1] < 1.0, "the close pair was not within 1 s"
    pauses = [e for e in events if e["type"] == "state" and e["state"] == "paused"]
    # Every voiced barge-in pauses the avatar, except the close pair's second (it is already paused); a cough is not
    # speech to the VAD, so the avatar talks on through it: it must not pause for it.
    voiced = sum(kind != "cough" for kind in kinds) - 1
    assert len(pauses) >= voiced, f"only {len(pauses)} of the {voiced} voiced barge-ins paused the avatar"
    coughs = [onsets[k] for k, kind in enumerate(kinds) if kind == "cough"]
    assert not [p for p in pauses for c in coughs if c <= p["at"] < c + 0.6], "the avatar paused for a cough"
    turns = conversation.metrics.turns
    interrupted = [m for m in turns if m.interrupted]
    assert len(interrupted) >= kinds.count("stop") - 1, "real interruptions did not interrupt"
    assert sum(m.resumed for m in turns) >= 1, "no backchannel or cough resumed the avatar"
    for e in (e for e in events if e["type"] == "interrupted"):  # nothing of an interrupted reply after its cut
        assert not [a for a in sink.arrivals if a.generation == e["generation"] and a.t > e["at"] + 0.05 and a.rms > 0]
    for m in turns:  # no syllable lost from a reply that was not interrupted: it reached the sink whole (resumes replay more)
        if not m.interrupted and m.generation in pushed:
            voiced = sum(len(pcm) for g, pcm in sink.audio if g == m.generation and pcm.any())
            assert voiced >= pushed[m.generation] - 960, f"reply {m.generation} lost {(pushed[m.generation] - voiced) / 24000:.2f} s of speech"
    final = turns[-1]
    assert final.reply_text == ANSWER and not final.interrupted and final.heard_text == ANSWER, "the avatar did not answer afterwards"
    assert final.response_latency_s is not None and final.response_latency_s < 2.0, f"answered after {final.response_latency_s} s"
    assert conversation.taker.floor == Floor.IDLE, f"the floor is stuck at {conversation.taker.floor}"
    assert not conversation.presenter.holding, "the avatar is stuck on hold"
    assert conversation.replies.deciding is None and conversation.replies.prepared is None, "a decision is still pending"
    assert sink.samples == sink.frames * 960, "a frame did not carry exactly its audio"
    heard = agent.dialogue.heard  # type: ignore[attr-defined]
    assert sum("stop" in h.lower() for h in heard) >= kinds.count("stop") - 2, f"the user's words were lost: {heard}"
