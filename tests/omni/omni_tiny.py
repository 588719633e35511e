"""A server source backed by the tiny random-weight Qwen3-Omni (built by liveavatar.testing.omni_tiny).

A reply always has exactly `talker_max_new_tokens - 1` codec frames, i.e. `(talker_max_new_tokens - 1) * 1920
- 555` samples at 24 kHz (the codec-EOS row of the talker's head is zeroed, decoding is greedy); the speech
is audible noise, so an MP4's audio track can be checked against the model's waveform. The text is noise too.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liveavatar.dialogue.omni.history import INPUT_RATE
from liveavatar.testing.omni_standin import ReplyPart, Speech
from liveavatar.testing.omni_tiny import (  # noqa: F401  (re-exported for the tests)
    SAMPLES_PER_FRAME, build_tiny_omni, expected_samples)
from liveavatar.dialogue.omni.prompt import PromptMessage, SpecialTokens, build_inputs
from liveavatar.dialogue.wav import decode_wav
from liveavatar.media import resample


@dataclass
class Generation:
    """What the model produced for one request, as the server saw it."""

    prompt_audio_clips: int
    prompt_audio_tokens: int
    text: str
    pcm: np.ndarray  # float32 at 24 kHz, before the wire's 16-bit quantization

    @property
    def samples(self) -> int:
        return len(self.pcm)


class TinyOmniSource:
    """A `ReplySource` running the tiny model like vLLM-Omni would: chat template, generate, chunked speech.

    Text goes out token by token, then the waveform in `chunk_frames` codec frames per chunk (vLLM-Omni
    streams code2wav in 25-frame chunks; transformers only gives the waveform at the end).
    """

    def __init__(self, folder: Path, *, thinker_max_new_tokens: int = 6, talker_max_new_tokens: int = 12,
                 chunk_frames: int = 4) -> None:
        import torch
        from transformers import AutoTokenizer, Qwen3OmniMoeForConditionalGeneration, WhisperFeatureExtractor

        self.model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(
            folder, dtype=torch.float32, local_files_only=True).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.feature_extractor = WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True)
        self.special = SpecialTokens.from_config(self.model.config, self.tokenizer)
        self.thinker_max_new_tokens = thinker_max_new_tokens
        self.talker_max_new_tokens = talker_max_new_tokens
        self.chunk_samples = chunk_frames * SAMPLES_PER_FRAME
        self.generations: list[Generation] = []
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> AsyncIterator[ReplyPart]:
        return self._reply(request)

    async def _reply(self, request: dict[str, Any]) -> AsyncIterator[ReplyPart]:
        messages = messages_from_request(request)
        speaker = str(request.get("voice") or "Ethan")
        new_ids, wav = await asyncio.to_thread(self._generate, messages, speaker)
        previous = ""
        for k in range(1, len(new_ids) + 1):
            text = self.tokenizer.decode(new_ids[:k], skip_special_tokens=True)
            if len(text) > len(previous):
                yield text[len(previous):]
                previous = text
        for start in range(0, len(wav), self.chunk_samples):
            yield Speech(wav[start : start + self.chunk_samples], 24000)

    def _generate(self, messages: list[PromptMessage], speaker: str) -> tuple[list[int], np.ndarray]:
        import torch

        inputs = build_inputs(messages, self.tokenizer, self.feature_extractor, self.special, n_window=50)
        with self._lock, torch.inference_mode():
            sequences, wav = self.model.generate(
                **inputs, speaker=speaker, return_audio=True, thinker_max_new_tokens=self.thinker_max_new_tokens,
                thinker_do_sample=False, talker_max_new_tokens=self.talker_max_new_tokens, talker_do_sample=False,
            )
        new_ids = sequences[0, inputs["input_ids"].shape[1]:].tolist()
        pcm = wav.reshape(-1).float().numpy()
        self.generations.append(Generation(
            prompt_audio_clips=sum(len(m.audio) for m in messages),
            prompt_audio_tokens=int((inputs["input_ids"] == self.special.audio_pad).sum()),
            text=self.tokenizer.decode(new_ids, skip_special_tokens=True),
            pcm=pcm,
        ))
        return new_ids, pcm


def messages_from_request(request: dict[str, Any]) -> list[PromptMessage]:
    """OpenAI chat messages (text parts, base64 WAV `input_audio`) as prompt messages with 16 kHz audio."""
    out: list[PromptMessage] = []
    for message in request.get("messages", []):
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        text, audio = "", []
        for part in parts:
            if part.get("type") == "text":
                text += part.get("text", "")
            elif part.get("type") == "input_audio":
                pcm, rate = decode_wav(base64.b64decode(part["input_audio"]["data"]))
                audio.append(resample(pcm, rate, INPUT_RATE))
        out.append(PromptMessage(message["role"], text, audio))
    return out
