"""Tiny random-weight Qwen3-Omni checkpoints built offline: one for transformers, one that also fits vLLM.

`build_tiny_omni(folder)` (about 10M parameters) writes config + weights, a minimal tokenizer and a
Whisper feature extractor: everything `from_pretrained(..., local_files_only=True)` needs. The config
follows ../shared/docs/qwen3-omni-serving.md §3 (real special-token ids; every gotcha listed there is handled
below). The codec-EOS row of the talker's head is zeroed so that greedy decoding never stops early: a
reply always has exactly `talker_max_new_tokens - 1` codec frames. Random weights give near-silent
speech, so the last code2wav convolution is scaled up to make it audible noise (RMS about 0.15).

`build_vllm_tiny_omni(folder)` is the same model shaped for vLLM / vLLM-Omni (§4): attention heads of
32 (the smallest vLLM's CPU attention takes) with M-RoPE sections [8, 4, 4], 16 code groups and 16
quantizers with the real codec ids (vLLM-Omni hard-codes codec EOS 2150 and reshapes codes to 16
rows), a 128-pixel vision tower with 16-pixel patches, `audio_end_token_id` on thinker and talker, a
tokenizer that names its media tokens and carries a ChatML template, and a full Qwen3-Omni processor
(image, video, audio) so the server's multimodal pipeline loads it.

The tokenizer is not Qwen's (it cannot be downloaded here): a word-level vocabulary of the real size
where token i reads "t{i}", plus the real ChatML/audio special tokens and the role words at their real
ids. Ordinary text therefore encodes to the unknown token; that is enough to drive the real code path.

This module imports only numpy, torch, transformers and tokenizers (lazily), so the server env can run
it as a script: `python omni_tiny.py --vllm FOLDER` builds the vLLM checkpoint with the transformers
version that will load it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

INPUT_RATE = 16000
SAMPLES_PER_FRAME = 1920  # code2wav upsampling: 8·5·4·3 · 2·2
SAMPLES_LOST_PER_DECODE = 555  # trimmed by the causal transposed convolutions per decoded chunk
CODEC_EOS = 1062  # the transformers profile's codec ids sit just above its 64-entry codebook
OUTPUT_GAIN = 1e6  # on code2wav's last convolution: near-silence -> audible noise

SPECIAL_TOKENS = {
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
    "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|image_pad|>": 151655, "<|video_pad|>": 151656,
    "<|audio_start|>": 151669, "<|audio_end|>": 151670, "<|audio_pad|>": 151675,
}
WORDS = {"\n": 198, "user": 872, "system": 8948, "assistant": 77091}
VOCAB_SIZE = 151936
SPEAKERS = {"chelsie": 2301, "ethan": 2302, "aiden": 2303}  # the real model's talker_config.speaker_id
# Media tokens by role, as transformers' processors look them up on the tokenizer.
MEDIA_TOKENS = {
    "image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "audio_token": "<|audio_pad|>",
    "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>",
    "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
}
# ChatML over plain-string contents: vLLM renders media parts into their placeholder text first.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] in ('image', 'image_url') %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] in ('video', 'video_url') %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] in ('audio', 'audio_url', 'input_audio') %}<|audio_start|><|audio_pad|><|audio_end|>"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def expected_samples(talker_max_new_tokens: int) -> int:
    """Waveform length of one reply from the transformers tiny model with EOS disabled and greedy decoding."""
    return (talker_max_new_tokens - 1) * SAMPLES_PER_FRAME - SAMPLES_LOST_PER_DECODE


def _ids() -> dict[str, int]:
    """The real model's thinker-side token ids (class defaults are Qwen2.5-Omni's: set them explicitly)."""
    return dict(audio_token_id=151675, image_token_id=151655, video_token_id=151656,
                audio_start_token_id=151669, position_id_per_seconds=13,
                vision_start_token_id=151652)  # read by get_rope_index though undeclared


def _top_level_ids() -> dict[str, int]:
    return dict(im_start_token_id=151644, im_end_token_id=151645, system_token_id=8948, user_token_id=872,
                assistant_token_id=77091, tts_pad_token_id=151671, tts_bos_token_id=151672,
                tts_eos_token_id=151673)


def tiny_config() -> Any:
    """The transformers-only Qwen3OmniMoeConfig (thinker, talker, code predictor, code2wav all tiny)."""
    from transformers import Qwen3OmniMoeConfig

    # mrope_section sums to head_dim/2 (16/2); the "unrecognized keys" warning is harmless
    mrope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 2, 2], "interleaved": True,
             "mrope_interleaved": True}
    return Qwen3OmniMoeConfig(
        enable_audio_output=True, **_top_level_ids(),
        thinker_config=dict(
            **_ids(), user_token_id=872,
            audio_config=dict(num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                              d_model=32, output_dim=32,  # output_dim == thinker hidden
                              downsample_hidden_size=16, n_window=50, n_window_infer=800, conv_chunksize=500),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                               num_position_embeddings=64, deepstack_visual_indexes=[1]),
            text_config=dict(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=16, moe_intermediate_size=32,
                             num_experts=4, num_experts_per_tok=2, rope_parameters=mrope),
        ),
        talker_config=dict(
            **_ids(), thinker_hidden_size=32, accept_hidden_layer=1,
            num_code_groups=4,  # same in code predictor and code2wav
            codec_eos_token_id=CODEC_EOS, codec_pad_id=1060, codec_bos_id=1061, codec_nothink_id=1063,
            codec_think_bos_id=1064, codec_think_eos_id=1065, spatial_merge_size=2,
            speaker_id={"ethan": 1070, "chelsie": 1071, "aiden": 1072},  # inside [codebook, vocab)
            text_config=dict(vocab_size=64 + 1024,  # codebook_size + 1024
                             hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=16, moe_intermediate_size=32, num_experts=4,
                             num_experts_per_tok=2, shared_expert_intermediate_size=64,  # undeclared but read
                             rope_parameters=mrope),
            code_predictor_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_code_groups=4),
        ),
        code2wav_config=dict(codebook_size=64, num_quantizers=4, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4, sliding_window=72,
                             decoder_dim=64, upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2]),
    )


def vllm_tiny_config() -> Any:
    """The Qwen3OmniMoeConfig shaped for vLLM-Omni (see the module docstring); hidden 64, heads of 32."""
    from transformers import Qwen3OmniMoeConfig

    hidden, head = 64, 32
    mrope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 4, 4], "interleaved": True,
             "mrope_interleaved": True}  # sums to head_dim/2
    codebook, groups = 2048, 16
    text = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=2, head_dim=head, moe_intermediate_size=hidden, num_experts=4,
                num_experts_per_tok=2, rope_parameters=mrope)
    return Qwen3OmniMoeConfig(
        enable_audio_output=True, **_top_level_ids(),
        thinker_config=dict(
            **_ids(), user_token_id=872, audio_end_token_id=151670, vision_end_token_id=151653,
            audio_config=dict(num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=2 * hidden,
                              d_model=hidden, output_dim=hidden, downsample_hidden_size=16, n_window=50,
                              n_window_infer=800, conv_chunksize=500),
            vision_config=dict(depth=2, hidden_size=hidden, intermediate_size=2 * hidden, num_heads=2,
                               out_hidden_size=hidden, patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                               image_size=128, num_position_embeddings=(128 // 16) ** 2,
                               apply_vit_abs_pos_embed=True, deepstack_visual_indexes=[1]),
            text_config=dict(vocab_size=VOCAB_SIZE, **text),
        ),
        talker_config=dict(
            **_ids(), audio_end_token_id=151670, thinker_hidden_size=hidden, accept_hidden_layer=1,
            num_code_groups=groups, codec_eos_token_id=2150, codec_pad_id=2148, codec_bos_id=2149,
            codec_nothink_id=2155, codec_think_bos_id=2156, codec_think_eos_id=2157, spatial_merge_size=2,
            speaker_id=dict(SPEAKERS),
            text_config=dict(vocab_size=codebook + 1024, shared_expert_intermediate_size=2 * hidden, **text),
            code_predictor_config=dict(vocab_size=codebook, hidden_size=hidden, intermediate_size=2 * hidden,
                                       num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                       head_dim=head, num_code_groups=groups),
        ),
        code2wav_config=dict(codebook_size=codebook, num_quantizers=groups, hidden_size=hidden,
                             intermediate_size=2 * hidden, num_hidden_layers=1, num_attention_heads=2,
                             num_key_value_heads=2, sliding_window=72, decoder_dim=64, upsample_rates=[8, 5, 4, 3],
                             upsampling_ratios=[2, 2]),
    )


def build_tiny_omni(folder: Path, seed: int = 0) -> Path:
    """Write the transformers tiny model, its tokenizer and feature extractor to `folder`; returns `folder`."""
    from transformers import WhisperFeatureExtractor

    _save_model(tiny_config(), folder, seed, codec_eos=CODEC_EOS)
    build_tokenizer().save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=128, sampling_rate=INPUT_RATE).save_pretrained(folder)
    return folder


def build_vllm_tiny_omni(folder: Path, seed: int = 0) -> Path:
    """Write the vLLM-shaped tiny model with its tokenizer and full processor to `folder`; returns `folder`."""
    from transformers import Qwen3OmniMoeProcessor, WhisperFeatureExtractor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    folder = Path(folder)
    _save_model(vllm_tiny_config(), folder, seed, codec_eos=None)
    tokenizer = build_tokenizer(media_tokens=True)
    image_processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2,
                                            min_pixels=128 * 128, max_pixels=256 * 256)
    processor = Qwen3OmniMoeProcessor(
        image_processor=image_processor, video_processor=_video_processor(),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=INPUT_RATE),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _video_processor() -> Any:
    from transformers import AutoVideoProcessor  # noqa: F401  (video processors need torchvision: optional)

    try:
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        return Qwen2VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2)
    except Exception:  # noqa: BLE001 - the server never gets video from us
        return None


def _save_model(config: Any, folder: Path, seed: int, codec_eos: int | None) -> None:
    import torch
    from transformers import Qwen3OmniMoeForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen3OmniMoeForConditionalGeneration(config).eval()
    with torch.no_grad():
        if codec_eos is not None:
            model.talker.codec_head.weight[codec_eos].zero_()  # never pick codec EOS: deterministic length
        model.code2wav.decoder[-1].conv.weight.mul_(OUTPUT_GAIN)
    model.save_pretrained(folder)


def build_tokenizer(media_tokens: bool = False) -> Any:
    """The minimal offline tokenizer described in the module docstring; `media_tokens` also names the
    media tokens by role and adds the ChatML template (what vLLM's processor needs)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    reserved = set(SPECIAL_TOKENS.values()) | set(WORDS.values())
    vocab = {f"t{i}": i for i in range(VOCAB_SIZE) if i not in reserved}
    vocab.update(SPECIAL_TOKENS)
    vocab.update(WORDS)
    core = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    # Words split on blanks; for vLLM the line feed stays a token (198), as in Qwen's ChatML prompts.
    blanks = Regex(r"[ \t\r]+") if media_tokens else None
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"),
         pre_tokenizers.Split(blanks, behavior="removed") if blanks is not None else pre_tokenizers.WhitespaceSplit()]
    )
    extra: dict[str, Any] = {}
    if media_tokens:
        extra = {"extra_special_tokens": dict(MEDIA_TOKENS), "chat_template": CHAT_TEMPLATE}
    else:
        extra = {"additional_special_tokens": list(SPECIAL_TOKENS)}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="t0", eos_token="<|im_end|>", pad_token="<|endoftext|>", **extra,
    )
    if media_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tokenizer


def main(argv: list[str] | None = None) -> int:
    """`python omni_tiny.py [--vllm] FOLDER`: write a tiny checkpoint."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--vllm", action="store_true", help="the vLLM-shaped checkpoint")
    args = parser.parse_args(argv)
    (build_vllm_tiny_omni if args.vllm else build_tiny_omni)(args.folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
