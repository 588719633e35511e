"""The benchmark command runs and prints its figures as JSON lines (its numbers are not asserted: not a timed test)."""

from __future__ import annotations

import json

from avatar.liveavatar import bench


def test_bench_prints_json_lines(capsys):
    assert bench.main(["--blocks", "2", "--rss-blocks", "8", "--rss-early", "6"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {line["name"]: line for line in lines}
    assert set(by_name) == {"liveavatar_tiny_blocks_per_s", "liveavatar_tiny_realtime_factor", "liveavatar_tiny_time_share", "liveavatar_tiny_rss_mb"}
    assert by_name["liveavatar_tiny_blocks_per_s"]["value"] > 0
    shares = by_name["liveavatar_tiny_time_share"]["parts"]
    assert set(shares) == {"audio_features", "dit", "vae_decode", "to_frames"} and abs(sum(shares.values()) - 1) < 1e-3
    rss = by_name["liveavatar_tiny_rss_mb"]
    assert rss["after_blocks"] == 8 and rss["early_blocks"] == 6 and rss["value"] > 0
    assert list(rss["rss_trace_mb"]) == ["6", "8"] and rss["model_blocks"] >= 8
