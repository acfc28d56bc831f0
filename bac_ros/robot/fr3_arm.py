"""`FR3Arm`: the one place that talks to an FR3 through franky (a real arm or franky-sim alike).

Streaming: joint targets arrive at the action rate (30 Hz); franky's `JointImpedanceTracker` runs its own
1 kHz torque loop towards the latest (q, dq) target, so consecutive targets blend without the
stop-at-every-target of one `JointMotion` per tick (tracking errors measured in docs/control.md). Every
target is made safe first (`limits`), the TCP is kept in the workspace box, and the measured joint speeds
are watched every control tick (`check`).
"""
from __future__ import annotations

import os
import time

import numpy as np

from .gripper import GripperWorker
from .kinematics import Kinematics
from .limits import ArmLimits, box_excess, checked_target, limit_acceleration, safe_target
from .model import DDQ_MAX, DQ_MAX, GRIPPER_MAX_WIDTH, Q_HIGH, Q_LOW

DEFAULT_STIFFNESS = (600.0, 600.0, 600.0, 600.0, 250.0, 150.0, 50.0)  # Nm/rad, joint impedance


class HomingError(RuntimeError):
    """The arm did not reach home in time (it may be stuck on the table or the cube)."""


class RobotFault(RuntimeError):
    """The robot reported an error (a reflex, a control or network exception): it needs `FR3Arm.recover`."""


def drive(executor, arm: "FR3Arm", now: float):
    """One control tick, the same for controller_node and the evaluation harness: the executor's command
    for `now` through the arm's limits, or just the arm's checks when there is none. Returns (command,
    target sent) or None."""
    cmd = executor.tick(now)
    if cmd is None:
        arm.check()  # the velocity stop watches the measured state every tick, not only when commanding
        return None
    q = arm.command(cmd.q, cmd.dq, dt=cmd.dt)
    executor.sent(cmd, q, arm.held_back)
    if cmd.gripper is not None:
        arm.gripper_command(cmd.gripper)
    return cmd, q


class FR3Arm:
    """franky Robot + Gripper behind a few verbs: start, check, command, gripper, state, hold, stop.

    `realtime`: libfranka's RealtimeConfig.Enforce (a real FR3 on a real-time kernel) or Ignore
    (simulation). `collision`: (torque thresholds (7,) Nm, force thresholds (6,) N) for franky's
    `set_collision_behavior`, None: franky's defaults. `auto_recover`: on a robot error, recover and carry
    on (the evaluation harness, in simulation); False: `check` raises `RobotFault` and the caller decides
    (controller_node: a faulted state until /bac/recover). `kinematics`: the model the workspace box is
    checked on (default: the shipped FR3 model; `Kinematics.from_urdf(arm.robot.model_urdf)` is the
    robot's own)."""

    def __init__(self, hostname: str = "127.0.0.1", limits: ArmLimits = ArmLimits(),
                 stiffness=DEFAULT_STIFFNESS, gripper_hysteresis: float = 0.2, realtime: bool = False,
                 collision: tuple | None = None, relative_dynamics_factor: float | None = None,
                 auto_recover: bool = True, kinematics: Kinematics | None = None):
        self.hostname, self.limits = hostname, limits
        self.stiffness = np.asarray(stiffness, float)
        self.hysteresis = gripper_hysteresis
        self.realtime, self.collision, self.rdf = realtime, collision, relative_dynamics_factor
        self.auto_recover = auto_recover
        self.robot = self.gripper = self._tracker = self._gripper_worker = None
        self._kin = kinematics or Kinematics.fr3()
        self._last_target: np.ndarray | None = None
        self._last_velocity = np.zeros(7)  # of the commanded target
        self._closed = False
        self.held_back = False  # the last command stopped short of its target (velocity limit)
        self.commands_sent = 0
        self.clamped = 0  # targets moved into the joint position / velocity limits
        self.shaped = 0  # targets the acceleration limit smoothed (most of a policy's: not a safety event)
        self.workspace_refusals = 0  # targets refused because the TCP would leave the workspace box
        self.velocity_stops = 0  # damped stops because a joint moved faster than the limits allow
        self.errors: list[str] = []

    def start(self) -> "FR3Arm":
        """Connect (franky.Robot + Gripper) and start the torque loop holding the measured pose. Raises
        what franky raises (e.g. "Connection to FCI refused" while nothing listens at `hostname`)."""
        import franky

        self._franky = franky
        mode = franky.RealtimeConfig.Enforce if self.realtime else franky.RealtimeConfig.Ignore
        try:
            self.robot = franky.Robot(self.hostname, realtime_config=mode)
            # As root, franky.Robot() puts the calling thread on SCHED_FIFO 99, inherited by later threads.
            try:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            except (PermissionError, AttributeError, OSError):
                pass
            self.robot.recover_from_errors()
            if self.collision is not None:
                torque, force = self.collision
                self.robot.set_collision_behavior([float(v) for v in torque], [float(v) for v in force])
            if self.rdf is not None:
                self.robot.relative_dynamics_factor = franky.RelativeDynamicsFactor(self.rdf, self.rdf, self.rdf)
            self.gripper = franky.Gripper(self.hostname)
            self._gripper_worker = GripperWorker(self.gripper, self.robot_time)
            self._gripper_worker.start()
            self._start_tracker()
        except BaseException:
            self.stop()
            raise
        return self

    def restart_tracker(self) -> None:
        """A fresh torque loop at the current position. Seen on franky-sim: after a policy threw the arm
        around, the running tracker stayed unstable even with a still target (the arm flailed by radians
        every 0.2 s); a new one holds."""
        try:
            self._tracker.stop()
            self.robot.join_motion(2.0)
        except Exception as e:  # noqa: BLE001 - franky raises several exception types here
            self.errors.append(str(e))
        self.robot.recover_from_errors()
        self._start_tracker()

    def recover(self) -> None:
        """After a `RobotFault`: franky's error recovery, then a fresh torque loop holding the measured pose."""
        self.restart_tracker()

    def _start_tracker(self) -> None:
        franky = self._franky
        self._tracker = franky.JointImpedanceTracker(self.robot, stiffness=self.stiffness,
                                                     lower_joint_limits=Q_LOW, upper_joint_limits=Q_HIGH)
        q = self.joint_positions()
        self._tracker.set_target(q)
        self._last_target, self._last_velocity = q, np.zeros(7)

    def robot_time(self) -> float:
        """The robot's clock (s): the FR3's, or the simulator's (below real time on a slow machine)."""
        return self.robot.state.time.to_sec()

    def _deadline(self, seconds: float):
        """A deadline `seconds` of robot time away; the wall clock backs it up if the robot's clock stops."""
        t0, wall0 = self.robot_time(), time.monotonic()
        return lambda: self.robot_time() - t0 > seconds or time.monotonic() - wall0 > 10 * seconds + 10

    # ---- state -----------------------------------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        return np.array(self.robot.current_joint_state.position, dtype=float)

    def state(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(q, dq, gripper width)."""
        js = self.robot.current_joint_state
        return np.array(js.position, float), np.array(js.velocity, float), float(self.gripper.width)

    def gripper_width(self) -> float:
        """Finger opening (m). franky reads it from the gripper's next state packet: it waits while a
        simulated world is paused."""
        return float(self.gripper.width)

    def gripper_counts(self) -> dict[str, int]:
        """Gripper actions sent, stopped after the timeout, and failed (a grasp with nothing in hand)."""
        w = self._gripper_worker
        return {"actions": w.actions, "timeouts": w.timeouts, "errors": w.errors} if w else {}

    @property
    def gripper_closed(self) -> bool:
        return self._closed

    @property
    def last_target(self) -> np.ndarray:
        """The joint target last sent."""
        return self._last_target.copy()

    # ---- commands --------------------------------------------------------------------------------
    def command(self, q_target: np.ndarray, dq_target: np.ndarray | None = None, dt: float = 1 / 30,
                workspace: bool = True) -> np.ndarray:
        """Stream one joint target, made safe first; returns the target actually sent. `dt` (s): the time
        since the previous command on the robot's clock, the time base of the limits (capped at
        `max_step_s`). Sets `held_back` when the velocity limit stopped it short of the target. `workspace`:
        keep the TCP in the workspace box (off only for homing, whose joint path may leave the box on its way
        back from a posture outside it)."""
        checked_target(q_target)  # a bad target changes nothing
        if not dt > 0:
            raise ValueError(f"dt must be > 0 s, got {dt}")
        self.check()  # may restart the torque loop where the arm came to rest
        lim = self.limits
        dt = min(float(dt), lim.max_step_s)
        vmax = lim.max_velocity_factor * DQ_MAX
        # Always an explicit velocity: a target set without one keeps the tracker's previous velocity
        # feed-forward, and the arm then drifts on after a chunk's last point (seen: it never got home).
        dq = np.zeros(7) if dq_target is None else np.clip(np.nan_to_num(np.asarray(dq_target, float)), -vmax, vmax)
        q = safe_target(q_target, self._last_target, dt, lim)
        self.held_back = not np.allclose(q, np.clip(np.asarray(q_target, float), lim.low, lim.high))
        if not np.allclose(q, q_target):
            self.clamped += 1
        if lim.acceleration_limit_enabled:
            a_max = lim.max_acceleration_factor * DDQ_MAX
            q_limited = q
            q = safe_target(limit_acceleration(q_target, dq, self._last_target, self._last_velocity, dt, a_max),
                            self._last_target, dt, lim)
            if not np.allclose(q, q_limited):
                self.shaped += 1
        if workspace and lim.workspace is not None:
            # Refused when the TCP would leave the box where the arm comes to rest braking at the
            # acceleration limit, so that braking starts in time; then brake along the last motion (an
            # instant stop of the target kicks the torque loop: seen at 1.1x the velocity limit in sim).
            a = (lim.max_acceleration_factor if lim.acceleration_limit_enabled else 1.0) * DDQ_MAX
            v = (q - self._last_target) / dt
            if self._leaves_workspace(q + v * np.abs(v) / (2 * a)):
                self.workspace_refusals += 1
                v = np.sign(self._last_velocity) * np.maximum(np.abs(self._last_velocity) - a * dt, 0.0)
                q, self.held_back = np.clip(self._last_target + v * dt, lim.low, lim.high), False
        v = (q - self._last_target) / dt
        if not np.allclose(q, q_target):
            dq = v  # on the way to the target: feed forward the limited motion
        self._tracker.set_target(q, dq)
        self._last_target, self._last_velocity = q, v
        self.commands_sent += 1
        return q

    def _leaves_workspace(self, q: np.ndarray) -> bool:
        """The TCP at `q` is outside the box and further out than at the last target (moving back in, e.g.
        homing from outside, is allowed)."""
        box = self.limits.workspace
        out = box_excess(self._kin.fk(q)[0], box)
        return out > 0 and out > box_excess(self._kin.fk(self._last_target)[0], box) - 1e-9

    def gripper_command(self, value: float) -> None:
        """`value`: commanded width-like signal in [0, 0.08] (0 = close). Hysteresis around the midpoint."""
        mid = GRIPPER_MAX_WIDTH / 2
        band = self.hysteresis * mid
        if not self._closed and value < mid - band:
            self._closed = True
            self._gripper_worker.request(True)
        elif self._closed and value > mid + band:
            self._closed = False
            self._gripper_worker.request(False)

    def open_gripper(self) -> None:
        """Open the gripper whatever the last decision was (a fresh robot's fingers may stand half open,
        and a half-open gripper at the start of an episode is a state no demonstration shows)."""
        self._closed = False
        self._gripper_worker.request(False)

    def hold(self, q: np.ndarray | None = None) -> None:
        """Keep the current position (no new target arrived in time), or `q` (a simulator reset puts the
        arm there next)."""
        if q is None:
            self.check()
        q = self.joint_positions() if q is None else np.asarray(q, float)
        self._tracker.set_target(q, np.zeros(7))
        self._last_target, self._last_velocity = q, np.zeros(7)

    def check(self) -> None:
        """Call every control tick. Errors of franky's control thread surface here: with `auto_recover`,
        recover and restart the tracker; otherwise `RobotFault`. A joint measured faster than
        `stop_velocity_factor` x its limit gets the arm stopped (damped, as an FR3 reflex would) and a fresh
        torque loop where it came to rest. Why: seen on franky-sim, a kick (contact, or a far target) can
        saturate the torque loop into a swing of joints 2 and 4 that grows to ±1.8 rad at 10-17 rad/s and
        never decays, whatever the target; the simulator has no reflex."""
        try:
            self.robot.poll_motion()
        except Exception as e:  # noqa: BLE001 - franky raises several exception types here
            self.errors.append(str(e))
            if not self.auto_recover:
                raise RobotFault(f"robot error: {e}") from e
            self.robot.recover_from_errors()
            self._start_tracker()
            return
        if not self.limits.velocity_stop_enabled:
            return
        factor = self.limits.stop_velocity_factor
        dq = np.abs(np.asarray(self.robot.current_joint_state.velocity, float))
        if np.any(dq > factor * DQ_MAX):
            self.velocity_stops += 1
            self.errors.append(f"joint velocity {np.round(dq, 2).tolist()} rad/s over {factor} x the limits: "
                               "stopped the arm")
            self.restart_tracker()

    def move_home(self, q_home: np.ndarray, duration: float = 3.0, rate: float = 100.0, speed_factor: float = 0.25,
                  gripper_timeout: float = 6.0, tolerance: float = 0.02, settle_timeout: float = 5.0) -> None:
        """Open the gripper (it opens while the arm moves), move the streamed target to `q_home` along a
        min-jerk path timed in robot time (peaking at `speed_factor` x the joint velocity limits: longer
        when the arm is far away), wait until every joint is within `tolerance` rad of home (RuntimeError
        after `settle_timeout` s), then wait up to `gripper_timeout` s for the fingers to be open. Every
        duration is robot time, so a simulator running below real time slows homing instead of failing
        it. After a velocity stop the path starts again from where the arm came to rest (twice at most).
        Why slow: on franky-sim, homing from a posture a policy had thrown the arm into (joint 2 at -1.7 rad)
        at 0.5 x the limits set off the torque loop's swing (see `check`); at 0.25 x it did not. The workspace
        box does not apply: from a posture outside it the joint path home may first lead further out."""
        if not 0 < speed_factor <= self.limits.max_velocity_factor:
            raise ValueError(f"speed_factor must be in (0, {self.limits.max_velocity_factor}], got {speed_factor}")
        self.open_gripper()
        q_home = checked_target(q_home)
        q_start, stops_start = self.joint_positions(), self.velocity_stops
        t_prev = self.robot_time()

        def step_to(q):  # one command, timed by the robot's clock since the last one
            nonlocal t_prev
            time.sleep(1.0 / rate)
            t = self.robot_time()
            if t > t_prev:
                self.command(q, dt=t - t_prev, workspace=False)
                t_prev = t

        for _ in range(3):
            stops = self.velocity_stops
            q0 = self.joint_positions()
            # min-jerk peaks at 1.875x the mean speed
            d = max(duration, float(np.max(1.875 * np.abs(q_home - q0) / (speed_factor * DQ_MAX))))
            t0, s = t_prev, 0.0
            while s < 1.0 and self.velocity_stops == stops:
                s = min(1.0, (self.robot_time() - t0) / d)
                step_to(q0 + (q_home - q0) * (10 * s**3 - 15 * s**4 + 6 * s**5))
            if self.velocity_stops == stops:
                break
        expired = self._deadline(settle_timeout)
        while np.max(np.abs(self.joint_positions() - q_home)) > tolerance:
            if expired():
                raise HomingError(
                    f"the arm did not reach home within {settle_timeout} s of robot time: joint errors "
                    f"{np.round(self.joint_positions() - q_home, 3).tolist()} rad (at the start "
                    f"{np.round(q_start - q_home, 3).tolist()}; velocity stops {self.velocity_stops - stops_start}; "
                    f"last robot error: {self.errors[-1] if self.errors else 'none'})")
            step_to(q_home)
        expired = self._deadline(gripper_timeout)
        while not expired() and self.state()[2] < GRIPPER_MAX_WIDTH - 0.005:
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the gripper worker and the torque loop; best effort (the robot may be gone)."""
        if self._gripper_worker is not None:
            self._gripper_worker.stop()
            self._gripper_worker.join(3)
            self._gripper_worker = None
        if self._tracker is not None:
            try:
                self._tracker.stop()
                self.robot.join_motion(2.0)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
            self._tracker = None
        self.robot = self.gripper = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
