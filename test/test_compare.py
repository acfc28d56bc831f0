"""The comparison's numbers: Wilson intervals, paired seeds, per-episode metrics."""
import numpy as np
import pytest

from bac_ros.compare import common_seeds, episode_metrics, summarise, wilson_interval
from bac_ros.data.episodes import Episode
from bac_ros.robot.kinematics import Kinematics
from bac_ros.robot.model import Q_HOME


def test_wilson_interval():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)  # textbook values
    assert wilson_interval(0, 5)[0] == 0.0 and 0.4 < wilson_interval(0, 5)[1] < 0.5  # 0/5 is not "0 % surely"
    assert wilson_interval(5, 5)[1] == 1.0 and wilson_interval(5, 5)[0] > 0.5
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_common_seeds_pair_the_labels():
    rows = [{"label": "teleop", "seed": s} for s in (0, 1, 2)] + [{"label": "bac", "seed": s} for s in (1, 2, 3)]
    assert common_seeds(rows) == {1, 2}
    assert common_seeds(rows + [{"label": "lab", "seed": None}]) is None


def test_episode_metrics_and_summary():
    kin = Kinematics.fr3()
    t = np.arange(0, 3, 0.01)
    q = np.tile(Q_HOME, (len(t), 1))
    q[:, 0] = 0.3 * np.sin(t)  # joint 1 swings: the TCP moves along an arc
    joints = np.c_[q, np.full(len(t), 0.08)]
    ep = Episode(row={"success": True, "seed": 4, "interventions": 1, "duration_s": 3.0}, joints_t=t, joints=joints,
                 commands_t=t, commands=joints, latency_ms=np.array([40.0, 60.0]), success_time=2.5)
    m = episode_metrics(ep, kin)
    radius = np.linalg.norm(kin.fk(Q_HOME)[0][:2])
    assert m["path_m"] == pytest.approx(radius * np.abs(np.diff(q[:, 0])).sum(), rel=1e-3)
    assert m["time_s"] == 2.5 and m["interventions"] == 1 and m["smoothness"]["motion_s"] > 1
    failed = episode_metrics(Episode(row={"success": False, "seed": 5}, joints_t=t, joints=joints, commands_t=t,
                                     commands=joints, latency_ms=np.array([80.0]), success_time=None), kin)
    (row,) = summarise({"teleop": [m, failed]})
    assert row["episodes"] == 2 and row["successes"] == 1 and row["success_rate"] == 0.5
    assert row["time_s"] == 2.5 and row["interventions_per_episode"] == 0.5 and row["seeds"] == [4, 5]
    assert row["latency_ms_p50"] == 60.0 and row["success_ci"] == list(wilson_interval(1, 2))


def test_tcp_speed_resamples_repeated_stamps():
    from bac_ros.compare import tcp_speed

    t = np.repeat(np.arange(0, 2, 0.02), 3)  # every stamp three times, as a simulator's slow clock gives them
    p = np.c_[0.1 * t, np.zeros_like(t), np.zeros_like(t)]  # 0.1 m/s along x
    ts, v = tcp_speed(t, p)
    assert len(ts) > 50 and np.allclose(v, 0.1, atol=1e-6)
    assert tcp_speed(t[:2], p[:2])[0].size == 0
