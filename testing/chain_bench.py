"""`python -m liveavatar.testing.chain_bench`: each stage of the cascade's reply chain timed alone, as JSON lines.

What the answer to a turn must wait for, stage by stage, on this machine with nothing else of ours running:
Whisper on a spoken statement with 1 and 2 threads, the end-of-turn model on it, SmolLM2's first piece (the words the splitter
hands to speech first) with 1 and 2 threads and as the cascade runs it (2, or 1 while other processes keep the cores busy), after the example persona's system prompt, alone and after the cascade's question
of how likely a sentence ends with the words (the prompt read in two parts), and Piper's first piece
plain and in that persona's shaped voice, until its first audio is ready. Medians over `--runs` calls. The live loop (`liveavatar bench eot`) runs them on
the same cores as the avatar, so they cost more there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import IO

from liveavatar.testing.bench_live import EXAMPLES, _emit

STATEMENTS = ["I have never seen the ocean.", "Tell me about the rings of Saturn.", "My favourite colour is dark blue.",
              "Do you like music?", "What did you eat for breakfast?"]  # fmt: skip
FIRST_PIECE = "Oh, I love it"  # what the splitter hands to speech first: a clause or three words
PERSONA = EXAMPLES / "nova-live.yaml"  # its system prompt and its shaped voice


def _emit_times(out: IO[str], name: str, seconds: list[float], **fields: object) -> None:
    _emit(out, name, statistics.median(seconds), "s", bench="chain", runs=len(seconds), min=round(min(seconds), 4), **fields)


def _timed(work: Callable[[], object], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return seconds


async def _first_piece_s(llm, system_prompt: str, question: str, ending_first: bool = False) -> tuple[float, int]:  # noqa: ANN001 - LocalLLM
    """Seconds from the request to the splitter's first piece, the prompt's start already read in the background (as
    after every reply), and the prompt tokens left to read. `ending_first`: the LLM is asked first how likely a sentence
    ends with the words (as the cascade does, for turn-taking), then writes."""
    from liveavatar.dialogue.speech.sentences import SentenceSplitter

    prefix = [{"role": "system", "content": system_prompt}]
    messages = [*prefix, {"role": "user", "content": question}]
    llm.prefill(prefix)
    new_tokens = llm.uncached_tokens(messages)  # waits for the background read
    splitter = SentenceSplitter(3, 3)
    started = time.perf_counter()
    if ending_first:
        await llm.end_probability(messages)
    async for delta in llm.stream(messages, 48, 0.5):
        if splitter.feed(delta):
            break
    return time.perf_counter() - started, new_tokens


def run(out: IO[str], runs: int, load: bool = False) -> None:
    """Time every stage; one JSON line each (`load`: with another process spinning on one core throughout)."""
    from liveavatar.testing.eot_bench import busy_core

    busy = {"busy_core": load}
    with busy_core() if load else contextlib.nullcontext():
        _run(out, runs, busy)


def _run(out: IO[str], runs: int, busy: dict[str, bool]) -> None:
    from liveavatar.agent.config import load_persona
    from liveavatar.devices.end_of_turn import SmartTurn
    from liveavatar.dialogue.asr import WhisperASR
    from liveavatar.dialogue.llm import LocalLLM
    from liveavatar.dialogue.speech.piper_tts import PiperTTS
    from liveavatar.dialogue.speech.voice import VoiceOptions
    from liveavatar.testing.eot_corpus import say, user_voices

    persona = load_persona(PERSONA)
    pcm, _ = say(user_voices()[0], STATEMENTS[0])
    spoken_s = round(len(pcm) / 16000, 2)
    for threads in (1, 2):
        asr = WhisperASR(threads=threads)
        _emit_times(out, "chain_asr", _timed(lambda: asr.transcribe(pcm), runs), audio_s=spoken_s, model="whisper tiny.en",  # noqa: B023
              threads=threads, **busy)  # fmt: skip
    model = SmartTurn()
    try:
        _emit_times(out, "chain_end_of_turn_model", _timed(lambda: model.probability(pcm), runs), audio_s=spoken_s, **busy)
    finally:
        model.close()
    for threads, fit in ((1, False), (2, False), (2, True)):  # fit: as the cascade runs it, fewer threads on a busy machine
        llm = LocalLLM(threads=threads, fit_threads=fit)
        try:
            timed = {False: [], True: []}  # asked alone, and after the sentence's end: call by call, so both see the machine alike
            for i in range(runs):
                for ending_first, times in timed.items():
                    times.append(asyncio.run(_first_piece_s(llm, persona.system_prompt, STATEMENTS[i % len(STATEMENTS)], ending_first)))
            for ending_first, times in timed.items():
                _emit_times(out, "chain_llm_first_piece", [s for s, _ in times], threads=threads, fit_threads=fit, threads_used=llm.threads_now,
                      model="smollm2-135m", new_prompt_tokens=statistics.median(n for _, n in times), sentence_end_asked_first=ending_first,
                      **busy)  # fmt: skip
        finally:
            llm.close()
    for shaped in (False, True):
        tts = PiperTTS(persona.voice if shaped else VoiceOptions(), persona.base_dir)
        _emit_times(out, "chain_tts_first_piece", _timed(lambda: next(tts.synthesize(FIRST_PIECE, from_first_sound=True)), runs),  # noqa: B023
              text=FIRST_PIECE, shaped=shaped, until="first audio chunk (a reply's start: from its first sound, shaped in parts)", **busy)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Print the stages' times as JSON lines."""
    parser = argparse.ArgumentParser(prog="python -m liveavatar.testing.chain_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="calls per stage (default 5)")
    parser.add_argument("--load", action="store_true", help="keep one core busy with another process throughout (a laptop is never idle)")
    args = parser.parse_args(argv)
    run(sys.stdout, max(1, args.runs), args.load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
