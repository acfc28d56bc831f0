import numpy as np
import pytest

from bac_ros.analysis.motion import mean_smoothness, smoothness


def min_jerk(t, T):
    s = np.clip(t / T, 0, 1)
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def test_smooth_move_has_no_reversals_and_low_jerk():
    t = np.arange(0, 3, 0.01)
    q = np.outer(min_jerk(t, 3.0), np.ones(7)) * 0.5
    m = smoothness(t, q)
    assert m["zero_crossings_per_s"] == 0
    assert 2.0 < m["motion_s"] <= 3.0


def test_oscillation_counts_two_reversals_per_period_per_joint():
    t = np.arange(0, 4, 0.01)
    q = 0.1 * np.sin(2 * np.pi * 1.0 * t)[:, None] * np.ones((1, 3))  # peak velocity 0.63 rad/s
    m = smoothness(t, q)
    assert m["motion_s"] == pytest.approx(4.0, abs=0.25)  # still near the turning points
    assert m["zero_crossings_per_s"] == pytest.approx(3 * 2.0, rel=0.1)


def test_stop_and_go_has_more_jerk_than_one_smooth_move():
    t = np.arange(0, 3, 0.01)
    smooth = np.outer(min_jerk(t, 3.0), np.ones(7)) * 0.3
    # the same 0.3 rad in ten jerky 0.3 s steps, as a controller that stops at every target would
    steps = sum(min_jerk(t - 0.3 * k, 0.15) for k in range(10)) * 0.03
    stop_go = np.outer(steps, np.ones(7))
    assert smoothness(t, stop_go)["jerk_rms"] > 10 * smoothness(t, smooth)["jerk_rms"]


def test_noise_while_still_is_not_motion():
    rng = np.random.default_rng(0)
    t = np.arange(0, 2, 0.01)
    q = 1e-5 * rng.standard_normal((len(t), 7))
    m = smoothness(t, q)
    assert m["motion_s"] == 0.0 and m["zero_crossings_per_s"] == 0.0


def test_bad_shapes_raise_and_pooling_weights_by_motion():
    with pytest.raises(ValueError, match="positions"):
        smoothness(np.arange(5), np.zeros((4, 7)))
    pooled = mean_smoothness([{"motion_s": 1.0, "zero_crossings_per_s": 2.0, "jerk_rms": 3.0},
                              {"motion_s": 3.0, "zero_crossings_per_s": 6.0, "jerk_rms": 3.0}])
    assert pooled["zero_crossings_per_s"] == pytest.approx(5.0) and pooled["jerk_rms"] == pytest.approx(3.0)
