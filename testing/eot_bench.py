"""`liveavatar bench eot` (and `eot-load`): when does the avatar answer, and does it cut people off?

36 fixed utterances (testing/eot_corpus.py: questions, statements, mid-sentence hesitations of 0.4–0.9 s)
are spoken, one after another, into the live loop with the embedded cascade (Whisper tiny.en, SmolLM2,
Piper) and the portrait avatar, in the same process once per setting (SETTINGS: the defaults, the
end-of-turn model without the early transcript's words, silence alone), the corpus split in two halves run
A B C C B A so a machine whose load changes during the run weighs on every setting alike; every third
reply is barged in on. Ground truth is the script: we know when each voice starts,
pauses and ends. Measured per kind and overall:

- response latency: the user's voice ends -> the first avatar frame carrying the answer's voice at the sink;
- false cut-off: the turn ended while the utterance was still going on (inside a hesitation, or any pause);
- barge-in latency: the interruption's voice starts -> the avatar's audio stopped at the sink.

`eot-load` does the same with one core kept busy by another process (a laptop is never idle).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import yaml

from liveavatar.testing.bench_live import EXAMPLES, _emit, _wait_for
from liveavatar.testing.eot_corpus import Utterance, corpus, interruptions, voice_span

KINDS = ("question", "statement", "hesitation")
BARGE_EVERY = 3  # barge in on every third reply (a later one when the reply is too short to interrupt)
GAP_S = 0.8  # silence between the avatar's last word and the user's next utterance


@dataclass(frozen=True)
class Setting:
    """One pass's end-of-turn setting: the model on or off, the early transcript's words counted or not, and optionally
    persona options changed ("section.option=value", several joined by ";", e.g. "turn_taking.prepare_silence_s=0.128")."""

    model: bool
    words: bool
    change: str | None = None

    def fields(self) -> dict[str, str]:
        """How the JSON lines name it."""
        named = {"model": "on" if self.model else "off", "words": "on" if self.words else "off"}
        if self.change is not None:
            named["change"] = self.change
        return named

    def persona(self, persona):  # noqa: ANN001, ANN201 - Persona
        """`persona` with this setting's change (validated as the persona file's would be) and its end-of-turn switches."""
        updates = {"turn_taking": {"end_of_turn_model": self.model, "end_of_turn_words": self.words}}
        for change in self.change.split(";") if self.change is not None else ():
            key, _, value = change.strip().partition("=")
            section, _, option = key.partition(".")
            if section not in ("turn_taking", "dialogue_options", "avatar_options", "voice") or not option or not value:
                raise ValueError(f"change {self.change!r}: expected SECTION.OPTION=VALUE (several joined by ';') with SECTION "
                                 "one of turn_taking, dialogue_options, avatar_options, voice")  # fmt: skip
            updates.setdefault(section, {})[option] = yaml.safe_load(value)  # as the persona file would write it: 0.1, null, true
        changed = {}
        for section, values in updates.items():
            current = getattr(persona, section)
            changed[section] = type(current).model_validate({**current.model_dump(), **values})
        return persona.model_copy(update=changed)


SETTINGS = (Setting(model=True, words=True), Setting(model=True, words=False), Setting(model=False, words=False))
"""The defaults, the model alone, and silence alone: side by side in one run."""
SETTING_NAMES = dict(zip(("defaults", "model-alone", "silence"), SETTINGS))


@dataclass
class Heard:
    """What happened to one utterance."""

    kind: str
    text: str
    response_s: float | None = None
    cut_off: bool = False  # a turn ended before the user's voice did
    cause: str | None = None  # what ended the turn that the answer answered
    cut_at: list[str] = field(default_factory=list)  # the early transcripts of turns that ended inside the utterance
    heard_as: str | None = None  # the early transcript of the turn that the answer answered
    heard_sentence_end_p: float | None = None  # ... and the recognizer's probability that a sentence ends there
    heard_language_end_p: float | None = None  # ... and the language model's, from the words alone
    vad_lag_s: float | None = None  # voice end -> the VAD's end of speech
    turn_end_s: float | None = None  # the VAD's end of speech -> the turn ended
    model_s: float | None = None  # the end-of-turn model's inference time on the final pause
    asr_s: float | None = None
    llm_first_text_s: float | None = None
    tts_first_audio_s: float | None = None
    # The answer's chain as it ran in the loop, to set beside `python -m liveavatar.testing.chain_bench` (each stage alone):
    answer_started_s: float | None = None  # voice end -> the answer began (prepared at the pause, or at the turn's end)
    asr_run_s: float | None = None  # the answer began -> its transcript
    llm_run_s: float | None = None  # transcript -> the LLM's first text
    tts_run_s: float | None = None  # first text -> first speech (the splitter's first piece, then Piper)
    to_frame_s: float | None = None  # first speech -> the first frame with it at the sink


STAGES = ("vad_lag_s", "turn_end_s", "model_s", "asr_s", "llm_first_text_s", "tts_first_audio_s", "answer_started_s", "asr_run_s",
          "llm_run_s", "tts_run_s", "to_frame_s")  # fmt: skip
"""Where a turn's time went (Heard's fields): per turn in `eot_turn`, medians in `eot_where_the_time_goes`."""


@dataclass
class PassResult:
    """One pass over the corpus (model on or off)."""

    setting: Setting
    heard: list[Heard] = field(default_factory=list)
    barge_ins: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    steal_s: float | None = None  # CPU time the hypervisor gave other machines meanwhile (/proc/stat), summed over cores

    def add(self, other: "PassResult") -> None:
        """Append `other`'s utterances (a later round of the same setting)."""
        self.heard += other.heard
        self.barge_ins += other.barge_ins
        self.wall_s += other.wall_s
        if other.steal_s is not None:
            self.steal_s = (self.steal_s or 0.0) + other.steal_s


def cpu_steal_s() -> float | None:
    """Seconds of CPU stolen by the hypervisor since boot, all cores together (None where /proc/stat has no such column)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


async def run_pass(agent, utterances: list[Utterance], stops: list[np.ndarray], setting: Setting, end_of_turn, out: IO[str], label: str,  # noqa: ANN001
                   first: int = 1) -> PassResult:  # fmt: skip
    """Speak every utterance into a fresh live conversation with `agent`; barge in on every BARGE_EVERY-th reply. The
    utterances are numbered from `first` in the printed lines."""
    from liveavatar.agent.clock import Clock
    from liveavatar.agent.conversation import Conversation
    from liveavatar.agent.metrics import MetricsLog
    from liveavatar.devices.recording import RecordingSink
    from liveavatar.devices.sources import SpeechOnCue

    options = setting.persona(agent.persona).turn_taking
    clock = Clock()
    source = SpeechOnCue(clock)
    sink = RecordingSink(clock.now, keep=20000)
    metrics = MetricsLog()
    state = {"value": "listening"}
    turn_ends: list[float] = []  # clock times at which a user turn ended ("thinking")

    def on_event(event: dict) -> None:
        if event["type"] == "state":
            state["value"] = event["state"]
            if event["state"] == "thinking":
                turn_ends.append(clock.now())

    conversation = Conversation(agent, source, [sink], clock, options=options, metrics=metrics, on_event=on_event,
                                end_of_turn=end_of_turn if setting.model else None)  # fmt: skip
    runner = asyncio.create_task(conversation.run())
    result = PassResult(setting)
    next_barge = BARGE_EVERY - 1
    started, stolen = time.perf_counter(), cpu_steal_s()
    try:
        await asyncio.sleep(1.0)
        for i, u in enumerate(utterances):
            heard = Heard(u.kind, u.text)
            begins = source.say(u.pcm)
            voice_start, true_end = begins + u.voice_start, begins + u.voice_end
            turns_before = len(metrics.turns)
            await _wait_for(lambda: clock.now() >= true_end, 30.0)  # noqa: B023
            spoken = {a.generation for a in sink.arrivals if a.generation is not None and a.rms > 0}  # answers to a cut-off fragment
            answer = lambda: [a for a in sink.arrivals if a.t >= true_end and a.generation is not None and a.rms > 0 and a.generation not in spoken]  # noqa: E731, B023
            await _wait_for(lambda: bool(answer()), 30.0)  # noqa: B023
            generation = answer()[0].generation if answer() else None
            heard.cut_off = any(voice_start < t < true_end for t in turn_ends)
            if i >= next_barge and generation is not None:
                await asyncio.sleep(0.5)  # into the reply
                if state["value"] == "speaking":  # else: too short to interrupt, try the next one
                    stop = stops[len(result.barge_ins) % len(stops)]
                    stop_onset = source.say(stop) + voice_span(stop)[0]
                    if await _wait_for(lambda: any(f >= stop_onset for f in sink.flushes), 3.0):  # noqa: B023
                        cut = sink.audio_cut(generation, stop_onset)
                        if cut is not None:
                            result.barge_ins.append(cut - stop_onset)
                            next_barge = i + BARGE_EVERY
            await _wait_for(lambda: state["value"] == "listening" and not source.speaking, 40.0)
            await asyncio.sleep(GAP_S)
            _fill_stages(heard, metrics.turns[turns_before:], true_end)
            heard.cut_at = [t.transcript or "" for t in metrics.turns[turns_before:]
                            if t.heard_from == "user" and voice_start < t.turn_end < true_end]  # fmt: skip
            result.heard.append(heard)
            _emit(out, "eot_turn", heard.response_s, "s", bench=label, **setting.fields(), n=first + i, kind=u.kind, text=u.text,
                  cut_off=heard.cut_off, cause=heard.cause, cut_at=heard.cut_at, heard_as=heard.heard_as,
                  heard_sentence_end_p=heard.heard_sentence_end_p, heard_language_end_p=heard.heard_language_end_p,
                  stages={name: _round(getattr(heard, name)) for name in STAGES})  # fmt: skip
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    result.wall_s = time.perf_counter() - started
    if stolen is not None and (now := cpu_steal_s()) is not None:
        result.steal_s = now - stolen
    return result


def _fill_stages(heard: Heard, turns: list, true_end: float) -> None:  # noqa: ANN001 - TurnMetrics
    """The answer (the reply to the turn that ended with the utterance's last words) and where the time went in it."""
    answered = [t for t in turns if t.heard_from == "user" and abs(t.user_speech_end - true_end) < 0.5]
    if not answered:
        return
    turn = min(answered, key=lambda t: abs(t.user_speech_end - true_end))
    if turn.first_voiced_frame is not None:
        heard.response_s = turn.first_voiced_frame - true_end
    heard.cause = turn.turn_end_cause
    heard.heard_as, heard.heard_sentence_end_p = turn.transcript, turn.sentence_end_probability
    heard.heard_language_end_p = turn.language_end_probability
    heard.vad_lag_s = turn.user_speech_end - true_end
    heard.turn_end_s = turn.turn_end - turn.user_speech_end
    heard.model_s = turn.end_of_turn_model_s
    heard.asr_s, heard.llm_first_text_s, heard.tts_first_audio_s = turn.asr_s, turn.llm_first_text_s, turn.tts_first_audio_s
    since_voice_end = lambda after_turn_end: None if after_turn_end is None else turn.turn_end + after_turn_end - true_end  # noqa: E731
    chain = [since_voice_end(turn.reply_started_s), since_voice_end(turn.asr_s), since_voice_end(turn.llm_first_text_s),
             since_voice_end(turn.tts_first_audio_s), heard.response_s]  # fmt: skip
    heard.answer_started_s = chain[0]
    heard.asr_run_s, heard.llm_run_s, heard.tts_run_s, heard.to_frame_s = (
        None if a is None or b is None else b - a for a, b in zip(chain, chain[1:]))  # fmt: skip


def simulate_turns(audio: np.ndarray, options, judge, answer_s: float = 0.1, lead_s: float = 0.5, keep: tuple[type, ...] | None = None,  # noqa: ANN001
                   hear=None, hear_s: float = 0.25) -> list:  # noqa: ANN001 - a callable
    """The user's `audio` (after `lead_s` of silence, then 2 s more) through silero VAD and the TurnTaker on a simulated
    clock; `judge(pcm)` is the end-of-turn model's probability, handed back `answer_s` after each proposal. `hear(pcm)`,
    when given, is the early transcript of each pause as the cascade makes it (text, the recognizer's and the language
    model's sentence-end probabilities), from the speech the prepared answer hears, handed back `hear_s` after the pause.
    Returns the events of the types in `keep` (default: UserTurnEnded), times in seconds from the start of the silence."""
    from liveavatar.agent.listening import POST_ROLL_S, PRE_ROLL_S
    from liveavatar.agent.turns import EndOfTurnProposed, TurnTaker, UserPaused, UserTurnEnded
    from liveavatar.devices.end_of_turn import SPEECH_LEAD_S, as_if_silent_for
    from liveavatar.devices.vad import SAMPLE_RATE, SileroVAD

    signal = np.concatenate([np.zeros(int(lead_s * SAMPLE_RATE), np.float32), audio, np.zeros(2 * SAMPLE_RATE, np.float32)])
    taker, vad, pending, events = TurnTaker(options), SileroVAD(), [], []

    def act(caused: list) -> None:  # noqa: ANN001 - what the conversation does with the TurnTaker's events, in order
        for event in caused:
            if isinstance(event, EndOfTurnProposed) and taker.asks_model_now(event):
                heard = signal[max(0, int((event.onset - SPEECH_LEAD_S) * SAMPLE_RATE)) : int(event.t * SAMPLE_RATE)]
                pending.append((event.t + answer_s, event, judge(as_if_silent_for(heard, event.ahead_s))))
            if isinstance(event, UserPaused) and hear is not None:
                taker.words_coming(event.onset, event.speech_end)
                stop = min(event.speech_end + POST_ROLL_S, event.t)  # the microphone's audio so far, as the listener cuts it
                spoken = signal[max(0, int((event.onset - PRE_ROLL_S) * SAMPLE_RATE)) : int(stop * SAMPLE_RATE)]
                pending.append((event.t + hear_s, event, tuple(hear(spoken))))
            events.append(event)

    for window in vad.feed(signal):
        for due, event, answer in sorted([p for p in pending if p[0] <= window.start_s], key=lambda p: p[0]):
            pending.remove((due, event, answer))
            if isinstance(event, UserPaused):
                act(taker.words_heard(due, event.onset, event.speech_end, *answer))
            else:
                act(taker.end_of_turn_verdict(due, event.onset, event.speech_end, answer))
        act(taker.vad(window.start_s, window.end_s, window.probability, window.level_db))
    return [e for e in events if isinstance(e, keep or UserTurnEnded)]


def bench_eot_sweep(out: IO[str], answer_s: float = 0.1) -> None:
    """Turn-taking settings over the corpus on a simulated clock (real VAD, real model, verdicts `answer_s` after each
    proposal): when the turn ends after the voice does, and how often it ends inside the utterance. Machine load does
    not change these figures; they choose the defaults, the live benchmark measures the whole loop."""
    from liveavatar.agent.turn_options import TurnOptions
    from liveavatar.devices.end_of_turn import SmartTurn

    utterances = corpus()
    model = SmartTurn()
    cache: dict[tuple[int, int, float], float] = {}

    def judge_for(index: int):  # noqa: ANN202
        def judge(pcm: np.ndarray) -> float:
            key = (index, len(pcm), round(float(np.abs(pcm[:1600]).sum()), 4), round(float(np.abs(pcm[-1600:]).sum()), 4))
            if key not in cache:
                cache[key] = model.probability(pcm)
            return cache[key]

        return judge

    settings = [{"end_of_turn_model": False}, {"end_of_turn_model": False, "end_of_speech_quiet_db": None}, {"end_of_speech_quiet_db": None},
                {"end_of_turn_ask_ahead": False}]  # fmt: skip
    settings += [{"end_of_turn_proposal_silence_s": p, "end_of_turn_threshold": th, "end_of_turn_fallback_silence_s": fb}
                 for p in (0.2, 0.3) for th in (0.5, 0.7, 0.9) for fb in (1.0, 1.2, 1.5)]  # fmt: skip
    try:
        for setting in settings:
            options = TurnOptions(**setting)
            rows = {kind: {"delays": [], "cut": 0, "n": 0} for kind in (*KINDS, "all")}
            for index, u in enumerate(utterances):
                ends = simulate_turns(u.pcm, options, judge_for(index), answer_s)
                true_end = 0.5 + u.voice_end
                cut = any(e.t < true_end for e in ends)
                final = [e.t - true_end for e in ends if e.t >= true_end]
                for kind in (u.kind, "all"):
                    rows[kind]["n"] += 1
                    rows[kind]["cut"] += cut
                    if final:
                        rows[kind]["delays"].append(final[0])
            summary = {kind: {"median": _round(_median(r["delays"])), "p90": _round(_p90(r["delays"])), "cut": f"{r['cut']}/{r['n']}"}
                       for kind, r in rows.items()}  # fmt: skip
            _emit(out, "eot_sweep", summary["all"]["median"], "s", **setting, answer_s=answer_s, **summary,
                  note="voice end -> turn end on a simulated clock; cut = turns ended before the voice did")  # fmt: skip
    finally:
        model.close()


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _p90(values: list[float]) -> float | None:
    return float(np.percentile(values, 90)) if values else None


def summarize(result: PassResult, out: IO[str], label: str, cores: int) -> dict[str, dict]:
    """Print per-kind and overall figures for one pass; returns them."""
    figures = {}
    setting = result.setting.fields()
    for kind in (*KINDS, "all"):
        rows = [h for h in result.heard if kind in ("all", h.kind)]
        latencies = [h.response_s for h in rows if h.response_s is not None]
        cut = sum(h.cut_off for h in rows)
        figures[kind] = {"median": _median(latencies), "p90": _p90(latencies), "cut": cut, "n": len(rows)}
        _emit(out, "eot_response_latency", _median(latencies), "s", bench=label, **setting, kind=kind,
              p90=None if not latencies else round(_p90(latencies), 3), answered=len(latencies), utterances=len(rows),
              false_cutoffs=cut, false_cutoff_rate=round(cut / len(rows), 3) if rows else None, cores=cores)  # fmt: skip
    _emit(out, "eot_barge_in_latency", _median(result.barge_ins), "s", bench=label, **setting, barge_ins=len(result.barge_ins),
          p90=None if not result.barge_ins else round(_p90(result.barge_ins), 3), cores=cores)  # fmt: skip
    stages = {}
    for name in STAGES:
        values = [getattr(h, name) for h in result.heard if getattr(h, name) is not None]
        stages[name] = None if not values else round(statistics.median(values), 3)
    causes = {c: sum(h.cause == c for h in result.heard) for c in ("model", "question", "words", "silence", "fallback")}
    _emit(out, "eot_where_the_time_goes", None, "s", bench=label, **setting, **stages, turn_end_causes=causes, wall_s=round(result.wall_s, 1),
          cpu_steal_s=_round(result.steal_s),
          note="medians: voice end -> VAD end of speech -> turn end; stages from the turn end (negative: ready before it); "
               "answer_started_s from the voice end, then each stage's own time in the loop: recognizer, LLM to its first text, "
               "first text to first speech, first speech to its first frame at the sink")  # fmt: skip
    return figures


@contextlib.contextmanager
def busy_core():  # noqa: ANN201
    """Another process spinning on one core for as long as the block runs."""
    # It spins only while this process lives: a benchmark killed by a signal (no `finally`) leaves no spinner behind.
    spinner = subprocess.Popen([sys.executable, "-c", "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"])
    try:
        yield spinner.pid
    finally:
        spinner.kill()
        spinner.wait()


def rounds_order(settings: tuple[Setting, ...], rounds: int) -> list[tuple[int, Setting]]:
    """(round, setting) in running order: the settings forwards in even rounds and backwards in odd ones (A B C C B A
    ...), so a machine that slows down or speeds up during the run weighs on every setting alike."""
    return [(r, setting) for r in range(rounds) for setting in (settings if r % 2 == 0 else settings[::-1])]


async def run_eot(out: IO[str], label: str, persona: Path, settings: tuple[Setting, ...] = SETTINGS, rounds: int = 2) -> None:
    """Every setting over the corpus, split into `rounds` parts run in turn (`rounds_order`), each part with a fresh
    agent; prints each setting's figures and the comparisons."""
    from liveavatar.agent.chat import make_agent
    from liveavatar.agent.config import load_persona
    from liveavatar.devices.end_of_turn import SmartTurn

    utterances, stops = corpus(), interruptions()
    model = SmartTurn()
    cores = len(os.sched_getaffinity(0))
    bounds = [len(utterances) * r // rounds for r in range(rounds + 1)]  # equal parts: the corpus mixes the kinds throughout
    base = load_persona(persona)
    results: dict[Setting, PassResult] = {setting: PassResult(setting) for setting in settings}
    try:
        for r, setting in rounds_order(settings, rounds):
            # A fresh agent per part: an avatar drops speech of generations at or below any it has cleared, and each
            # conversation numbers its replies from 1.
            agent = make_agent(setting.persona(base), (512, 512))
            try:
                part = utterances[bounds[r] : bounds[r + 1]]
                results[setting].add(await run_pass(agent, part, stops, setting, model, out, label, first=bounds[r] + 1))
            finally:
                await agent.aclose()
    finally:
        model.close()
    passes = {setting: summarize(result, out, label, cores) for setting, result in results.items()}
    gap = lambda f: None if f["statement"]["median"] is None or f["question"]["median"] is None else round(f["statement"]["median"] - f["question"]["median"], 3)  # noqa: E731
    cut = lambda f: f"{f['hesitation']['cut']}/{f['hesitation']['n']}"  # noqa: E731
    if all(setting in passes for setting in SETTINGS):
        on, alone, off = (passes[setting] for setting in SETTINGS)
        _emit(out, "eot_model_vs_silence", on["all"]["median"], "s", bench=label, median_model_alone=_round(alone["all"]["median"]),
              median_off=_round(off["all"]["median"]), p90_on=_round(on["all"]["p90"]), p90_model_alone=_round(alone["all"]["p90"]),
              p90_off=_round(off["all"]["p90"]), statement_minus_question_on=gap(on), statement_minus_question_off=gap(off),
              hesitations_cut_on=cut(on), hesitations_cut_model_alone=cut(alone), hesitations_cut_off=cut(off),
              note="on: model and words (the defaults); model_alone: words off; off: silence alone",
              goals="median <= 0.6 s, p90 <= 0.8 s, statements <= questions + 0.1 s, hesitations cut <= 5 %, barge-in <= 0.25 s; busy core: median <= 0.9 s")  # fmt: skip
    defaults = passes.get(SETTINGS[0])
    for setting, figures in passes.items():
        if defaults is not None and setting.change is not None and (setting.model, setting.words) == (True, True):
            _emit(out, "eot_change_vs_defaults", figures["all"]["median"], "s", bench=label, change=setting.change,
                  median_defaults=_round(defaults["all"]["median"]), p90=_round(figures["all"]["p90"]),
                  p90_defaults=_round(defaults["all"]["p90"]), hesitations_cut=cut(figures), hesitations_cut_defaults=cut(defaults),
                  note="the defaults with one persona option changed, measured in the same run")  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def bench_eot(out: IO[str], load: bool = False, persona: Path | None = None, settings: tuple[Setting, ...] = SETTINGS, rounds: int = 2) -> None:
    """The end-of-turn benchmark on a quiet machine (`load` False) or with one core kept busy by another process."""
    persona = persona or EXAMPLES / "nova-live.yaml"
    if not load:
        asyncio.run(run_eot(out, "eot", persona, settings, rounds))
        return
    with busy_core():
        asyncio.run(run_eot(out, "eot-load", persona, settings, rounds))


def main(argv: list[str] | None = None) -> int:
    """`liveavatar bench eot` with more choices: the load, the persona, which passes, and passes with an option changed."""
    from liveavatar.agent.config import load_persona

    parser = argparse.ArgumentParser(prog="python -m liveavatar.testing.eot_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--load", action="store_true", help="keep one core busy with another process (as `eot-load`)")
    parser.add_argument("--persona", type=Path, default=None, help="persona YAML (default: examples/nova-live.yaml)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTING_NAMES), default=list(SETTING_NAMES),
                        help="passes to run, in this order (default: all three)")
    parser.add_argument("--also", nargs="*", default=[], metavar="SECTION.OPTION=VALUE",
                        help="also run the defaults with a persona option changed, one pass each, next to the defaults' "
                             "(SECTION: turn_taking, dialogue_options, avatar_options, voice; several options in one pass "
                             "joined by ';'; e.g. turn_taking.prepare_silence_s=0.128 "
                             "'dialogue_options.threads=1;dialogue_options.llm_threads=1')")
    parser.add_argument("--rounds", type=int, default=2, metavar="N",
                        help="split the corpus into N parts and run every setting on each part in turn, forwards then "
                             "backwards (A B C C B A ...), so a change in the machine's load weighs on all alike (default 2)")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 12:
        parser.error(f"--rounds: expected 1 to 12 (the corpus has 36 utterances), got {args.rounds}")
    settings: list[Setting] = []
    for name in args.settings:
        settings.append(SETTING_NAMES[name])
        if name == "defaults":
            settings += [Setting(model=True, words=True, change=change) for change in args.also]
    if args.also and "defaults" not in args.settings:
        parser.error("--also compares with the defaults: keep 'defaults' in --settings")
    try:
        persona = load_persona(args.persona or EXAMPLES / "nova-live.yaml")
        for setting in settings:
            setting.persona(persona)
    except ValueError as exc:  # a bad persona file (ConfigError) or change (pydantic's ValidationError)
        parser.error(str(exc))
    bench_eot(sys.stdout, load=args.load, persona=args.persona, settings=tuple(settings), rounds=args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
