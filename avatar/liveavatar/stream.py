"""The block-streaming denoising loop: sink prefill, per-step KV rings, Rolling RoPE, Adaptive Attention Sink.

Order of work, as in the reference (`causal_s2v_pipeline` with the TPP pipeline's sink swap):
- the sink prefill fills the cond cache from the reference latent and the FramePack motion tokens (once: the
  reference fills one copy per step cache, but the prefill does not depend on the step, so they are equal);
- each block of `frames_per_block` latent frames starts from noise and takes `num_steps` Euler steps; step i
  calls the DiT with the KV ring of step i (timestep forcing: the ring of step i only ever holds blocks
  as they looked at t_i), and each call draws its own Rolling-RoPE distance d;
- Adaptive Attention Sink: the first latent frame of block 0's clean output replaces the reference, and the
  sink is re-prefilled when block `sink_refresh_block` starts (the motion latents stay as they were).

State is bounded: the rings and the cond cache are allocated once; the noise of one clip is held at a time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from liveavatar.avatar.liveavatar.cache import CondCache, KVRing
from liveavatar.avatar.liveavatar.config import StreamConfig
from liveavatar.avatar.liveavatar.dit import AudioTokens, CausalS2VDiT, TextKV
from liveavatar.avatar.liveavatar.schedule import FlowMatchSchedule

RelativeDistance = Callable[[], int]
"""Returns the Rolling-RoPE distance d for the next DiT call."""


def random_relative_dist(rng: random.Random, low: int = 4, high: int = 30) -> RelativeDistance:
    """d ~ U{low..high} from `rng` (the reference draws `random.randint(4, 30)` from Python's global random)."""
    return lambda: rng.randint(low, high)


def fixed_relative_dist(d: int) -> RelativeDistance:
    """A constant d (the reference's commented-out alternative is 30)."""
    return lambda: d


def replay_relative_dist(values: Iterable[int]) -> RelativeDistance:
    """The recorded d values, in call order; raises once they are used up."""
    it: Iterator[int] = iter(values)

    def draw() -> int:
        try:
            return int(next(it))
        except StopIteration:
            raise RuntimeError("the recorded relative_dist values are exhausted") from None

    return draw


def relative_dist_from_config(cfg: StreamConfig, seed: int) -> RelativeDistance:
    """The configured d source: fixed if `fixed_relative_dist` is set, else seeded draws from `relative_dist_range`."""
    if cfg.fixed_relative_dist is not None:
        return fixed_relative_dist(cfg.fixed_relative_dist)
    return random_relative_dist(random.Random(seed), *cfg.relative_dist_range)


class ClipNoise:
    """Initial noise per block: one clip of `blocks_per_clip` blocks drawn at a time from seed + clip index."""

    def __init__(self, seed: int, channels: int, frames_per_block: int, blocks_per_clip: int, lat_h: int, lat_w: int) -> None:
        self.seed = seed
        self.shape = (channels, frames_per_block * blocks_per_clip, lat_h, lat_w)
        self.frames_per_block = frames_per_block
        self.blocks_per_clip = blocks_per_clip
        self._clip: tuple[int, torch.Tensor] | None = None

    def __call__(self, block: int) -> torch.Tensor:
        """Noise [C, frames_per_block, H, W] of global block `block`."""
        clip, within = divmod(block, self.blocks_per_clip)
        if self._clip is None or self._clip[0] != clip:
            gen = torch.Generator().manual_seed(self.seed + clip)
            self._clip = (clip, torch.randn(*self.shape, generator=gen))
        f = self.frames_per_block
        return self._clip[1][:, within * f:(within + 1) * f]


def step_ring(model: CausalS2VDiT, cfg: StreamConfig, ref_latent: torch.Tensor) -> KVRing:
    """An empty self-attention KV ring for one denoising step (`cfg.ring_frames` latent frames of tokens)."""
    mc = model.cfg
    lat_h, lat_w = ref_latent.shape[-2:]
    tokens_per_frame = (lat_h // mc.patch_size[1]) * (lat_w // mc.patch_size[2])
    return KVRing(mc.num_layers, cfg.ring_frames * tokens_per_frame, mc.num_heads, mc.head_dim,
                  dtype=model.compute_dtype, device=ref_latent.device)


def denoise_step(model: CausalS2VDiT, schedule: FlowMatchSchedule, step: int, x: torch.Tensor, text: TextKV,
                 audio: AudioTokens, ring: KVRing, cond: CondCache, start_frame: int, relative_dist: int,
                 cond_states: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One timestep-forced step of a block: the DiT with step `step`'s own ring, then the Euler update -> (v, x)."""
    t = schedule.timesteps[step]
    v = model.forward_block(x, t.repeat(x.shape[1]), text, audio, ring, cond, start_frame, relative_dist, cond_states)
    return v, schedule.step(step, v, x)


@dataclass
class StepRecord:
    """What one DiT call produced (for parity tests and profiling hooks)."""

    block: int
    step: int
    relative_dist: int
    model_out: torch.Tensor
    latent_out: torch.Tensor


class BlockStreamer:
    """Turns a stream of per-block audio features into a stream of clean latent blocks [C, F, H, W]."""

    def __init__(self, model: CausalS2VDiT, cfg: StreamConfig, text: TextKV, ref_latent: torch.Tensor,
                 motion_latents: torch.Tensor, relative_dist: RelativeDistance, noise: Callable[[int], torch.Tensor],
                 on_step: Callable[[StepRecord], None] | None = None) -> None:
        self.model = model
        self.cfg = cfg
        self.schedule = FlowMatchSchedule.build(cfg.num_steps, cfg.shift, cfg.num_train_timesteps)
        self.text = text
        self.motion_latents = motion_latents
        self.relative_dist = relative_dist
        self.noise = noise
        self.on_step = on_step
        self.block_index = 0
        self._next_sink: torch.Tensor | None = None
        self.sink_latent = ref_latent
        self.cond: CondCache = model.prefill(ref_latent, motion_latents, text, cfg.frames_per_block)
        self.rings = [step_ring(model, cfg, ref_latent) for _ in range(cfg.num_steps)]

    @property
    def start_frame(self) -> int:
        """Absolute latent frame where the next block starts."""
        return self.block_index * self.cfg.frames_per_block

    def refresh_sink(self, sink_latent: torch.Tensor) -> None:
        """Re-run the sink prefill with a new sink latent [1, C, 1, H, W]; the KV rings are kept."""
        self.sink_latent = sink_latent
        self.cond = self.model.prefill(sink_latent, self.motion_latents, self.text, self.cfg.frames_per_block)

    @torch.no_grad()
    def next_block(self, audio_features: torch.Tensor, cond_states: torch.Tensor | None = None) -> torch.Tensor:
        """Denoise the next block driven by its wav2vec2 features [1, layers, C, video_frames_per_block]."""
        cfg = self.cfg
        if self.block_index == cfg.sink_refresh_block and self._next_sink is not None:
            self.refresh_sink(self._next_sink)
            self._next_sink = None
        # once per block: the reference re-encodes the same audio in each of the 4 calls, with the same result
        audio = self.model.encode_audio(audio_features, prepend=cfg.motion_frames, drop=cfg.motion_latent_frames)
        x = self.noise(self.block_index).to(self.sink_latent.device)
        for i in range(len(self.schedule)):
            d = self.relative_dist()
            v, x = denoise_step(self.model, self.schedule, i, x, self.text, audio, self.rings[i], self.cond,
                                self.start_frame, d, cond_states)
            if self.on_step is not None:
                self.on_step(StepRecord(self.block_index, i, d, v, x))
        if self.block_index == 0 and cfg.sink_refresh_block is not None:
            self._next_sink = x[None, :, 0:1].clone()
        self.block_index += 1
        return x
