"""The full-size DiT (Wan2.2-S2V-14B + LiveAvatar) built on the meta device: every key and shape of the checkpoint.

No weights exist here, so the layout is checked against an independent description of the reference module:
`reference_layout(constructor)` below writes down, from the reference's module definitions as
../shared/docs/liveavatar-model.md documents them, which tensors `CausalWanModel_S2V(**constructor)` holds
and their shapes. It is first proven on the golden fixture (the reference's own tiny state dict: same keys,
same shapes), then applied to the real constructor (the doc's table: dim 5120, 40 layers, 40 heads, ffn 13824,
text 4096, 12 audio-injection layers, FramePack) and compared key by key with our model built on "meta".
The LoRA's targets (`q,k,v,o,ffn.0,ffn.2`, PEFT suffix matching, rank 128) are checked the same way, and a
LoRA of the real shapes merges into the meta model without a complaint.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from liveavatar.avatar.liveavatar.config import DiTConfig
from liveavatar.avatar.liveavatar.dit import FP32_MODULES, CausalS2VDiT
from liveavatar.avatar.liveavatar.loader import dit_config_from_file
from liveavatar.avatar.liveavatar.lora import merge_lora
from liveavatar.avatar.liveavatar.precision import Fp8Linear, apply_precision

LORA_TARGETS = "q,k,v,o,ffn.0,ffn.2"  # liveavatar/configs/s2v_causal_sft.yaml
LORA_RANK = 128
REAL = {  # liveavatar-model.md, "DiT dimensions" and "Audio" (the rest of the constructor is the fixture's)
    "dim": 5120, "ffn_dim": 13824, "num_layers": 40, "num_heads": 40, "freq_dim": 256, "text_dim": 4096, "text_len": 512,
    "in_dim": 16, "out_dim": 16, "patch_size": [1, 2, 2], "eps": 1e-6, "audio_dim": 1024, "num_audio_token": 4,
    "audio_inject_layers": [0, 4, 8, 12, 16, 20, 24, 27, 30, 33, 36, 39],
}


def reference_layout(c: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of `CausalWanModel_S2V(**c)` and its shape, written from the reference's module definitions."""
    dim, patch = c["dim"], tuple(c["patch_size"])
    out: dict[str, tuple[int, ...]] = {}

    def linear(name: str, fan_in: int, fan_out: int) -> None:
        out[f"{name}.weight"], out[f"{name}.bias"] = (fan_out, fan_in), (fan_out,)

    def conv(name: str, chan_in: int, chan_out: int, kernel: tuple[int, ...]) -> None:
        out[f"{name}.weight"], out[f"{name}.bias"] = (chan_out, chan_in, *kernel), (chan_out,)

    def attention(name: str) -> None:  # WanSelfAttention / WanCrossAttention / AudioCrossAttention with qk_norm
        for p in "qkvo":
            linear(f"{name}.{p}", dim, dim)
        out[f"{name}.norm_q.weight"] = out[f"{name}.norm_k.weight"] = (dim,)

    for i in range(c["num_layers"]):
        block = f"blocks.{i}"
        attention(f"{block}.self_attn")
        attention(f"{block}.cross_attn")
        out[f"{block}.norm3.weight"] = out[f"{block}.norm3.bias"] = (dim,)  # cross_attn_norm: affine LayerNorm
        linear(f"{block}.ffn.0", dim, c["ffn_dim"])
        linear(f"{block}.ffn.2", c["ffn_dim"], dim)
        out[f"{block}.modulation"] = (1, 6, dim)
    conv("patch_embedding", c["in_dim"], dim, patch)
    conv("cond_encoder", c["cond_dim"], dim, patch)
    linear("text_embedding.0", c["text_dim"], dim)
    linear("text_embedding.2", dim, dim)
    linear("time_embedding.0", c["freq_dim"], dim)
    linear("time_embedding.2", dim, dim)
    linear("time_projection.1", dim, 6 * dim)
    linear("head.head", dim, math.prod(patch) * c["out_dim"])
    out["head.modulation"] = (1, 2, dim)
    encoder = "casual_audio_encoder.encoder"  # MotionEncoder_tc(in_dim=audio_dim, hidden_dim=dim, num_heads=num_audio_token)
    conv(f"{encoder}.conv1_local.conv", c["audio_dim"], dim // 4 * c["num_audio_token"], (3,))
    conv(f"{encoder}.conv1_global.conv", c["audio_dim"], dim // 4, (3,))
    conv(f"{encoder}.conv2.conv", dim // 4, dim // 2, (3,))
    conv(f"{encoder}.conv3.conv", dim // 2, dim, (3,))
    linear(f"{encoder}.final_linear", dim, dim)
    out[f"{encoder}.padding_tokens"] = (1, 1, 1, dim)
    out["casual_audio_encoder.weights"] = (1, 25, 1, 1)  # 25 wav2vec2 hidden states, fixed in the reference
    for k in range(len(c["audio_inject_layers"])):
        attention(f"audio_injector.injector.{k}")
        linear(f"audio_injector.injector_adain_layers.{k}.linear", dim, 2 * dim)  # AdaLayerNorm(output_dim=2·dim)
    out["trainable_cond_mask.weight"] = (3, dim)
    conv("frame_packer.proj", c["in_dim"], dim, (1, 2, 2))
    conv("frame_packer.proj_2x", c["in_dim"], dim, (2, 4, 4))
    conv("frame_packer.proj_4x", c["in_dim"], dim, (4, 8, 8))
    return out


def lora_modules(c: dict) -> set[str]:
    """The Linear layers PEFT wraps for LORA_TARGETS: a module whose name is a target or ends in '.' + target."""
    names = {f"blocks.{i}.{part}.{p}" for i in range(c["num_layers"]) for part in ("self_attn", "cross_attn") for p in "qkvo"}
    names |= {f"blocks.{i}.ffn.{j}" for i in range(c["num_layers"]) for j in (0, 2)}
    names |= {f"audio_injector.injector.{k}.{p}" for k in range(len(c["audio_inject_layers"])) for p in "qkvo"}
    return names


@pytest.fixture(scope="module")
def real_constructor(dit_fixture) -> dict:
    return {**dit_fixture["config"]["constructor"], **REAL}


@pytest.fixture(scope="module")
def meta_model(real_constructor) -> CausalS2VDiT:
    with torch.device("meta"):
        return CausalS2VDiT(DiTConfig.from_reference(real_constructor))


def test_the_layout_description_is_the_reference_s_own_at_tiny_size(dit_fixture):
    expected = reference_layout(dit_fixture["config"]["constructor"])
    actual = {k: tuple(v.shape) for k, v in dit_fixture["weights"].items()}
    assert sorted(expected) == sorted(actual) and expected == actual
    assert sum(math.prod(s) for s in expected.values()) == 5_244_441  # the fixture README's count


def test_full_size_model_has_every_checkpoint_key_and_shape(meta_model, real_constructor):
    assert DiTConfig.from_reference(real_constructor) == DiTConfig(), "DiTConfig's defaults are the real model"
    expected = reference_layout(real_constructor)
    state = meta_model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    wrong = {k: (tuple(v.shape), expected[k]) for k, v in state.items() if tuple(v.shape) != expected[k]}
    assert not wrong, wrong
    assert len(state) == 1260
    count = sum(p.numel() for p in meta_model.parameters())
    assert count == sum(math.prod(s) for s in expected.values()) == 16_295_755_609  # "14B" class: 16.3 B with S2V's extras
    assert all(t.is_meta for t in state.values()), "nothing was allocated"


def test_a_real_config_json_rebuilds_the_full_model(tmp_path, dit_fixture):
    """diffusers' config.json drops patch_size, qk_norm, cross_attn_norm, text_dim and window_size; defaults fill them."""
    registered = {**dit_fixture["config"]["diffusers_registered_config"], **{k: v for k, v in REAL.items() if k not in (
        "patch_size", "text_dim")}}
    assert "text_dim" not in registered and "patch_size" not in registered
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"_class_name": "CausalWanModel_S2V", **registered}))
    assert dit_config_from_file(path) == DiTConfig()


def test_lora_targets_are_the_linears_peft_wraps_and_a_full_size_lora_merges(meta_model, real_constructor):
    targets = LORA_TARGETS.split(",")
    matched = {name for name, _ in meta_model.named_modules() if any(name == t or name.endswith("." + t) for t in targets)}
    assert matched == lora_modules(real_constructor)
    assert len(matched) == 40 * 10 + 12 * 4
    modules = dict(meta_model.named_modules())
    assert all(isinstance(modules[name], nn.Linear) for name in matched)
    layout = reference_layout(real_constructor)
    lora = {}
    for name in matched:
        fan_out, fan_in = layout[f"{name}.weight"]
        lora[f"base_model.model.{name}.lora_A.weight"] = torch.empty(LORA_RANK, fan_in, device="meta")
        lora[f"base_model.model.{name}.lora_B.weight"] = torch.empty(fan_out, LORA_RANK, device="meta")
    report = merge_lora(meta_model, lora, alpha=64.0, expected_rank=LORA_RANK)
    assert set(report.merged) == matched and report.rank == LORA_RANK and report.scale == 0.5


def test_precision_at_full_size_keeps_the_reference_fp32_islands_and_fp8_covers_its_linears(real_constructor):
    """The reference's --fp8 swaps every Linear but the text/time embeddings, time projection, head and final_linear."""
    with torch.device("meta"):
        model = apply_precision(CausalS2VDiT(DiTConfig.from_reference(real_constructor)), "fp8")
    fp8 = {name for name, m in model.named_modules() if isinstance(m, Fp8Linear)}
    kept = ("text_embedding.", "time_embedding.", "time_projection.", "head.head", "casual_audio_encoder.encoder.final_linear")
    linears = {k[: -len(".weight")] for k, shape in reference_layout(real_constructor).items()
               if k.endswith(".weight") and len(shape) == 2 and k != "trainable_cond_mask.weight"}
    assert fp8 == {name for name in linears if not name.startswith(kept)}
    assert lora_modules(real_constructor) <= fp8
    for name, p in model.named_parameters():
        island = name.split(".")[0] in FP32_MODULES
        assert p.dtype == (torch.float32 if island else torch.bfloat16), name
    weight_bytes = sum(b.numel() * b.element_size() for b in model.buffers()) + sum(
        p.numel() * p.element_size() for p in model.parameters())
    assert 17e9 < weight_bytes < 18e9, f"fp8 weights take {weight_bytes / 1e9:.1f} GB (bf16 would be ~32.6 GB)"
