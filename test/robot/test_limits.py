"""The envelope and the pure shaping functions every target goes through."""
import numpy as np
import pytest

from bac_ros.robot.limits import ArmLimits, limit_acceleration, safe_target
from bac_ros.robot.model import DQ_MAX, Q_HIGH, Q_HOME, Q_LOW


def test_limit_acceleration_turns_a_jump_into_a_braked_approach():
    a_max, dt = np.full(7, 3.0), 0.01
    q, v = np.zeros(7), np.zeros(7)
    target = np.full(7, 0.3)
    path = []
    for _ in range(300):
        q_next = limit_acceleration(target, np.zeros(7), q, v, dt, a_max)
        v_next = (q_next - q) / dt
        assert np.all(np.abs(v_next - v) <= a_max * dt + 1e-9)  # velocity changes within the limit
        q, v = q_next, v_next
        path.append(q[0])
    path = np.array(path)
    assert path.max() <= 0.3 + 0.01  # braked in time: at most a hair past the target
    assert abs(path[-1] - 0.3) < 1e-3 and abs(v[0]) < 1e-2  # and at rest there
    assert path[0] < 0.001  # no jump on the first tick
    # a target that moves within the limits is followed exactly
    q, v = np.zeros(7), np.full(7, 0.5)
    q_next = limit_acceleration(q + 0.5 * dt, np.full(7, 0.5), q, v, dt, a_max)
    np.testing.assert_allclose(q_next, q + 0.5 * dt)
    with pytest.raises(ValueError, match="max_acceleration_factor"):
        ArmLimits(max_acceleration_factor=0.0)


def test_safe_target_clamps_limits_and_rate():
    lim = ArmLimits(joint_limit_margin=0.05, max_velocity_factor=0.5)
    ref = Q_HOME.copy()
    far = ref + 1.0
    q = safe_target(far, ref, dt=0.01, limits=lim)
    assert np.all(np.abs(q - ref) <= 0.5 * DQ_MAX * 0.01 + 1e-12)
    q = safe_target(Q_HIGH + 1.0, Q_HIGH - 0.05, dt=10.0, limits=lim)
    assert np.all(q <= Q_HIGH - 0.05 + 1e-12)
    q = safe_target(Q_LOW - 1.0, Q_LOW + 0.05, dt=10.0, limits=lim)
    assert np.all(q >= Q_LOW + 0.05 - 1e-12)
    with pytest.raises(ValueError, match="finite"):
        safe_target(np.full(7, np.nan), ref, 0.03, lim)
    with pytest.raises(ValueError, match="7 values"):
        safe_target(np.zeros(6), ref, 0.03, lim)
    with pytest.raises(ValueError):
        ArmLimits(max_velocity_factor=1.5)
