"""Weight precision options for the DiT: float32, bfloat16, and fp8 (e4m3) weight storage.

bf16 converts every module but the ones the reference runs in float32 under autocast (`FP32_MODULES`: time
MLP, head, audio encoder). fp8 additionally stores the weights of every Linear inside the transformer blocks
and the audio injectors as float8_e4m3fn with one float32 scale per tensor (amax / 448), and computes in
bf16 after dequantising. The reference's `--fp8` also quantises activations for `torch._scaled_mm` on
Hopper GPUs; storing weights only works on any device and halves the bf16 weight memory, at a small extra
matmul cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from liveavatar.avatar.liveavatar.dit import FP32_MODULES, CausalS2VDiT

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


class Fp8Linear(nn.Module):
    """A Linear whose weight is stored in fp8 e4m3 with a per-tensor scale; computes in `compute_dtype`."""

    def __init__(self, linear: nn.Linear, compute_dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().max() / FP8_MAX).clamp(min=1e-12)
        self.register_buffer("weight_fp8", (w / scale).to(FP8))
        self.register_buffer("scale", scale.reshape(()))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(compute_dtype), requires_grad=False)
        self.compute_dtype = compute_dtype
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight (computed on the fly)."""
        return (self.weight_fp8.to(torch.float32) * self.scale).to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.compute_dtype), self.weight, self.bias)


def _to_bf16_except_fp32_islands(model: CausalS2VDiT) -> None:
    for name, child in model.named_children():
        if name not in FP32_MODULES:
            child.to(torch.bfloat16)


def apply_precision(model: CausalS2VDiT, dtype: str) -> CausalS2VDiT:
    """Convert the model in place to "float32", "bfloat16" or "fp8"; returns it."""
    if dtype == "float32":
        return model.float()
    if dtype not in ("bfloat16", "fp8"):
        raise ValueError(f"unknown dtype {dtype!r}; expected float32, bfloat16 or fp8")
    _to_bf16_except_fp32_islands(model)
    if dtype == "fp8":
        for root in (model.blocks, model.audio_injector):
            for parent in list(root.modules()):
                for name, child in list(parent.named_children()):
                    if isinstance(child, nn.Linear):
                        setattr(parent, name, Fp8Linear(child))
    return model
