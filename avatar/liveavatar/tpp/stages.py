"""The compute of one TPP process: the start-up conditioning, a DiT worker's share of the steps, the decoder.

Each piece does exactly what the single-process `AvatarPipeline` / `BlockStreamer` does for its part, with
the same calls in the same order (`denoise_step`, `step_ring`, the sink prefill, the VAE warm-up), so the
output of a TPP run is bit-identical to one process at the same thread count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from liveavatar.avatar.liveavatar.config import StreamConfig
from liveavatar.avatar.liveavatar.dit import AudioTokens, CausalS2VDiT
from liveavatar.avatar.liveavatar.features import AudioFeatures, TextEncoder
from liveavatar.avatar.liveavatar.pipeline import VAE_WARMUP_LATENTS, Parts, portrait_tensor, resize_frames, to_uint8_frames
from liveavatar.avatar.liveavatar.schedule import FlowMatchSchedule
from liveavatar.avatar.liveavatar.stream import ClipNoise, RelativeDistance, denoise_step, step_ring
from liveavatar.avatar.liveavatar.vae import WanVAE

PartsFactory = Callable[[], Parts]
"""A picklable zero-argument function (module-level, or a functools.partial of one) building the models."""


@dataclass
class WorkerParts:
    """The models one TPP process needs; the ones it does not need are None."""

    stream: StreamConfig
    pixel_size: tuple[int, int]
    dit: CausalS2VDiT | None = None
    vae: WanVAE | None = None
    audio: AudioFeatures | None = None
    text: TextEncoder | None = None


def load_worker_parts(options, needs: frozenset[str], device: str, factory: PartsFactory | None = None) -> WorkerParts:
    """Load only what `needs` names ("dit", "vae", "audio", "text") for `options` (avatar.liveavatar.options.Options)."""
    if factory is not None or options.config == "tiny":
        if factory is None:
            from liveavatar.avatar.liveavatar.tiny import build_tiny_parts

            parts = build_tiny_parts(seed=0, context_s=options.audio_context_s)
        else:
            parts = factory()
        out = WorkerParts(parts.stream, parts.pixel_size, parts.dit if "dit" in needs else None,
                          parts.vae if "vae" in needs else None, parts.audio if "audio" in needs else None,
                          parts.text if "text" in needs else None)
        return _to_device(out, device)
    return _load_checkpoint_parts(options, needs, device)


def _to_device(parts: WorkerParts, device: str) -> WorkerParts:
    if torch.device(device).type == "cpu":
        return parts
    if parts.dit is not None:
        parts.dit.to(device)
    if parts.vae is not None:
        parts.vae.vae.to(device)
    if parts.audio is not None:
        parts.audio.model.to(device)
    if parts.text is not None:
        parts.text.model.to(device)
    return parts


def _load_checkpoint_parts(options, needs: frozenset[str], device: str) -> WorkerParts:
    from liveavatar.avatar.liveavatar import loader

    if options.checkpoint_dir is None:
        raise ValueError("config=checkpoint needs checkpoint_dir (the local Wan2.2-S2V-14B folder)")
    pixel_size = (options.height, options.width)
    if pixel_size[0] % 16 or pixel_size[1] % 16:
        raise ValueError(f"pixel size {pixel_size} must be multiples of 16 (8× VAE, 2× patch)")
    files = loader.find_checkpoint_files(options.checkpoint_dir, options.lora_path)
    stream = StreamConfig()
    parts = WorkerParts(stream, pixel_size)
    if "dit" in needs:
        parts.dit = loader.load_dit(files, options.dtype, device)
    if "vae" in needs:
        parts.vae = loader.load_vae(files, device)
    if "audio" in needs:
        parts.audio = loader.load_audio_features(files, stream, options.audio_context_s, device)
    if "text" in needs:
        text_len = loader.dit_config_from_file(files.dit_config).text_len
        parts.text = loader.load_text_encoder(files, text_len, device)
    return parts


@dataclass
class Conditioning:
    """What every DiT worker needs besides its weights: the sink latent, the motion latents, the prompt embedding."""

    ref_latent: torch.Tensor  # [1, C, 1, h, w]
    motion_latents: torch.Tensor  # [1, C, motion_latent_frames, h, w]
    text_context: torch.Tensor  # [L, text_dim], the text encoder's output

    def tensors(self) -> list[torch.Tensor]:
        """In broadcast order."""
        return [self.ref_latent, self.motion_latents, self.text_context]


@torch.no_grad()
def prepare_conditioning(parts: WorkerParts, portrait: np.ndarray, prompt: str) -> Conditioning:
    """VAE-encode the portrait (as the sink and as the repeated motion frames) and encode the prompt."""
    height, width = parts.pixel_size
    image = portrait_tensor(portrait, height, width).to(parts.vae.device)
    ref_latent = parts.vae.encode(image)
    motion_latents = parts.vae.encode(image.expand(-1, -1, parts.stream.motion_frames, -1, -1))
    return Conditioning(ref_latent, motion_latents, parts.text(prompt))


def sink_refresh_block(cfg: StreamConfig) -> int | None:
    """The block at which the Adaptive Attention Sink replaces the reference (None: never), as BlockStreamer does."""
    block = cfg.sink_refresh_block
    return block if block is not None and block >= 1 else None


class DiTStage:
    """One DiT worker's share of the denoising steps, with those steps' KV rings and its own cond cache."""

    def __init__(self, dit: CausalS2VDiT, cfg: StreamConfig, steps: range, cond: Conditioning,
                 relative_dist: RelativeDistance) -> None:
        self.dit, self.cfg, self.steps = dit, cfg, steps
        self.schedule = FlowMatchSchedule.build(cfg.num_steps, cfg.shift, cfg.num_train_timesteps)
        self.motion_latents = cond.motion_latents
        self.relative_dist = relative_dist
        self.block_index = 0
        self.refresh_at = sink_refresh_block(cfg)
        self.refreshed = False
        with torch.no_grad():
            self.text = dit.encode_text(cond.text_context)
            self.cond = dit.prefill(cond.ref_latent, cond.motion_latents, self.text, cfg.frames_per_block)
        self.rings = {i: step_ring(dit, cfg, cond.ref_latent) for i in steps}

    @property
    def start_frame(self) -> int:
        """Absolute latent frame where the next block starts."""
        return self.block_index * self.cfg.frames_per_block

    @property
    def needs_sink(self) -> bool:
        """Whether the next block must first re-prefill the sink (the Adaptive Attention Sink swap)."""
        return self.refresh_at is not None and self.block_index == self.refresh_at and not self.refreshed

    @torch.no_grad()
    def refresh_sink(self, sink_latent: torch.Tensor) -> None:
        """Re-run the sink prefill with the new sink latent [1, C, 1, h, w]; the rings are kept."""
        self.cond = self.dit.prefill(sink_latent, self.motion_latents, self.text, self.cfg.frames_per_block)
        self.refreshed = True

    @torch.no_grad()
    def warm_up(self, audio: AudioTokens, latent_shape: tuple[int, ...]) -> None:
        """One forward on a scratch ring (no state changes), so the first real block does not pay first-call costs."""
        device = self.dit.patch_embedding.weight.device
        ring = step_ring(self.dit, self.cfg, torch.zeros(1, latent_shape[0], 1, *latent_shape[2:], device=device))
        x = torch.zeros(latent_shape, device=device)
        denoise_step(self.dit, self.schedule, self.steps[0], x, self.text, audio, ring, self.cond, 0,
                     self.cfg.relative_dist_range[0])

    @torch.no_grad()
    def run(self, x: torch.Tensor, audio: AudioTokens) -> torch.Tensor:
        """This worker's steps of the next block: x after the previous worker's steps -> x after ours."""
        # Every step of a block draws its Rolling-RoPE distance in step order (as one process does); each
        # worker replays all draws of the block and keeps its own.
        draws = [self.relative_dist() for _ in range(self.cfg.num_steps)]
        for i in self.steps:
            _, x = denoise_step(self.dit, self.schedule, i, x, self.text, audio, self.rings[i], self.cond,
                                self.start_frame, draws[i])
        self.block_index += 1
        return x


class BlockSource:
    """The first DiT worker's inputs per block: wav2vec2 features -> the DiT's audio tokens, and the block's noise."""

    def __init__(self, dit: CausalS2VDiT, audio: AudioFeatures, cfg: StreamConfig, seed: int, latent_shape: tuple[int, ...]) -> None:
        self.dit, self.cfg = dit, cfg
        self.audio = audio.stream()
        channels, _, lat_h, lat_w = latent_shape
        self.noise = ClipNoise(seed, channels, cfg.frames_per_block, cfg.blocks_per_clip, lat_h, lat_w)

    @torch.no_grad()
    def tokens(self, pcm16k: np.ndarray) -> AudioTokens:
        """The block's audio tokens from its 7,680 samples of 16 kHz audio (the wav2vec2 past carries over)."""
        features = self.audio(pcm16k)
        return self.dit.encode_audio(features, prepend=self.cfg.motion_frames, drop=self.cfg.motion_latent_frames)

    @torch.no_grad()
    def warm_up(self) -> None:
        """Run wav2vec2 once on silence without touching the stream's audio past."""
        feats = self.audio.features
        self.audio.features.window_features(np.zeros(feats.context_samples + feats.block_samples, np.float32))

    def noise_of(self, block: int, device: torch.device | str) -> torch.Tensor:
        """Initial noise [C, F, h, w] of global block `block`."""
        return self.noise(block).to(device)


@torch.no_grad()
def silent_audio_tokens(dit: CausalS2VDiT, cfg: StreamConfig) -> AudioTokens:
    """The audio tokens of all-zero features: a dry run that fixes the tokens' shapes and dtypes."""
    device = dit.patch_embedding.weight.device
    dummy = torch.zeros(1, dit.cfg.audio_layers, dit.cfg.audio_dim, cfg.video_frames_per_block, device=device)
    return dit.encode_audio(dummy, prepend=cfg.motion_frames, drop=cfg.motion_latent_frames)


def audio_token_specs(tokens: AudioTokens) -> list[tuple[tuple[int, ...], torch.dtype]]:
    """Shapes and dtypes of a block's (global, local) audio tokens."""
    return [(tuple(tokens.glob.shape), tokens.glob.dtype), (tuple(tokens.local.shape), tokens.local.dtype)]


class DecodeStage:
    """The streaming VAE decoder (warmed on the portrait's motion latents) and the conversion to output frames."""

    def __init__(self, vae: WanVAE, motion_latents: torch.Tensor, out_size: tuple[int, int]) -> None:
        self.decoder = vae.streaming_decoder()
        self.width, self.height = out_size
        with torch.no_grad():
            self.decoder.decode(motion_latents[:, :, :VAE_WARMUP_LATENTS])

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Clean latent [C, F, h, w] -> video [1, 3, 4F, H, W]; always run, so the causal caches stay in step."""
        return self.decoder.decode(latent[None])

    def frames(self, video: torch.Tensor) -> np.ndarray:
        """Video -> uint8 [T, height, width, 3] at the output size, as the single-process generator renders it."""
        return resize_frames(to_uint8_frames(video), self.height, self.width)
