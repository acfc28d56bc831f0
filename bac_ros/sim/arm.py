"""`Arm`: the one place that talks to an FR3 through franky (a real arm or franky-sim alike).

Streaming: joint targets arrive at the action rate (30 Hz); franky's `JointImpedanceTracker` runs its own
1 kHz torque loop towards the latest (q, dq) target, so consecutive targets blend without the
stop-at-every-target of one `JointMotion` per tick. Measured on franky-sim (a 0.5 Hz sine on two joints
streamed at 30 Hz): tracking error 0.009 rad with the tracker, 0.09 rad with a `JointWaypointMotion`
per tick, 0.11 rad with a `JointMotion` per tick.

Safety: every target is clamped into the joint limits (with a margin) and rate-limited so that no joint
is asked to move faster than `max_velocity_factor` x its velocity limit; non-finite targets are refused.
With `max_acceleration_factor`, the commanded velocity also changes by at most that fraction of the joint
acceleration limits per second, braking so as not to pass the target: a jump in the targets (a new chunk
that starts elsewhere, a stream that stalled) becomes a smooth approach. Why, measured on franky-sim with
stiffness 600 and the FR3's torque rate limit (1 Nm/ms): a 0.3 rad step of joint 2's target sent the
torque loop into an oscillation of +-1.8 rad that never decayed; a slow motion streamed at 100 Hz with a
new random offset every 33 ms (chunk switches) did the same from offsets of 0.01 rad up (0.003 rad: fine).
With the factor 0.5 offsets up to 0.06 rad were tracked within 0.16 rad (0.1 rad: unstable again); with
1.0, 0.03 rad was not. The controller node uses 0.5; the evaluation harness, which sends 30 Hz points
and switches chunks every n_action_steps, runs without it (its tables were measured so).
"""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from .kinematics import DDQ_MAX, DQ_MAX, GRIPPER_MAX_WIDTH, Q_HIGH, Q_LOW

DEFAULT_STIFFNESS = (600.0, 600.0, 600.0, 600.0, 250.0, 150.0, 50.0)


@dataclass(frozen=True)
class ArmLimits:
    margin: float = 0.05  # rad kept away from each joint limit
    max_velocity_factor: float = 0.5  # fraction of the FR3 joint velocity limits a target may demand
    max_acceleration_factor: float | None = None  # fraction of the FR3 joint acceleration limits; None: no limit
    stop_velocity_factor: float | None = 1.0  # a joint measured faster than this x its limit stops the arm

    def __post_init__(self):
        if not 0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5) rad, got {self.margin}")
        if not 0 < self.max_velocity_factor <= 1:
            raise ValueError(f"max_velocity_factor must be in (0, 1], got {self.max_velocity_factor}")
        if self.max_acceleration_factor is not None and not 0 < self.max_acceleration_factor <= 1:
            raise ValueError(f"max_acceleration_factor must be in (0, 1] or None, got {self.max_acceleration_factor}")
        if self.stop_velocity_factor is not None and not 0 < self.stop_velocity_factor <= 1.5:
            raise ValueError(f"stop_velocity_factor must be in (0, 1.5] or None, got {self.stop_velocity_factor}")

    @property
    def low(self) -> np.ndarray:
        return Q_LOW + self.margin

    @property
    def high(self) -> np.ndarray:
        return Q_HIGH - self.margin


def checked_target(q_target) -> np.ndarray:
    """`q_target` as 7 finite floats; ValueError otherwise."""
    q = np.asarray(q_target, dtype=float)
    if q.shape != (7,):
        raise ValueError(f"joint target must have 7 values, got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"joint target is not finite: {q}")
    return q


def safe_target(q_target: np.ndarray, q_ref: np.ndarray, dt: float, limits: ArmLimits) -> np.ndarray:
    """Clamp a joint target into the limits and to at most `max_velocity_factor * DQ_MAX * dt` from
    `q_ref` (the previous target). Raises ValueError on a malformed or non-finite target."""
    q = checked_target(q_target)
    step = limits.max_velocity_factor * DQ_MAX * dt
    q = np.clip(q, q_ref - step, q_ref + step)
    return np.clip(q, limits.low, limits.high)


def limit_acceleration(q_target: np.ndarray, dq_target: np.ndarray, q_ref: np.ndarray, v_ref: np.ndarray,
                       dt: float, a_max: np.ndarray) -> np.ndarray:
    """This tick's target on the way to `q_target` (moving at `dq_target`), from `q_ref` moving at `v_ref`:
    the velocity changes by at most `a_max * dt`, and the approach brakes in time not to pass the target.
    A target that moves within the limits is reached exactly."""
    err = np.asarray(q_target, float) - q_ref
    brake = np.sqrt(2.0 * a_max * np.abs(err))
    v = np.clip(err / dt, dq_target - brake, dq_target + brake)
    v = np.clip(v, v_ref - a_max * dt, v_ref + a_max * dt)
    return q_ref + v * dt


class _GripperWorker(threading.Thread):
    """Sends open/close to the gripper when the decision changes; latest decision wins. An action that has
    not finished within `timeout` s is stopped and counted (seen in franky-sim: a grasp whose fingers
    ended past closed never returned, and the worker then ignored every later command)."""

    def __init__(self, gripper, speed: float = 0.1, force: float = 40.0, timeout: float = 3.0):
        super().__init__(daemon=True, name="gripper")
        self.gripper, self.speed, self.force, self.timeout = gripper, speed, force, timeout
        self._want: queue.Queue = queue.Queue()
        self.closed: bool | None = None
        self.errors = 0
        self.timeouts = 0
        self.actions = 0

    def request(self, close: bool) -> None:
        self._want.put(close)

    def run(self) -> None:
        while True:
            close = self._want.get()
            while not self._want.empty():  # only the newest decision matters
                close = self._want.get()
            if close is None:
                return
            if close == self.closed:
                continue
            self.actions += 1
            try:
                if close:
                    fut = self.gripper.grasp_async(0.0, self.speed, self.force, epsilon_inner=0.08,
                                                   epsilon_outer=0.08)
                else:
                    fut = self.gripper.move_async(GRIPPER_MAX_WIDTH, self.speed)
                if not fut.wait(self.timeout):
                    self.timeouts += 1
                    self.gripper.stop()
                self.closed = close
            except Exception:  # noqa: BLE001 - a failed grasp (nothing in hand) is not fatal
                self.errors += 1
                self.closed = close

    def stop(self) -> None:
        self._want.put(None)


class Arm:
    """franky Robot + Gripper behind a few verbs: start, command, gripper, state, hold, stop."""

    def __init__(self, hostname: str = "127.0.0.1", limits: ArmLimits = ArmLimits(),
                 stiffness=DEFAULT_STIFFNESS, gripper_hysteresis: float = 0.2):
        self.hostname, self.limits = hostname, limits
        self.stiffness = np.asarray(stiffness, float)
        self.hysteresis = gripper_hysteresis
        self.robot = self.gripper = self._tracker = self._gripper_worker = None
        self._last_target: np.ndarray | None = None
        self._last_velocity = np.zeros(7)  # of the commanded target
        self._last_time: float | None = None
        self._closed = False
        self.commands_sent = 0
        self.clamped = 0  # targets moved into the joint position / velocity limits
        self.shaped = 0  # targets the acceleration limit smoothed (most of a policy's: not a safety event)
        self.velocity_stops = 0  # damped stops because a joint moved faster than the limits allow
        self.errors: list[str] = []

    def start(self) -> "Arm":
        import franky

        self._franky = franky
        self.robot = franky.Robot(self.hostname, realtime_config=franky.RealtimeConfig.Ignore)
        # As root, franky.Robot() puts the calling thread on SCHED_FIFO 99, inherited by later threads.
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except (PermissionError, AttributeError):
            pass
        self.robot.recover_from_errors()
        self.gripper = franky.Gripper(self.hostname)
        self._gripper_worker = _GripperWorker(self.gripper)
        self._gripper_worker.start()
        self._start_tracker()
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

    def _start_tracker(self) -> None:
        franky = self._franky
        self._tracker = franky.JointImpedanceTracker(self.robot, stiffness=self.stiffness,
                                                     lower_joint_limits=Q_LOW, upper_joint_limits=Q_HIGH)
        q = self.joint_positions()
        self._tracker.set_target(q)
        self._last_target, self._last_velocity, self._last_time = q, np.zeros(7), time.monotonic()

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
        return {"actions": w.actions, "timeouts": w.timeouts, "errors": w.errors}

    @property
    def gripper_closed(self) -> bool:
        return self._closed

    # ---- commands --------------------------------------------------------------------------------
    def command(self, q_target: np.ndarray, dq_target: np.ndarray | None = None, dt: float | None = None) -> np.ndarray:
        """Stream one joint target (made safe first); returns the target actually sent."""
        checked_target(q_target)  # a bad target changes nothing
        self._check_motion()  # may restart the torque loop where the arm came to rest
        now = time.monotonic()
        dt = dt if dt is not None else max(now - (self._last_time or now), 1e-3)
        vmax = self.limits.max_velocity_factor * DQ_MAX
        # Always an explicit velocity: a target set without one keeps the tracker's previous velocity
        # feed-forward, and the arm then drifts on after a chunk's last point (seen: it never got home).
        dq = np.zeros(7) if dq_target is None else np.clip(np.nan_to_num(np.asarray(dq_target, float)), -vmax, vmax)
        q = safe_target(q_target, self._last_target, dt, self.limits)
        if not np.allclose(q, q_target):
            self.clamped += 1
        if self.limits.max_acceleration_factor is not None:
            a_max = self.limits.max_acceleration_factor * DDQ_MAX
            q_limited = q
            q = safe_target(limit_acceleration(q_target, dq, self._last_target, self._last_velocity, dt, a_max),
                            self._last_target, dt, self.limits)
            if not np.allclose(q, q_limited):
                self.shaped += 1
        v = (q - self._last_target) / dt
        if not np.allclose(q, q_target):
            dq = v  # on the way to the target: feed forward the limited motion
        self._tracker.set_target(q, dq)
        self._last_target, self._last_velocity, self._last_time = q, v, now
        self.commands_sent += 1
        return q

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
        self._gripper_worker.closed = None  # forget the last decision so the move is sent
        self._gripper_worker.request(False)

    def hold(self, q: np.ndarray | None = None) -> None:
        """Keep the current position (no new target arrived in time), or `q` (a simulator reset puts the
        arm there next)."""
        if q is None:
            self._check_motion()
        q = self.joint_positions() if q is None else np.asarray(q, float)
        self._tracker.set_target(q, np.zeros(7))
        self._last_target, self._last_velocity, self._last_time = q, np.zeros(7), time.monotonic()

    @property
    def last_target(self) -> np.ndarray:
        """The joint target last sent."""
        return self._last_target.copy()

    def _check_motion(self) -> None:
        """Errors of franky's control thread surface here: recover, restart the tracker, carry on.
        A joint moving faster than `stop_velocity_factor` x its limit gets the arm stopped (damped, as an
        FR3 reflex would) and a fresh torque loop where it came to rest. Why: seen on franky-sim, a kick
        (contact, or a far target) can saturate the torque loop into a swing of joints 2 and 4 that grows
        to ±1.8 rad at 10-17 rad/s and never decays, whatever the target; the simulator has no reflex."""
        try:
            self.robot.poll_motion()
        except Exception as e:  # noqa: BLE001 - franky raises several exception types here
            self.errors.append(str(e))
            self.robot.recover_from_errors()
            self._start_tracker()
            return
        factor = self.limits.stop_velocity_factor
        if factor is None:
            return
        dq = np.abs(np.asarray(self.robot.current_joint_state.velocity, float))
        if np.any(dq > factor * DQ_MAX):
            self.velocity_stops += 1
            self.errors.append(f"joint velocity {np.round(dq, 2).tolist()} rad/s over {factor} x the limits: "
                               "stopped the arm")
            self.restart_tracker()

    def move_home(self, q_home: np.ndarray, duration: float = 3.0, rate: float = 100.0, speed_factor: float = 0.25,
                  gripper_timeout: float = 6.0, tolerance: float = 0.02, settle_timeout: float = 5.0) -> None:
        """Open the gripper (it opens while the arm moves), interpolate the streamed target to `q_home`
        (min-jerk, peaking at `speed_factor` x the joint velocity limits: longer when the arm is far away),
        wait until every joint is within `tolerance` rad of home (RuntimeError after `settle_timeout` s),
        then wait up to `gripper_timeout` s for the fingers to be open (it may have been holding, and an
        open waits behind a gripper action still running, which the worker stops after 3 s). After a
        velocity stop the path starts again from where the arm came to rest (twice at most).
        Why slow: on franky-sim, homing from a posture a policy had thrown the arm into (joint 2 at -1.7 rad)
        at 0.5 x the limits set off the torque loop's swing (see `_check_motion`); at 0.25 x it did not."""
        if not 0 < speed_factor <= self.limits.max_velocity_factor:
            raise ValueError(f"speed_factor must be in (0, {self.limits.max_velocity_factor}], got {speed_factor}")
        self.open_gripper()
        q_home = checked_target(q_home)
        q_start, stops_start = self.joint_positions(), self.velocity_stops
        for _ in range(3):
            stops = self.velocity_stops
            q0 = self.joint_positions()
            # min-jerk peaks at 1.875x the mean speed
            d = max(duration, float(np.max(1.875 * np.abs(q_home - q0) / (speed_factor * DQ_MAX))))
            n = max(2, int(d * rate))
            for i in range(1, n + 1):
                s = i / n
                s = 10 * s**3 - 15 * s**4 + 6 * s**5
                self.command(q0 + (q_home - q0) * s, dt=1.0 / rate)
                time.sleep(1.0 / rate)
                if self.velocity_stops != stops:
                    break
            if self.velocity_stops == stops:
                break
        deadline = time.monotonic() + settle_timeout
        while np.max(np.abs(self.joint_positions() - q_home)) > tolerance:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the arm did not reach home within {settle_timeout} s: joint errors "
                    f"{np.round(self.joint_positions() - q_home, 3).tolist()} rad (at the start "
                    f"{np.round(q_start - q_home, 3).tolist()}; velocity stops {self.velocity_stops - stops_start}; "
                    f"last robot error: {self.errors[-1] if self.errors else 'none'})")
            self.command(q_home, dt=1.0 / rate)
            time.sleep(1.0 / rate)
        deadline = time.monotonic() + gripper_timeout
        while time.monotonic() < deadline and self.state()[2] < GRIPPER_MAX_WIDTH - 0.005:
            time.sleep(0.05)

    def stop(self) -> None:
        if self._gripper_worker is not None:
            self._gripper_worker.stop()
            self._gripper_worker.join(3)
        if self._tracker is not None:
            try:
                self._tracker.stop()
                self.robot.join_motion(2.0)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
            self._tracker = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
