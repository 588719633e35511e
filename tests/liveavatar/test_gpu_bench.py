"""`liveavatar bench gpu` keeps working without a GPU: the CPU run goes through every part, the GPU run says why not.

`--device cpu --scale small` runs the same code as the one-command GPU check (the tiny model on the device vs CPU,
the full DiT's step at reduced shape in bf16 and fp8, the VAE, wav2vec2, umT5 and the schedule predictions), so a
change that would break the real run breaks this test. Its numbers are not asserted (not a timed test).
"""

from __future__ import annotations

import json

import pytest
import torch

from liveavatar.agent.cli import main as cli_main
from liveavatar.testing import gpu_bench


def test_the_cpu_run_prints_every_figure_without_an_error(capsys):
    assert cli_main(["bench", "gpu", "--device", "cpu", "--scale", "small"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = [line["name"] for line in lines]
    assert set(names) == set(gpu_bench.FIGURES), f"missing {set(gpu_bench.FIGURES) - set(names)}"
    assert not [line for line in lines if line["unit"] in ("error", "skipped")], "every part ran"
    steps = {line["precision"]: line for line in lines if line["name"] == "gpu_dit_step"}
    assert set(steps) == set(gpu_bench.PRECISIONS) and all(s["value"] > 0 and s["finite"] for s in steps.values())
    assert steps["fp8"]["weight_gib"] < steps["bfloat16"]["weight_gib"], "fp8 stores the weights in half the bytes"
    assert steps["fp8_scaled"]["weight_gib"] == steps["fp8"]["weight_gib"]
    profile = next(line for line in lines if line["name"] == "gpu_dit_step_profile")
    assert profile["value"] > 0 and 0 < len(profile["top"]) <= gpu_bench.PROFILE_TOP
    assert 0 < sum(op["share"] for op in profile["top"]) <= 1.0001 and all(op["calls"] > 0 for op in profile["top"])
    fp32 = next(line for line in lines if line["name"] == "gpu_tiny_fp32_vs_cpu")
    bf16 = next(line for line in lines if line["name"] == "gpu_tiny_bf16_vs_cpu")
    assert fp32["within"] and bf16["within"] and bf16["relative"] > 0, "bf16 differs from fp32, within its tolerance"
    layouts = [(line["precision"], line["gpus"], line["dit_workers"]) for line in lines if line["name"] == "gpu_schedule"]
    assert len(layouts) == len(gpu_bench.PRECISIONS) * len(gpu_bench.LAYOUTS) and ("fp8_scaled", 5, 4) in layouts
    summary = lines[-1]
    assert summary["name"] == "gpu_summary" and summary["failed"] == [] and summary["skipped"] == []


def test_without_cuda_it_stops_at_once_with_one_clear_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as info:
        gpu_bench.main(["--device", "cuda"])
    message = str(info.value.code)
    assert "no CUDA device" in message and "--device cpu --scale small" in message and "\n" not in message
