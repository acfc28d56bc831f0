"""FR3Arm's own arithmetic (a stand-in for franky's robot) and, slow, homing on franky-sim."""
import time

import numpy as np
import pytest

from bac_ros.robot.fr3_arm import FR3Arm, RobotFault, drive
from bac_ros.robot.limits import ArmLimits
from bac_ros.robot.model import DQ_MAX, Q_HOME, Q_LOW


class _FakeRobot:
    """Stands in for franky's Robot and tracker where only FR3Arm's own arithmetic is under test."""

    def __init__(self, velocity=np.zeros(7)):
        from types import SimpleNamespace

        self.current_joint_state = SimpleNamespace(position=Q_HOME.copy(), velocity=np.asarray(velocity, float))
        self.q = None

    def poll_motion(self):
        pass

    def set_target(self, q, dq=None):
        self.q = q


def test_no_chunk_stream_drives_the_arm_past_its_limits():
    """The attack a lab found: a chunk whose point 1 is a 1 rad step of joint 1 due long after its stamp,
    re-published every 0.2 s, was sent as one far target (the limits scaled with the chunk's dt) and the arm
    flailed at 9-12x its velocity limits. Now such a dt is refused, and within the allowed dt every command
    moves at most velocity limit x min(time since the last command, max_step_s), approaching the far point
    at the limits (catch-up), never past the joint limits."""
    from bac_ros.core.streaming import Chunk, ChunkExecutor
    
    arm = FR3Arm(limits=ArmLimits(max_acceleration_factor=0.5, workspace_enabled=False))  # the box: its own test
    arm.robot, arm._tracker = _FakeRobot(), _FakeRobot()
    arm._last_target, arm._last_velocity = Q_HOME.copy(), np.zeros(7)
    ex = ChunkExecutor()
    ex.start(0.0)
    vmax = arm.limits.max_velocity_factor * DQ_MAX
    sent, refused = [(0.0, Q_HOME.copy())], []
    for k, (dt, jump) in enumerate([(5.0, 1.0), (0.4, 0.5), (0.2, 1.0), (0.2, -3.0), (0.05, 2.0)]):
        for r in range(5):  # re-published every 0.2 s
            t0 = 1.0 * k + 0.2 * r
            plan = np.tile(np.r_[Q_HOME, 0.08], (4, 1))
            plan[1:, 0] += jump
            plan[1:, 3] = 5.0  # far outside joint 4's limits
            refused.append(ex.offer(Chunk(t0, plan, dt), t0))
            for now in np.arange(t0, t0 + 0.2, 0.01):
                out = drive(ex, arm, float(now))
                if out is not None:
                    sent.append((float(now), out[1]))
    assert refused[:10] == ["dt"] * 10 and set(refused[10:]) == {None}
    for (t_prev, q_prev), (t, q) in zip(sent, sent[1:]):
        step = np.abs(q - q_prev)
        assert np.all(step <= vmax * min(t - t_prev, arm.limits.max_step_s) + 1e-9), (t, step)
    qs = np.stack([q for _, q in sent])
    assert np.all(qs >= arm.limits.low - 1e-12) and np.all(qs <= arm.limits.high + 1e-12)
    assert ex.counts["catch_ups"] > 0 and arm.clamped > 0
    # the far targets were approached, not given up: joint 1 got to +1 rad, then on its way to -3
    assert qs[:, 0].max() >= Q_HOME[0] + 1.0 - 1e-6 and qs[:, 0].min() < Q_HOME[0] - 0.5


def test_arm_stops_when_a_joint_moves_faster_than_its_limit():
    arm = FR3Arm()
    arm.robot, arm._tracker = _FakeRobot(), _FakeRobot()
    arm._last_target, arm._last_velocity = Q_HOME.copy(), np.zeros(7)
    restarts = []

    def restart():  # stands in for the damped stop + fresh torque loop at the resting position
        restarts.append(1)
        arm.robot.current_joint_state.velocity = np.zeros(7)
        arm._last_target = arm.robot.current_joint_state.position = Q_HOME + 0.3
    arm.restart_tracker = restart
    arm.command(Q_HOME, dt=1 / 30)
    assert arm.velocity_stops == 0
    arm.robot.current_joint_state.velocity = 0.9 * DQ_MAX  # fast, within the limit
    arm.command(Q_HOME, dt=1 / 30)
    assert arm.velocity_stops == 0
    with pytest.raises(ValueError):  # a bad target changes nothing, even with a joint over its limit
        arm.robot.current_joint_state.velocity = 1.2 * DQ_MAX * np.eye(7)[3]
        arm.command(np.full(7, np.nan), dt=1 / 30)
    assert arm.velocity_stops == 0 and not restarts
    sent = arm.command(Q_HOME, dt=1 / 30)
    assert arm.velocity_stops == 1 and len(restarts) == 1 and "stopped the arm" in arm.errors[-1]
    # the next target starts from where the arm came to rest, within the velocity limit
    assert np.all(np.abs(sent - (Q_HOME + 0.3)) <= 0.5 * DQ_MAX / 30 + 1e-12)
    arm = FR3Arm(limits=ArmLimits(velocity_stop_enabled=False))
    arm.robot, arm._tracker = _FakeRobot(velocity=3 * DQ_MAX), _FakeRobot()
    arm._last_target, arm._last_velocity = Q_HOME.copy(), np.zeros(7)
    arm.command(Q_HOME, dt=1 / 30)
    assert arm.velocity_stops == 0
    with pytest.raises(ValueError, match="stop_velocity_factor"):
        ArmLimits(stop_velocity_factor=0.0)


def test_arm_counts_safety_clamps_apart_from_acceleration_shaping():
    arm = FR3Arm(limits=ArmLimits(max_acceleration_factor=0.5))
    arm.robot, arm._tracker = _FakeRobot(), _FakeRobot()
    arm._last_target, arm._last_velocity = Q_HOME.copy(), np.zeros(7)
    dt = 1 / 30
    small = Q_HOME + 0.2 * DQ_MAX * dt * np.eye(7)[1]  # within the velocity limit, but a jump from rest
    arm.command(small, np.zeros(7), dt=dt)
    assert (arm.clamped, arm.shaped) == (0, 1)
    arm.command(Q_HOME + np.eye(7)[1], np.zeros(7), dt=dt)  # 1 rad away: the velocity limit clamps it
    assert arm.clamped == 1
    arm.command(Q_LOW - 1.0, np.zeros(7), dt=dt)  # outside the joint limits
    assert arm.clamped == 2 and np.all(arm.last_target >= arm.limits.low - 1e-12)


def test_a_robot_error_is_a_fault_for_the_controller_and_recovered_in_the_harness():
    """franky raises control-thread errors (a reflex) from poll_motion: the controller's Arm
    (auto_recover=False) reports a RobotFault and changes nothing; the harness's recovers and carries on."""
    class _Faulty(_FakeRobot):
        def __init__(self):
            super().__init__()
            self.raised, self.recovered = False, 0

        def poll_motion(self):
            if not self.raised:
                self.raised = True
                raise RuntimeError("cartesian_reflex")

        def recover_from_errors(self):
            self.recovered += 1

    arm = FR3Arm(auto_recover=False)
    arm.robot, arm._tracker = _Faulty(), _FakeRobot()
    arm._last_target, arm._last_velocity = Q_HOME.copy(), np.zeros(7)
    with pytest.raises(RobotFault, match="cartesian_reflex"):
        arm.command(Q_HOME + 0.01, dt=1 / 30)
    assert arm._tracker.q is None and arm.commands_sent == 0  # nothing was sent
    arm = FR3Arm(auto_recover=True)
    arm.robot, arm._tracker = _Faulty(), _FakeRobot()
    arm._last_target, arm._last_velocity = Q_HOME.copy(), np.zeros(7)
    arm._franky = type("F", (), {"JointImpedanceTracker": lambda *a, **k: _FakeRobot()})
    arm.command(Q_HOME + 0.01, dt=1 / 30)
    assert arm.robot.recovered == 1 and arm.commands_sent == 1 and "cartesian_reflex" in arm.errors[0]


@pytest.mark.slow
def test_homing_from_a_thrown_posture_reaches_home():
    """An untrained policy threw the arm here (joint 2 leaning back at -1.7 rad; reproducing a CI failure of
    test_closed_loop_smoke): homing at
    0.5 x the velocity limits set off a growing swing of joints 2 and 4 that never reached home. At the
    default 0.25 x it gets home with no stop; at 0.5 x the velocity stop caught the swing (once, in each run
    seen), and the path, begun again from rest, got home."""
    from bac_ros.sim.world import WorldConfig, WorldProcess

    thrown = Q_HOME + np.array([1.39, -1.71, 0.93, 1.33, 0.01, 1.75, -0.17])
    cfg = WorldConfig(hostname="127.0.0.7")
    with WorldProcess(cfg) as world, FR3Arm(cfg.hostname) as arm:
        for speed in (0.25, 0.5):
            arm.hold(thrown)
            world.place_arm(thrown)
            time.sleep(0.3)
            arm.restart_tracker()
            before, errors = arm.velocity_stops, len(arm.errors)
            arm.move_home(Q_HOME, duration=1.5, speed_factor=speed)  # RuntimeError if it does not get home
            assert np.max(np.abs(arm.joint_positions() - Q_HOME)) <= 0.02
            # every stop is reported (seen: none at 0.25x, one at 0.5x; the sim's timing decides)
            stopped = [e for e in arm.errors[errors:] if "stopped the arm" in e]
            assert len(stopped) == arm.velocity_stops - before, (speed, arm.errors)
        with pytest.raises(ValueError):
            arm.move_home(Q_HOME, speed_factor=0.6)  # faster than the targets may move
