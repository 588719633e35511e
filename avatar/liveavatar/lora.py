"""Merging a LoRA file into a model's dense weights at load time (W += alpha/rank · B @ A).

LiveAvatar ships its DMD/causal training as a PEFT LoRA (rank 128, alpha 64, targets q, k, v, o, ffn.0,
ffn.2) that the reference merges with `merge_and_unload()`; inference then runs on merged dense weights.
This does the same without PEFT. Accepted key spellings, with or without the `base_model.model.` prefix
PEFT adds: `<module>.lora_A[.<adapter>].weight` / `lora_B`, or `lora_down` / `lora_up`; an optional
`<module>.alpha` tensor overrides the alpha argument. Non-LoRA keys that name a parameter of the model
(`<module>.base_layer.weight` is read as `<module>.weight`) are loaded as they are, as the reference's
`load_state_dict(strict=False)` on the PEFT-wrapped model does. Anything else is an error that lists it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

_PREFIX = "base_model.model."
_LORA = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_down|lora_up)(?:\.[^.]+)?\.weight$")


@dataclass
class LoraReport:
    """What a merge did: merged modules, other tensors loaded, and the scale applied."""

    merged: list[str]
    loaded: list[str]
    rank: int
    scale: float


class LoraError(ValueError):
    """The LoRA file does not fit the model; the message lists every offending key."""


def _strip(key: str) -> str:
    key = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
    return key.replace(".base_layer.", ".")


@torch.no_grad()
def merge_lora(model: nn.Module, state: dict[str, torch.Tensor], alpha: float = 64.0, expected_rank: int | None = 128) -> LoraReport:
    """Merge the LoRA pairs in `state` into `model`'s Linear weights (float32 math, cast back to the weight dtype)."""
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    alphas: dict[str, float] = {}
    plain: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = _strip(key)
        match = _LORA.match(k)
        if match:
            side = "A" if match["kind"] in ("lora_A", "lora_down") else "B"
            pairs.setdefault(match["module"], {})[side] = value
        elif k.endswith(".alpha") and value.numel() == 1:
            alphas[k[: -len(".alpha")]] = float(value)
        else:
            plain[k] = value

    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    problems = []
    for name, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            problems.append(f"{name}: has only lora_{'A' if 'A' in pair else 'B'}")
            continue
        target = modules.get(name)
        if not isinstance(target, nn.Linear):
            problems.append(f"{name}: no Linear of that name in the model")
            continue
        a, b = pair["A"], pair["B"]
        if a.shape[1] != target.in_features or b.shape[0] != target.out_features or a.shape[0] != b.shape[1]:
            problems.append(f"{name}: lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not fit Linear({target.in_features}, {target.out_features})")
        elif expected_rank is not None and a.shape[0] != expected_rank:
            problems.append(f"{name}: rank {a.shape[0]}, expected {expected_rank}")
    for name, value in plain.items():
        if name not in params:
            problems.append(f"{name}: not a LoRA tensor and not a parameter of the model")
        elif params[name].shape != value.shape:
            problems.append(f"{name}: shape {tuple(value.shape)}, the model has {tuple(params[name].shape)}")
    if problems:
        raise LoraError("LoRA file does not fit the model:\n  " + "\n  ".join(problems))

    ranks = {pair["A"].shape[0] for pair in pairs.values()}
    rank = ranks.pop() if len(ranks) == 1 else -1
    for name, pair in pairs.items():
        target = modules[name]
        r = pair["A"].shape[0]
        scale = alphas.get(name, alpha) / r
        delta = pair["B"].float() @ pair["A"].float()
        target.weight.copy_((target.weight.float() + scale * delta.to(target.weight.device)).to(target.weight.dtype))
    for name, value in plain.items():
        params[name].copy_(value.to(params[name].dtype))
    return LoraReport(merged=sorted(pairs), loaded=sorted(plain), rank=rank, scale=alpha / rank if rank > 0 else float("nan"))
