"""`omni_local`: Qwen3-Omni in-process with transformers — audio and text in, text and speech out.

Loads `Qwen3OmniMoeForConditionalGeneration`, its tokenizer and its Whisper feature extractor from a
local folder (never downloads: `local_files_only`), and runs `generate` in one worker thread. Text
deltas stream as the thinker produces them; the speech arrives after the text, all at once, because
transformers' `generate` runs the talker after the thinker and decodes the whole utterance with
code2wav at the end (`chunked_decode`). For streamed speech, serve the model with vLLM-Omni and use
`omni_server`. Cancelling the consuming task returns at once; the worker stops at its next token.

The prompt is built at the token level (dialogue.omni.prompt), so only the tokenizer and the feature
extractor are needed, not the image/video processors; images and video are not supported.

Real checkpoint (Qwen/Qwen3-Omni-30B-A3B-Instruct, about 35B parameters in total):
* transformers ≥ 4.57.1 (4.57.0 introduced the model but is yanked); checked here with 5.23.0.
* GPU memory: BF16 weights alone are about 70 GB; the model card reports 78.85 GB (15 s video) to
  144.81 GB (120 s video) with flash-attention 2. Plan on two 80 GB GPUs (`device: auto` spreads the
  layers with accelerate) or one large-memory GPU; CPU inference is impractically slow.
* Download once, e.g. `huggingface-cli download Qwen/Qwen3-Omni-30B-A3B-Instruct --local-dir models/qwen3-omni`,
  and point `model_dir` at that folder.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from liveavatar.dialogue.base import DialogueError, ReplyEvent, TextDelta, UserTurn
from liveavatar.dialogue.omni.history import HistoryBackend, OmniHistory
from liveavatar.dialogue.omni.prompt import PromptMessage, SpecialTokens, build_inputs
from liveavatar.dialogue.omni.wire import DEFAULT_OUTPUT_RATE, QWEN_SYSTEM_PROMPT
from liveavatar.dialogue.registry import DialogueSetup
from liveavatar.media import AudioChunk

log = logging.getLogger(__name__)


class Options(BaseModel):
    """`dialogue.options` of a persona running Qwen3-Omni in-process."""

    model_config = ConfigDict(extra="forbid")

    model_dir: Path = Field(
        description="Local checkpoint folder (config.json, weights, tokenizer, preprocessor_config.json), relative "
        "to the persona file. Required; nothing is downloaded."
    )
    voice: str = Field("Ethan", description="Speaker: Ethan, Chelsie or Aiden. Default Ethan.")
    device: str = Field(
        "auto",
        description="'auto' (all GPUs via accelerate when CUDA is present, else CPU), 'cpu', 'cuda' or 'cuda:N'. "
        "Default auto.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weight precision; auto = bfloat16 on GPU, float32 on CPU. Default auto."
    )
    attn_implementation: str | None = Field(
        None, description="e.g. flash_attention_2 or sdpa; none = transformers' default. Default none."
    )
    max_new_tokens: int = Field(512, gt=0, description="Upper bound on the reply's text tokens (thinker). Default 512.")
    talker_max_new_tokens: int = Field(
        4096, gt=1, description="Upper bound on speech codec frames (80 ms each) per reply (talker). Default 4096."
    )
    generate_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra arguments for generate, prefixed thinker_/talker_/token2wav_ (e.g. talker_do_sample). "
        "Default {}.",
    )
    history_exchanges: int = Field(
        4, ge=1, description="User turns (with replies) in the prompt, the current one included. Default 4."
    )
    send_text_with_audio: bool = Field(
        False, description="Also put a user turn's text in the prompt when it has audio. Default false."
    )
    speech_chunk_s: float = Field(
        0.5, gt=0, description="Length of the AudioChunks the finished waveform is cut into, in seconds. Default 0.5."
    )
    torch_threads: int | None = Field(
        None, ge=1, description="CPU threads for torch (torch.set_num_threads); none = torch's default. Default none."
    )


@dataclass
class LoadedOmni:
    """The model and everything needed to prompt it."""

    model: Any
    tokenizer: Any
    feature_extractor: Any
    special: SpecialTokens
    n_window: int
    output_rate: int = DEFAULT_OUTPUT_RATE


def load_omni(options: Options, model_dir: Path) -> LoadedOmni:
    """Load model, tokenizer and feature extractor from `model_dir` only (blocking; call from a thread)."""
    import torch
    from transformers import AutoTokenizer, Qwen3OmniMoeForConditionalGeneration, WhisperFeatureExtractor

    if options.torch_threads:
        torch.set_num_threads(options.torch_threads)
    cuda = torch.cuda.is_available()
    dtype = {"auto": torch.bfloat16 if cuda and options.device != "cpu" else torch.float32,
             "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[options.dtype]
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if options.attn_implementation:
        kwargs["attn_implementation"] = options.attn_implementation
    if options.device == "auto" and cuda:
        kwargs["device_map"] = "auto"
    model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(model_dir, **kwargs).eval()
    if options.device != "auto":
        model = model.to(options.device)
    if not getattr(model, "has_talker", False):
        raise DialogueError(f"the checkpoint at {model_dir} has no talker (enable_audio_output is off): it cannot speak")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    audio_config = model.config.thinker_config.audio_config
    if (model_dir / "preprocessor_config.json").exists():
        feature_extractor = WhisperFeatureExtractor.from_pretrained(model_dir, local_files_only=True)
    else:
        feature_extractor = WhisperFeatureExtractor(feature_size=audio_config.num_mel_bins, sampling_rate=16000)
    return LoadedOmni(model, tokenizer, feature_extractor, SpecialTokens.from_config(model.config, tokenizer),
                      int(getattr(audio_config, "n_window", 50)))


class OmniLocalBackend(HistoryBackend):
    """Replies with Qwen3-Omni running in this process: text deltas first, then the speech."""

    def __init__(self, options: Options, system_prompt: str, model_dir: Path) -> None:
        self.options = options
        self.model_dir = model_dir
        self._history = OmniHistory(system_prompt.strip() or QWEN_SYSTEM_PROMPT, options.history_exchanges)
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="omni-local")
        self._loaded = self._worker.submit(load_omni, options, model_dir)  # starts loading now, off the event loop
        self._running: concurrent.futures.Future[None] | None = None

    @property
    def history(self) -> OmniHistory:
        """The conversation as this agent remembers it."""
        return self._history

    @property
    def busy(self) -> bool:
        """True while a generation runs in the worker thread (a cancelled one stops at its next token)."""
        return self._running is not None and not self._running.done()

    async def reply(self, turn: UserTurn) -> AsyncIterator[ReplyEvent]:
        """Stream the reply to `turn`: TextDeltas while the thinker runs, then the speech in AudioChunks."""
        exchange = self._history.begin(turn)
        try:
            loaded = await asyncio.shield(asyncio.wrap_future(self._loaded))  # a cancelled reply must not cancel the load
        except DialogueError:
            self._history.forget(exchange)
            raise
        except Exception as exc:
            self._history.forget(exchange)
            raise DialogueError(f"cannot load Qwen3-Omni from {self.model_dir}: {type(exc).__name__}: {exc}") from exc
        speakers = sorted(loaded.model.config.talker_config.speaker_id)
        if self.options.voice.lower() not in speakers:
            self._history.forget(exchange)
            raise DialogueError(f"unknown voice {self.options.voice!r}: this checkpoint speaks as {', '.join(speakers)}")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                stop.set()

        messages = self._prompt_messages()
        self._running = self._worker.submit(self._generate, loaded, messages, stop, emit)
        try:
            while True:
                item = await events.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    if not exchange.reply_text:
                        self._history.forget(exchange)
                    raise DialogueError(f"Qwen3-Omni generation failed: {type(item).__name__}: {item}") from item
                if isinstance(item, TextDelta):
                    exchange.reply_text += item.text
                yield item
        finally:
            stop.set()

    async def aclose(self) -> None:
        """Let the worker finish its current step and release it (the model is freed with the backend)."""
        self._worker.shutdown(wait=False, cancel_futures=True)

    def _prompt_messages(self) -> list[PromptMessage]:
        messages = [PromptMessage("system", self._history.system_prompt)]
        for exchange in self._history.exchanges:
            text = exchange.user_text or ""
            if exchange.user_audio is not None and not self.options.send_text_with_audio:
                text = ""
            audio = [exchange.user_audio] if exchange.user_audio is not None else []
            if messages[-1].role == "user":  # the previous reply said nothing: merge, keeping roles alternating
                messages[-1].audio += audio
                messages[-1].text += text
            else:
                messages.append(PromptMessage("user", text, audio))
            if exchange.reply_text:
                messages.append(PromptMessage("assistant", exchange.reply_text))
        return messages

    def _generate(self, loaded: LoadedOmni, messages: list[PromptMessage], stop: threading.Event,
                  emit: Callable[[Any], None]) -> None:
        """Worker thread: one generate call, its text streamed through `emit`, then its speech, then _END."""
        try:
            import torch
            from transformers import StoppingCriteriaList

            model = loaded.model
            inputs = build_inputs(messages, loaded.tokenizer, loaded.feature_extractor, loaded.special, loaded.n_window)
            device = model.thinker.device
            inputs = {k: (v.to(device, model.dtype) if v.is_floating_point() else v.to(device)) for k, v in inputs.items()}
            stopping = StoppingCriteriaList([_StopWhenSet(stop)])
            kwargs = {
                "speaker": self.options.voice,
                "return_audio": True,
                "thinker_max_new_tokens": self.options.max_new_tokens,
                "talker_max_new_tokens": self.options.talker_max_new_tokens,
                "thinker_streamer": _text_delta_streamer(loaded.tokenizer, emit),
                "thinker_stopping_criteria": stopping,
                "talker_stopping_criteria": stopping,
                **self.options.generate_kwargs,
            }
            with torch.inference_mode():
                _, wav = model.generate(**inputs, **kwargs)
            if stop.is_set():
                return
            pcm = wav.reshape(-1).float().cpu().numpy() if wav is not None else np.zeros(0, np.float32)
            step = max(1, int(round(self.options.speech_chunk_s * loaded.output_rate)))
            for start in range(0, len(pcm), step):
                emit(AudioChunk(pcm[start : start + step], loaded.output_rate, pts=start / loaded.output_rate))
            emit(_END)
        except Exception as exc:
            if not stop.is_set():
                log.exception("omni_local: generation failed")
                emit(exc)


_END = object()


class _StopWhenSet:
    """A stopping criterion that ends generation once `event` is set (checked after every token)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _text_delta_streamer(tokenizer: Any, emit: Callable[[Any], None]) -> Any:
    """A transformers TextStreamer that hands the thinker's finished words to `emit` as TextDeltas."""
    from transformers import TextStreamer

    class TextDeltaStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                emit(TextDelta(text))

    return TextDeltaStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def create(options: Options, setup: DialogueSetup) -> OmniLocalBackend:
    """Check the checkpoint folder and start loading it in the background; replies wait for the load."""
    model_dir = options.model_dir if options.model_dir.is_absolute() else setup.base_dir / options.model_dir
    if not (model_dir / "config.json").is_file():
        raise DialogueError(
            f"omni_local: no Qwen3-Omni checkpoint at {model_dir} (config.json missing) — download it first, e.g. "
            f"`huggingface-cli download Qwen/Qwen3-Omni-30B-A3B-Instruct --local-dir {model_dir}`"
        )
    return OmniLocalBackend(options, setup.system_prompt, model_dir)
