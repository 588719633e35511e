"""One avatar stream: portrait + prompt prepared once, then 16 kHz audio blocks in, RGB frame blocks out.

Per block: wav2vec2 features -> 4-step DiT denoising (BlockStreamer) -> streaming VAE decode -> uint8 frames.
The VAE's causal cache is warmed on the first 7 motion latents (the portrait) before block 0, as the
reference does, so every block — the first included — decodes to exactly 12 frames and stays aligned with
its 12 frames of audio. (The reference also drops the first 3 frames of block 0; here they are kept so that
audio and video stay in step by construction.)
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from liveavatar.avatar.liveavatar.config import StreamConfig
from liveavatar.avatar.liveavatar.dit import CausalS2VDiT
from liveavatar.avatar.liveavatar.features import AudioFeatures, TextEncoder
from liveavatar.avatar.liveavatar.stream import BlockStreamer, ClipNoise, RelativeDistance
from liveavatar.avatar.liveavatar.vae import WanVAE

VAE_WARMUP_LATENTS = 7


@dataclass
class Parts:
    """The models one stream needs, already loaded; `pixel_size` = (height, width) of the generated video."""

    dit: CausalS2VDiT
    vae: WanVAE
    audio: AudioFeatures
    text: TextEncoder
    stream: StreamConfig
    pixel_size: tuple[int, int]
    label: str = ""


def portrait_tensor(portrait: np.ndarray, height: int, width: int) -> torch.Tensor:
    """RGB uint8 H×W×3 -> [1, 3, 1, height, width] in [-1, 1]: resized to cover, then centre-cropped."""
    img = torch.from_numpy(np.ascontiguousarray(portrait)).permute(2, 0, 1)[None].float() / 255.0
    h, w = img.shape[-2:]
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    img = F.interpolate(img, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    img = img[..., top:top + height, left:left + width]
    return (img * 2 - 1).clamp(-1, 1)[:, :, None]


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [T, h, w, 3] -> uint8 [T, height, width, 3] (bilinear, antialiased); unchanged when the size matches."""
    if frames.shape[1:3] == (height, width):
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """[1, 3, T, H, W] in [-1, 1] -> uint8 [T, H, W, 3]."""
    x = ((video[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().cpu().numpy()


class AvatarPipeline:
    """Generates the endless video of one portrait, one block of `stream.video_frames_per_block` frames at a time."""

    def __init__(self, parts: Parts, portrait: np.ndarray, prompt: str, seed: int, relative_dist: RelativeDistance) -> None:
        self.parts = parts
        self.timings: dict[str, float] = defaultdict(float)
        cfg, dit, vae = parts.stream, parts.dit, parts.vae
        height, width = parts.pixel_size
        with self._timed("prepare"):
            image = portrait_tensor(portrait, height, width).to(vae.device)
            ref_latent = vae.encode(image)
            motion_latents = vae.encode(image.expand(-1, -1, cfg.motion_frames, -1, -1))
            text = dit.encode_text(parts.text(prompt))
            lat_h, lat_w = ref_latent.shape[-2:]
            noise = ClipNoise(seed, dit.cfg.in_dim, cfg.frames_per_block, cfg.blocks_per_clip, lat_h, lat_w)
            self.streamer = BlockStreamer(dit, cfg, text, ref_latent, motion_latents, relative_dist, noise)
            self.decoder = vae.streaming_decoder()
            self.decoder.decode(motion_latents[:, :, :VAE_WARMUP_LATENTS])
            self.audio = parts.audio.stream()

    def _timed(self, name: str) -> "_Timer":
        return _Timer(self.timings, name)

    @torch.no_grad()
    def block(self, pcm16k: np.ndarray) -> np.ndarray:
        """The next block's frames uint8 [12, H, W, 3] driven by its 7,680 samples of 16 kHz audio."""
        with self._timed("audio_features"):
            features = self.audio(pcm16k)
        with self._timed("dit"):
            latent = self.streamer.next_block(features)
        with self._timed("vae_decode"):
            video = self.decoder.decode(latent[None])
        with self._timed("to_frames"):
            frames = to_uint8_frames(video)
        return frames


class _Timer:
    """Adds the wall time of a `with` body to timings[name]."""

    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings[self.name] += time.perf_counter() - self.t0
