"""Helpers the tests share (importable as `support`: pytest.ini puts test/ on the path)."""
import contextlib

from bac_ros.policy.config import PolicyConfig

TINY = dict(name="tiny", n_layer=2, n_head=2, n_emb=32, horizon=8, n_obs_steps=2, n_action_steps=4,
            action_dim=8, sampler=dict(type="ddim", num_train_timesteps=50, num_inference_steps=8),
            encoder=dict(image_shape=[3, 32, 32], channels=[8, 16], groups=4, image_feature_dim=16, state_dim=8))


def tiny_config(**over) -> PolicyConfig:
    return PolicyConfig.from_dict({**TINY, **over})


# Rows (fault, outcome, seconds) the fault-injection suite (nodes/test_faults.py) leaves for the closing table.
FAULT_TABLE: list[tuple[str, str, float]] = []


class FakeRobot:
    """Stands in for franky's Robot and its JointImpedanceTracker where FR3Arm's own logic is under test: a
    robot clock the test advances (`t`), a measured joint state that follows each target at once (`follow`)
    or is set by the test, and every target sent recorded as (robot time, q, dq)."""

    def __init__(self, q=None, follow: bool = True):
        import numpy as np

        from bac_ros.robot.model import Q_HOME

        self.t = 0.0
        self.q = np.array(Q_HOME if q is None else q, float)
        self.dq = np.zeros(7)
        self.follow = follow
        self.sent: list = []
        self.raise_next: list[Exception] = []  # poll_motion raises these, one per call
        self.recovered = 0
        self.auto_advance = 0.0  # s the clock moves at every read (for code that waits on robot time)

    @property
    def state(self):
        from types import SimpleNamespace

        self.t += self.auto_advance
        return SimpleNamespace(time=SimpleNamespace(to_sec=lambda: self.t))

    @property
    def current_joint_state(self):
        from types import SimpleNamespace

        return SimpleNamespace(position=self.q.copy(), velocity=self.dq.copy())

    def poll_motion(self):
        if self.raise_next:
            raise self.raise_next.pop(0)

    def recover_from_errors(self):
        self.recovered += 1

    def join_motion(self, timeout=None):
        return True

    def stop(self):
        pass

    def set_target(self, q, dq=None):
        import numpy as np

        q = np.array(q, float)
        if self.follow and self.sent and self.t > self.sent[-1][0]:
            self.dq = (q - self.q) / (self.t - self.sent[-1][0])
        if self.follow:
            self.q = q
        self.sent.append((self.t, q, None if dq is None else np.array(dq, float)))


def fake_arm(limits=None, q0=None, auto_recover: bool = False, follow: bool = True):
    """An FR3Arm on a `FakeRobot` (its robot and its torque loop), holding `q0` (default home) at robot time 0."""
    from types import SimpleNamespace

    from bac_ros.robot.fr3_arm import FR3Arm
    from bac_ros.robot.limits import ArmLimits

    robot = FakeRobot(q0, follow)
    arm = FR3Arm(limits=limits or ArmLimits(), auto_recover=auto_recover)
    arm.robot, arm._franky = robot, SimpleNamespace(JointImpedanceTracker=lambda *a, **k: robot)
    arm._start_tracker()
    robot.sent.clear()
    return arm, robot


def assert_within_envelope(ts, qs, limits, tol: float = 1e-9) -> None:
    """Every commanded position within the joint limits' margins or moving back in, and the speed and
    acceleration between commands, over their real time gaps each at most max_step_s (the step cap: a longer
    gap licenses no more), within the envelope."""
    import numpy as np

    ts, qs = np.asarray(ts, float), np.asarray(qs, float)
    out_hi, out_lo = qs > limits.high + tol, qs < limits.low - tol
    if len(qs) > 1:  # outside the margins only while moving back in
        d = np.diff(qs, axis=0)
        assert not np.any(out_hi[1:] & (d > tol)) and not np.any(out_lo[1:] & (d < -tol)), "moved further out"
    gaps = np.diff(ts)
    assert np.all(gaps > 0), "two commands at one robot time"
    gaps = np.minimum(gaps, limits.max_step_s)
    u = np.diff(qs, axis=0) / gaps[:, None]
    speed = np.abs(u) / limits.velocity
    assert np.all(speed <= 1 + 1e-6), f"speed {speed.max():.3f} x the envelope"
    if limits.acceleration_limit_enabled and len(u) > 1:
        acc = np.abs(np.diff(u, axis=0)) / gaps[1:, None] / limits.acceleration
        assert np.all(acc <= 1 + 1e-6), f"acceleration {acc.max():.3f} x the envelope"


@contextlib.contextmanager
def node_process(node: str, domain: int, *ros_args: str):
    """`python -m bac_ros.nodes.<node> --ros-args *ros_args` on ROS domain `domain` (loopback discovery), and an
    rclpy context of the test's own on that domain. Yields (process, context); afterwards shuts the context down
    and stops the process's group (SIGINT, SIGKILL after 15 s) if it still runs."""
    import os
    import signal
    import subprocess
    import sys

    import rclpy

    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", f"bac_ros.nodes.{node}", "--ros-args", *ros_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    try:
        yield proc, ctx
    finally:
        rclpy.try_shutdown(context=ctx)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
