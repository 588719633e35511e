"""TEST CONFIGURATION ONLY: a tiny LiveAvatar with random weights that runs end to end on a CPU.

It has the real architecture at toy width (the DiT shape of the golden fixtures: dim 256, 2 heads of 128,
3 layers; a dim-8 Wan VAE; a 24-layer, 32-wide wav2vec2; a 2-layer umT5 with a byte-level tokenizer), so
every code path of the real generator runs, but its pictures are noise-like and mean nothing. Nothing is
downloaded: all weights are drawn from a seeded generator.
"""

from __future__ import annotations

import torch

from liveavatar.avatar.liveavatar.config import DiTConfig, StreamConfig
from liveavatar.avatar.liveavatar.dit import CausalS2VDiT
from liveavatar.avatar.liveavatar.features import AudioFeatures, TextEncoder
from liveavatar.avatar.liveavatar.pipeline import Parts
from liveavatar.avatar.liveavatar.vae import VAEConfig, WanVAE

TINY_DIT = DiTConfig(
    dim=256, ffn_dim=512, freq_dim=256, text_dim=64, text_len=512, in_dim=16, out_dim=16, num_heads=2, num_layers=3,
    cond_dim=16, audio_dim=32, num_audio_token=4, audio_inject_layers=(0, 2),
)
TINY_VAE = VAEConfig(dim=2)
TINY_PIXELS = (64, 64)  # 8×8 latent, 16 tokens per latent frame
TINY_VOCAB = 260  # 256 bytes + pad 0 + eos 1 (+2 spare)


def byte_tokenizer(text: str) -> list[int]:
    """TEST ONLY: UTF-8 bytes shifted by 2 (0 = pad, 1 = EOS), then EOS, like a T5 tokenizer's layout."""
    return [b + 2 for b in text.encode("utf-8")] + [1]


def build_tiny_parts(seed: int = 0, context_s: float = 1.0) -> Parts:
    """TEST CONFIGURATION: random-weight tiny parts of the whole generator (deterministic for a seed)."""
    from transformers import UMT5Config, UMT5EncoderModel, Wav2Vec2Config, Wav2Vec2Model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dit = CausalS2VDiT(TINY_DIT).eval()
        vae = TINY_VAE.build()
        wav2vec = Wav2Vec2Model(Wav2Vec2Config(
            hidden_size=TINY_DIT.audio_dim, num_hidden_layers=TINY_DIT.audio_layers - 1, num_attention_heads=2,
            intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
            feat_extract_norm="layer", do_stable_layer_norm=True, vocab_size=32,
        ))
        umt5 = UMT5EncoderModel(UMT5Config(
            vocab_size=TINY_VOCAB, d_model=TINY_DIT.text_dim, d_kv=32, d_ff=128, num_layers=2, num_heads=2,
            relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", is_encoder_decoder=False,
        ))
    stream = StreamConfig()
    return Parts(
        dit=dit,
        vae=WanVAE(vae, TINY_VAE),
        audio=AudioFeatures(wav2vec, fps=25.0, frames_per_block=stream.video_frames_per_block, context_s=context_s),
        text=TextEncoder(umt5, byte_tokenizer, text_len=TINY_DIT.text_len),
        stream=stream,
        pixel_size=TINY_PIXELS,
        label="tiny (TEST CONFIG: random weights)",
    )
