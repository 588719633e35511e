"""The benchmark commands run and print their figures as JSON lines (their numbers are not asserted: not timed tests)."""

from __future__ import annotations

import json

from liveavatar.testing import liveavatar_bench as bench


def test_bench_prints_json_lines(capsys):
    assert bench.main(["--blocks", "2", "--rss-blocks", "8", "--rss-early", "6", "--onset-trials", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = [line["name"] for line in lines]
    assert names == ["liveavatar_tiny_blocks_per_s", "liveavatar_tiny_realtime_factor", "liveavatar_tiny_time_share",
                     "liveavatar_tiny_rss_mb", "liveavatar_tiny_onset_s", "liveavatar_reference_onset_s",
                     "liveavatar_reference_onset_s"]
    by_name = {line["name"]: line for line in lines}
    assert by_name["liveavatar_tiny_blocks_per_s"]["value"] > 0
    shares = by_name["liveavatar_tiny_time_share"]["parts"]
    assert set(shares) == {"audio_features", "dit", "vae_decode", "to_frames"} and abs(sum(shares.values()) - 1) < 1e-3
    rss = by_name["liveavatar_tiny_rss_mb"]
    assert rss["after_blocks"] == 8 and rss["early_blocks"] == 6 and rss["value"] > 0
    assert list(rss["rss_trace_mb"]) == ["6", "8"] and rss["model_blocks"] >= 8
    onset = by_name["liveavatar_tiny_onset_s"]
    assert onset["trials"] == 1 and onset["value"] > 0
    reference = {line["policy"]: line for line in lines if line["name"] == "liveavatar_reference_onset_s"}
    assert reference["preempt"]["mean_s"] < reference["queued"]["mean_s"]
    assert reference["preempt"]["min_s"] >= reference["preempt"]["floor_s"], "no planning beats 4 forwards + a decode"


def test_the_soak_reports_memory_and_the_output_s_health(capsys):
    """Four blocks only (the real soak is a benchmark command), with the clock started past the reference's RoPE table."""
    assert bench.main(["--soak-blocks", "4", "--soak-every", "2", "--soak-warmup", "2", "--soak-start-block", "15000"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["name"] for line in lines] == ["liveavatar_soak_rss_mb"] * 2 + ["liveavatar_soak"]
    assert [line["blocks"] for line in lines[:2]] == [2, 4]
    soak = lines[-1]
    assert soak["finite_latents"] and soak["frames_vary_with_speech"] and soak["past_reference_table"] and soak["reduced"]
    assert soak["rope_latent_frame"] > 45000 and soak["spread"] >= 0 and soak["flat"] == (abs(soak["value"]) <= 0.02)


def test_a_shorter_soak_from_the_command_line_ends_where_the_full_one_does(capsys):
    """`liveavatar bench liveavatar-soak --blocks 4`: the last 4 blocks of the 20,834-block soak (same RoPE positions)."""
    from liveavatar.agent.cli import main

    assert main(["bench", "liveavatar-soak", "--blocks", "4"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["name"] for line in lines] == ["liveavatar_soak_rss_mb"] * 4 + ["liveavatar_soak"]
    soak = lines[-1]
    assert soak["blocks"] == 4 and soak["start_block"] == bench.SOAK_BLOCKS - 4 and soak["reduced"]
    assert soak["past_reference_table"] and soak["finite_latents"] and soak["frames_vary_with_speech"]
