"""The comparison's numbers: Wilson intervals, paired seeds, per-episode metrics."""
import numpy as np
import pytest

from bac_ros.analysis.recordings import common_seeds, episode_metrics, pairwise, summarise, wilson_interval
from bac_ros.data.episodes import Episode, Switch
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
                 commands_t=t, commands=joints, latency_ms=np.array([40.0, 60.0]), success_time=2.5,
                 switches=[Switch(0.0, "policy"), Switch(1.5, "teleop", True)])
    m = episode_metrics(ep, kin)
    radius = np.linalg.norm(kin.fk(Q_HOME)[0][:2])
    assert m["path_m"] == pytest.approx(radius * np.abs(np.diff(q[:, 0])).sum(), rel=1e-2)
    assert m["time_s"] == 2.5 and m["interventions"] == 1 and m["smoothness"]["motion_s"] > 1
    assert m["intervention_share"] == pytest.approx(0.5, abs=0.01)  # a person drove from 1.5 s of 3 s
    failed = episode_metrics(Episode(row={"success": False, "seed": 5, "duration_s": 12.0}, joints_t=t, joints=joints,
                                     commands_t=t, commands=joints, latency_ms=np.array([80.0]), success_time=None), kin)
    assert failed["time_s"] == 12.0  # censored where it ended
    (row,) = summarise({"teleop": [m, failed]}, within_s=3.0)
    assert row["episodes"] == 2 and row["successes"] == 1 and row["success_rate"] == 0.5
    assert row["time_s"] == 2.5 and row["success_within"] == 0.5 and row["interventions_per_episode"] == 0.5
    assert row["seeds"] == [4, 5] and row["latency_ms_p50"] == 60.0 and row["success_ci"] == list(wilson_interval(1, 2))
    # path and jerk of the successes only; the failure's are in the (all) columns
    assert row["path_m"] == pytest.approx(m["path_m"]) and row["path_m_all"] == pytest.approx(m["path_m"])
    fast_rare = summarise({"x": [dict(m, time_s=1.0), *[dict(failed, seed=s) for s in range(6, 9)]]})[0]
    assert np.isnan(fast_rare["time_s"])  # 1 of 4 succeeded: no median time, however fast that one was


def test_pairwise_is_paired_on_common_seeds_and_fisher_without_seeds():
    m = lambda seed, ok: {"seed": seed, "success": ok}  # noqa: E731
    metrics = {"full": [m(s, True) for s in range(10)], "bac": [m(s, s != 3) for s in range(10)]}
    (pair,) = pairwise(metrics)
    assert pair["a"] == "full" and pair["b"] == "bac" and pair["paired"] and pair["table"] == (9, 1, 0, 0)
    assert pair["test"] == "McNemar exact" and pair["p_value"] == 1.0 and pair["verdict"] == "too few episodes to tell"
    lab = {"teleop": [m(None, True)] * 20, "policy": [m(None, k < 12) for k in range(20)]}
    (pair,) = pairwise(lab, reference="teleop")
    assert not pair["paired"] and pair["test"] == "Fisher exact" and pair["n_a"] == pair["n_b"] == 20
    with pytest.raises(ValueError, match="reference"):
        pairwise(lab, reference="nobody")


def test_resampled_traces_cannot_make_speeds_from_bunched_stamps():
    from bac_ros.analysis.recordings import tcp_speed
    from bac_ros.analysis.motion import resample

    rng = np.random.default_rng(0)
    t = np.repeat(np.arange(0, 2, 0.02), 3) + rng.uniform(0, 1e-4, 300)  # stamps bunched in threes
    p = np.c_[0.1 * np.arange(300) * 0.02 / 3, np.zeros(300), np.zeros(300)]  # 0.1 m/s along x, sample by sample
    naive = np.linalg.norm(np.diff(p, axis=0), axis=1) / np.maximum(np.diff(t), 1e-9)
    assert naive.max() > 10  # what the raw stamps make of it
    ts, v = tcp_speed(*resample(t, p, 50.0))
    assert len(ts) > 50 and v.max() < 0.25 and abs(np.median(v) - 0.1) < 0.02
    assert tcp_speed(*resample(t[:2], p[:2], 50.0))[0].size == 0
