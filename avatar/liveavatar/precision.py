"""Weight precision options for the DiT: float32, bfloat16, fp8 (e4m3) weight storage, and fp8 compute.

bf16 converts every module but the ones the reference runs in float32 under autocast (`FP32_MODULES`: time
MLP, head, audio encoder). fp8 additionally stores the weights of every Linear inside the transformer blocks
and the audio injectors as float8_e4m3fn with one float32 scale per tensor (amax / 448), and computes in
bf16 after dequantising: it works on any device and halves the bf16 weight memory, at a small extra matmul
cost. fp8_scaled is the reference's `--fp8`: the same weights, and each call's activations quantised to e4m3
with one scale per call (amax / 448), multiplied by `torch._scaled_mm` (fp8 tensor cores on Hopper and Ada
GPUs; the CPU has a slow kernel, for tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from liveavatar.avatar.liveavatar.dit import FP32_MODULES, CausalS2VDiT

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


class Fp8Linear(nn.Module):
    """A Linear whose weight is stored in fp8 e4m3 with a per-tensor scale; computes in `compute_dtype`.

    `scaled_mm=False`: the weight is dequantised and multiplied in `compute_dtype`. `scaled_mm=True`: the input is
    quantised to e4m3 too (one scale per call) and both meet in `torch._scaled_mm`; widths that are not multiples
    of 16 (which `_scaled_mm` refuses) fall back to the dequantised path.
    """

    def __init__(self, linear: nn.Linear, compute_dtype: torch.dtype = torch.bfloat16, scaled_mm: bool = False) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().max() / FP8_MAX).clamp(min=1e-12)
        self.register_buffer("weight_fp8", (w / scale).to(FP8))
        self.register_buffer("scale", scale.reshape(()))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(compute_dtype), requires_grad=False)
        self.compute_dtype = compute_dtype
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.scaled_mm = scaled_mm and self.in_features % 16 == 0 and self.out_features % 16 == 0

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight (computed on the fly)."""
        return (self.weight_fp8.to(torch.float32) * self.scale).to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.scaled_mm:
            return F.linear(x.to(self.compute_dtype), self.weight, self.bias)
        rows = x.reshape(-1, self.in_features).to(self.compute_dtype)
        x_scale = (rows.abs().amax().float() / FP8_MAX).clamp(min=1e-12)
        x_fp8 = (rows.float() / x_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
        out = torch._scaled_mm(x_fp8, self.weight_fp8.t(), scale_a=x_scale, scale_b=self.scale.float(), bias=self.bias,
                               out_dtype=self.compute_dtype)
        return out.reshape(*x.shape[:-1], self.out_features)


def _to_bf16_except_fp32_islands(model: CausalS2VDiT) -> None:
    for name, child in model.named_children():
        if name not in FP32_MODULES:
            child.to(torch.bfloat16)


PRECISIONS = ("float32", "bfloat16", "fp8", "fp8_scaled")


def apply_precision(model: CausalS2VDiT, dtype: str) -> CausalS2VDiT:
    """Convert the model in place to one of `PRECISIONS` ("float32", "bfloat16", "fp8", "fp8_scaled"); returns it."""
    if dtype == "float32":
        return model.float()
    if dtype not in PRECISIONS:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(PRECISIONS)}")
    _to_bf16_except_fp32_islands(model)
    if dtype in ("fp8", "fp8_scaled"):
        for root in (model.blocks, model.audio_injector):
            for parent in list(root.modules()):
                for name, child in list(parent.named_children()):
                    if isinstance(child, nn.Linear):
                        setattr(parent, name, Fp8Linear(child, scaled_mm=dtype == "fp8_scaled"))
    return model
