"""LoRA merge on a toy module (PEFT key spellings, scale alpha/rank, errors) and the bf16 / fp8 options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from liveavatar.avatar.liveavatar.lora import LoraError, merge_lora
from liveavatar.avatar.liveavatar.precision import Fp8Linear, apply_precision


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.Module()
        self.attn.q = nn.Linear(16, 16)
        self.attn.o = nn.Linear(16, 16)
        self.ffn = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.gain = nn.Parameter(torch.ones(16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.attn.o(self.attn.q(x))) * self.gain


def lora_pair(out_f: int, in_f: int, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rank, in_f, generator=gen) * 0.1, torch.randn(out_f, rank, generator=gen) * 0.1


def test_merge_equals_running_the_unmerged_lora():
    torch.manual_seed(0)
    toy = Toy()
    base = {k: v.clone() for k, v in toy.state_dict().items()}
    rank, alpha = 8, 4.0
    a_q, b_q = lora_pair(16, 16, rank, 1)
    a_f, b_f = lora_pair(16, 32, rank, 2)
    state = {  # PEFT spelling with prefix and adapter name, and the plain spelling
        "base_model.model.attn.q.lora_A.default.weight": a_q, "base_model.model.attn.q.lora_B.default.weight": b_q,
        "ffn.2.lora_A.weight": a_f, "ffn.2.lora_B.weight": b_f,
        "base_model.model.gain": torch.full((16,), 2.0),
    }
    x = torch.randn(5, 16)
    with torch.no_grad():  # the unmerged forward: y = W x + b + (alpha / r) B A x on each adapted layer
        q = x @ base["attn.q.weight"].T + base["attn.q.bias"] + (alpha / rank) * (x @ a_q.T @ b_q.T)
        o = q @ base["attn.o.weight"].T + base["attn.o.bias"]
        h = torch.nn.functional.gelu(o @ base["ffn.0.weight"].T + base["ffn.0.bias"])
        expected = (h @ base["ffn.2.weight"].T + base["ffn.2.bias"] + (alpha / rank) * (h @ a_f.T @ b_f.T)) * 2.0
    report = merge_lora(toy, state, alpha=alpha, expected_rank=rank)
    assert report.merged == ["attn.q", "ffn.2"] and report.loaded == ["gain"] and report.rank == rank and report.scale == 0.5
    assert torch.allclose(toy.attn.q.weight, base["attn.q.weight"] + 0.5 * b_q @ a_q, atol=1e-6)
    assert torch.equal(toy.attn.o.weight, base["attn.o.weight"])
    with torch.no_grad():
        assert torch.allclose(toy(x), expected, atol=1e-5)


def test_liveavatar_defaults_scale_by_half():
    toy = Toy()
    w = toy.attn.o.weight.detach().clone()
    a, b = lora_pair(16, 16, 128, 3)
    merge_lora(toy, {"attn.o.lora_down.weight": a, "attn.o.lora_up.weight": b})  # rank 128, alpha 64
    assert torch.allclose(toy.attn.o.weight, w + 0.5 * b @ a, atol=1e-5)


def test_merge_errors_list_every_bad_key():
    toy = Toy()
    a, b = lora_pair(16, 16, 4, 4)
    state = {
        "attn.k.lora_A.weight": a, "attn.k.lora_B.weight": b,  # no such module
        "attn.q.lora_A.weight": a,  # B missing
        "ffn.0.lora_A.weight": a, "ffn.0.lora_B.weight": b,  # wrong shape for Linear(16, 32)
        "attn.o.lora_A.weight": a, "attn.o.lora_B.weight": b,  # fine but rank 4 != 128
        "blocks.9.whatever": torch.zeros(3),  # neither LoRA nor a parameter
    }
    with pytest.raises(LoraError) as err:
        merge_lora(toy, state)
    message = str(err.value)
    for needle in ("attn.k: no Linear", "attn.q: has only lora_A", "ffn.0: lora_A (4, 16) / lora_B (16, 4) do not fit",
                   "attn.o: rank 4, expected 128", "blocks.9.whatever: not a LoRA tensor"):
        assert needle in message, needle


def test_bf16_and_fp8_stream_close_to_fp32(dit_dir):
    from liveavatar.avatar.liveavatar.stream import BlockStreamer, replay_relative_dist
    from liveavatar.testing.parity import FixtureConfig, fixture_model, load_tensors

    fx = FixtureConfig.read(dit_dir)
    io = load_tensors(dit_dir / "io.safetensors")
    results = {}
    for dtype in ("bfloat16", "fp8", "fp8_scaled"):
        model = apply_precision(fixture_model(dit_dir, fx), dtype)
        streamer = BlockStreamer(model, fx.stream, model.encode_text(io["inputs.text_context"]), io["inputs.ref_latent"],
                                 io["inputs.motion_latents"], replay_relative_dist(io["rolling_rope.relative_dist"].flatten().tolist()),
                                 lambda b: io[f"block{b:02d}.noise"])
        out = streamer.next_block(io["inputs.audio_features"][..., :fx.video_frames_per_block])
        results[dtype] = (out - io["block00.final"]).abs().max().item()
        if dtype.startswith("fp8"):
            fp8 = [m for m in model.blocks.modules() if isinstance(m, Fp8Linear)]
            # per block: q, k, v, o of the self- and the cross-attention, and the FFN's two Linears
            assert len(fp8) == fx.dit.num_layers * 10 and all(m.weight_fp8.dtype == torch.float8_e4m3fn for m in fp8)
            assert all(m.scaled_mm == (dtype == "fp8_scaled") for m in fp8), "fp8_scaled multiplies in e4m3"
            assert isinstance(model.audio_injector.injector[0].q, Fp8Linear)
        assert model.time_projection[1].weight.dtype == torch.float32 and model.head.head.weight.dtype == torch.float32
        assert model.blocks[0].norm3.weight.dtype == torch.bfloat16
    assert 1e-4 < results["bfloat16"] < 2e-2 and 1e-4 < results["fp8"] < 4e-2 and 1e-4 < results["fp8_scaled"] < 6e-2, results


def test_fp8_scaled_linear_multiplies_in_e4m3_and_falls_back_where_it_cannot():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32).to(torch.bfloat16)
    x = torch.randn(2, 5, 64, dtype=torch.bfloat16)
    exact = linear(x).float()
    stored, scaled = Fp8Linear(linear), Fp8Linear(linear, scaled_mm=True)
    assert scaled.scaled_mm and not stored.scaled_mm
    y_stored, y_scaled = stored(x).float(), scaled(x).float()
    assert y_scaled.shape == (2, 5, 32) and y_scaled.dtype == torch.float32
    rel = lambda y: ((y - exact).norm() / exact.norm()).item()  # noqa: E731
    # e4m3 keeps 3 mantissa bits: the weight alone costs ~2 %, the activations as much again
    assert rel(y_stored) < 0.05 and rel(y_stored) < rel(y_scaled) < 0.08, (rel(y_stored), rel(y_scaled))
    assert not torch.equal(y_scaled, y_stored), "the activations were quantised too"
    odd = Fp8Linear(torch.nn.Linear(24, 32).to(torch.bfloat16), scaled_mm=True)
    assert not odd.scaled_mm and odd(torch.randn(3, 24, dtype=torch.bfloat16)).shape == (3, 32), "_scaled_mm needs widths of 16k"
