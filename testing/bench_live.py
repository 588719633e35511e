"""Live-loop benchmarks: response and barge-in latency over many spoken turns, and a long soak.

Latencies are measured against ground truth: the scripted user knows exactly when each utterance's
voice starts and ends, and the sink records when each frame arrived and when it was flushed.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
QUESTIONS = [
    "Hello Nova, how are you today?", "What is it like to float in space?", "Do you ever miss the rain?",
    "What did you eat for breakfast?", "Can you see the moon from your window?", "Tell me something about the stars.",
    "What is your favourite planet?", "How long have you been an astronaut?", "Is it cold up there?",
    "What do you do when you cannot sleep?", "Do you like music?", "What should I learn first about space?",
]  # fmt: skip
INTERRUPTIONS = ["Wait, stop, let me ask you something else.", "Hold on, sorry, one more question.", "Stop, stop, tell me about Mars instead."]


def _emit(out: IO[str], name: str, value: float | None, unit: str, **context: object) -> None:
    out.write(json.dumps({"name": name, "value": None if value is None else round(value, 3), "unit": unit, **context}) + "\n")
    out.flush()


def voice_span(pcm: np.ndarray, rate: int = 16000) -> tuple[float, float]:
    """Seconds from the start of an utterance to its first and last audible 10 ms (above -34 dBFS)."""
    hop = rate // 100
    frames = pcm[: len(pcm) // hop * hop].reshape(-1, hop)
    loud = np.nonzero(np.sqrt(np.mean(frames**2, axis=1)) > 0.02)[0]
    return loud[0] / 100, (loud[-1] + 1) / 100


@dataclass
class Measured:
    """One benchmark turn's ground-truth latencies."""

    response_s: float | None = None
    barge_in_s: float | None = None


async def _wait_for(predicate, timeout: float, step: float = 0.01) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def run_latency(turns: int, barge_ins: int, persona_path: Path, out: IO[str]) -> dict[str, object]:
    """Talk `turns` times to the persona (barging in on `barge_ins` of them); returns the figures."""
    from liveavatar.agent.chat import make_agent
    from liveavatar.agent.clock import Clock
    from liveavatar.agent.config import load_persona
    from liveavatar.agent.conversation import Conversation
    from liveavatar.agent.metrics import MetricsLog
    from liveavatar.devices.recording import RecordingSink
    from liveavatar.devices.sources import SpeechOnCue
    from liveavatar.dialogue.speech.piper_tts import PiperTTS
    from liveavatar.dialogue.speech.voice import VoiceOptions
    from liveavatar.media import resample

    user_voice = PiperTTS(VoiceOptions(pitch_semitones=-2, formant_shift=0.95, speaking_rate=1.05))

    def speech(text: str) -> np.ndarray:
        pcm = np.concatenate([c.pcm for c in user_voice.synthesize(text)])
        return resample(pcm, user_voice.rate, 16000)

    questions = [speech(q) for q in (QUESTIONS * (turns // len(QUESTIONS) + 1))[:turns]]
    stops = [speech(t) for t in INTERRUPTIONS]
    persona = load_persona(persona_path)
    agent = make_agent(persona, (512, 512))
    clock = Clock()
    source = SpeechOnCue(clock)
    sink = RecordingSink(clock.now, keep=20000)
    metrics = MetricsLog()
    state = {"value": "listening"}
    conversation = Conversation(agent, source, [sink], clock, metrics=metrics, on_event=lambda e: state.update(value=e["state"]) if e["type"] == "state" else None)
    runner = asyncio.create_task(conversation.run())
    measured: list[Measured] = []
    barge_every = max(2, turns // (barge_ins + 1)) if barge_ins else 0  # room for turns whose reply ends too soon
    next_barge = barge_every - 1 if barge_ins else turns  # the turn to barge in on (a later one if the reply is too short)
    try:
        await asyncio.sleep(1.0)
        for i, pcm in enumerate(questions):
            m = Measured()
            starts = source.say(pcm)
            onset, end = voice_span(pcm)
            true_end = starts + end
            voiced = lambda: [a for a in sink.arrivals if a.t >= true_end and a.generation is not None and a.rms > 0]  # noqa: E731
            if await _wait_for(lambda: bool(voiced()), 20.0):
                m.response_s = voiced()[0].t - true_end
            generation = voiced()[0].generation if voiced() else None
            done = len([x for x in measured if x.barge_in_s is not None])
            if i >= next_barge and done < barge_ins:
                await asyncio.sleep(0.5)  # into the reply (SmolLM2's are 1-4 s long)
            if i >= next_barge and done < barge_ins and state["value"] == "speaking":  # else: too short, try the next turn
                stop = stops[i % len(stops)]
                stop_onset = source.say(stop) + voice_span(stop)[0]
                if await _wait_for(lambda: any(f >= stop_onset for f in sink.flushes), 3.0):
                    stopped = sink.audio_cut(generation, stop_onset) if generation is not None else None
                    m.barge_in_s = None if stopped is None else stopped - stop_onset
                if m.barge_in_s is not None:
                    next_barge = i + barge_every
            await _wait_for(lambda: state["value"] == "listening" and conversation.samples_presented > 0, 30.0)
            await asyncio.sleep(0.8)
            measured.append(m)
            _emit(out, "turn", m.response_s, "s", turn=i + 1, barge_in_s=None if m.barge_in_s is None else round(m.barge_in_s, 3))
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await agent.aclose()
    responses = [m.response_s for m in measured if m.response_s is not None]
    barges = [m.barge_in_s for m in measured if m.barge_in_s is not None]
    stage = {k: statistics.median([getattr(t, k) for t in metrics.turns if getattr(t, k) is not None] or [float("nan")])
             for k in ("asr_s", "llm_first_text_s", "tts_first_audio_s")}  # fmt: skip
    return {"responses": responses, "barges": barges, "stage": stage, "turns": len(measured)}


def bench_latency(out: IO[str], turns: int = 16, barge_ins: int = 5, persona: Path | None = None) -> None:
    """Median response and barge-in latency with the embedded cascade and the portrait avatar."""
    figures = asyncio.run(run_latency(turns, barge_ins, persona or EXAMPLES / "nova-live.yaml", out))
    cores = len(os.sched_getaffinity(0))
    responses, barges = figures["responses"], figures["barges"]
    _emit(out, "response_latency_median", statistics.median(responses) if responses else None, "s", turns=len(responses),
          p90=round(float(np.percentile(responses, 90)), 3) if responses else None, goal=0.8, cores=cores,
          definition="user's voice ends (ground truth) -> first frame with the reply's voice at the sink")  # fmt: skip
    _emit(out, "barge_in_latency_median", statistics.median(barges) if barges else None, "s", barge_ins=len(barges), goal=0.35, cores=cores,
          definition="user's voice starts over the avatar (ground truth) -> avatar audio stopped at the sink")  # fmt: skip
    for stage, value in figures["stage"].items():
        _emit(out, f"stage_{stage}", value, "s", note="median, from the end of the user's turn; negative = ready before the turn ended")


async def run_soak(minutes: float, speed: float, out: IO[str]) -> dict[str, float]:
    """The live loop at `speed`× real time for `minutes` of media; RSS sampled each media minute."""

    from liveavatar.agent.agents import build_agent
    from liveavatar.agent.clock import Clock
    from liveavatar.agent.config import load_persona
    from liveavatar.agent.conversation import Conversation
    from liveavatar.agent.metrics import MetricsLog
    from liveavatar.devices.recording import RecordingSink
    from liveavatar.devices.sources import ScriptedSpeech
    from liveavatar.dialogue.scripted import Options as ScriptOptions
    from liveavatar.dialogue.scripted import ScriptedDialogue
    from liveavatar.dialogue.speech.piper_tts import PiperTTS
    from liveavatar.dialogue.speech.voice import VoiceOptions
    from liveavatar.media import resample, samples_before_frame

    persona = load_persona(EXAMPLES / "nova.yaml")
    agent = build_agent(persona, (128, 128), 25.0, 24000, underrun="silence")
    agent.dialogue = ScriptedDialogue(ScriptOptions(lines=["Sure, I can do that.", "That is a good question. Let me think about it for a moment.", "Yes."], repeat=True),
                                      agent.dialogue.tts)  # type: ignore[attr-defined] # fmt: skip
    voice = PiperTTS(VoiceOptions(pitch_semitones=-2))
    utterance = resample(np.concatenate([c.pcm for c in voice.synthesize("Tell me something, please.")]), voice.rate, 16000)
    period = 9.0  # a user turn every 9 s of media; every third one is followed by a barge-in
    total = minutes * 60
    script = []
    t = 1.0
    k = 0
    while t < total:
        script.append((t, utterance))
        if k % 3 == 2:
            script.append((t + 2.8, utterance))  # over the reply: a barge-in
        t += period
        k += 1
    clock = Clock(speed)
    sink = RecordingSink(clock.now, keep=2000)
    # The soak checks A/V bookkeeping and memory at `speed`x: the end-of-turn model's inference takes real time that
    # the sped-up clock cannot give it (0.15 s of CPU is 1.2 s of media at 8x), so turns end by silence here.
    options = persona.turn_taking.model_copy(update={"end_of_turn_model": False})
    conversation = Conversation(agent, ScriptedSpeech(clock, script, end_s=total), [sink], clock, options=options, metrics=MetricsLog())
    runner = asyncio.create_task(conversation.run(until=total))
    samples = []
    next_minute = 60.0

    def rss_mib() -> float:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

    while not runner.done():
        await asyncio.sleep(0.5)
        if clock.now() >= next_minute:
            samples.append((clock.now() / 60, rss_mib()))
            next_minute += 60.0
    await runner
    await agent.aclose()
    frames, audio = conversation.frames_presented, conversation.samples_presented
    drift = audio - samples_before_frame(frames, 24000, 25.0)
    minutes_axis, rss = np.array([s[0] for s in samples]), np.array([s[1] for s in samples])
    half = len(rss) // 2
    slope = float(np.polyfit(minutes_axis[half:], rss[half:], 1)[0]) if half >= 2 else float("nan")
    return {"frames": frames, "samples": audio, "drift": drift, "turns": len(conversation.metrics.turns),
            "rss_first": float(rss[0]) if len(rss) else float("nan"), "rss_last": float(rss[-1]) if len(rss) else float("nan"),
            "rss_max": float(rss.max()) if len(rss) else float("nan"), "slope_mib_per_min": slope,
            "interrupted": sum(t.interrupted for t in conversation.metrics.turns)}  # fmt: skip


def bench_soak(out: IO[str], minutes: float = 30.0, speed: float = 8.0) -> None:
    """A long accelerated run: RSS must stay flat and audio samples must equal frames × samples per frame."""
    started = time.perf_counter()
    figures = asyncio.run(run_soak(minutes, speed, out))
    wall = time.perf_counter() - started
    _emit(out, "soak_av_drift_samples", figures["drift"], "samples", frames=figures["frames"], samples=figures["samples"],
          media_minutes=minutes, wall_s=round(wall, 1), turns=figures["turns"])  # fmt: skip
    _emit(out, "soak_rss_slope", figures["slope_mib_per_min"], "MiB/min", note="second half of the run",
          rss_first_mib=round(figures["rss_first"], 1), rss_last_mib=round(figures["rss_last"], 1), rss_max_mib=round(figures["rss_max"], 1))  # fmt: skip
