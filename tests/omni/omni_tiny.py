"""A tiny random-weight Qwen3-Omni (about 10M parameters) built offline, and a server source backed by it.

`build_tiny_omni(folder)` writes config + weights (save_pretrained), a minimal tokenizer and a Whisper
feature extractor, everything `from_pretrained(..., local_files_only=True)` needs. The config follows
docs/qwen3-omni-serving.md §3 (real special-token ids; every gotcha listed there is handled below).
The codec-EOS row of the talker's head is zeroed so that greedy decoding never stops early: a reply
always has exactly `talker_max_new_tokens - 1` codec frames, i.e. `(talker_max_new_tokens - 1) * 1920 - 555`
samples at 24 kHz. Random weights give near-silent speech (|x| < 1e-6, code2wav's layer scale is 0.01),
so the last code2wav convolution is scaled up to make it audible noise (RMS about 0.15): an MP4's audio
track can then be checked against the model's waveform. The text is noise too.

The tokenizer is not Qwen's (it cannot be downloaded here): a word-level vocabulary of the real size
where token i reads "t{i}", plus the real ChatML/audio special tokens and the role words at their real
ids. Ordinary text therefore encodes to the unknown token; that is enough to drive the real code path.
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

from dialogue.omni.history import INPUT_RATE
from dialogue.omni.local_server import ReplyPart, Speech
from dialogue.omni.prompt import PromptMessage, SpecialTokens, build_inputs
from dialogue.wav import decode_wav
from media import resample

SAMPLES_PER_FRAME = 1920  # code2wav upsampling: 8·5·4·3 · 2·2
SAMPLES_LOST_PER_DECODE = 555  # trimmed by the causal transposed convolutions per decoded chunk
CODEC_EOS = 1062
OUTPUT_GAIN = 1e6  # on code2wav's last convolution: near-silence -> audible noise

SPECIAL_TOKENS = {
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
    "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|image_pad|>": 151655, "<|video_pad|>": 151656,
    "<|audio_start|>": 151669, "<|audio_end|>": 151670, "<|audio_pad|>": 151675,
}
WORDS = {"\n": 198, "user": 872, "system": 8948, "assistant": 77091}
VOCAB_SIZE = 151936


def expected_samples(talker_max_new_tokens: int) -> int:
    """Waveform length of one reply from the tiny model with EOS disabled and greedy decoding."""
    return (talker_max_new_tokens - 1) * SAMPLES_PER_FRAME - SAMPLES_LOST_PER_DECODE


def tiny_config() -> Any:
    """The hand-made Qwen3OmniMoeConfig (thinker, talker, code predictor, code2wav all tiny)."""
    from transformers import Qwen3OmniMoeConfig

    # gotcha 4: mrope_section sums to head_dim/2 (16/2); the "unrecognized keys" warning is harmless
    mrope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 2, 2], "interleaved": True,
             "mrope_interleaved": True}
    common_ids = dict(audio_token_id=151675, image_token_id=151655, video_token_id=151656,  # gotcha 1: real ids
                      audio_start_token_id=151669, position_id_per_seconds=13,
                      vision_start_token_id=151652)  # gotcha 2: read by get_rope_index though undeclared
    return Qwen3OmniMoeConfig(
        enable_audio_output=True, im_start_token_id=151644, im_end_token_id=151645,
        system_token_id=8948, user_token_id=872, assistant_token_id=77091,
        tts_pad_token_id=151671, tts_bos_token_id=151672, tts_eos_token_id=151673,
        thinker_config=dict(
            **common_ids, user_token_id=872,
            audio_config=dict(num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                              d_model=32, output_dim=32,  # gotcha 7: output_dim == thinker hidden
                              downsample_hidden_size=16, n_window=50, n_window_infer=800, conv_chunksize=500),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                               num_position_embeddings=64, deepstack_visual_indexes=[1]),
            text_config=dict(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=16, moe_intermediate_size=32,
                             num_experts=4, num_experts_per_tok=2, rope_parameters=mrope),
        ),
        talker_config=dict(
            **common_ids, thinker_hidden_size=32, accept_hidden_layer=1,  # gotcha 7
            num_code_groups=4,  # gotcha 6: same in code predictor and code2wav
            codec_eos_token_id=CODEC_EOS, codec_pad_id=1060, codec_bos_id=1061, codec_nothink_id=1063,
            codec_think_bos_id=1064, codec_think_eos_id=1065, spatial_merge_size=2,
            speaker_id={"ethan": 1070, "chelsie": 1071, "aiden": 1072},  # gotcha 5: inside [codebook, vocab)
            text_config=dict(vocab_size=64 + 1024,  # gotcha 5: codebook_size + 1024
                             hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=16, moe_intermediate_size=32, num_experts=4,
                             num_experts_per_tok=2, shared_expert_intermediate_size=64,  # gotcha 3
                             rope_parameters=mrope),
            code_predictor_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_code_groups=4),
        ),
        code2wav_config=dict(codebook_size=64, num_quantizers=4, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4, sliding_window=72,
                             decoder_dim=64, upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2]),
    )


def build_tiny_omni(folder: Path, seed: int = 0) -> Path:
    """Write the tiny model, its tokenizer and feature extractor to `folder`; returns `folder`."""
    import torch
    from transformers import Qwen3OmniMoeForConditionalGeneration, WhisperFeatureExtractor

    torch.manual_seed(seed)
    model = Qwen3OmniMoeForConditionalGeneration(tiny_config()).eval()
    with torch.no_grad():
        model.talker.codec_head.weight[CODEC_EOS].zero_()  # never pick codec EOS: deterministic length
        model.code2wav.decoder[-1].conv.weight.mul_(OUTPUT_GAIN)
    model.save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=128, sampling_rate=INPUT_RATE).save_pretrained(folder)
    return folder


def build_tokenizer() -> Any:
    """The minimal offline tokenizer described in the module docstring."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    reserved = set(SPECIAL_TOKENS.values()) | set(WORDS.values())
    vocab = {f"t{i}": i for i in range(VOCAB_SIZE) if i not in reserved}
    vocab.update(SPECIAL_TOKENS)
    vocab.update(WORDS)
    core = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.WhitespaceSplit()]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="t0", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS),
    )


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
