"""The TPP benchmark command runs end to end and prints its figures as JSON lines (numbers not asserted: not a timed test)."""

from __future__ import annotations

import json

from liveavatar.testing import tpp_bench as bench
from stream_helpers import worker_children


def test_tpp_bench_prints_measured_and_predicted_figures(capsys):
    argv = ["--scenarios", "tiny", "--workers", "1,2", "--decode-worker", "off", "--blocks", "1", "--windows", "2", "--warm", "1",
            "--onset-trials", "1"]
    assert bench.main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = [line["name"] for line in lines]
    assert names[:2] == ["tpp_conditions", "tpp_calibration"]
    assert names.count("tpp_run") == 3 and names.count("tpp_speedup") == 1 and names.count("tpp_reference_layout") == 6
    onsets = [line for line in lines if line["name"] == "tpp_onset"]
    assert [o["dit_workers"] for o in onsets] == [0, 1, 2] and all(o["value"] > 0 and o["trials"] == 1 for o in onsets)
    assert all(o["predicted_mean_s"] > 0 for o in onsets)
    reference_onsets = {(r["claim_fps"], r["policy"]): r for r in lines if r["name"] == "tpp_reference_onset"}
    assert set(reference_onsets) == {(f, p) for f in (45.0, 20.0) for p in ("queued", "preempt")}
    now, before = reference_onsets[(45.0, "preempt")], reference_onsets[(45.0, "queued")]
    assert now["floor_s"] <= now["min_s"] <= now["mean_s"] < before["mean_s"], "speech no longer waits behind idle blocks"
    calibration = lines[1]["costs"]
    assert set(calibration) == {"forward_s", "features_s", "decode_s", "frames_s", "transfer_s", "steps"}
    assert all(v > 0 for v in calibration.values())
    runs = [line for line in lines if line["name"] == "tpp_run"]
    assert [r["dit_workers"] for r in runs] == [0, 1, 2]
    for run in runs:
        assert run["value"] > 0 and run["ttff_s"] > 0 and run["predicted_fps"] > 0 and run["predicted_ttff_s"] > 0
        assert len(run["fps_windows"]) == 2 and abs(run["value"] - max(run["fps_windows"])) < 0.01, "the best window is the headline"
    assert set(runs[2]["seconds_per_block"]) == {"DiT worker 0 (steps 0-1)", "DiT worker 1 (steps 2-3 + decode)"}
    speedup = next(line for line in lines if line["name"] == "tpp_speedup")
    assert speedup["value"] > 0 and speedup["predicted"] > 0 and speedup["goal"] == 1.7
    reference = [line for line in lines if line["name"] == "tpp_reference_layout"]
    assert {(r["claim_fps"], r["decode_s"]) for r in reference} == {(f, d) for f in (20.0, 45.0) for d in (0.143, 0.6, 1.379)}
    assert next(r for r in reference if r["claim_fps"] == 45.0 and r["decode_s"] == 0.143)["predicted_ttff_s"] == 1.21
    assert "tpp_model_error" in names
    assert not worker_children()
