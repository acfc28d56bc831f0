"""Twist -> joint target: deadband, speeds, the workspace box and the joint limits."""
import numpy as np
import pytest

from bac_ros.robot.kinematics import Kinematics
from bac_ros.robot.limits import ArmLimits
from bac_ros.robot.model import Q_HOME
from bac_ros.robot.servo import ServoSettings, servo_step, shape_input

KIN, LIMITS, DT = Kinematics.fr3(), ArmLimits(), 1 / 30


def test_deadband_and_full_scale():
    s = ServoSettings(deadband=0.1, max_linear_speed=0.1, max_angular_speed=0.5)
    np.testing.assert_array_equal(shape_input([0.09, -0.05, 0.1, 0.0, 0.08, -0.1], s), np.zeros(6))
    full = shape_input([1, -1, 2, 1, -1, 0], s)  # beyond full scale is full scale
    np.testing.assert_allclose(full, [0.1, -0.1, 0.1, 0.5, -0.5, 0.0])
    just_past = shape_input([0.1 + 0.009, 0, 0, 0, 0, 0], s)[0]
    assert 0 < just_past < 0.002  # no jump at the deadband's edge
    with pytest.raises(ValueError, match="6 finite"):
        shape_input([0, 0, np.nan, 0, 0, 0], s)
    with pytest.raises(ValueError, match="frame"):
        ServoSettings(frame="world")


def test_the_tcp_moves_as_asked_and_no_faster_than_the_limit():
    s = ServoSettings()
    p0, r0 = KIN.fk(Q_HOME)
    q = servo_step(Q_HOME, [0.05, 0, 0, 0, 0, 0], DT, KIN, LIMITS, s)
    p1, r1 = KIN.fk(q)
    np.testing.assert_allclose(p1 - p0, [0.05 * DT, 0, 0], atol=2e-4)
    np.testing.assert_allclose(r1, r0, atol=2e-3)
    q = servo_step(Q_HOME, [5.0, 0, 0, 0, 0, 0], DT, KIN, LIMITS, s)  # far over the maximum: capped
    assert np.linalg.norm(KIN.fk(q)[0] - p0) <= s.max_linear_speed * DT * 1.05
    # in the tool frame the TCP's z points down at home: +z is a descent
    q = servo_step(Q_HOME, [0, 0, 0.05, 0, 0, 0], DT, KIN, LIMITS, ServoSettings(frame="tool"))
    assert KIN.fk(q)[0][2] < p0[2] - 0.04 * DT
    # turning about the vertical turns the wrist, the TCP stays put
    q = servo_step(Q_HOME, [0, 0, 0, 0, 0, 0.5], DT, KIN, LIMITS, s)
    assert np.linalg.norm(KIN.fk(q)[0] - p0) < 2e-4 and abs(q[6] - Q_HOME[6]) > 0.01


def test_pushing_out_of_the_box_or_past_a_joint_limit_stops_there():
    s = ServoSettings(max_linear_speed=0.2)
    q = Q_HOME.copy()
    for _ in range(300):  # 10 s straight down at 0.2 m/s: the box floor stops it
        q = servo_step(q, [0, 0, -0.2, 0, 0, 0], DT, KIN, LIMITS, s)
    assert KIN.fk(q)[0][2] >= LIMITS.workspace_min[2] - 1e-4
    assert KIN.fk(q)[0][2] < LIMITS.workspace_min[2] + 0.01  # and it got there
    q = Q_HOME.copy()
    for _ in range(300):  # turning the wrist for 10 s: joint 7 ends at its limit, not past it
        q = servo_step(q, [0, 0, 0, 0, 0, -0.6], DT, KIN, LIMITS, ServoSettings(max_angular_speed=0.6))
        assert np.all(q >= LIMITS.low - 1e-12) and np.all(q <= LIMITS.high + 1e-12)
    assert min(abs(q[6] - LIMITS.low[6]), abs(q[6] - LIMITS.high[6])) < 1e-9
    # a TCP already outside the box may come back in
    outside = KIN.ik(np.array([0.5, 0.0, 0.01]), KIN.fk(Q_HOME)[1], Q_HOME)[0]
    up = servo_step(outside, [0, 0, 0.1, 0, 0, 0], DT, KIN, LIMITS, s)
    assert KIN.fk(up)[0][2] > KIN.fk(outside)[0][2] + 0.05 * DT
