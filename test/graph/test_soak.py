"""bac soak's report on samples made up here: windows per 10 minutes, and verdicts that catch a leak and a rate
that falls (the graph itself runs in `bac soak`; a 95-minute run is in docs/results/reliability)."""
from pathlib import Path

import pytest

from bac_ros.graph.soak import Sample, Soak, verdicts


def _soak(tmp_path: Path, leak_mb_per_min: float, hz_at_end: float) -> dict:
    s = Soak.__new__(Soak)
    s.out, s.window_min, s.episode_windows, s.requested = tmp_path, 10.0, [], 60
    s.samples = []
    for minute in range(0, 61):
        frac = minute / 60
        s.samples.append(Sample(
            wall_s=60.0 * minute, graph_s=12.0 * minute,
            rss_mb={"recorder_node": 100 + leak_mb_per_min * minute, "controller_node": 95.0},
            cpu_s={"recorder_node": 12.0 * minute, "controller_node": 15.0 * minute},
            inference_hz=35.0 + (hz_at_end - 35.0) * frac,
            counters={"commands": int(6000 * minute * (1 - 0.5 * frac * (hz_at_end < 35))), "chunks_holds": minute},
            disk_mb=3.5 * minute, episodes=minute, inference_cpu_ms=20.0,
            machine_s={"busy": 100.0 * minute, "idle": 15.0 * minute, "steal": 5.0 * minute}))
    report = {"window_min": 10.0, "episodes_requested": 60, "episodes_indexed": 60, "episodes_unreadable": [],
              "windows": s.windows(), "samples": [vars(x) for x in s.samples]}
    return report


def test_a_flat_soak_holds_and_its_windows_add_up(tmp_path):
    report = _soak(tmp_path, leak_mb_per_min=0.0, hz_at_end=35.0)
    w = report["windows"]
    assert [x["minute"] for x in w] == [0, 10, 20, 30, 40, 50]
    assert w[0]["cpu_percent"] == {"recorder_node": 20.0, "controller_node": 25.0}
    assert w[0]["commands_per_s"] == 100.0 and w[0]["world_speed"] == 0.2 and w[0]["episodes"] == 10
    assert w[0]["disk_mb"] == 35.0 and w[0]["holds"] == 10
    assert w[0]["inference_hz_cpu"] == 50.0 and w[0]["busy_percent"] == 83.3 and w[0]["steal_percent"] == 4.2
    assert all(held for _, held in verdicts(report)), verdicts(report)


@pytest.mark.parametrize("leak, hz, failing", [(0.5, 35.0, "recorder_node"), (0.0, 20.0, "inference")])
def test_a_leak_or_a_falling_rate_is_not_held(tmp_path, leak, hz, failing):
    checks = verdicts(_soak(tmp_path, leak, hz))
    failed = [what for what, held in checks if not held]
    assert failed and all(failing in what or "control rate" in what for what in failed), checks
    assert any(failing in what for what in failed)
