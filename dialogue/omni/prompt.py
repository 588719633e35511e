"""Qwen3-Omni's chat prompt at the token level: ChatML with 16 kHz audio expanded to its placeholder tokens.

The layout is the one Qwen3-Omni's chat template produces for text and audio messages:

    <|im_start|>system\\n{system}<|im_end|>\\n
    <|im_start|>user\\n<|audio_start|><|audio_pad|>×N<|audio_end|>{text}<|im_end|>\\n
    <|im_start|>assistant\\n{reply}<|im_end|>\\n
    …
    <|im_start|>assistant\\n

It is built from ids (special tokens from the model config, text segments from the tokenizer) rather
than with the processor's chat template. Text between special tokens is tokenized on its own either
way, so the ids are the same; what this buys is that only a tokenizer and a Whisper feature extractor
are needed, never the image/video processors (and it works with the minimal offline tokenizer the tests
build, since no real Qwen tokenizer can be downloaded there). Images and video are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liveavatar.dialogue.omni.history import INPUT_RATE


@dataclass
class PromptMessage:
    """One chat message: role (system, user or assistant), its 16 kHz audio clips (user only), its text."""

    role: str
    text: str = ""
    audio: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the ChatML and audio marker tokens."""

    im_start: int
    im_end: int
    audio_start: int
    audio_pad: int
    audio_end: int

    @classmethod
    def from_config(cls, config: Any, tokenizer: Any) -> "SpecialTokens":
        """From a Qwen3OmniMoeConfig; `<|audio_end|>` is not in the config, so the tokenizer supplies it."""
        thinker = config.thinker_config
        audio_end = tokenizer.convert_tokens_to_ids("<|audio_end|>")
        if not isinstance(audio_end, int) or audio_end == tokenizer.unk_token_id:
            audio_end = thinker.audio_start_token_id + 1  # 151670 follows 151669 in Qwen's vocabulary
        return cls(config.im_start_token_id, config.im_end_token_id, thinker.audio_start_token_id,
                   thinker.audio_token_id, audio_end)


def audio_token_count(num_feature_frames: int, n_window: int) -> int:
    """Placeholder tokens the audio encoder produces for `num_feature_frames` mel frames (100 per second)."""
    from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import _get_feat_extract_output_lengths

    return int(_get_feat_extract_output_lengths(np.int64(num_feature_frames), n_window))


def build_inputs(
    messages: list[PromptMessage],
    tokenizer: Any,
    feature_extractor: Any,
    special: SpecialTokens,
    n_window: int,
) -> dict[str, Any]:
    """Model inputs for `messages` plus the assistant's generation prompt (torch tensors, batch of one).

    Keys: input_ids, attention_mask, and when there is audio input_features and feature_attention_mask.
    """
    import torch

    clips = [clip for message in messages for clip in message.audio]
    features: dict[str, Any] = {}
    counts: list[int] = []
    if clips:
        extracted = feature_extractor(
            clips, sampling_rate=INPUT_RATE, padding=True, truncation=False,
            return_attention_mask=True, return_tensors="pt",
        )
        mask = extracted["attention_mask"]
        features = {"input_features": extracted["input_features"], "feature_attention_mask": mask}
        counts = [audio_token_count(int(n), n_window) for n in mask.sum(-1)]

    ids: list[int] = []
    pending = ""  # text up to the next special token, tokenized in one piece as the chat template would

    def special_id(token_id: int) -> None:
        nonlocal pending
        if pending:
            ids.extend(tokenizer.encode(pending, add_special_tokens=False))
            pending = ""
        ids.append(token_id)

    clip_index = 0
    for message in messages:
        special_id(special.im_start)
        pending += f"{message.role}\n"
        for _ in message.audio:
            special_id(special.audio_start)
            for _ in range(counts[clip_index]):
                special_id(special.audio_pad)
            special_id(special.audio_end)
            clip_index += 1
        pending += message.text
        special_id(special.im_end)
        pending += "\n"
    special_id(special.im_start)
    pending += "assistant\n"
    ids.extend(tokenizer.encode(pending, add_special_tokens=False))
    input_ids = torch.tensor([ids], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), **features}
