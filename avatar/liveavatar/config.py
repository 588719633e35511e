"""Configuration of the LiveAvatar DiT and of its streaming loop, as plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class DiTConfig:
    """Shape of the causal speech-to-video DiT (reference: `CausalWanModel_S2V`).

    Only the configuration LiveAvatar ships is supported: FramePack motion tokens ("padd" mode),
    AdaLN audio injection ("attn_norm"), t = 0 modulation for ref/motion tokens, qk-RMSNorm and an
    affine LayerNorm before the text cross-attention. `from_reference` rejects anything else.
    """

    dim: int = 5120
    ffn_dim: int = 13824
    freq_dim: int = 256
    text_dim: int = 4096
    text_len: int = 512
    in_dim: int = 16
    out_dim: int = 16
    num_heads: int = 40
    num_layers: int = 40
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    cond_dim: int = 16
    audio_dim: int = 1024
    audio_layers: int = 25  # wav2vec2 hidden states mixed by the audio encoder (fixed in the reference)
    num_audio_token: int = 4
    audio_inject_layers: tuple[int, ...] = (0, 4, 8, 12, 16, 20, 24, 27, 30, 33, 36, 39)
    rope_theta: float = 10000.0
    ref_rope_t: int = 30  # temporal RoPE position of the reference (sink) latent
    framepack_buckets: tuple[int, int, int] = (1, 2, 16)  # latent frames per bucket: post, 2x, 4x

    def __post_init__(self) -> None:
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.num_heads} heads of even size")
        if any(not 0 <= i < self.num_layers for i in self.audio_inject_layers):
            raise ValueError(f"audio_inject_layers {self.audio_inject_layers} outside 0..{self.num_layers - 1}")

    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.dim // self.num_heads

    @classmethod
    def from_reference(cls, constructor: dict[str, Any]) -> "DiTConfig":
        """Build from the reference constructor arguments (`CausalWanModel_S2V(**constructor)` / config.json)."""
        required = {
            "enable_framepack": True, "framepack_drop_mode": "padd", "enable_adain": True,
            "adain_mode": "attn_norm", "zero_timestep": True, "enable_motioner": False,
            "add_last_motion": True, "slide_motion_frames": False, "model_type": "s2v",
            "qk_norm": True, "cross_attn_norm": True, "enable_tsm": False, "local_attn_size": -1,
        }
        bad = {k: constructor[k] for k, v in required.items() if k in constructor and constructor[k] != v}
        if bad:
            raise ValueError(f"unsupported reference settings {bad}; LiveAvatar uses {required}")
        window = tuple(constructor.get("window_size", (-1, -1)))
        if window != (-1, -1):
            raise ValueError(f"window_size {window} is not supported (LiveAvatar uses (-1, -1))")
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in constructor.items() if k in names}
        if "patch_size" in kwargs:
            kwargs["patch_size"] = tuple(kwargs["patch_size"])
        if "audio_inject_layers" in kwargs:
            kwargs["audio_inject_layers"] = tuple(kwargs["audio_inject_layers"])
        return cls(**kwargs)


@dataclass(frozen=True)
class StreamConfig:
    """The block-streaming schedule around the DiT (reference defaults: 3 latent frames per block, 12 in the ring)."""

    frames_per_block: int = 3  # latent frames per block = 12 video frames = 0.48 s at 25 fps
    ring_frames: int = 12  # latent frames held by each per-step self-attention KV ring
    blocks_per_clip: int = 4  # noise is drawn per clip of blocks_per_clip * frames_per_block latent frames
    motion_frames: int = 73  # video frames the motion latents stand for; also the audio prepend length
    num_steps: int = 4
    shift: float = 3.0
    num_train_timesteps: int = 1000
    # Adaptive Attention Sink: the first latent frame of block 0 becomes the sink when this block
    # starts (the reference does it once, at the start of clip 1); None keeps the reference image.
    sink_refresh_block: int | None = 4
    relative_dist_range: tuple[int, int] = (4, 30)  # Rolling RoPE: d ~ U{lo..hi}, drawn per forward
    fixed_relative_dist: int | None = None  # set to use a constant d instead of random draws
    video_frames_per_latent: int = 4

    def __post_init__(self) -> None:
        if self.ring_frames % self.frames_per_block:
            raise ValueError(f"ring_frames {self.ring_frames} must be a multiple of frames_per_block {self.frames_per_block}")
        lo, hi = self.relative_dist_range
        if not 0 <= lo <= hi:
            raise ValueError(f"relative_dist_range {self.relative_dist_range} must satisfy 0 <= lo <= hi")

    @property
    def video_frames_per_block(self) -> int:
        """Video frames one block decodes to (12)."""
        return self.frames_per_block * self.video_frames_per_latent

    @property
    def motion_latent_frames(self) -> int:
        """Latent frames of the motion conditioning: (73 + 3) // 4 = 19."""
        return (self.motion_frames + 3) // self.video_frames_per_latent
