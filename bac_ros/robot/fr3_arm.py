"""`FR3Arm`: the one place that talks to an FR3 through franky (a real arm or franky-sim alike).

Streaming: joint targets arrive at the action rate (30 Hz); franky's `JointImpedanceTracker` runs its own
1 kHz torque loop towards the latest (q, dq) target, so consecutive targets blend without the
stop-at-every-target of one `JointMotion` per tick (tracking errors measured in docs/control.md). Every
target is made safe first (`limits`), the TCP is kept in the workspace box, and the measured joint speeds
are watched every control tick (`check`).
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import NamedTuple

import numpy as np

from .gripper import GripperWorker
from .interface import Arm
from .kinematics import Kinematics
from .limits import ArmLimits, Envelope, box_excess, checked_target
from .model import DQ_MAX, GRIPPER_MAX_WIDTH, Q_HIGH, Q_LOW

DEFAULT_STIFFNESS = (600.0, 600.0, 600.0, 600.0, 250.0, 150.0, 50.0)  # Nm/rad, joint impedance
# Nm s/rad: above critical, to keep an arm catching up with its target from overshooting the speed limit
# (docs/safety.md, "Why x1.25 for the measured speed"); None: franky's critical damping
DEFAULT_DAMPING = (100.0, 100.0, 100.0, 100.0, 40.0, 40.0, 20.0)


class ArmState(NamedTuple):
    q: np.ndarray  # (7,) rad
    dq: np.ndarray  # (7,) rad/s
    width: float  # gripper opening, m


class HomingError(RuntimeError):
    """The arm did not reach home in time (it may be stuck on the table or the cube)."""


class MotionStopped(HomingError):
    """An internal motion (homing) was stopped on request (its `stop` event set): the arm brakes from where it was."""


class RobotFault(RuntimeError):
    """The robot reported an error (a reflex, a control or network exception): it needs `FR3Arm.recover`."""


def drive(executor, arm: Arm, now: float):
    """One control tick, the same for controller_node and the evaluation harness: the executor's command for
    `now` (the chunks' clock) through the arm's envelope (a hold: brake to where the arm can stop), or just the
    arm's checks when there is none. Returns (command, target sent) or None."""
    from .streaming import CommandKind

    cmd = executor.tick(now, arm.robot_time())
    if cmd is None:
        arm.check()  # the velocity stop and the robot's state are watched every tick, not only when commanding
        return None
    q = arm.brake() if cmd.kind is CommandKind.HOLD else arm.command(cmd.q, cmd.dq)
    if q is None:  # no robot time since the last command, or the arm is being stopped: send it next tick
        return None
    executor.sent(cmd, arm.held_back)
    if cmd.gripper is not None:
        arm.gripper_command(cmd.gripper)
    return cmd, q


class FR3Arm:
    """franky Robot + Gripper behind a few verbs: start, check, command, gripper, state, hold, stop.

    `stiffness` (Nm/rad) and `damping` (Nm s/rad, None: critical): the torque loop's joint impedance.
    `realtime`: libfranka's RealtimeConfig.Enforce (a real FR3 on a real-time kernel) or Ignore
    (simulation). `collision`: (torque thresholds (7,) Nm, force thresholds (6,) N) for franky's
    `set_collision_behavior`, None: franky's defaults. `auto_recover`: on a robot error, recover and carry
    on (the evaluation harness, in simulation); False: `check` raises `RobotFault` and the caller decides
    (controller_node: a faulted state until /bac/recover). `kinematics`: the model the workspace box is
    checked on (default: the shipped FR3 model; `Kinematics.from_urdf(arm.robot.model_urdf)` is the
    robot's own)."""

    def __init__(self, hostname: str = "127.0.0.1", limits: ArmLimits = ArmLimits(),
                 stiffness=DEFAULT_STIFFNESS, damping=DEFAULT_DAMPING, gripper_hysteresis: float = 0.2,
                 realtime: bool = False, collision: tuple | None = None,
                 auto_recover: bool = True, kinematics: Kinematics | None = None):
        self.hostname, self.limits = hostname, limits
        self.stiffness = np.asarray(stiffness, float)
        self.damping = None if damping is None else np.asarray(damping, float)
        self.hysteresis = gripper_hysteresis
        self.realtime, self.collision = realtime, collision
        self.auto_recover = auto_recover
        self.robot = self.gripper = self._tracker = self._gripper_worker = None
        self._kin = kinematics or Kinematics.fr3()
        self.envelope = Envelope(limits, self._leaves_workspace if limits.workspace is not None else None)
        self._closed = False
        self.stopping = False  # a velocity stop is under way (on its own thread): nothing is sent meanwhile
        self._stopper: threading.Thread | None = None
        self._off_since: float | None = None  # robot time since which a joint is off its target (tracking)
        self.held_back = False  # the last command stopped short of its target (velocity limit)
        self.commands_sent = 0
        self.clamped = 0  # targets moved into the joint position / velocity limits
        self.shaped = 0  # targets the acceleration limit smoothed (most of a policy's: not a safety event)
        self.workspace_refusals = 0  # targets refused because the TCP would leave the workspace box
        self.velocity_stops = 0  # damped stops because a joint moved faster than the limits allow
        self.errors: list[str] = []
        # Braking to rest through the envelope, one step per `watchdog_tick`. "fault": after a RobotFault of our
        # own checks; nothing else is sent until a restart; at rest, "settle": the target moves through the
        # envelope to the measured pose, then "held" there, so an arm stopped by an obstacle does not push on.
        # "watchdog": no command for watchdog_s while moving; it ends holding where the arm stopped, and the
        # next command takes over. None: not braking.
        self.braking: str | None = None
        self.fault_stops = self.watchdog_stops = 0
        self.auto_recoveries = 0  # robot errors `auto_recover` cleared
        self._clock: float | None = None  # the robot's clock at the last check
        self._lock = threading.RLock()  # the envelope and the torque loop's target: control tick vs watchdog
        self._last_command_t: float | None = None  # robot time of the last target sent
        self._last_dq = np.zeros(7)  # the feed-forward sent with it
        self._settle_q: np.ndarray | None = None  # after a fault stop: the measured pose the target moves to
        self._watchdog: threading.Thread | None = None
        self._watchdog_halt = threading.Event()

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
            if self.auto_recover:  # a robot error stays until someone asks for recovery (franka_ros2 alike)
                self.robot.recover_from_errors()
            if self.collision is not None:
                torque, force = self.collision
                self.robot.set_collision_behavior([float(v) for v in torque], [float(v) for v in force])
            self.gripper = franky.Gripper(self.hostname)
            self._gripper_worker = GripperWorker(self.gripper, self.robot_time)
            self._gripper_worker.start()
            self._start_tracker()
            self._watchdog_halt.clear()
            self._watchdog = threading.Thread(target=self._watch, daemon=True, name="arm-watchdog")
            self._watchdog.start()
        except BaseException:
            self.stop()
            raise
        return self

    def restart_tracker(self, recover: bool = False) -> None:
        """A fresh torque loop holding the measured pose (an unstable loop after the arm was thrown around
        holds again with a new one: docs/control.md). Robot errors are cleared only with `recover` (or
        `auto_recover`): on a real arm that is a person's decision (`bac/recover`)."""
        try:
            self.brake_to_rest(hard=self.stopping)  # franky's stop only damps: the arm coasted 2-2.5x further
            self._tracker.stop()
            self.robot.join_motion(2.0)
        except Exception as e:  # noqa: BLE001 - franky raises several exception types here
            self.errors.append(str(e))
        if recover or self.auto_recover:
            self.robot.recover_from_errors()
        self._start_tracker()

    def recover(self) -> None:
        """After a `RobotFault`: franky's error recovery, then a fresh torque loop holding the measured pose."""
        self.restart_tracker(recover=True)

    def _start_tracker(self) -> None:
        franky = self._franky
        js = self.robot.current_joint_state
        q = checked_target(js.position)  # a non-finite measured pose never becomes a target
        dq = np.asarray(js.velocity, float)
        dq = dq if dq.shape == (7,) and np.all(np.isfinite(dq)) else np.zeros(7)
        with self._lock:
            self._tracker = franky.JointImpedanceTracker(self.robot, stiffness=self.stiffness, damping=self.damping,
                                                         lower_joint_limits=Q_LOW, upper_joint_limits=Q_HIGH)
            self._tracker.set_target(q, np.zeros(7))
            self.envelope.reset(q, self.robot_time(), dq)  # from the measured velocity, not "at rest"
            self._off_since, self.braking, self._clock = None, None, None
            self._last_command_t, self._last_dq = self.robot_time(), np.zeros(7)

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

    def state(self) -> ArmState:
        """The measured arm: (q, dq, gripper width)."""
        js = self.robot.current_joint_state
        return ArmState(np.array(js.position, float), np.array(js.velocity, float), float(self.gripper.width))

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

    # ---- commands --------------------------------------------------------------------------------
    def command(self, q_target: np.ndarray, dq_target: np.ndarray | None = None, workspace: bool = True
                ) -> np.ndarray | None:
        """Stream one joint target through the envelope (`limits.Envelope`, on the robot's clock since the
        last command); returns the target sent, or None when nothing was sent (no robot time has passed, or a
        velocity stop is under way). Sets `held_back` when the limits stopped it short of the target.
        `workspace=False` lifts the box (homing only: from a posture outside the box the joint path home may
        first lead further out). Raises ValueError for a malformed or non-finite target (nothing changes) and
        `RobotFault` from `check`."""
        checked_target(q_target)  # a bad target changes nothing
        self.check()
        with self._lock:
            if self.stopping or self.braking in ("fault", "settle", "held"):
                return None
            self.braking = None  # a command takes over from the watchdog's braking
            out = self.envelope.step(q_target, dq_target, self.robot_time(), box=workspace)
            return self._send(out)

    def brake(self) -> np.ndarray | None:
        """A hold: brake at the envelope's acceleration to where the arm can stop, and stay there."""
        self.check()
        with self._lock:
            if self.stopping or self.braking in ("fault", "settle", "held"):
                return None
            self.braking = None
            return self._brake_step()

    def _brake_step(self) -> np.ndarray | None:
        stop = np.clip(self.envelope.stop_point(), self.limits.low, self.limits.high)
        return self._send(self.envelope.step(stop, None, self.robot_time()))

    def _send(self, out) -> np.ndarray | None:
        if out is None:
            return None
        self._tracker.set_target(out.q, out.dq)
        self._last_command_t, self._last_dq = self.robot_time(), np.asarray(out.dq, float)
        self.held_back = out.held_back
        self.clamped += out.clamped
        self.shaped += out.shaped
        self.workspace_refusals += out.box_refused
        self.commands_sent += 1
        return out.q

    FLOOR_FRAMES = 3  # the joint frames from the elbow (joint 4) on, and the TCP, are kept above the box's floor

    def _workspace_excess(self, q: np.ndarray) -> float:
        """How far (m) the arm at `q` is out of its workspace: the TCP out of the box, or a frame from the elbow
        on (elbow, wrist, flange) below the box's floor (the TCP alone let them reach z -0.116 m)."""
        box = self.limits.workspace
        frames, (_, tcp) = self._kin.frames(q)
        floor = box[0][2]
        below = max((floor - p[2] for _, p in frames[self.FLOOR_FRAMES:]), default=0.0)
        return max(box_excess(tcp, box), below, 0.0)

    def _leaves_workspace(self, q_from: np.ndarray, q_stop: np.ndarray) -> bool:
        """The arm at `q_stop` is out of its workspace (`_workspace_excess`) and further out than at `q_from`
        (moving back in, e.g. homing from outside, is allowed)."""
        out = self._workspace_excess(q_stop)
        return out > 0 and out > self._workspace_excess(q_from) - 1e-9

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
        """Keep the arm still: brake to where it can stop (`brake`). With `q` (simulator only: a reset puts
        the arm there next), the torque loop is told to hold `q` at once, outside the envelope."""
        if q is None:
            self.brake()
            return
        q = checked_target(q)
        with self._lock:
            self._tracker.set_target(q, np.zeros(7))
            self.envelope.reset(q, self.robot_time())
            self.braking, self._last_command_t, self._last_dq = None, self.robot_time(), np.zeros(7)

    def check(self) -> None:
        """Call every control tick; raises `RobotFault` (with `auto_recover`: recovers and carries on) for
        - an error of franky's control thread (a reflex, a control exception);
        - a measured state that is not finite (nothing can be commanded from it), a robot clock that is not finite
          or goes back (the last target is held with no feed-forward: nothing can be braked on such a clock);
        - a joint further than `tracking_tolerance` from its target for `tracking_timeout_s` of robot time
          (the joint trajectory controller's path tolerance: a stuck or pushed arm).
        A joint measured faster than `stop_velocity_factor` x its limit starts a velocity stop on its own
        thread (franky's damped stop, then a fresh torque loop where the arm rests; no command meanwhile):
        franky-sim has no reflex, and a kick can saturate its torque loop into a swing that never decays."""
        if self.stopping:
            return
        t = self.robot_time()
        if not np.isfinite(t) or (self._clock is not None and t < self._clock - 1e-6):
            with self._lock:  # no clock to brake on: hold the last target, no feed-forward (once)
                if self._tracker is not None and self.envelope.q is not None and self.braking != "held":
                    self._tracker.set_target(self.envelope.q, np.zeros(7))
                self.braking, self._last_dq = "held", np.zeros(7)
            self.errors.append(f"robot clock at {t} s after {self._clock} s")
            raise RobotFault(f"the robot's clock is not monotonic or not finite: {t} s after {self._clock} s")
        self._clock = t
        try:
            self.robot.poll_motion()
        except Exception as e:  # noqa: BLE001 - franky raises several exception types here
            self._robot_error(f"robot error: {e}", e)
            return
        js = self.robot.current_joint_state
        q, dq = np.asarray(js.position, float), np.asarray(js.velocity, float)
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(dq))):
            self._fault_stop()
            raise RobotFault(f"measured joint state is not finite: q {q.tolist()}, dq {dq.tolist()}")
        lim = self.limits
        if lim.velocity_stop_enabled and np.any(np.abs(dq) > lim.stop_velocity_factor * DQ_MAX):
            self.velocity_stops += 1
            self.errors.append(f"joint velocity {np.round(np.abs(dq), 2).tolist()} rad/s over "
                               f"{lim.stop_velocity_factor} x the limits: stopped the arm")
            self._stop_in_background()
            return
        if lim.tracking_tolerance > 0 and self.envelope.q is not None:
            off = np.abs(q - self.envelope.q)
            now = self.robot_time()
            if np.all(off <= lim.tracking_tolerance):
                self._off_since = None
            elif self._off_since is None:
                self._off_since = now
            elif now - self._off_since > lim.tracking_timeout_s:
                j = int(np.argmax(off))
                self._off_since = None
                self._robot_error(f"tracking error: joint {j + 1} is {off[j]:.3f} rad from its target (tolerance "
                                  f"{lim.tracking_tolerance} rad) for over {lim.tracking_timeout_s} s")

    def _robot_error(self, message: str, cause: BaseException | None = None) -> None:
        self.errors.append(message)
        if not self.auto_recover:
            if cause is None:  # our own check (franky's errors end its motion themselves)
                self._fault_stop()
            raise RobotFault(message) from cause
        self.robot.recover_from_errors()
        self._start_tracker()
        self.auto_recoveries += 1

    # ---- braking after a fault, and the watchdog ---------------------------------------------------------
    def _fault_stop(self) -> None:
        """A fault of our own checks: the watchdog thread brakes the arm to rest through the envelope (never the
        stale target and feed-forward franky's tracker would keep), then holds the measured pose."""
        with self._lock:
            if self.braking != "fault":
                self.braking = "fault"
                self.fault_stops += 1

    def watchdog_tick(self) -> None:
        """Called every few ms on the watchdog's thread: one braking step when braking; starts braking when no
        command came for `watchdog_s` of robot time while the arm was moving (or had feed-forward)."""
        with self._lock:
            if self._tracker is None or self.stopping or self.envelope.q is None or self.braking == "held":
                return
            now = self.robot_time()
            if self.braking is None:
                idle = self._last_command_t is not None and now - self._last_command_t > self.limits.watchdog_s
                if not idle or not (np.any(np.abs(self.envelope.u) > 1e-3) or np.any(self._last_dq != 0)):
                    return
                self.braking = "watchdog"
                self.watchdog_stops += 1
                self.errors.append(f"no command for {now - self._last_command_t:.3f} s while moving: braking")
            if self.braking == "settle":  # the target to the measured pose, through the envelope: no step
                out = self.envelope.step(self._settle_q, None, now, box=False)
                if out is not None:
                    self._tracker.set_target(out.q, out.dq)
                    if not out.held_back and np.all(np.abs(out.dq) <= 1e-3):
                        self.braking = "held"  # nothing more until a restart
                return
            if np.any(np.abs(self.envelope.u) > 1e-3):  # rad/s: not yet at rest
                self._brake_step()
                return
            if self.braking == "fault":  # at rest: then to where the arm is, pushing nothing
                js = self.robot.current_joint_state
                q = np.asarray(js.position, float)
                finite = np.all(np.isfinite(q)) and np.all(np.isfinite(np.asarray(js.velocity, float)))
                # through the envelope, not a jump: 0.05-0.07 rad at 600 Nm/rad is a 30-40 Nm torque step
                self._settle_q, self.braking = (q, "settle") if finite else (None, "held")
            else:
                self._tracker.set_target(self.envelope.q, np.zeros(7))
                self.envelope.reset(self.envelope.q, now)
                self._last_dq = np.zeros(7)
                self.braking = None

    def brake_to_rest(self, timeout_s: float = 2.0, hard: bool = False) -> bool:
        """Bring the streamed target to rest through the envelope (`hard`: at the FR3's own velocity and
        acceleration limits from the measured velocity, for the velocity stop), then hold it with zero
        feed-forward: what shutdown, a restart of the torque loop and the velocity stop do before franky's
        damping-only stop. Returns whether it came to rest within `timeout_s` of wall time (a world that holds
        its clock brakes nothing); nothing to do at rest or after a fault stop."""
        if self._tracker is None or self.envelope.q is None or self.braking == "held":
            return True
        env = self.envelope
        if hard:
            full = dataclasses.replace(self.limits, max_velocity_factor=1.0, max_acceleration_factor=1.0,
                                       acceleration_limit_enabled=True)
            env = Envelope(full)
            dq = np.asarray(self.robot.current_joint_state.velocity, float)
            env.reset(self.envelope.q, self.envelope.t, dq if np.all(np.isfinite(dq)) else self.envelope.u)
        deadline = time.monotonic() + timeout_s
        clock, moved = self.robot_time(), time.monotonic()
        while np.any(np.abs(env.u) > 1e-3):
            now = time.monotonic()
            if now > deadline or now - moved > 0.05:  # out of time, or the robot's clock stands still
                return False
            if self.robot_time() != clock:
                clock, moved = self.robot_time(), now
            with self._lock:
                stop = np.clip(env.stop_point(), env.limits.low, env.limits.high)
                out = env.step(stop, None, self.robot_time(), box=False)
                if out is not None:
                    self._tracker.set_target(out.q, out.dq)
            time.sleep(0.002)
        with self._lock:
            self._tracker.set_target(env.q, np.zeros(7))
            self.envelope.reset(env.q, self.robot_time())
            self._last_command_t, self._last_dq = self.robot_time(), np.zeros(7)
        return True

    def _watch(self) -> None:
        while not self._watchdog_halt.wait(0.005):
            try:
                self.watchdog_tick()
            except Exception as e:  # noqa: BLE001 - a robot gone: the control tick's check reports it
                if not self.errors or self.errors[-1] != f"watchdog: {e}":
                    self.errors.append(f"watchdog: {e}")

    def _stop_in_background(self) -> None:
        """The velocity stop: franky's damped stop and a bounded wait for it on a thread of its own, then a fresh
        torque loop where the arm came to rest (robot errors cleared only with `auto_recover`)."""
        self.stopping = True

        def stop():
            try:
                self.restart_tracker()
            except Exception as e:  # noqa: BLE001 - the next check reports a robot that went away
                self.errors.append(f"velocity stop failed: {e}")
            finally:
                self.stopping = False

        self._stopper = threading.Thread(target=stop, daemon=True, name="velocity-stop")
        self._stopper.start()

    HOME_SPEED_FACTOR = 0.25  # homing's peak speed (x the FR3 velocity limits) unless the lab's envelope is slower

    def move_home(self, q_home: np.ndarray, duration: float = 3.0, rate: float = 100.0,
                  speed_factor: float | None = None, gripper_timeout: float = 6.0, tolerance: float = 0.02,
                  settle_timeout: float = 5.0, stop: threading.Event | None = None) -> None:
        """Open the gripper (it opens while the arm moves), move the streamed target to `q_home` along a
        min-jerk path timed in robot time (peaking at `speed_factor` x the joint velocity limits, default
        `HOME_SPEED_FACTOR` or 90 % of the envelope's `max_velocity_factor` if lower, and at 90 % of the envelope's
        acceleration: longer when the arm is far away), wait until every joint is within `tolerance` rad of home
        (HomingError after `settle_timeout` s), then wait up to `gripper_timeout` s for the fingers to be open. Every
        duration is robot time, so a simulator running below real time slows homing instead of failing
        it. After a velocity stop the path starts again from where the arm came to rest (twice at most).
        Slow, because homing fast from a posture a policy threw the arm into can set off the torque loop's
        swing (docs/control.md, the velocity stop). The workspace box does not apply: from a posture outside it
        the joint path home may first lead further out. `stop` (set from another thread: a person's stop) ends
        it at its next step with `MotionStopped`; the caller makes it when it accepts the request, so a stop
        that comes before the motion begins still ends it."""
        if speed_factor is None:
            speed_factor = min(self.HOME_SPEED_FACTOR, 0.9 * self.limits.max_velocity_factor)  # tracking overshoots
        if not 0 < speed_factor <= self.limits.max_velocity_factor:
            raise ValueError(f"speed_factor must be in (0, {self.limits.max_velocity_factor}], got {speed_factor}")
        stop = stop or threading.Event()
        self.open_gripper()
        q_home = checked_target(q_home)
        q_start, stops_start = self.joint_positions(), self.velocity_stops

        def step_to(q):  # one command; the envelope times it by the robot's clock since the last one
            time.sleep(1.0 / rate)
            if stop.is_set():  # the caller's control ticks brake from here
                raise MotionStopped("homing stopped on request")
            self.command(q, workspace=False)

        for _ in range(3):
            stops = self.velocity_stops
            q0 = self.joint_positions()
            # min-jerk peaks at 1.875x the mean speed and 5.77 distance / d^2 in acceleration
            dist = np.abs(q_home - q0)
            d = max(duration, float(np.max(1.875 * dist / (speed_factor * DQ_MAX))),
                    float(np.sqrt(np.max(5.7735 * dist / (0.9 * self.limits.acceleration)))))
            t0, s = self.robot_time(), 0.0
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
        while not expired() and self.state().width < GRIPPER_MAX_WIDTH - 0.005:
            if stop.is_set():
                raise MotionStopped("homing stopped on request (the arm is home, the fingers opening)")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the gripper worker and the torque loop; best effort (the robot may be gone). Joins are bounded."""
        self._watchdog_halt.set()
        if self._watchdog is not None:
            self._watchdog.join(1.0)
            self._watchdog = None
        if self._stopper is not None:
            self._stopper.join(3.0)
        if self._gripper_worker is not None:
            self._gripper_worker.stop()
            self._gripper_worker.join(3)
            self._gripper_worker = None
        if self._tracker is not None:
            try:
                self.brake_to_rest(timeout_s=1.0)
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
