"""The scripted operator, driving a kinematic arm through the teleop servo (no simulator)."""
import numpy as np

from bac_ros.robot.kinematics import Kinematics
from bac_ros.robot.limits import ArmLimits
from bac_ros.robot.model import Q_HOME
from bac_ros.robot.servo import ServoSettings, servo_step
from bac_ros.sim.expert import plan_grasp
from bac_ros.sim.operator import OperatorSettings, ScriptedOperator, StrayWatch
from bac_ros.sim.world import CubePose

KIN, DT = Kinematics.fr3(), 1 / 30


def _drive(op, steps, q=Q_HOME):
    servo = ServoSettings(max_linear_speed=0.2, max_angular_speed=1.0)
    log = []
    for k in range(steps):
        p, r = KIN.fk(q)
        twist, closed = op.act(k * DT, p, r)
        q = servo_step(q, twist, DT, KIN, ArmLimits(), servo)
        log.append((k * DT, op.phase, closed, p))
    return q, log


def test_the_operator_grasps_and_lifts_with_the_wrist_turned_to_the_cube():
    cube = CubePose(0.55, -0.15, 0.6)
    op = ScriptedOperator(cube, OperatorSettings(tremor=0.1), seed=3)
    q, log = _drive(op, int(12 / DT))
    phases = [ph for _, ph, _, _ in log]
    assert phases[-1] == "hold" and all(phases.index(a) < phases.index(b) for a, b in
                                        zip(("approach", "descend", "close", "lift"), ("descend", "close", "lift", "hold")))
    t_close = next(t for t, _, closed, _ in log if closed)
    p_close = next(p for _, _, closed, p in log if closed)
    assert np.linalg.norm(p_close[:2] - [0.55, -0.15]) < 0.015 and p_close[2] < 0.06  # closed at the cube
    assert t_close < 9.0  # a person at 0.1 m/s gets there in time for a 12 s episode
    p, r = KIN.fk(q)
    assert p[2] > 0.15  # lifted
    np.testing.assert_allclose(r[:, 0], [np.cos(0.6), np.sin(0.6), 0.0], atol=0.05)  # wrist at the cube's yaw


def test_reaction_delay_and_the_speed_limit():
    slow = ScriptedOperator(CubePose(0.5, 0.0, 0.0), OperatorSettings(reaction_s=0.5, tremor=0.0))
    p0, r0 = KIN.fk(Q_HOME)
    twist, _ = slow.act(0.0, p0, r0)
    assert np.linalg.norm(twist[:3]) <= slow.s.max_linear_speed + 1e-9
    # it keeps acting on what it saw 0.5 s ago: a jump of the TCP goes unnoticed until then
    moved = p0 + [0.0, 0.0, -0.2]
    assert np.allclose(slow.act(0.3, moved, r0)[0], twist)
    assert np.allclose(slow.act(0.6, moved, r0)[0], twist)  # at 0.6 s it sees the TCP as it was at 0 s
    assert not np.allclose(slow.act(0.9, moved, r0)[0], twist)  # at 0.9 s, as it was at 0.3 s


def test_stray_watch_takes_over_only_after_a_sustained_stray():
    path = plan_grasp(CubePose(0.5, 0.1, 0.0), Q_HOME, DT).tcp
    watch = StrayWatch(path, OperatorSettings(stray_m=0.05, stray_s=0.5))
    on_path = path[40]
    assert not watch.strayed(0.0, on_path) and watch.distance(on_path) < 1e-9
    off = on_path + [0.0, 0.2, 0.0]
    assert not watch.strayed(1.0, off) and not watch.strayed(1.4, off)
    assert not watch.strayed(1.45, on_path)  # back on the path: the clock restarts
    assert not watch.strayed(2.0, off) and watch.strayed(2.6, off)


def test_a_take_over_mid_grasp_keeps_the_cube_in_hand():
    """The policy closed the gripper on the cube and strays: the operator keeps it closed and lifts; closed
    on nothing, it opens and grasps again; open, it grasps the cube where it lies now."""
    op = ScriptedOperator(CubePose(0.5, 0.0, 0.0), OperatorSettings(tremor=0.0, reaction_s=0.0))
    q = Q_HOME
    p, r = KIN.fk(q)
    cube = CubePose(p[0], p[1], 0.3)
    op.take_over(p, True, cube, p[2] + 0.01)  # the cube between the fingers
    assert op.phase == "lift" and op.closed
    twist, closed = op.act(0.0, p, r)
    assert closed and twist[2] > 0.05  # up, gripper closed from the first command on
    op.take_over(p, True, CubePose(0.6, 0.2, 0.0), 0.042)  # closed on nothing: open, grasp again
    assert op.phase == "approach" and not op.act(1.0, p, r)[1]
    np.testing.assert_allclose(op.waypoints["descend"][:2], [0.6, 0.2])
    op.take_over(p, False, CubePose(0.45, -0.1, 0.2), 0.042)  # pushed aside: grasp it there
    assert op.phase == "approach" and not op.closed and abs(op.yaw - 0.2) < 1e-9
    np.testing.assert_allclose(op.waypoints["approach"][:2], [0.45, -0.1])
