"""The embedded LLM (SmolLM2 through llama.cpp) writing replies one at a time on its own thread."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from liveavatar.agent.turn_options import TurnOptions
from liveavatar.dialogue.cpu_share import OtherProcessesCPU, usable_cores
from liveavatar.dialogue.llm import LocalLLM

ASK = [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": "Tell me about the moon."}]
OTHER = [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": "And what about Mars, tell me everything?"}]


@contextlib.contextmanager
def watching_eval(llm: LocalLLM, note: Callable[[list[int]], object]) -> Iterator[None]:
    """`note(tokens)` on every batch of tokens the model reads (replies, background reading, the sentence-end question)."""
    evaluate = llm._llama.eval
    llm._llama.eval = lambda tokens: (note(tokens), evaluate(tokens))[1]
    try:
        yield
    finally:
        del llm._llama.eval


@pytest.fixture(scope="module")
def llm():  # noqa: ANN201
    model = LocalLLM(threads=1)
    yield model
    model.close()


def test_a_reply_cancelled_while_waiting_for_the_model_never_reads_its_prompt_and_the_first_goes_on(llm: LocalLLM) -> None:
    read: list[int] = []  # prompt sizes the model was given, in order

    async def scenario() -> list[str]:
        speaking = threading.Event()  # cleared: the first reply waits between tokens, holding the model, for its speech
        speaking.set()
        first = llm.stream(ASK, 32, 0.0, speaking)
        assert (await asyncio.wait_for(anext(first), 30)).strip()
        speaking.clear()  # its first words are being spoken
        before = len(read)
        stale = llm.stream(OTHER, 32, 0.0)  # a reply to a turn the person went on from: it waits for the model ...
        waiting = asyncio.create_task(anext(stale))
        await asyncio.sleep(0.3)
        waiting.cancel()  # ... and is cancelled
        await asyncio.gather(waiting, return_exceptions=True)
        await stale.aclose()
        speaking.set()
        words = [delta async for delta in first]
        assert all(n == 1 for n in read[before:]), f"the cancelled reply read a prompt: {read[before:]}"
        return words

    with watching_eval(llm, lambda tokens: read.append(len(tokens))):
        words = asyncio.run(scenario())
    assert words, "the first reply did not go on once its speech was under way"


def test_every_call_into_llama_cpp_runs_on_one_thread(llm: LocalLLM) -> None:
    """More threads calling llama.cpp mean more OpenMP teams, and each token then costs about twice as much."""
    threads: set[int] = set()
    pool = ThreadPoolExecutor(3)

    async def from_many_threads() -> None:
        loop = asyncio.get_running_loop()
        llm.prefill(ASK[:1])
        await loop.run_in_executor(pool, llm.prefill, OTHER[:1])
        await llm.end_probability(ASK)
        assert "".join([d async for d in llm.stream(ASK, 8, 0.0)]).strip()
        await asyncio.gather(*(loop.run_in_executor(pool, asyncio.run, llm.end_probability(m)) for m in (ASK, OTHER)))

    try:
        with watching_eval(llm, lambda _tokens: threads.add(threading.get_ident())):
            asyncio.run(from_many_threads())
            llm.uncached_tokens(ASK)
    finally:
        pool.shutdown()
    assert len(threads) == 1 and threading.get_ident() not in threads, threads


SYSTEM = {"role": "system", "content": "You are Kai, a friendly guide at a science museum. Answer briefly."}
UNFINISHED = ["I have been learning.", "What?", "My grandmother told me", "When we got to the station,", "Can you tell me?", "The best part is"]
WHOLE = ["We adopted a puppy last week.", "Can you explain how a volcano works?", "The museum opens at nine.", "Tell me a joke about fish."]


def test_the_language_model_says_whether_a_sentence_ends_with_the_words_and_the_reply_after_it_is_the_same(llm: LocalLLM) -> None:
    async def probabilities(texts: list[str]) -> list[float | None]:
        return [await llm.end_probability([SYSTEM, {"role": "user", "content": text}]) for text in texts]

    async def reply(text: str, asked_first: bool) -> str:
        messages = [SYSTEM, {"role": "user", "content": text}]
        if asked_first:
            await llm.end_probability(messages)
        return "".join([delta async for delta in llm.stream(messages, 16, 0.0)])

    unfinished, whole = asyncio.run(probabilities(UNFINISHED)), asyncio.run(probabilities(WHOLE))
    least, sure = TurnOptions().language_end_min_probability, TurnOptions().language_end_sure_probability
    assert all(p is not None and p < least for p in unfinished), dict(zip(UNFINISHED, unfinished))  # whatever Whisper's marks
    assert all(p is not None and p >= least for p in whole), dict(zip(WHOLE, whole))  # never held by it ...
    assert sum(p >= sure for p in whole) >= 3, dict(zip(WHOLE, whole))  # ... and mostly sure ("opens at nine" may go on)
    assert asyncio.run(probabilities(["", "...", " ?"])) == [None, None, None]  # no words: nothing to say
    # The probability is read from the start of the reply's own prompt: the reply that follows is word for word the same.
    for text in ("We adopted a puppy last week.", "Can you tell me?"):
        assert asyncio.run(reply(text, asked_first=True)) == asyncio.run(reply(text, asked_first=False)), text


def test_with_the_cores_kept_busy_by_another_process_the_model_writes_with_fewer_threads() -> None:
    """Threads that wait for each other lose their time slices on a machine with no core to spare (cpu_share.py)."""
    llm = LocalLLM(threads=usable_cores())
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)  # a reading covers at least min_window_s of the other process's work
        reply = asyncio.run(_written(llm, ASK))
        assert reply.strip() and llm.threads_now < llm.max_threads, (llm.threads_now, llm.max_threads)
    finally:
        busy.kill()
        busy.wait()
        llm.close()


async def _written(llm: LocalLLM, messages: list[dict[str, str]]) -> str:
    return "".join([delta async for delta in llm.stream(messages, 8, 0.0)])


def test_other_processes_cpu_is_measured_from_proc_and_unknown_without_it(tmp_path: Path) -> None:
    share = OtherProcessesCPU(min_window_s=0.3)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        share.cores()
        time.sleep(1.0)
        taken = share.cores()
    finally:
        busy.kill()
        busy.wait()
    assert taken is not None and 0.6 <= taken <= usable_cores(), taken
    assert share.cores() == taken, "a reading sooner than min_window_s repeats the last figure"
    assert OtherProcessesCPU(proc=tmp_path).cores() is None  # no /proc (not Linux): not known, the configured threads are used
