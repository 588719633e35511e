"""The embedded LLM (SmolLM2 through llama.cpp) writing replies one at a time on a shared executor."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from liveavatar.agent.turn_options import TurnOptions
from liveavatar.dialogue.llm import LocalLLM

ASK = [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": "Tell me about the moon."}]
OTHER = [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": "And what about Mars, tell me everything?"}]


@pytest.fixture(scope="module")
def executor():  # noqa: ANN201
    pool = ThreadPoolExecutor(2, thread_name_prefix="test-llm")  # as in a chat: replies and their speech share it
    yield pool
    pool.shutdown(wait=True)


def test_a_reply_cancelled_while_waiting_for_the_model_gives_its_thread_back_at_once(executor: ThreadPoolExecutor) -> None:
    llm = LocalLLM(threads=1, executor=executor)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        speaking = threading.Event()  # cleared: the first reply waits between tokens, holding the model, for its speech
        speaking.set()
        first = llm.stream(ASK, 32, 0.0, speaking)
        assert (await asyncio.wait_for(anext(first), 30)).strip()
        speaking.clear()  # its first words are being spoken
        stale = llm.stream(OTHER, 32, 0.0)  # a reply to a turn the person went on from: it waits for the model ...
        waiting = asyncio.create_task(anext(stale))
        await asyncio.sleep(0.3)
        waiting.cancel()  # ... and is cancelled
        await asyncio.gather(waiting, return_exceptions=True)
        await stale.aclose()
        started = time.perf_counter()
        try:  # the first reply's speech needs a thread of the same executor: the stale reply must not hold one
            await asyncio.wait_for(loop.run_in_executor(executor, time.sleep, 0.0), 3.0)
            waited = time.perf_counter() - started  # only the wait for a thread: the rest of the reply is not timed
        finally:
            speaking.set()
            words = [delta async for delta in first]
        assert words, "the first reply did not go on once its speech was under way"
        return waited

    try:
        waited = asyncio.run(scenario())
    finally:
        llm.close()
    assert waited < 0.5, f"the speech waited {waited:.2f} s for a thread"


SYSTEM = {"role": "system", "content": "You are Kai, a friendly guide at a science museum. Answer briefly."}
UNFINISHED = ["I have been learning.", "What?", "My grandmother told me", "When we got to the station,", "Can you tell me?", "The best part is"]
WHOLE = ["We adopted a puppy last week.", "Can you explain how a volcano works?", "The museum opens at nine.", "Tell me a joke about fish."]


def test_the_language_model_says_whether_a_sentence_ends_with_the_words_and_the_reply_after_it_is_the_same(executor: ThreadPoolExecutor) -> None:
    llm = LocalLLM(threads=1, executor=executor)

    async def probabilities(texts: list[str]) -> list[float | None]:
        return [await llm.end_probability([SYSTEM, {"role": "user", "content": text}]) for text in texts]

    async def reply(text: str, asked_first: bool) -> str:
        messages = [SYSTEM, {"role": "user", "content": text}]
        if asked_first:
            await llm.end_probability(messages)
        return "".join([delta async for delta in llm.stream(messages, 16, 0.0)])

    try:
        unfinished, whole = asyncio.run(probabilities(UNFINISHED)), asyncio.run(probabilities(WHOLE))
        least, sure = TurnOptions().language_end_min_probability, TurnOptions().language_end_sure_probability
        assert all(p is not None and p < least for p in unfinished), dict(zip(UNFINISHED, unfinished))  # whatever Whisper's marks
        assert all(p is not None and p >= least for p in whole), dict(zip(WHOLE, whole))  # never held by it ...
        assert sum(p >= sure for p in whole) >= 3, dict(zip(WHOLE, whole))  # ... and mostly sure ("opens at nine" may go on)
        assert asyncio.run(probabilities(["", "...", " ?"])) == [None, None, None]  # no words: nothing to say
        # The probability is read from the start of the reply's own prompt: the reply that follows is word for word the same.
        for text in ("We adopted a puppy last week.", "Can you tell me?"):
            assert asyncio.run(reply(text, asked_first=True)) == asyncio.run(reply(text, asked_first=False)), text
    finally:
        llm.close()
