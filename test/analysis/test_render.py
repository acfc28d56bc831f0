"""Tables and figures render for any number of rows and seeds."""
import numpy as np

from bac_ros.analysis.render import COMPARE_COLUMNS, markdown, plot_comparison


def test_markdown_marks_missing_values():
    table = markdown([{"a": 1.23456, "b": None}, {"a": float("nan")}], [("a", lambda r: r["a"], ".2f"),
                                                                          ("b", lambda r: r["b"], "")])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1.23 | - |", "| - | - |"]


def test_comparison_figure_for_one_seed_and_several(tmp_path):
    t = np.linspace(0, 5, 100)
    path = np.c_[0.3 + 0.05 * t, 0.02 * t, 0.4 - 0.05 * t]
    summary = [{"label": "teleop", "episodes": 1, "successes": 1, "success_rate": 1.0, "success_ci": [0.2, 1.0],
                "time_s": 5.0, "within_s": 8.0, "success_within": 1.0, "survival": {"t": [5.0], "success": [1.0]},
                "path_m": 0.4, "path_m_all": 0.4, "reversals_per_s": 3.0, "jerk_rms": 10.0, "jerk_rms_all": 10.0,
                "interventions_per_episode": 0.0, "intervention_share": 0.0, "latency_ms_p50": 30.0,
                "latency_ms_p95": 40.0}]
    for seeds in ([0], [0, 1, 2]):
        paths = {"teleop": {s: (t, path, (0.5, 0.1), True, np.zeros((0, 3))) for s in seeds},
                 "bac": {s: (t, path * 1.01, (0.5, 0.1), False, path[40:41]) for s in seeds}}
        out = plot_comparison(summary + [{**summary[0], "label": "bac"}], paths, tmp_path / f"c{len(seeds)}.png")
        assert out.read_bytes()[:4] == b"\x89PNG"
    assert "| teleop | 1 | 100% [20%, 100%] | 5.0 | 100% (T 8 s) |" in markdown(summary, COMPARE_COLUMNS)


def test_drift_figure_and_world_labels(tmp_path):
    from bac_ros.analysis.render import plot_drift, world_label

    base = {"mode": "sync", "method": "bac", "num_updates": 7, "success_rate": 0.5, "succeeded": [1, 0]}
    rows = [{**base, "world": {}, "drift": "watch", "drift_ratio_per_episode": [1.1, 0.8]},
            {**base, "world": {"cube_rgba": [0.1, 0.35, 0.9, 1.0]}, "drift": "guard",
             "drift_ratio_per_episode": [40.0, 90.0]},
            {**base, "method": "full", "num_updates": 20, "world": {"cube_rgba": [0.1, 0.35, 0.9, 1.0]},
             "drift": "off"}]
    assert [world_label(r) for r in rows] == ["calibration", "cube_rgba=0.1,0.35,0.9,1"] + ["cube_rgba=0.1,0.35,0.9,1"]
    assert plot_drift(rows, tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"


def test_bac_report_plots_the_metrics_logs(tmp_path):
    """bac report: metrics_node's two logs -> one PNG, where --out-dir says; a folder without them is refused."""
    import pytest

    from bac_ros.cli import main

    (tmp_path / "control.csv").write_text("time,control_hz\n0.0,30.0\n1.0,29.5\n2.0,30.1\n")
    (tmp_path / "latency.csv").write_text("obs_to_chunk_ms,obs_to_command_ms\n21.0,40.0\n25.0,nan\n19.5,38.0\n")
    assert main(["report", str(tmp_path), "--out-dir", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit, match="no control.csv"):
        main(["report", str(tmp_path / "out")])


def test_a_slow_world_is_said_next_to_its_figures():
    from bac_ros.analysis.render import slow_clock_note

    rows = [{"method": "bac", "sim_realtime_factor": 0.48}, {"method": "full", "sim_realtime_factor": 0.93},
            {"method": "teleop", "sim_realtime_factor": None}]
    note = slow_clock_note(rows, "method", "sim_realtime_factor")
    assert "bac at 0.48x" in note and "full" not in note and "--latency-ms" in note
    assert slow_clock_note(rows[1:], "method", "sim_realtime_factor") == ""


def test_success_against_latency_figure(tmp_path):
    from bac_ros.analysis.render import plot_success_vs_latency

    rows = [{"method": m, "num_updates": s, "latency_ms": ms, "success_rate": r, "episodes": 20}
            for m, s in (("full", 20), ("bac", 7)) for ms, r in ((0, 0.9), (67, 0.8), (150, 0.5))]
    assert plot_success_vs_latency(rows, tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"
