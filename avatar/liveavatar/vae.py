"""The Wan2.1 VAE through diffusers' `AutoencoderKLWan`, with a decoder that streams across blocks.

diffusers' implementation matches the reference `WanVAE_` numerically (checked against the golden
vectors, see tests/liveavatar/test_vae.py), so it is used as is; this module only adds
- the reference checkpoint's key names (`Wan2.1_VAE.pth`: `decoder.upsamples.N.residual.0.gamma`, ...)
  mapped onto diffusers' names;
- the latent normalisation the DiT works in (decode takes z and computes z / (1/std) + mean, in float32);
- `StreamingDecoder`: the causal-conv caches persist between calls, so decoding block after block gives
  the same frames as decoding everything at once (1 frame for the very first latent, 4 for every other).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import AutoencoderKLWan
from torch import nn

WAN21_LATENT_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                     0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_LATENT_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)


@dataclass(frozen=True)
class VAEConfig:
    """Shape of the Wan2.1 VAE (the real one has dim 96)."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    latent_mean: tuple[float, ...] = field(default=WAN21_LATENT_MEAN)
    latent_std: tuple[float, ...] = field(default=WAN21_LATENT_STD)

    def build(self) -> AutoencoderKLWan:
        """A diffusers AutoencoderKLWan of this shape (random weights)."""
        return AutoencoderKLWan(
            base_dim=self.dim, z_dim=self.z_dim, dim_mult=list(self.dim_mult), num_res_blocks=self.num_res_blocks,
            attn_scales=[], temperal_downsample=list(self.temperal_downsample),
            latents_mean=list(self.latent_mean), latents_std=list(self.latent_std),
        )


_RESIDUAL = (("residual.0.", "norm1."), ("residual.2.", "conv1."), ("residual.3.", "norm2."), ("residual.6.", "conv2."),
             ("shortcut.", "conv_shortcut."))


def _prefix_pairs(vae: AutoencoderKLWan) -> list[tuple[str, str]]:
    """(reference prefix, diffusers prefix) for every module of the VAE that holds parameters."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanResidualBlock

    blocks: list[tuple[str, str, nn.Module]] = []
    for part, coder in (("encoder", vae.encoder), ("decoder", vae.decoder)):
        blocks += [(f"{part}.middle.0.", f"{part}.mid_block.resnets.0.", coder.mid_block.resnets[0]),
                   (f"{part}.middle.1.", f"{part}.mid_block.attentions.0.", coder.mid_block.attentions[0]),
                   (f"{part}.middle.2.", f"{part}.mid_block.resnets.1.", coder.mid_block.resnets[1])]
    for n, block in enumerate(vae.encoder.down_blocks):  # the same flat order in both implementations
        blocks.append((f"encoder.downsamples.{n}.", f"encoder.down_blocks.{n}.", block))
    n = 0
    for i, up in enumerate(vae.decoder.up_blocks):  # flat `upsamples` in the reference, nested here
        for j, block in enumerate(up.resnets):
            blocks.append((f"decoder.upsamples.{n}.", f"decoder.up_blocks.{i}.resnets.{j}.", block))
            n += 1
        if up.upsamplers is not None:
            blocks.append((f"decoder.upsamples.{n}.", f"decoder.up_blocks.{i}.upsamplers.0.", up.upsamplers[0]))
            n += 1
    pairs = [("conv1.", "quant_conv."), ("conv2.", "post_quant_conv.")]
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.conv1.", f"{part}.conv_in."), (f"{part}.head.0.", f"{part}.norm_out."),
                  (f"{part}.head.2.", f"{part}.conv_out.")]
    for ref, diff, module in blocks:
        if isinstance(module, WanResidualBlock):
            pairs += [(ref + a, diff + b) for a, b in _RESIDUAL]
        else:
            pairs.append((ref, diff))
    return pairs


def _rename(state: dict[str, torch.Tensor], pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    ordered = sorted(pairs, key=lambda p: len(p[0]), reverse=True)  # longest prefix wins
    out = {}
    for key, value in state.items():
        for old, new in ordered:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def reference_to_diffusers(state: dict[str, torch.Tensor], vae: AutoencoderKLWan) -> dict[str, torch.Tensor]:
    """Rename a reference `WanVAE_` state dict (Wan2.1_VAE.pth) to diffusers' AutoencoderKLWan names."""
    return _rename(state, _prefix_pairs(vae))


def diffusers_to_reference(state: dict[str, torch.Tensor], vae: AutoencoderKLWan) -> dict[str, torch.Tensor]:
    """The inverse renaming: diffusers' AutoencoderKLWan names to the reference checkpoint's."""
    return _rename(state, [(b, a) for a, b in _prefix_pairs(vae)])


class WanVAE:
    """Encode RGB video in [-1, 1] to normalised latents and decode them back, streaming."""

    def __init__(self, vae: AutoencoderKLWan, cfg: VAEConfig) -> None:
        self.vae = vae.eval().requires_grad_(False)
        self.cfg = cfg
        self.mean = torch.tensor(cfg.latent_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(cfg.latent_std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    @property
    def device(self) -> torch.device:
        """Where the VAE's weights live."""
        return self.vae.post_quant_conv.weight.device

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video [1, 3, T, H, W] in [-1, 1] -> normalised latent mean [1, z, 1 + (T-1)//4, H/8, W/8]."""
        enc = self.vae._encode(video.to(self.device, self.vae.dtype))  # causal chunks of 1, 4, 4, ... frames, then quant_conv
        mu = enc[:, : self.cfg.z_dim].float()
        return (mu - self.mean.to(mu.device)) * self.inv_std.to(mu.device)

    def decode_oneshot(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents [1, z, T, h, w] -> frames [1, 3, 1 + 4(T-1), 8h, 8w] (not clamped)."""
        return StreamingDecoder(self).decode(z)

    def streaming_decoder(self) -> "StreamingDecoder":
        """A decoder whose causal caches carry over from one call to the next."""
        return StreamingDecoder(self)


class StreamingDecoder:
    """Decodes latent chunks one after another as if they were one video (reference: `stream_decode`)."""

    def __init__(self, wan: WanVAE) -> None:
        self.wan = wan
        self.reset()

    def reset(self) -> None:
        """Forget the causal caches; the next latent decodes as a first frame."""
        self._cache: list = [None] * sum(1 for _ in self._causal_convs())
        self._first = True

    def _causal_convs(self):
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        return (m for m in self.wan.vae.decoder.modules() if isinstance(m, WanCausalConv3d))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents [1, z, T, h, w] -> frames [1, 3, F, 8h, 8w], F = 4T (1 + 4(T-1) on the first call)."""
        vae, device = self.wan.vae, self.wan.device
        x = z.to(device).float() / self.wan.inv_std.to(device) + self.wan.mean.to(device)
        x = vae.post_quant_conv(x.to(vae.dtype))
        frames = []
        for i in range(x.shape[2]):
            frames.append(vae.decoder(x[:, :, i:i + 1], feat_cache=self._cache, feat_idx=[0], first_chunk=self._first))
            self._first = False
        return torch.cat(frames, dim=2).float()
