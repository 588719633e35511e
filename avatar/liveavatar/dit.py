"""The causal speech-to-video DiT of LiveAvatar (Wan2.2-S2V-14B made causal), readable in one sitting.

Token types and their conditioning:
- noisy tokens (the block being denoised): patch embedding + pose-cond embedding, AdaLN from the block's
  timestep (per latent frame), RoPE at their absolute latent frames, self-attention over the per-step KV
  ring plus the sink tokens, text cross-attention, FFN; audio is injected after the listed blocks;
- sink tokens (reference latent | FramePack motion tokens): AdaLN at t = 0; they only run in the sink
  prefill, which records their per-layer K (before RoPE) and V in a `CondCache`.

Every submodule keeps the reference's attribute name (`blocks.N.self_attn.q`, `casual_audio_encoder`,
`audio_injector.injector_adain_layers.K.linear`, `frame_packer.proj_4x`, ...) so that the reference
state dict (and the official checkpoint) loads with `load_state_dict(strict=True)`.

Precision follows the reference: the time MLP, the head and the audio encoder compute in float32 whatever
the weight dtype; the timestep sinusoid is float64; the text cross-attention pre-norm takes a bf16
round trip; the residual stream is float32 inside a block and the weight dtype between blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from liveavatar.avatar.liveavatar.audio_encoder import CausalAudioEncoder
from liveavatar.avatar.liveavatar.cache import CondCache, KVRing
from liveavatar.avatar.liveavatar.config import DiTConfig
from liveavatar.avatar.liveavatar.framepack import FramePack
from liveavatar.avatar.liveavatar.rope import Rope3D, framepack_positions

FP32_MODULES = ("time_embedding", "time_projection", "head", "casual_audio_encoder")
"""Modules the reference runs in float32 (under autocast) even when the weights are bf16."""

AUDIO_INJECTOR_EPS = 1e-6
"""The reference builds the injectors' attention (AudioCrossAttention) without passing the model's eps, so its
qk-RMSNorms keep WanSelfAttention's default 1e-6 whatever `DiTConfig.eps` is."""


def sinusoid(freq_dim: int, t: torch.Tensor) -> torch.Tensor:
    """Timestep embedding [N, freq_dim] in float64: cos | sin of t · 10000^(-i/half)."""
    half = freq_dim // 2
    t = t.to(torch.float64)
    angles = torch.outer(t, torch.pow(10000, -torch.arange(half).to(t).div(half)))
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unmasked softmax attention on [B, L, heads, head_dim] tensors; returns [B, Lq, heads·head_dim]."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).flatten(2)


class RMSNorm(nn.Module):
    """RMS normalisation over the last axis (computed in float32) with a learned gain."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm whose output keeps the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).type_as(x)


class Attention(nn.Module):
    """Multi-head attention projections with qk-RMSNorm (over the full width, before the head split)."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:2], self.num_heads, -1)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, dim] -> normed queries [B, L, heads, head_dim]."""
        return self._heads(self.norm_q(self.q(x)))

    def key_value(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, L, dim] -> (normed keys, values), each [B, L, heads, head_dim]."""
        return self._heads(self.norm_k(self.k(x))), self._heads(self.v(x))

    def cross(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attend x's queries to precomputed keys/values; output projected, [B, L, dim]."""
        return self.o(attention(self.query(x), k, v))


SelfAttend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(layer, q, k, v) -> attention output [B, L, dim]: where self-attention finds its keys (prefill or ring)."""


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [B, L, D] (float32) modulated per token group: shift/scale [G, D] apply to L/G consecutive tokens each."""
    groups = shift.shape[0]
    xg = x.view(x.shape[0], groups, -1, x.shape[-1])
    return (xg * (1 + scale[None, :, None]) + shift[None, :, None]).view_as(x)


def _gate(y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    groups = gate.shape[0]
    return (y.view(y.shape[0], groups, -1, y.shape[-1]) * gate[None, :, None]).view(y.shape)


class DiTBlock(nn.Module):
    """AdaLN self-attention -> text cross-attention (affine pre-norm) -> AdaLN FFN (reference: CausalWanS2VAttentionBlock)."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = Attention(dim, num_heads, eps)
        self.norm3 = LayerNorm(dim, eps, elementwise_affine=True)
        self.cross_attn = Attention(dim, num_heads, eps)
        self.norm2 = LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def text_prenorm(self, x: torch.Tensor) -> torch.Tensor:
        """norm3 with the reference's bf16 round trip: input and output rounded to bf16 (returned in bf16).

        On the CPU the bf16 input meets float32 weights in one mixed-dtype kernel, as in the reference's run (the
        golden vectors to 7e-7); CUDA has no such kernel, so there the norm runs in its weights' dtype on the rounded
        input, which differs only where an output lands on the other side of a bf16 rounding.
        """
        rounded = x.to(torch.bfloat16)
        if rounded.device.type != "cpu":
            rounded = rounded.to(self.norm3.weight.dtype)
        return self.norm3(rounded).to(torch.bfloat16)

    def forward(self, x: torch.Tensor, mod: torch.Tensor, self_attend: SelfAttend, layer: int,
                text_k: torch.Tensor, text_v: torch.Tensor) -> torch.Tensor:
        """x [1, L, dim]; mod [G, 6, dim] float32 AdaLN vectors for G equal token groups."""
        dtype = x.dtype
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation + mod).unbind(1)
        h = _modulate(self.norm1(x).float(), shift1, scale1).to(dtype)
        q = self.self_attn.query(h)
        k, v = self.self_attn.key_value(h)
        y = self.self_attn.o(self_attend(layer, q, k, v))
        x = x + _gate(y, gate1)
        x = x + self.cross_attn.cross(self.text_prenorm(x).to(dtype), text_k, text_v)
        y = self.ffn(_modulate(self.norm2(x).float(), shift2, scale2).to(dtype))
        x = x + _gate(y, gate2)
        return x.to(dtype)


class Head(nn.Module):
    """Per-frame AdaLN output head: LayerNorm, shift/scale from the frame's time embedding, linear to patches."""

    def __init__(self, dim: int, out_dim: int, patch_size: tuple[int, int, int], eps: float) -> None:
        super().__init__()
        self.norm = LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, math.prod(patch_size) * out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x [B, F·S, dim], e [F, dim] float32 -> [B, F·S, prod(patch)·out_dim] float32."""
        shift, scale = (self.modulation.float() + e.unsqueeze(1)).unbind(1)
        return self.head(_modulate(self.norm(x).float(), shift, scale).to(self.head.weight.dtype)).float()


class AdaLN(nn.Module):
    """LayerNorm (eps 1e-5, no affine) shifted and scaled from a conditioning vector (diffusers AdaLayerNorm, chunk_dim=1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [N, L, dim], cond [N, dim]."""
        shift, scale = self.linear(F.silu(cond)).chunk(2, dim=1)
        return F.layer_norm(x, x.shape[-1:], eps=1e-5) * (1 + scale[:, None]) + shift[:, None]


class AudioInjector(nn.Module):
    """Per-latent-frame cross-attention of the noisy tokens onto that frame's audio tokens, AdaLN-prenormed."""

    def __init__(self, count: int, dim: int, num_heads: int) -> None:
        super().__init__()
        self.injector = nn.ModuleList(Attention(dim, num_heads, AUDIO_INJECTOR_EPS) for _ in range(count))
        self.injector_adain_layers = nn.ModuleList(AdaLN(dim) for _ in range(count))

    def forward(self, index: int, x: torch.Tensor, audio: "AudioTokens") -> torch.Tensor:
        """x [1, F·S, dim] -> x + residual, each frame's S tokens attending to its own audio tokens."""
        frames = audio.local.shape[0]
        per_frame = x.view(frames, -1, x.shape[-1])
        normed = self.injector_adain_layers[index](per_frame, audio.glob.to(x.dtype))
        attn = self.injector[index]
        k, v = attn.key_value(audio.local.to(x.dtype))
        return x + attn.cross(normed, k, v).reshape(x.shape)


@dataclass
class TextKV:
    """Per-layer text cross-attention keys and values of one prompt, [1, text_len, heads, head_dim] each."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]


@dataclass
class AudioTokens:
    """Audio conditioning of one block: per latent frame, a global token [F, dim] and local tokens [F, n+1, dim]."""

    glob: torch.Tensor
    local: torch.Tensor


@dataclass
class TimeEmbedding:
    """AdaLN inputs of one call: head vectors [F, dim], noisy modulation [F, 6, dim], t = 0 modulation [1, 6, dim]."""

    head: torch.Tensor
    noisy: torch.Tensor
    zero: torch.Tensor


class CausalS2VDiT(nn.Module):
    """LiveAvatar's causal S2V DiT: `prefill` fills the sink cache, `forward_block` predicts one block's flow."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim, p = cfg.dim, cfg.patch_size
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=p, stride=p)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(DiTBlock(dim, cfg.ffn_dim, cfg.num_heads, cfg.eps) for _ in range(cfg.num_layers))
        self.head = Head(dim, cfg.out_dim, p, cfg.eps)
        self.cond_encoder = nn.Conv3d(cfg.cond_dim, dim, kernel_size=p, stride=p)
        self.casual_audio_encoder = CausalAudioEncoder(cfg.audio_dim, dim, cfg.num_audio_token, cfg.audio_layers)
        self.audio_injector = AudioInjector(len(cfg.audio_inject_layers), dim, cfg.num_heads)
        self.trainable_cond_mask = nn.Embedding(3, dim)  # 0 noisy, 1 ref, 2 motion
        self.frame_packer = FramePack(cfg.in_dim, dim, cfg.framepack_buckets)
        self.injector_of_layer = {layer: i for i, layer in enumerate(sorted(cfg.audio_inject_layers))}
        self.rope = Rope3D(cfg.head_dim, cfg.rope_theta)

    # ---- conditioning that does not depend on the block -------------------------------------------
    @property
    def compute_dtype(self) -> torch.dtype:
        """Dtype of the transformer blocks' weights (activations between blocks use it)."""
        return self.blocks[0].self_attn.q.weight.dtype

    @torch.no_grad()
    def encode_text(self, context: torch.Tensor) -> TextKV:
        """Text-encoder output [L, text_dim] (L <= text_len) -> per-layer cross-attention K/V, zero-padded to text_len.

        The reference attends to all text_len positions, padding included; so does this.
        """
        if context.shape[0] > self.cfg.text_len:
            raise ValueError(f"text context has {context.shape[0]} tokens, more than text_len {self.cfg.text_len}")
        weight = self.text_embedding[0].weight
        padded = context.new_zeros(self.cfg.text_len, context.shape[1])
        padded[: context.shape[0]] = context
        ctx = self.text_embedding(padded.to(weight.dtype)[None])
        kv = [block.cross_attn.key_value(ctx) for block in self.blocks]
        return TextKV([k for k, _ in kv], [v for _, v in kv])

    @torch.no_grad()
    def encode_audio(self, features: torch.Tensor, prepend: int, drop: int) -> AudioTokens:
        """wav2vec2 features [1, layers, C, T] of one block -> tokens of its T/4 latent frames.

        As the reference, `prepend` copies of the first frame go in front (the causal convs then see a steady
        past) and the first `drop` latent frames of the output are discarded.
        """
        x = torch.cat([features[..., :1].expand(*features.shape[:-1], prepend), features], dim=-1)
        glob, local = self.casual_audio_encoder(x)
        return AudioTokens(glob[0, drop:, 0], local[0, drop:])

    def time_embedding_for(self, t: torch.Tensor) -> TimeEmbedding:
        """Per-frame timesteps [F] -> AdaLN vectors for noisy tokens at t and sink tokens at t = 0 (float32)."""
        frames = t.shape[0]
        t_all = torch.cat([t.float(), t.new_zeros(frames, dtype=torch.float32)])
        e = self.time_embedding(sinusoid(self.cfg.freq_dim, t_all).float())
        e0 = self.time_projection(e).unflatten(1, (6, self.cfg.dim))
        return TimeEmbedding(head=e[:frames], noisy=e0[:frames], zero=e0[frames:frames + 1])

    def _patchify(self, conv: nn.Conv3d, latent: torch.Tensor) -> torch.Tensor:
        """[1, C, F, H, W] -> [1, F·(H/2)·(W/2), dim]."""
        return conv(latent.to(conv.weight.dtype)).flatten(2).transpose(1, 2)

    def _cond_rope(self, lat_h: int, lat_w: int, ref_t: int) -> torch.Tensor:
        gh, gw = lat_h // self.cfg.patch_size[1], lat_w // self.cfg.patch_size[2]
        grids = [([ref_t], range(gh), range(gw))] + framepack_positions(lat_h, lat_w, self.cfg.framepack_buckets)
        return torch.cat([self.rope.grid(*g) for g in grids])

    def ref_position(self, start_frame: int, relative_dist: int) -> int:
        """Rolling RoPE: the sink's temporal position for a block starting at latent frame `start_frame`.

        ref_t + max(0, f - (ref_t - d)) = max(ref_t, f + d): the sink stays d frames ahead of the block.
        """
        ref_t = self.cfg.ref_rope_t
        return ref_t + max(0, start_frame - (ref_t - relative_dist))

    # ---- the two entry points --------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, ref_latent: torch.Tensor, motion_latents: torch.Tensor, text: TextKV, frames_per_block: int = 3) -> CondCache:
        """Sink prefill: run ref [1, C, 1, H, W] and FramePack(motion [1, C, T, H, W]) tokens at t = 0; return their K/V.

        Their own attention sees only each other, with the ref at `ref_rope_t` and FramePack at its fixed
        negative times. No audio is injected. `frames_per_block` only shapes the time-MLP batch (as the reference).
        """
        ref = self._patchify(self.patch_embedding, ref_latent)
        motion = self.frame_packer(motion_latents.to(self.frame_packer.proj.weight.dtype))
        x = torch.cat([ref, motion], dim=1)
        kinds = torch.tensor([1] * ref.shape[1] + [2] * motion.shape[1], device=x.device)
        x = (x + self.trainable_cond_mask(kinds)[None].to(x.dtype)).to(self.compute_dtype)
        mod = self.time_embedding_for(x.new_zeros(frames_per_block, dtype=torch.float32)).zero
        rope = self._cond_rope(ref_latent.shape[-2], ref_latent.shape[-1], self.cfg.ref_rope_t).to(x.device)
        cond = CondCache(len(self.blocks))

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            cond.store(layer, k, v)
            return attention(self.rope.apply(q, rope).type_as(v), self.rope.apply(k, rope).type_as(v), v)

        for i, block in enumerate(self.blocks):
            x = block(x, mod, attend, i, text.k[i], text.v[i])
        return cond

    @torch.no_grad()
    def forward_block(self, x: torch.Tensor, t: torch.Tensor, text: TextKV, audio: AudioTokens, ring: KVRing,
                      cond: CondCache, start_frame: int, relative_dist: int, cond_states: torch.Tensor | None = None) -> torch.Tensor:
        """Flow (velocity) prediction [C, F, H, W] float32 for a noisy block x [C, F, H, W] at per-frame timesteps t [F].

        The block's latent frames are start_frame .. start_frame + F - 1 of the stream; its RoPE'd K/V go into
        `ring` (the ring of this denoising step) and its queries see the ring plus the sink, whose keys are
        rotated with the ref at `ref_position(start_frame, relative_dist)`.
        """
        _, frames, lat_h, lat_w = x.shape
        pt, ph, pw = self.cfg.patch_size
        gh, gw = lat_h // ph, lat_w // pw
        if cond_states is None:
            cond_states = x.new_zeros(1, self.cfg.cond_dim, frames, lat_h, lat_w)
        tokens = self.patch_embedding(x[None].to(self.patch_embedding.weight.dtype))
        tokens = (tokens + self.cond_encoder(cond_states.to(tokens.dtype))).flatten(2).transpose(1, 2)
        h = tokens + self.trainable_cond_mask.weight[0].to(tokens.dtype)
        time = self.time_embedding_for(t.to(x.device))
        start_token = start_frame * gh * gw
        noisy_rope = self.rope.grid(range(start_frame, start_frame + frames), range(gh), range(gw)).to(x.device)
        cond_rope = self._cond_rope(lat_h, lat_w, self.ref_position(start_frame, relative_dist)).to(x.device)

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            q = self.rope.apply(q, noisy_rope).type_as(v)
            k = self.rope.apply(k, noisy_rope).type_as(v)
            ring_k, ring_v = ring.write(layer, start_token, k, v)
            cond_k, cond_v = cond.layer(layer)
            keys = torch.cat([ring_k, self.rope.apply(cond_k, cond_rope).type_as(v)], dim=1)
            return attention(q, keys, torch.cat([ring_v, cond_v], dim=1))

        h = h.to(self.compute_dtype)
        for i, block in enumerate(self.blocks):
            h = block(h, time.noisy, attend, i, text.k[i], text.v[i])
            if i in self.injector_of_layer:
                h = self.audio_injector(self.injector_of_layer[i], h, audio)
        out = self.head(h, time.head)  # [1, F·gh·gw, pt·ph·pw·C]
        out = out.view(frames // pt, gh, gw, pt, ph, pw, self.cfg.out_dim)
        return out.permute(6, 0, 3, 1, 4, 2, 5).reshape(self.cfg.out_dim, frames, lat_h, lat_w)
