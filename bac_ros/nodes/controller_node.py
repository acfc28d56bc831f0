"""controller_node: the only node that talks to the robot (franky). Publishes joint_states; plays one source
at a time through the shared `ChunkExecutor` and the arm's limits: the policy's chunks (bac/action_chunk,
from `chunk_source`) or the teleoperator's targets (bac/teleop_chunk, from `teleop_source`), switched by
bac/take_over and bac/hand_back and announced on the latched bac/source. Holds when chunks stop coming;
reports commands and first-command latency for the metrics. With use_sim_time the clock is the simulator's.

Sources: both go through the same executor, limits and acceleration shaping, so a switch never makes the
arm jump (the limits start from the last target). After a switch only chunks planned after it play; the
policy's play `commit_steps` before the newest takes over, the teleoperator's take over at once. A take-over
while a policy plays (state running) is an intervention: counted, stamped, on bac/source.

States (on /diagnostics and the latched /bac/controller_state):
connecting  no robot yet: retries with back-off; exit 2 after `connect_timeout_s` at start-up
ready       holding the measured pose; chunks play after /bac/start (bac/stop: back here, braking first)
running     playing chunks
faulted     a robot error (reflex, control exception) or the robot gone: no commands; /bac/recover
            (franky's recover_from_errors, a fresh torque loop at the measured pose, then ready), and
            a robot that went away is reconnected by itself (then ready)
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState, TimeReference
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ..core.native_threads import start_native_thread
from ..robot.fr3_arm import DEFAULT_DAMPING, DEFAULT_STIFFNESS, FR3Arm, HomingError, MotionStopped, RobotFault, drive
from ..robot.interface import Arm
from ..robot.limits import ArmLimits
from ..robot.model import GRIPPER_MAX_WIDTH, Q_HOME
from ..robot.streaming import CONTROL_RATE_HZ, ChunkExecutor, ChunkRules, Source
from .messages import (ControllerState, controller_state_message, source_message, to_time,
                       trajectory_to_chunk, vector_to_joint_state)
from .senders import Pending, SenderIdentity
from .params import Param, declare_params, from_settings, settings_from
from .runtime import LATCHED_QOS, Reporter, diagnostics, guarded, guarded_service, now_s, run_node, spin_in_background, steady_timer

REALTIME_MODES = ("enforce", "ignore")
SOURCES = tuple(Source)
CONNECTOR_JOIN_S = 3.0  # at shutdown, for an attempt to connect to end (franky's own timeouts can be longer)
TOPICS = {Source.POLICY: "bac/action_chunk", Source.TELEOP: "bac/teleop_chunk"}


def chunk_size_limit(max_points: int) -> int:
    """The most bytes a serialised JointTrajectory of `max_points` points for 8 joints may take: every point with
    positions, velocities, accelerations and efforts (4 x (4 + 8 x 8) bytes) and its time (8), plus 4 KiB for the
    header and joint names. Larger ones are refused before they are deserialised."""
    return 4096 + max_points * (4 * (4 + 8 * 8) + 8)
# Python's programming errors: a fault of this code, not of the robot or its link (franky's own errors are its
# exception types, or RuntimeError from the link)
INTERNAL_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, AssertionError, ArithmeticError,
                   NameError)

PARAMETERS = [
    Param("robot_ip", "172.16.0.2", "FR3 (FCI) address; franky-sim's loopback address in simulation"),
    Param("realtime_mode", "enforce", "enforce: libfranka's real-time mode (a real FR3 on a real-time kernel); "
          "ignore: simulation", choices=REALTIME_MODES),
    Param("connect_timeout_s", 30.0, "retry the first connection this long (s), then exit 2", (1.0, 3600.0)),
    Param("source", str(Source.POLICY), "the source that plays at start", choices=SOURCES),
    Param("chunk_source", "policy_node", "the node whose bac/action_chunk plays (a name, or /namespace/name); "
          "other publishers are refused and counted"),
    Param("teleop_source", "teleop_node", "the node whose bac/teleop_chunk plays"),
    Param("auto_recover", False, "clear robot errors (a reflex, a tracking error) by itself and hold; false: stay "
          "faulted until bac/recover, as franka_ros2 (a person decides)"),
    Param("joint_state_rate_hz", 100.0, "joint_states rate (Hz, wall clock)", (1.0, 1000.0)),
    Param("control_rate_hz", CONTROL_RATE_HZ, "control ticks (Hz, wall clock)", (10.0, 1000.0)),
    Param("collision_torque_thresholds", (20.0, 20.0, 18.0, 18.0, 16.0, 14.0, 12.0),
          "franky set_collision_behavior torque thresholds (Nm, 7 joints): the FR3's own reflexes"),
    Param("collision_force_thresholds", (20.0, 20.0, 20.0, 25.0, 25.0, 25.0),
          "franky set_collision_behavior force thresholds (N and Nm: x y z, rotations)"),
    Param("joint_stiffness", DEFAULT_STIFFNESS, "the torque loop's joint impedance (Nm/rad, 7 joints, > 0)"),
    Param("joint_damping", DEFAULT_DAMPING, "the torque loop's joint damping (Nm s/rad, 7 joints, >= 0); above "
          "critical, to keep the arm from overshooting the speed limit as it catches up (docs/safety.md)"),
] + from_settings(ArmLimits) + from_settings(ChunkRules)


class ControllerNode(Node):
    """See the module docstring. Threads: the executor runs the callbacks and timers; homing and recovery run
    on a side node's executor; the connection on its own thread; the arm's velocity stop on its own."""

    def __init__(self):
        super().__init__("controller_node")
        self._declare()
        self._init_state()
        self._create_interfaces()
        self._start()

    def _declare(self) -> None:
        p = declare_params(self, PARAMETERS)
        if not (p.chunk_source and p.teleop_source):
            raise ValueError("parameters chunk_source and teleop_source must name a node (e.g. policy_node)")
        if len(p.collision_torque_thresholds) != 7 or len(p.collision_force_thresholds) != 6:
            raise ValueError("collision_torque_thresholds needs 7 values and collision_force_thresholds 6")
        gains = np.asarray(p.joint_stiffness, float), np.asarray(p.joint_damping, float)
        if gains[0].shape != (7,) or gains[1].shape != (7,) or not (np.all(gains[0] > 0) and np.all(gains[1] >= 0)):
            raise ValueError(f"joint_stiffness needs 7 values > 0 and joint_damping 7 values >= 0, got "
                             f"{list(p.joint_stiffness)} and {list(p.joint_damping)}")
        self.params, self.robot_ip, self.source = p, p.robot_ip, Source(p.source)
        self.senders = {Source.POLICY: p.chunk_source, Source.TELEOP: p.teleop_source}
        self.limits = settings_from(ArmLimits, p)
        self._arm_args = dict(limits=self.limits, realtime=p.realtime_mode == "enforce",
                              collision=(p.collision_torque_thresholds, p.collision_force_thresholds),
                              auto_recover=p.auto_recover, stiffness=gains[0], damping=gains[1])

    def _init_state(self) -> None:
        self.reporter = Reporter(self)
        self.chunk_executor = ChunkExecutor(settings_from(ChunkRules, self.params))
        self._lock = threading.RLock()  # the executor and the state: chunk/tick callbacks vs the service thread
        # Homing and recovery (their own executor thread) and the control tick all drive the Arm: one at a
        # time. A tick that finds the arm taken skips (it must not block the executor publishing joint states).
        self._arm_lock = threading.Lock()
        self._homing_stop = threading.Event()  # this homing's: set by /bac/stop (a fresh one per /bac/home)
        self.arm: Arm | None = None  # FR3Arm: robot.interface says what another arm needs
        self.state, self.reason = ControllerState.CONNECTING, f"connecting to the FR3 at {self.robot_ip}"
        self.exit_error: str | None = None
        self._connector: threading.Thread | None = None
        self.interventions: list[float] = []  # when a take-over interrupted a running policy (node clock, s)
        self._source_since = 0.0
        self._closing = threading.Event()  # set at shutdown: connect attempts end
        self._shut_down = False
        self._pending = Pending()  # chunks from publishers discovery has not named yet
        # the control tick's own duration and the gap between ticks (wall ms), the largest since the last
        # /diagnostics (where they are reported, then reset)
        self.tick_max_ms = self.tick_gap_max_ms = 0.0
        self._tick_start: float | None = None

    def _create_interfaces(self) -> None:
        self.js_pub = self.create_publisher(JointState, "joint_states", 20)
        self.cmd_pub = self.create_publisher(JointState, "bac/command", 20)
        self.first_pub = self.create_publisher(TimeReference, "bac/first_command", 20)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)  # absolute: the aggregator's
        self.state_pub = self.create_publisher(String, "bac/controller_state", LATCHED_QOS)
        self.source_pub = self.create_publisher(String, "bac/source", LATCHED_QOS)
        # Raw: a chunk is deserialised only once its sender is the source and its size fits the point limit (a
        # 10 MB JointTrajectory held the control executor 1.05 s in deserialisation, whoever sent it)
        self._chunk_subs = {k: self.create_subscription(JointTrajectory, TOPICS[k],
                                                        lambda m, info, k=k: self.on_chunk(m, info, k), 5, raw=True)
                            for k in SOURCES}
        self._identity = {k: SenderIdentity(lambda k=k: [  # publisher gid -> node, per topic
            (bytes(ep.endpoint_gid), ep.node_name, ep.node_namespace)
            for ep in self.get_publishers_info_by_topic(self._chunk_subs[k].topic_name)]) for k in SOURCES}
        steady_timer(self, 0.05, self.settle_pending)
        steady_timer(self, 1.0 / self.params.joint_state_rate_hz, self.publish_joint_state)
        steady_timer(self, 1.0 / self.params.control_rate_hz, self.control_tick)
        steady_timer(self, 1.0, self.publish_diagnostics)  # the wall clock: reported even if /clock stops
        # Homing and recovery block for seconds: their services live on a side node with an executor of its
        # own, so that joint states, the clock and the control loop go on meanwhile (not the process's global
        # arguments: launch's `__node` remap would give it the main node's name).
        self._side = rclpy.create_node("controller_node_services", namespace=self.get_namespace(),
                                       context=self.context, use_global_arguments=False)
        self._side.create_service(Trigger, "bac/home", self.on_home)
        self._side.create_service(Trigger, "bac/recover", self.on_recover)
        self.create_service(Trigger, "bac/start", self.on_start)
        self.create_service(Trigger, "bac/stop", self.on_stop)
        self.create_service(Trigger, "bac/take_over", self.on_take_over)
        self.create_service(Trigger, "bac/hand_back", self.on_hand_back)

    def _start(self) -> None:
        self._stop_side = spin_in_background(self._side, "controller-services")
        self._publish_state()
        self._publish_source()
        self._connector = self._connect_in_background(deadline=time.monotonic() + self.params.connect_timeout_s)

    # ---- connection and faults -----------------------------------------------------------------------
    def _connect_in_background(self, deadline: float | None) -> threading.Thread:
        return start_native_thread(self._connect_loop, "connect", deadline)

    def _connect_loop(self, deadline: float | None) -> None:
        """Connect with back-off (0.25 s doubling to 5 s). `deadline` (start-up only): then give up, exit 2."""
        delay = 0.25
        while not self._closing.is_set():
            try:
                arm = FR3Arm(self.robot_ip, **self._arm_args).start()
            except Exception as e:  # noqa: BLE001 - franky raises several types; all mean "not yet"
                if self._closing.is_set():
                    return
                if deadline is not None and time.monotonic() > deadline:
                    self.exit_error = (
                        f"no FR3 at {self.robot_ip} within {self.params.connect_timeout_s:.0f} s (last error: {e}). Check "
                        "that the robot is on and its joints unlocked, FCI is activated in Desk, this machine "
                        "reaches robot_ip, and realtime_mode (enforce needs a real-time kernel); in simulation, "
                        "that sim_node runs with hostname = robot_ip")
                    self.context.try_shutdown()
                    return
                self.reporter.count("connect_attempts", f"FR3 at {self.robot_ip} not reachable ({e}); retrying")
                self._closing.wait(delay)
                delay = min(2 * delay, 5.0)
                continue
            if self._closing.is_set():  # connected while shutting down: nobody will drive it
                arm.stop()
                return
            with self._arm_lock:
                self.arm = arm
            with self._lock:
                self.chunk_executor.stop()
                self.state, self.reason = ControllerState.READY, f"connected to the FR3 at {self.robot_ip}; holding"
            self.reporter.count("connections")
            self.get_logger().info(f"connected to the FR3 at {self.robot_ip}")
            self._publish_state()
            return

    def _fault(self, error: BaseException, where: str) -> None:
        """A robot error keeps the connection (recover with /bac/recover), and so does an internal error (a bug
        of ours, `INTERNAL_ERRORS`: not the robot's doing, said as such); anything else from franky means the
        robot is gone: drop it and reconnect in the background."""
        kind = "robot error" if isinstance(error, RobotFault) else \
            "internal error" if isinstance(error, INTERNAL_ERRORS) else "robot lost"
        gone = kind == "robot lost"
        with self._lock:
            if self.state == ControllerState.FAULTED and (not gone or self.arm is None):
                return
            self.chunk_executor.stop()
            self.state = ControllerState.FAULTED
            detail = f"{type(error).__name__}: {error}" if kind == "internal error" else str(error)
            self.reason = f"{kind} in {where}: {detail}"
        self.reporter.count(f"faults_{kind.replace(' ', '_')}", self.reason, "error")
        if gone:
            arm, self.arm = self.arm, None
            if arm is not None:  # its threads may block on the dead link: stop it aside
                start_native_thread(arm.stop, "drop-arm")
            if self._connector is None or not self._connector.is_alive():  # one reconnect thread at a time
                self._connector = self._connect_in_background(deadline=None)
        self._publish_state()

    def _robot_call(self, where: str, fn):
        """Run `fn(arm)` if a usable robot is there; a franky error becomes a fault. Returns its result."""
        arm = self.arm
        if arm is None or (self.state == ControllerState.FAULTED):
            return None
        try:
            return fn(arm)
        except Exception as e:  # noqa: BLE001 - franky raises several types
            self._fault(e, where)
            return None

    # ---- inputs --------------------------------------------------------------------------------------
    @guarded()
    def on_chunk(self, msg: bytes, info, kind: Source = Source.POLICY) -> None:
        """A serialised JointTrajectory from `kind`'s topic."""
        gid = bytes(info["publisher_gid"]["data"])
        sender = self._identity[kind].name(gid)
        if sender is None:  # discovery has not named its node yet: it waits (`settle_pending`)
            self._pending.hold(kind, gid, msg)
            self.reporter.count("chunks_pending_identity")
            return
        self._pending.discard(kind, gid)  # superseded by this newer one
        self._play(sender, msg, kind)

    @guarded()
    def settle_pending(self) -> None:
        """Chunks that waited for discovery to name their publisher: played or refused once it has, refused
        after `Pending.timeout_s` if it never does."""
        for kind, sender, msg in self._pending.take(self._identity):
            if sender is None:
                self.reporter.count("chunks_refused_unidentified", f"chunk on {TOPICS[kind]} refused: discovery "
                                    f"did not name its publisher within {self._pending.timeout_s:.0f} s")
            else:
                self._play(sender, msg, kind)

    def _play(self, sender: tuple[str, str], msg: JointTrajectory, kind: str) -> None:
        if not SenderIdentity.matches(sender, self.senders[kind]):
            self.reporter.count("chunks_refused_source", f"chunk on {TOPICS[kind]} from {sender[0]} refused: that "
                                f"topic plays from {self.senders[kind]}")
            return
        if kind != self.source:
            self.reporter.count(f"chunks_ignored_{kind}")  # the other source plays now: not an error
            return
        limit = chunk_size_limit(self.chunk_executor.rules.chunk_max_points)
        if len(msg) > limit:
            self.chunk_executor.counts["refused_points"] += 1
            self.reporter.warn("chunks_refused_points", f"chunk on {TOPICS[kind]} refused unread: {len(msg)} bytes, "
                               f"more than chunk_max_points ({self.chunk_executor.rules.chunk_max_points}) fit in "
                               f"({limit} bytes)")
            return
        try:
            chunk = trajectory_to_chunk(deserialize_message(msg, JointTrajectory))
        except ValueError as e:
            self.reporter.count("chunks_refused_malformed", f"chunk refused: {e}")
            return
        now = now_s(self)
        with self._lock:
            reason = self.chunk_executor.offer(chunk, now)
        if reason is not None:  # counted by the executor (chunks_refused_<reason>)
            self.reporter.warn(f"chunks_refused_{reason}", f"chunk stamped {chunk.stamp:.3f} s refused at {now:.3f} "
                                f"s: {reason} (dt {chunk.dt:.4f} s, {len(chunk.actions)} points)")

    # ---- control -------------------------------------------------------------------------------------
    @guarded()
    def control_tick(self) -> None:
        t0 = time.perf_counter()
        if self._tick_start is not None:  # the gap between two ticks (ms, wall): what a stalled executor shows
            self.tick_gap_max_ms = max(self.tick_gap_max_ms, (t0 - self._tick_start) * 1e3)
        self._tick_start = t0
        try:
            self._control_tick()
        finally:
            self.tick_max_ms = max(self.tick_max_ms, (time.perf_counter() - t0) * 1e3)

    def _control_tick(self) -> None:
        if not self.state.usable or not self._arm_lock.acquire(blocking=False):
            return  # not connected, faulted, or homing
        try:
            arm = self.arm
            stops, recoveries = arm.velocity_stops, arm.auto_recoveries
            now = now_s(self)
            with self._lock:
                out = self._robot_call("control", lambda a: drive(self.chunk_executor, a, now))
                if arm.auto_recoveries != recoveries:  # auto_recover: cleared by itself, then hold
                    self.chunk_executor.stop()
                    self.state = ControllerState.READY
                    self.reason = f"recovered by itself from: {arm.errors[-1]}; holding"
                    out = None
            if arm.velocity_stops != stops:
                self.reporter.count("velocity_stops", arm.errors[-1])
            if arm.auto_recoveries != recoveries:
                self.reporter.count("recoveries", self.reason, "warn")
                self._publish_state()
        finally:
            self._arm_lock.release()
        if out is None:
            return
        cmd, q = out
        width = cmd.gripper if cmd.gripper is not None else (0.0 if arm.gripper_closed else GRIPPER_MAX_WIDTH)
        self.cmd_pub.publish(vector_to_joint_state(q, None, width, now))
        chunk = self.chunk_executor.took_over
        if chunk is not None:
            ref = TimeReference(source="controller_node")
            ref.header.stamp, ref.time_ref = to_time(now), to_time(chunk.planned_from)
            self.first_pub.publish(ref)

    @guarded()
    def publish_joint_state(self) -> None:
        arm = self.arm
        # a robot error keeps the link: the arm is still seen
        if arm is not None and self.state == ControllerState.FAULTED:
            try:
                state = arm.state()
            except Exception:  # noqa: BLE001 - faulted already; a robot gone is reported by the next call
                return
        else:
            state = self._robot_call("joint states", lambda a: a.state())
        if state is not None:
            self.js_pub.publish(vector_to_joint_state(state.q, state.dq, state.width, now_s(self), fingers=True))

    # ---- services ------------------------------------------------------------------------------------
    def _refuse_unless_usable(self, resp) -> bool:
        if self.state.usable:
            return False
        resp.success = False
        fix = "; call /bac/recover" if self.state == ControllerState.FAULTED else ""
        resp.message = f"{self.state}: {self.reason}{fix}"
        return True

    @guarded_service()
    def on_home(self, _req, resp):
        if self._refuse_unless_usable(resp):
            return resp
        with self._lock:
            self.chunk_executor.stop()  # after homing, hold home until /bac/start
            self.state, self.reason = ControllerState.READY, "homing"
            # made here, with the state: a /bac/stop from now on ends this homing, even before the motion begins
            self._homing_stop = stop = threading.Event()
        self._publish_state()
        try:
            with self._arm_lock:
                self.arm.restart_tracker()  # a fresh torque loop per episode (see FR3Arm.restart_tracker)
                self.arm.move_home(Q_HOME, duration=1.5, stop=stop)
            resp.success, resp.message = True, "home"
            self.reason = "at home; holding"
        except MotionStopped:
            resp.success, resp.message = False, "homing stopped by bac/stop"
            self.reason = "stopped by bac/stop while homing; holding where it braked"
        except HomingError as e:
            resp.success, resp.message = False, str(e)
            self.reason = "homing failed; holding"
        except Exception as e:  # noqa: BLE001 - franky raises several types
            self._fault(e, "homing")
            resp.success, resp.message = False, self.reason
        self._publish_state()
        return resp

    @guarded_service()
    def on_recover(self, _req, resp):
        """Clear a robot error: franky's recover_from_errors and a fresh torque loop at the measured pose;
        then hold (ready) until /bac/start."""
        if self.state.usable:
            resp.success, resp.message = True, f"{self.state}: nothing to recover"
            return resp
        if self.arm is None:
            resp.success, resp.message = False, f"{self.reason}; reconnecting to {self.robot_ip}"
            return resp
        try:
            with self._arm_lock:
                self.arm.recover()
            with self._lock:
                self.chunk_executor.stop()
                self.state, self.reason = ControllerState.READY, "recovered; holding"
            self.reporter.count("recoveries")
            resp.success, resp.message = True, "recovered; holding until /bac/start"
        except Exception as e:  # noqa: BLE001 - franky raises several types
            self._fault(e, "recovery")
            resp.success, resp.message = False, f"recovery failed: {e}"
        self._publish_state()
        return resp

    @guarded_service()
    def on_stop(self, _req, resp):
        """A person's stop: neither the policy nor the teleoperator plays, a homing under way ends, and the arm brakes
        through the envelope to where it can stop and holds there (ready) until /bac/start or /bac/home. Succeeds
        in every state: faulted or not connected, nothing plays already."""
        with self._lock:
            if not self.state.usable:
                resp.success, resp.message = True, f"nothing plays: {self.state}: {self.reason}"
                return resp
            self.chunk_executor.stop(hold=True)
            self.state, self.reason = ControllerState.READY, "stopped by bac/stop; holding where it braked"
            self._homing_stop.set()
        self.reporter.count("stops", "stopped by bac/stop", "info")
        self._publish_state()
        resp.success, resp.message = True, "stopped: nothing plays; the arm holds where it braked (/bac/start plays again)"
        return resp

    @guarded_service()
    def on_start(self, _req, resp):
        """Play chunks again, only those planned from observations made from now on (after /bac/home the
        controller holds home: the scene may change before the start, e.g. a new object placed)."""
        if self._refuse_unless_usable(resp):
            return resp
        now = now_s(self)
        with self._lock:
            self.chunk_executor.start(now, self._commit(self.source))
            self.state, self.reason = ControllerState.RUNNING, f"playing {self.source}"
        self._publish_state()
        resp.success, resp.message = True, f"playing {self.source} chunks stamped from {now:.3f} s"
        return resp

    def _commit(self, source: Source) -> int | None:
        """Steps a chunk plays before the newest takes over: the policy's as trained (the rules'), a
        teleoperator's none (each new target is the operator's latest intent)."""
        return 0 if source == Source.TELEOP else None

    @guarded_service()
    def on_take_over(self, _req, resp):
        return self._select(Source.TELEOP, resp)

    @guarded_service()
    def on_hand_back(self, _req, resp):
        return self._select(Source.POLICY, resp)

    def _select(self, source: Source, resp):
        """bac/take_over (teleop) and bac/hand_back (policy): switch the source that plays. While running,
        only chunks planned from now on play, starting from the arm's last target."""
        now = now_s(self)
        with self._lock:
            if source == self.source:
                resp.success, resp.message = True, f"{source} plays already"
                return resp
            if source == Source.TELEOP and self.state == ControllerState.RUNNING:
                self.interventions.append(now)  # a person took over from a running policy
            self.source, self._source_since = source, now
            if self.state == ControllerState.RUNNING:
                self.chunk_executor.start(now, self._commit(source))
                self.reason = f"playing {source}"
        self.reporter.count(f"switches_to_{source}")
        self.get_logger().info(f"source: {source} from {now:.3f} s (interventions so far: {len(self.interventions)})")
        self._publish_source()
        self._publish_state()
        resp.success, resp.message = True, f"{source} plays chunks planned from {now:.3f} s"
        return resp

    def _publish_source(self) -> None:
        self.source_pub.publish(source_message(self.source, self._source_since, self.interventions))

    # ---- reporting -----------------------------------------------------------------------------------
    def _publish_state(self) -> None:
        self.state_pub.publish(controller_state_message(self.state, self.reason))

    @guarded()
    def publish_diagnostics(self) -> None:
        values = {"state": self.state, "reason": self.reason, "source": self.source,
                  "interventions": len(self.interventions),
                  **{f"chunks_{k}": v for k, v in sorted(self.chunk_executor.counts.items())},
                  **dict(sorted(self.reporter.counts.items())),
                  "control_tick_max_ms": round(self.tick_max_ms, 2), "control_gap_max_ms": round(self.tick_gap_max_ms, 2)}
        self.tick_max_ms = self.tick_gap_max_ms = 0.0
        arm = self.arm
        if arm is not None:
            values.update({"commands": arm.commands_sent, "targets_clamped": arm.clamped,
                           "targets_shaped": arm.shaped, "workspace_refusals": arm.workspace_refusals,
                           "velocity_stops_arm": arm.velocity_stops, "robot_errors": len(arm.errors),
                           **{f"gripper_{k}": v for k, v in arm.gripper_counts().items()}})
        level = {ControllerState.RUNNING: DiagnosticStatus.OK, ControllerState.READY: DiagnosticStatus.OK,
                 ControllerState.CONNECTING: DiagnosticStatus.WARN}.get(self.state, DiagnosticStatus.ERROR)
        self.diag_pub.publish(diagnostics(self, "bac: controller_node", f"{self.state}: {self.reason}", values,
                                          level))

    def shutdown(self) -> None:
        """Stop connecting, the side node and the arm (holding it first). Once: later calls do nothing."""
        if self._shut_down:
            return
        self._shut_down = True
        self._closing.set()
        if self._connector is not None:  # it may be inside franky: the process must not end around it
            self._connector.join(CONNECTOR_JOIN_S)
        self._stop_side()
        self._side.destroy_node()
        arm, self.arm = self.arm, None
        if arm is not None:
            if self.state != ControllerState.FAULTED:
                try:
                    arm.hold()
                except Exception:  # noqa: BLE001 - best effort: the robot may be gone
                    pass
            arm.stop()


def main(args=None) -> int:
    return run_node(ControllerNode, "controller_node", args=args)


if __name__ == "__main__":
    sys.exit(main())
