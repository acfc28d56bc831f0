"""Fault injection against the real graph (sim_node + controller_node + policy_node over DDS on loopback,
franky-sim as the FR3), one graph for the module, every process stopped by PID. Each case injects a fault,
then judges the arm, not the controller's intentions: the *measured* joint positions within the joint limits,
measured speeds and accelerations within the configured envelope (plus the tracking tolerance stated in
`TRACKING`), the TCP in the workspace box (likewise); no process died, the fault counted in /diagnostics, and
afterwards a valid stream moves the arm to a target it did not hold before, without a restart. The table
fault -> outcome, with the measured maxima against the envelope, is printed at the end of the run (conftest).

The injector publishes as the nodes the controller plays (`policy_node`, `teleop_node`: its sources are
fixed at start-up) and as an `intruder`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bac_ros.nodes.messages", reason="rclpy / ROS 2 messages not importable")

from bac_ros.analysis.motion import resample  # noqa: E402
from bac_ros.core.settings import from_mapping, node_parameters  # noqa: E402
from bac_ros.robot.kinematics import Kinematics  # noqa: E402
from bac_ros.robot.limits import ArmLimits, box_excess  # noqa: E402
from bac_ros.robot.model import Q_HIGH, Q_HOME, Q_LOW  # noqa: E402

from support import FAULT_TABLE  # noqa: E402

HOST = "127.0.0.8"
DOMAIN = 207
LIMITS = from_mapping(ArmLimits, node_parameters("controller_node"))
# What the measured arm may exceed the commanded envelope by while the torque loop tracks it (franky-sim,
# stiffness 600 Nm/rad): positions 0.02 rad past the margins, speed +25 %, the TCP 2 cm past the box while
# braking, acceleration x4 over 40 ms cells of the joint states. The torque loop holds each target until the
# next control tick; on a loaded 2-core machine ticks came up to 35-48 ms of robot time apart, and the arm's
# acceleration over 20 ms cells reached 2.0-4.6x the envelope, valid streams included: that ripple, not a
# target past the envelope (docs/safety.md). The commanded envelope itself is proven by the property tests.
TRACKING = {"position_rad": 0.02, "speed": 1.25, "acceleration": 4.0, "box_m": 0.02}
CELL_HZ = 25.0
LOAD_S = float(os.environ.get("BAC_FAULT_LOAD_S", "20"))  # the saturating load's length (s, wall)
KIN = Kinematics.fr3()
CONTROLLER, POLICY = "bac: controller_node", "bac: policy_node"


class Graph:
    """The processes under test and an injector (`GraphClient`, use_sim_time) that publishes and records
    every command and joint state with the wall-clock time it came."""

    def __init__(self, log_dir: Path):
        import rclpy
        from sensor_msgs.msg import Image, JointState
        from trajectory_msgs.msg import JointTrajectory

        from bac_ros.graph.client import GraphClient
        from bac_ros.graph.processes import Processes
        from bac_ros.nodes.runtime import spin_in_background

        self.env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                    "ROS_LOCALHOST_ONLY": "1", "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.procs = Processes(log_dir, self.env)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=DOMAIN)
        self.client = GraphClient("fault_injector", check=self.procs.check, context=self.ctx)
        self.intruder = rclpy.create_node("intruder", context=self.ctx)
        self.as_policy = rclpy.create_node("policy_node", context=self.ctx)  # the controller's chunk_source
        self.as_teleop = rclpy.create_node("teleop_node", context=self.ctx)  # and its teleop_source
        self.lock = threading.Lock()
        self.commands: list = []  # (wall, stamp, q (7,))
        self.joints: list = []  # (wall, stamp, q (7,), dq (7,))
        n = self.client.node
        n.create_subscription(JointState, "bac/command", self._on_command, 100)
        n.create_subscription(JointState, "joint_states", self._on_joints, 100)
        self.chunk_pub = self.as_policy.create_publisher(JointTrajectory, "bac/action_chunk", 100)
        self.teleop_pub = self.as_teleop.create_publisher(JointTrajectory, "bac/teleop_chunk", 10)
        self.intruder_pub = self.intruder.create_publisher(JointTrajectory, "bac/action_chunk", 10)
        self.image_pub = n.create_publisher(Image, "camera/color/image_raw", 10)
        self.js_pub = n.create_publisher(JointState, "joint_states", 10)
        self._stop_intruder = spin_in_background(self.intruder, "intruder")

    @property
    def state(self) -> str:
        return self.client.controller_state

    # ---- recording -----------------------------------------------------------------------------------
    def _on_command(self, msg):
        from bac_ros.nodes.messages import to_sec

        with self.lock:
            self.commands.append((time.monotonic(), to_sec(msg.header.stamp), np.asarray(msg.position[:7])))

    def _on_joints(self, msg):
        from bac_ros.nodes.messages import to_sec

        if len(msg.velocity) >= 7 and msg.name and msg.name[0] == "fr3_joint1":
            with self.lock:
                self.joints.append((time.monotonic(), to_sec(msg.header.stamp), np.asarray(msg.position[:7]),
                                    np.asarray(msg.velocity[:7])))

    # ---- helpers -------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.client.now()

    def count(self, key: str, who: str = CONTROLLER) -> int:
        return self.client.count(who, key)

    def wait_for(self, what, timeout: float, message: str):
        return self.client.wait_for(what, timeout, message)

    def wait_counter(self, key: str, above: int, timeout: float = 10.0, who: str = CONTROLLER) -> int:
        return self.wait_for(lambda: self.count(key, who) > above and self.count(key, who), timeout,
                             f"{who} diagnostics {key} did not rise above {above}")

    def publish(self, actions: np.ndarray, stamp: float, dt: float, pub=None, names=None) -> None:
        from bac_ros.nodes.messages import chunk_to_trajectory

        msg = chunk_to_trajectory(actions, stamp, dt)
        if names is not None:
            msg.joint_names = names
        (pub or self.chunk_pub).publish(msg)

    def stream(self, seconds: float, amplitude: float = 0.15) -> None:
        """A valid plan: a slow sine of joint 1 around home (0.5 Hz), gripper open, chunks at 30 Hz."""
        dt, t_end = 1 / 30, self.now() + seconds
        while self.now() < t_end:
            t0 = self.now()
            ts = t0 + dt * np.arange(16)
            plan = np.tile(np.r_[Q_HOME, 0.08], (16, 1))
            plan[:, 0] += amplitude * np.sin(2 * np.pi * 0.5 * ts)
            self.publish(plan, t0, dt)
            time.sleep(dt)

    def mark(self) -> float:
        return time.monotonic()  # the wall clock: a restarted simulator starts its clock at 0 again

    def check_motion(self, since: float) -> dict:
        """The arm since `since` (wall clock), judged on what was measured (joint states stamped on the
        graph's clock, the simulator's): positions within the joint limits, speeds and accelerations within the
        envelope, the TCP in the box, each with the `TRACKING` tolerance. Returns the maxima as fractions of the
        envelope."""
        with self.lock:
            cmds = [q for w, _, q in self.commands if w >= since]
            js = [(t, q, dq) for w, t, q, dq in self.joints if w >= since]
        if len(js) < 10:
            return {"commands": len(cmds), "max_speed": 0.0, "max_accel": 0.0, "max_out_rad": 0.0, "box_out_m": 0.0}
        t = np.array([x[0] for x in js])
        q = np.stack([x[1] for x in js])
        dq = np.stack([x[2] for x in js])
        tol = TRACKING["position_rad"]
        out = float(np.max(np.maximum(q - (LIMITS.high + tol), (LIMITS.low - tol) - q)))
        assert np.all(q <= Q_HIGH) and np.all(q >= Q_LOW), "a joint measured past its FR3 limit"
        assert out <= 0.0, f"a joint measured {out + tol:.3f} rad past the limit margin"
        speed = float(np.max(np.abs(dq) / LIMITS.velocity))
        assert speed <= TRACKING["speed"], f"a joint measured at {speed:.2f} x the envelope's speed"
        grid, v = resample(t, dq, CELL_HZ)  # cell medians: stamps bunched by a slow simulator make no spikes
        accel = float(np.max(np.abs(np.diff(v, axis=0)) * CELL_HZ / LIMITS.acceleration)) if len(v) > 2 else 0.0
        assert accel <= TRACKING["acceleration"], f"a joint measured at {accel:.2f} x the envelope's acceleration"
        box_out = 0.0
        if LIMITS.workspace is not None:
            start_out = box_excess(KIN.fk(q[0])[0], LIMITS.workspace)
            box_out = max(box_excess(KIN.fk(x)[0], LIMITS.workspace) for x in q[::5]) - start_out
            assert box_out <= TRACKING["box_m"], f"the TCP measured {box_out:.3f} m further out of the box"
        return {"commands": len(cmds), "max_speed": speed, "max_accel": accel, "max_out_rad": out + tol,
                "box_out_m": box_out}

    def move_to_new_target(self, seconds: float = 1.5) -> str:
        """A valid stream to a pose the arm does not hold (joint 1 and 4 moved 0.15 rad from where it is, the
        direction alternating unless that one leaves the workspace box): the arm must get there, measured within
        0.02 rad."""
        self.moves = getattr(self, "moves", 0) + 1
        with self.lock:
            start = self.joints[-1][2].copy()
        sign = 1.0 if self.moves % 2 else -1.0
        for s in (sign, -sign):  # the direction that keeps the TCP in the box (joint 1 far out: only back)
            target = start.copy()
            target[[0, 3]] += s * 0.15
            target = np.clip(target, LIMITS.low + 0.05, LIMITS.high - 0.05)
            if LIMITS.workspace is None or box_excess(KIN.fk(target)[0], LIMITS.workspace) <= 0.0:
                break
        dt, t_end = 1 / 30, self.now() + seconds
        t_begin = self.now()
        while self.now() < t_end:
            t0 = self.now()
            s = np.clip((t0 - t_begin + dt * np.arange(16)) / (0.6 * seconds), 0.0, 1.0)
            plan = np.c_[start + (target - start) * s[:, None], np.full(16, 0.08)]
            self.publish(plan, t0, dt)
            time.sleep(dt)
        with self.lock:
            got = self.joints[-1][2]
        err = float(np.max(np.abs(got - target)))
        assert err <= 0.02, f"the valid stream did not move the arm to its new target (off by {err:.3f} rad)"
        return f"then moved to a new target (within {err:.3f} rad)"

    def alive(self) -> None:
        self.procs.check()

    def close(self) -> None:
        import rclpy

        self._stop_intruder()
        self.client.close()
        for node in (self.intruder, self.as_policy, self.as_teleop):
            if node is not None:
                node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)
        self.procs.stop_all()


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    from bac_ros.core.paths import CONFIG_DIR

    g = Graph(tmp_path_factory.mktemp("faults"))
    g.params = CONFIG_DIR / "grasp.yaml"
    try:
        yield g
    finally:
        g.close()


CASES: list[tuple[str, str]] = []


def case(name: str):
    """Run one fault case; its row (fault -> outcome) goes into the printed table, pass or fail."""
    def wrap(fn):
        def run(graph):
            t0 = time.monotonic()
            try:
                outcome = fn(graph)
            except BaseException as e:
                FAULT_TABLE.append((name, f"FAILED: {str(e).splitlines()[0][:140]}", time.monotonic() - t0))
                raise
            FAULT_TABLE.append((name, outcome, time.monotonic() - t0))
        run.__name__ = fn.__name__
        return run
    return wrap


def _plays_a_stream(graph) -> tuple[str, dict]:
    """Home, start and a valid stream that moves the arm to a new target: (what moved, the motion's figures)."""
    graph.client.call("bac/home")
    graph.client.call("bac/start")
    since = graph.mark()
    graph.stream(2.0)
    moved = graph.move_to_new_target()
    m = graph.check_motion(since)
    assert m["commands"] > 20, m
    return moved, m


def _motion(m: dict) -> str:
    return (f"{m['commands']} commands; measured peak speed {m['max_speed']:.2f}, acceleration {m['max_accel']:.2f} "
            f"x the envelope")


@pytest.mark.slow
@case("robot unreachable at start (controller before the simulated FR3)")
def test_controller_started_before_the_robot_connects_once_it_is_up(graph):
    sim_time = {"use_sim_time": True}
    graph.procs.start("controller_node", graph.params, {"robot_ip": HOST, "realtime_mode": "ignore",
                                                        "connect_timeout_s": 120.0, **sim_time})
    graph.wait_for(lambda: graph.state.startswith("connecting"), 30, "controller did not report connecting")
    attempts = graph.wait_counter("connect_attempts", 0, 30)
    time.sleep(3.0)  # nothing listens yet: the controller keeps retrying, alive
    graph.alive()
    graph.procs.start("sim_node", graph.params, {"hostname": HOST, "episode_time_s": 1000.0})
    graph.wait_for(lambda: graph.state.startswith("ready"), 60, "controller did not connect to the late robot")
    graph.wait_for(lambda: graph.joints, 10, "no joint states after connecting")
    moved, m = _plays_a_stream(graph)
    return f"retried {attempts}+ times, connected when the sim came up; a valid stream then played, {moved} ({_motion(m)})"


def _inject(graph, build, key: str, times: int = 3, **kw) -> str:
    """Publish `build(now)` `times` times, expect the counter `key` to rise, the arm within limits, and a valid
    stream to play afterwards."""
    before = graph.count(key)
    since = graph.mark()
    for _ in range(times):
        actions, stamp, dt = build(graph.now())
        graph.publish(actions, stamp, dt, **kw)
        time.sleep(0.1)
    after = graph.wait_counter(key, before)
    moved = graph.move_to_new_target()  # the valid stream after the fault plays
    m = graph.check_motion(since)
    graph.alive()
    return f"refused, {key} +{after - before}; {moved} ({_motion(m)})"


def _plan(n=16, value=None):
    plan = np.tile(np.r_[Q_HOME, 0.08], (n, 1))
    if value is not None:
        plan[:, :] = value
    return plan


@pytest.mark.slow
@case("NaN / inf positions")
def test_non_finite_chunks(graph):
    def build(now):
        p = _plan()
        p[3, 2], p[5, 0] = np.nan, np.inf
        return p, now, 1 / 30
    return _inject(graph, build, "chunks_refused_malformed")


@pytest.mark.slow
@case("8 names, 7 positions per point")
def test_short_points(graph):
    from bac_ros.nodes.messages import chunk_to_trajectory

    before = graph.count("chunks_refused_malformed")
    msg = chunk_to_trajectory(_plan(), graph.now(), 1 / 30)
    for p in msg.points:
        p.positions = p.positions[:7]
    graph.chunk_pub.publish(msg)
    after = graph.wait_counter("chunks_refused_malformed", before)
    graph.alive()
    return f"refused, chunks_refused_malformed +{after - before}; controller alive (this crashed it before)"


@pytest.mark.slow
@case("wrong / unknown joint names")
def test_unknown_names(graph):
    from bac_ros.nodes.messages import JOINT_NAMES

    names = [n.replace("fr3", "panda") for n in JOINT_NAMES]
    return _inject(graph, lambda now: (_plan(), now, 1 / 30), "chunks_refused_malformed", names=names)


@pytest.mark.slow
@case("0 points, 1 point and 1000 points")
def test_point_counts(graph):
    out = _inject(graph, lambda now: (_plan(n=1), now, 1 / 30), "chunks_refused_malformed", times=2)
    out2 = _inject(graph, lambda now: (_plan(n=1000), now, 1 / 30), "chunks_refused_points", times=2)
    from trajectory_msgs.msg import JointTrajectory

    from bac_ros.nodes.messages import JOINT_NAMES

    before = graph.count("chunks_refused_malformed")
    graph.chunk_pub.publish(JointTrajectory(joint_names=list(JOINT_NAMES)))
    graph.wait_counter("chunks_refused_malformed", before)
    return f"0/1 point: {out.split(';')[0]}; 1000 points: {out2.split(';')[0]}"


@pytest.mark.slow
@case("stamped 15 s in the future (a wall-clock stamp in a sim-time graph)")
def test_future_stamp(graph):
    return _inject(graph, lambda now: (_plan(), now + 15.0, 1 / 30), "chunks_refused_future")


@pytest.mark.slow
@case("stamped 10 s in the past")
def test_past_stamp(graph):
    return _inject(graph, lambda now: (_plan(), now - 10.0, 1 / 30), "chunks_refused_expired")


def _step_plan(jump: float, n: int = 4) -> np.ndarray:
    p = _plan(n)
    p[1:, 0] += jump
    return p


@pytest.mark.slow
@case("1 rad step of joint 1 at coarse dt (5 s and 0.4 s), re-published every 0.2 s")
def test_coarse_dt_steps(graph):
    out = _inject(graph, lambda now: (_step_plan(1.0), now, 5.0), "chunks_refused_dt", times=5)
    _inject(graph, lambda now: (_step_plan(0.5), now, 0.4), "chunks_refused_dt", times=5)
    return out


@pytest.mark.slow
@case("1 rad step of joint 1 at fine dt (1/30 s)")
def test_fine_dt_step(graph):
    before = graph.count("chunks_catch_ups")
    since = graph.mark()
    for _ in range(10):  # 1 s of a plan that jumps 1 rad at its second point
        graph.publish(_step_plan(1.0, n=16), graph.now(), 1 / 30)
        time.sleep(0.1)
    m = graph.check_motion(since)
    q1 = max(q[0] for w, _, q in graph.commands if w >= since)
    moved = graph.move_to_new_target(2.0)  # and back to a valid stream, at the limits
    m2 = graph.check_motion(since)
    return (f"accepted and approached at the limits (catch-ups +{graph.count('chunks_catch_ups') - before}, "
            f"joint 1 reached {q1 - Q_HOME[0]:.2f} rad; {_motion(m)}); {moved} ({_motion(m2)})")


def _clamped(graph, key: str, plans, settle: float) -> str:
    """Publish `plans` (one every 0.1 s), expect `key` to rise, then a valid stream; the arm within limits."""
    before, since = graph.count(key), graph.mark()
    for p in plans:
        graph.publish(p, graph.now(), 1 / 30)
        time.sleep(0.1)
    after = graph.wait_counter(key, before)
    graph.stream(settle)
    moved = graph.move_to_new_target()
    return f"{key} +{after - before}; {moved} ({_motion(graph.check_motion(since))})"


@pytest.mark.slow
@case("targets outside the joint limits (joint 4 at +1 rad, joint 7 at 5 rad; the TCP then leaves the box too)")
def test_targets_outside_limits(graph):
    p = _plan()
    p[:, 3], p[:, 6] = 1.0, 5.0
    return "clamped into the limits, " + _clamped(graph, "targets_clamped", [p] * 10, 2.5)


@pytest.mark.slow
@case("TCP target out of the workspace box (0.6 m to the side)")
def test_workspace(graph):
    # joint 1 at 1.2 rad swings the TCP to y = 0.52 m, past the box's 0.40 (to the side: no contact with the
    # table, which would be a collision test, not a box test)
    side = Q_HOME + np.array([1.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    plans = []
    for k in range(30):  # there over 1.5 s, then held there
        p = _plan()
        p[:, :7] = Q_HOME + (side - Q_HOME) * min(1.0, (k + 1) / 15)
        plans.append(p)
    return "refused at the box, braking, " + _clamped(graph, "workspace_refusals", plans, 3.0)


@pytest.mark.slow
@case("1 kHz flood of valid chunks for 2 s")
def test_flood(graph):
    accepted = graph.count("chunks_accepted")
    since = graph.mark()
    n_js = len(graph.joints)
    t_start = time.monotonic()
    sent = 0
    while time.monotonic() < t_start + 2.0:
        now = graph.now()
        p = _plan()
        p[:, 0] += 0.1 * np.sin(2 * np.pi * 0.5 * (now + np.arange(16) / 30))
        graph.publish(p, now + 1e-6 * sent, 1 / 30)
        sent += 1
        time.sleep(max(0.0, t_start + sent * 1e-3 - time.monotonic()))  # 1 kHz, as fast as it goes
    graph.wait_counter("chunks_accepted", accepted)
    moved = graph.move_to_new_target()
    m = graph.check_motion(since)
    assert len(graph.joints) > n_js, "joint states stopped during the flood"
    return (f"{sent} chunks in 2 s ({sent / 2:.0f}/s), {graph.count('chunks_accepted') - accepted} accepted (the rest out of order or "
            f"superseded); joint states went on; {moved} ({_motion(m)})")


@pytest.mark.slow
@case("10 MB chunks (100 000 points) from the source and from an intruder, a valid stream before and after")
def test_ten_megabyte_chunks(graph):
    """Issue 35: a 10 MB JointTrajectory held the control executor 1.05 s in deserialisation, whoever sent it.
    Both are refused unread (by size, by sender); the largest gap between control ticks is reported, not asserted
    (a wall-clock figure on a shared machine)."""
    from bac_ros.nodes.messages import chunk_to_trajectory

    huge = chunk_to_trajectory(np.tile(np.r_[Q_HOME, 0.08], (100_000, 1)), graph.now(), 1 / 30)
    points, source = graph.count("chunks_refused_points"), graph.count("chunks_refused_source")
    since = graph.mark()

    def gap():  # the largest gap between control ticks in the last second (controller_node's /diagnostics)
        return float(graph.client.diagnostics.get(CONTROLLER, {}).get("control_gap_max_ms", "nan"))

    before = []
    for _ in range(2):
        graph.stream(1.1)
        before.append(gap())
    gaps = []
    # DDS may drop a 10 MB sample (reliable, but the reader's 5-deep history moves on while its fragments are in
    # flight and the valid stream goes on): each sender tries up to three times, and one of each must be refused
    for pub, counter, was in ((graph.chunk_pub, "chunks_refused_points", points),
                              (graph.intruder_pub, "chunks_refused_source", source)):
        for _ in range(3):
            huge.header.stamp = chunk_to_trajectory(_plan(2), graph.now(), 1 / 30).header.stamp
            pub.publish(huge)
            graph.stream(1.1)  # a valid stream goes on; one /diagnostics (its gap since the last) per second
            gaps.append(gap())
            if graph.count(counter) > was:
                break
    graph.wait_counter("chunks_refused_points", points, timeout=30)
    graph.wait_counter("chunks_refused_source", source, timeout=30)
    moved = graph.move_to_new_target()
    m = graph.check_motion(since)
    return (f"refused unread: chunks_refused_points +{graph.count('chunks_refused_points') - points}, "
            f"chunks_refused_source +{graph.count('chunks_refused_source') - source}; largest gap between control "
            f"ticks in the second after each: {', '.join(f'{g:.0f}' for g in gaps)} ms (in two seconds before: "
            f"{', '.join(f'{g:.0f}' for g in before)}; 10 ms nominal); {moved} ({_motion(m)})")


@pytest.mark.slow
@case("chunks from a node other than the selected source")
def test_foreign_publisher(graph):
    out = _inject(graph, lambda now: (_step_plan(0.3, 16), now, 1 / 30), "chunks_refused_source",
                  pub=graph.intruder_pub, times=10)
    return out


@pytest.mark.slow
@case("teleop chunks while the policy plays; take over; hand back")
def test_source_switching(graph):
    ignored, switches = graph.count("chunks_ignored_teleop"), graph.count("switches_to_teleop")
    since = graph.mark()
    far = _plan(2)
    far[:, 0] += 0.8  # a teleop target 0.8 rad away: played only after the take-over, at the limits
    for _ in range(5):  # the policy's source plays: teleop chunks are ignored, not played
        graph.publish(far, graph.now(), 1 / 30, pub=graph.teleop_pub)
        time.sleep(0.05)
    graph.wait_counter("chunks_ignored_teleop", ignored)
    graph.client.call("bac/take_over")
    graph.wait_for(lambda: json.loads(graph.client.source or "{}").get("source") == "teleop", 10, "no bac/source")
    t_over = graph.now()
    with graph.lock:
        before = len(graph.commands)
    deadline = time.monotonic() + 30.0
    while graph.now() - t_over < 1.0 and time.monotonic() < deadline:  # 1 s (the world's) of the operator holding
        graph.publish(far, graph.now(), 1 / 30, pub=graph.teleop_pub)  # the far target, however slow the world
        time.sleep(1 / 30)
    with graph.lock:
        q1 = max(q[0] for _, t, q in graph.commands[before:])
    assert q1 > Q_HOME[0] + 0.3, q1  # the teleop target played, approached at the limits
    graph.client.call("bac/hand_back")
    stale = graph.count("chunks_refused_before_start")
    graph.publish(_plan(n=120), t_over, 1 / 30)  # planned before the hand-back (4 s long, still due): refused
    graph.wait_counter("chunks_refused_before_start", stale)
    moved = graph.move_to_new_target()  # the policy's stream plays again, from where the arm is
    m = graph.check_motion(since)
    assert graph.count("switches_to_teleop") == switches + 1 and graph.count("interventions") >= 1
    return (f"ignored while the policy played, played after the take-over (joint 1 to {q1 - Q_HOME[0]:.2f} rad), "
            f"a chunk planned before the hand-back refused, {moved}; no jump ({_motion(m)})")


@pytest.mark.slow
@case("robot killed (SIGKILL) and restarted")
def test_robot_killed_and_restarted(graph):
    lost = graph.count("faults_robot_lost")
    connections = graph.count("connections")
    os.killpg(graph.procs.procs["sim_node"].pid, signal.SIGKILL)
    graph.procs.procs.pop("sim_node").wait(10)
    graph.wait_for(lambda: graph.state.startswith("faulted"), 30, "controller did not report the lost robot")
    graph.wait_counter("faults_robot_lost", lost, 20)
    t = graph.client.diagnostics_wall[CONTROLLER]
    graph.wait_for(lambda: graph.client.diagnostics_wall[CONTROLLER] > t + 1.5, 10,
                   "no diagnostics while the robot is gone")
    assert graph.client.call("bac/start", must_succeed=False) == ""  # no commands while faulted
    graph.alive()
    time.sleep(2.0)
    graph.procs.start("sim_node", graph.params, {"hostname": HOST, "episode_time_s": 1000.0})
    graph.wait_for(lambda: graph.state.startswith("ready"), 60, "controller did not reconnect")
    graph.wait_counter("connections", connections, 10)
    moved, m = _plays_a_stream(graph)  # the stream after the reconnection
    return (f"faulted (robot lost), diagnostics on the wall clock, reconnected by itself; played after, {moved} "
            f"({_motion(m)})")


@pytest.mark.slow
@case("bad joint states and images into policy_node; then policy_node killed")
def test_policy_inputs_and_kill(graph):
    from sensor_msgs.msg import Image

    from bac_ros.nodes.messages import array_to_image, vector_to_joint_state

    graph.as_policy.destroy_node()  # the real policy_node plays now (the controller's chunk_source)
    graph.as_policy = None
    graph.procs.start("policy_node", graph.params, {"use_sim_time": True})
    graph.wait_for(lambda: POLICY in graph.client.diagnostics, 120, "policy_node did not report")
    graph.wait_for(lambda: graph.count("chunks", POLICY) > 5, 60, "policy_node made no chunks")
    since = graph.mark()
    now = graph.now()
    bad_states = [vector_to_joint_state(np.full(7, np.nan), None, 0.04, now),  # NaN
                  vector_to_joint_state(Q_HOME + np.r_[0, 0, 0, 3.0, 0, 0, 0], None, 0.04, now),  # impossible
                  vector_to_joint_state(Q_HOME, None, 0.04, now + 1e6)]  # far future
    short = vector_to_joint_state(Q_HOME, None, 0.04, now)
    short.position = short.position[:5]
    for m in bad_states + [short]:
        graph.js_pub.publish(m)
    rgb = np.zeros((96, 96, 3), np.uint8)
    bad_images = [Image(height=0, width=0, encoding="rgb8"), Image(height=100000, width=100000, encoding="rgb8",
                                                                  step=300000),
                  Image(height=96, width=96, encoding="mono16", step=192, data=bytes(96 * 192)),
                  array_to_image(rgb, now + 1e6)]
    for m in bad_images:
        graph.image_pub.publish(m)
    for key in ("joint_states_refused_malformed", "joint_states_refused_limits", "joint_states_refused_stamp",
                "images_refused_malformed", "images_refused_stamp"):
        graph.wait_counter(key, 0, 15, who=POLICY)
    chunks = graph.count("chunks", POLICY)
    graph.wait_for(lambda: graph.count("chunks", POLICY) > chunks + 10, 30, "policy_node stopped planning")
    holds = graph.count("chunks_holds")
    os.killpg(graph.procs.procs["policy_node"].pid, signal.SIGKILL)
    graph.procs.procs.pop("policy_node").wait(10)
    graph.wait_counter("chunks_holds", holds, 15)
    time.sleep(1.0)
    m = graph.check_motion(since)
    # issue 38: a policy_node started again (as the launch file's respawn does) plays after /bac/start, the
    # controller untouched
    graph.client.diagnostics.pop(POLICY, None)
    graph.procs.start("policy_node", graph.params, {"use_sim_time": True})
    graph.wait_for(lambda: POLICY in graph.client.diagnostics and graph.count("chunks", POLICY) > 5, 120,
                   "the restarted policy_node made no chunks")
    graph.client.call("bac/start")
    accepted = graph.count("chunks_accepted")
    graph.wait_counter("chunks_accepted", accepted + 10, 30)
    replayed = graph.count("chunks_accepted") - accepted
    graph.procs.stop("policy_node")
    import rclpy
    from trajectory_msgs.msg import JointTrajectory

    graph.as_policy = rclpy.create_node("policy_node", context=graph.ctx)  # the injector plays the policy again
    graph.chunk_pub = graph.as_policy.create_publisher(JointTrajectory, "bac/action_chunk", 100)
    time.sleep(1.0)
    graph.alive()
    return (f"9 bad inputs refused and counted by kind, policy kept planning; killed: the controller held "
            f"(holds +{graph.count('chunks_holds') - holds}); {_motion(m)}; a new policy_node played after "
            f"/bac/start ({replayed}+ chunks accepted)")


@pytest.mark.slow
@case("recorder: a full disk mid-episode (a 3 MB file-size limit) while the arm moves")
def test_a_full_disk_ends_the_recording_not_the_control(graph):
    """Issue 38: recorder_node's writes fail mid-episode (a file-size limit stands in for a full disk). The recorder
    says so with an ERROR on /diagnostics and indexes the episode as incomplete, the episode before it stays intact,
    and the controller goes on: the stream plays within the envelope and moves the arm to a new target."""
    import resource

    from bac_ros.data.bags import read_index, read_messages

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))

    out = graph.log_dir / "episodes"
    recorder = "bac: recorder_node"
    graph.procs.start("recorder_node", graph.params, {"use_sim_time": True, "out_dir": str(out),
                                                      "image_format": "raw"}, preexec_fn=limit)
    graph.client.call("bac/home")
    graph.client.call("bac/start")
    first = graph.client.call("bac/record/start", 60)
    graph.stream(0.5)
    graph.client.call_set_bool("bac/record/stop", True)
    since = graph.mark()
    graph.client.call("bac/record/start")
    deadline = time.monotonic() + 60
    while graph.client.diagnostics_level.get(recorder, (0, ""))[0] != 2 and time.monotonic() < deadline:
        graph.stream(0.5)  # raw 96 px frames, about 0.4 MB/s of sim time: the limit comes within seconds
    level, message = graph.client.diagnostics_level.get(recorder, (0, ""))
    assert level == 2 and "recording stopped" in message and "File too large" in message, (level, message)
    moved = graph.move_to_new_target()
    m = graph.check_motion(since)
    graph.procs.stop("recorder_node")
    rows = read_index(out)
    assert [r["bag"] for r in rows][0] == first and not rows[0].get("incomplete"), rows
    assert rows[1]["incomplete"] and rows[1]["ended"] == "write_failed", rows
    assert sum(len(v) for v in read_messages(rows[0]["bag_path"]).values()) == rows[0]["messages"]
    graph.alive()
    return (f"recording stopped with an ERROR on /diagnostics, episode indexed incomplete (write_failed), the one "
            f"before intact ({rows[0]['messages']} messages); the controller played on: {moved} ({_motion(m)})")


@pytest.mark.slow
@case(f"both cores saturated by busy processes for {LOAD_S:.0f} s while the stream plays")
def test_both_cores_saturated_while_moving(graph):
    """Issue 38: another program takes every core for a while (`LOAD_S`: 20 s in make test, 60 s for
    docs/results/reliability).
    The stream plays on; judged on the measured arm it stays within the envelope (the suite's tolerances), the
    controller holds when chunks come late rather than jumping, no process dies, and afterwards the graph moves
    the arm as before."""
    graph.client.call("bac/home")
    graph.client.call("bac/start")
    holds, gap_ms = graph.count("chunks_holds"), 0.0
    since = graph.mark()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
               for _ in range(os.cpu_count() or 2)]
    try:
        end = time.monotonic() + LOAD_S
        while time.monotonic() < end:
            graph.stream(0.5)
            gap_ms = max(gap_ms, float(graph.client.diagnostics.get(CONTROLLER, {}).get("control_gap_max_ms", 0.0)))
        graph.alive()
    finally:
        for b in burners:
            os.killpg(b.pid, signal.SIGKILL)
            b.wait(5)
    m = graph.check_motion(since)
    moved = graph.move_to_new_target()
    graph.alive()
    return (f"played on within the envelope ({_motion(m)}); holds +{graph.count('chunks_holds') - holds}, longest "
            f"gap between control ticks {gap_ms:.0f} ms (wall; 10 ms nominal); after the load it "
            f"{moved.removeprefix('then ')}")


@pytest.mark.slow
@case("shutdown while moving at 1 rad/s; then a lab's slow envelope (factors 0.1): homing")
def test_shutdown_while_moving_then_homing_at_a_slow_labs_factors(graph):
    """Issue 35: shutdown used a damping-only stop (the arm coasted 2-2.5x the envelope's braking distance), and
    /bac/home raised at max_velocity_factor 0.1 (handled as a lost robot). Judged on the measured arm: where it
    came to rest after the controller ended (read by the next controller), and its speed while homing."""
    from bac_ros.robot.model import DQ_MAX

    graph.client.call("bac/start")
    with graph.lock:
        start = graph.joints[-1][2].copy()
    v = 1.0  # rad/s of joint 1, toward the side (the TCP stays in the box up to ~0.8 rad)
    dt, t_begin = 1 / 30, graph.now()
    while True:
        t0 = graph.now()
        ts = t0 - t_begin + dt * np.arange(16)
        plan = np.tile(np.r_[start, 0.08], (16, 1))
        plan[:, 0] = start[0] + np.minimum(v * ts, 0.6)
        graph.publish(plan, t0, dt)
        with graph.lock:
            _, _, q, dq = graph.joints[-1]
        if q[0] - start[0] > 0.25 and abs(dq[0]) > 0.8 * v:
            break
        assert graph.now() - t_begin < 10, "the arm did not get up to speed"
        time.sleep(dt)
    q_kill, dq_kill = q.copy(), dq.copy()
    # SIGINT: the controller's shutdown brakes, then stops the loop; the next one reads where the arm rests
    _restart_controller(graph, max_velocity_factor=0.1, max_acceleration_factor=0.1)
    n = len(graph.joints)
    graph.wait_for(lambda: len(graph.joints) > n + 20, 30, "no joint states from the slow controller")
    with graph.lock:
        rest = graph.joints[-1][2].copy()
    a = LIMITS.acceleration[0]
    coast = abs(rest[0] - q_kill[0])
    braking = dq_kill[0] ** 2 / (2 * a)
    assert coast <= braking + 0.02 + abs(dq_kill[0]) * 0.05, (coast, braking)  # + 50 ms to the SIGINT's handler
    since = graph.mark()
    graph.client.call("bac/home", timeout=120)
    with graph.lock:
        js = [(q, dq) for w, _, q, dq in graph.joints if w >= since]
    speed = max(float(np.max(np.abs(dq) / (0.1 * DQ_MAX))) for _, dq in js)
    home_err = float(np.max(np.abs(js[-1][0] - Q_HOME)))
    assert speed <= 1.1 and home_err <= 0.02, (speed, home_err)
    _restart_controller(graph)  # the envelope the other cases judge by again
    return (f"shutdown at {abs(dq_kill[0]):.2f} rad/s: the arm came to rest {coast:.3f} rad on (the envelope's braking "
            f"distance {braking:.3f} rad); at factors 0.1 /bac/home got home (within {home_err:.3f} rad), measured "
            f"peak speed {speed:.2f} x the lab's factor")


@pytest.mark.slow
@case("a tracking fault while moving at 1 rad/s (a 0.01 rad tolerance for 20 ms stands in for an obstacle)")
def test_a_tracking_fault_while_moving_ends_at_rest(graph):
    """Issue 35's done-when: after a tracking fault while moving the arm is at rest within the envelope's braking
    distance (+ 0.02 rad) of the last target sent. The workspace box keeps the arm off the table, so a tight
    tolerance makes the fault. Samples are this case's by the wall clock: the simulator's clock restarts with it
    (an earlier case's robot time can be later than this one's; judged on those, this case once "swung" at the
    earlier case's 1.5 rad/s)."""
    a, v, dt = LIMITS.acceleration[0], 1.0, 1 / 30
    try:
        _restart_controller(graph, tracking_tolerance=0.01, tracking_timeout_s=0.02)
        graph.client.call("bac/start")
        since = graph.mark()
        with graph.lock:
            start = graph.joints[-1][2].copy()
        t_begin = graph.now()
        while not graph.state.startswith("faulted"):
            t0 = graph.now()
            plan = np.tile(np.r_[start, 0.08], (16, 1))
            plan[:, 0] = start[0] + np.minimum(v * (t0 - t_begin + dt * np.arange(16)), 0.6)
            graph.publish(plan, t0, dt)
            assert graph.now() - t_begin < 10, "no tracking fault"
            time.sleep(dt)
        with graph.lock:
            _, t_fault, _, dq_fault = graph.joints[-1]
            (t1, q1), (t2, q2) = [(t, q) for w, t, q in graph.commands if w >= since and t <= t_fault][-2:]
        # the target's last velocity, which the envelope brakes from: two commands' difference (noisy when they came
        # close together) or the arm's measured speed, whichever is larger, never above the envelope's speed
        u = min(max(abs(q2[0] - q1[0]) / (t2 - t1), abs(dq_fault[0])), LIMITS.velocity[0])
        settled = t_fault + 0.2 + abs(u) / a
        graph.wait_for(lambda: graph.joints[-1][1] > settled + 0.3, 30, "joint states after the fault")  # robot time
        with graph.lock:
            after = [(t, q, dq) for w, t, q, dq in graph.joints if w >= since and t > t_fault]
        still = [abs(dq[0]) for t, _, dq in after if t >= settled]
        beyond = abs(after[-1][1][0] - q2[0])  # past the last target sent before the fault
        fault_braking = u ** 2 / (2 * a)
        # at rest 0.2 s after the envelope's braking time: under 0.05 rad/s (4 % of the envelope's speed)
        assert still and max(still) < 0.05, sorted(still)[-5:]
        assert beyond <= fault_braking + 0.02, (beyond, fault_braking)
    finally:
        _restart_controller(graph)  # the envelope the other cases judge by again
    return (f"the target at {u:.2f} rad/s: at rest {beyond:.3f} rad past the last target (braking distance "
            f"{fault_braking:.3f}), {max(still):.3f} rad/s 0.2 s after")


def _restart_controller(graph, **overrides) -> None:
    """controller_node again (SIGINT, then a new process with `overrides`), ready: a state from the new one."""
    graph.procs.stop("controller_node")
    graph.client.controller_state = ""  # the stopped one's latched state is not the new one's
    graph.procs.start("controller_node", graph.params, {"robot_ip": HOST, "realtime_mode": "ignore",
                                                        "use_sim_time": True, **overrides})
    graph.wait_for(lambda: graph.state.startswith("ready"), 60, "the controller did not come back")


def _run(cmd, env_extra=None, timeout=180):
    env = {**os.environ, "ROS_DOMAIN_ID": "208", **(env_extra or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_unreachable_robot_exits_2_with_what_to_check():
    t0 = time.monotonic()
    r = _run([sys.executable, "-m", "bac_ros.nodes.controller_node", "--ros-args", "-p", "robot_ip:=127.0.0.99",
              "-p", "connect_timeout_s:=3.0", "-p", "realtime_mode:=ignore"], timeout=60)
    try:
        assert r.returncode == 2, r.stderr[-2000:]
        last = r.stderr.strip().splitlines()[-1]
        assert "127.0.0.99" in last and "FCI" in last and "Traceback" not in r.stderr, r.stderr[-2000:]
    except AssertionError as e:
        FAULT_TABLE.append(("robot never reachable (connect_timeout_s 3 s)", f"FAILED: {e}", time.monotonic() - t0))
        raise
    FAULT_TABLE.append(("robot never reachable (connect_timeout_s 3 s)",
                        "exit 2 after the timeout, one line: address and what to check", time.monotonic() - t0))


@pytest.mark.slow
def test_truncated_or_foreign_files_give_one_line_and_exit_2(tmp_path):
    from bac_ros.core.paths import PACKAGE_ROOT

    t0 = time.monotonic()
    shipped = PACKAGE_ROOT / "schedules" / "grasp_dpt_cpu" / "bac_s7.json"
    truncated = tmp_path / "truncated.json"
    truncated.write_text(shipped.read_text()[:200])
    foreign = tmp_path / "foreign.json"
    d = json.loads(shipped.read_text())
    d["model"]["config_hash"] = "0" * 16
    foreign.write_text(json.dumps(d))
    ck = tmp_path / "ck"
    ck.mkdir()
    src = PACKAGE_ROOT / "bac_ros" / "checkpoints" / "grasp_dpt_cpu"
    (ck / "config.json").write_text((src / "config.json").read_text())
    (ck / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes()[:5000])
    rows, runs = [], []
    for what, cmd in [
        ("truncated schedule -> policy_node", ["-m", "bac_ros.nodes.policy_node", "--ros-args", "-p",
                                               f"schedule:={truncated}"]),
        ("foreign schedule -> policy_node", ["-m", "bac_ros.nodes.policy_node", "--ros-args", "-p",
                                             f"schedule:={foreign}"]),
        ("truncated checkpoint -> policy_node", ["-m", "bac_ros.nodes.policy_node", "--ros-args", "-p",
                                                 f"checkpoint:={ck}", "-p", "schedule:=full"]),
        ("truncated checkpoint -> bac bench", ["-m", "bac_ros.cli", "bench", "--checkpoint", str(ck),
                                               "--observations", "1"]),
        ("truncated schedule -> bac bench", ["-m", "bac_ros.cli", "bench", "--schedule", str(truncated),
                                             "--observations", "1"]),
    ]:
        runs.append((what, subprocess.Popen([sys.executable, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                            text=True, env={**os.environ, "ROS_DOMAIN_ID": "208"})))
    try:  # all at once: each is a process start and a refusal, independent of the others
        for what, proc in runs:
            _, err = proc.communicate(timeout=180)
            lines = err.strip().splitlines()
            ok = proc.returncode == 2 and "Traceback" not in err and lines and "error" in lines[-1]
            rows.append((what, ok, proc.returncode, lines[-1] if lines else ""))
    finally:
        for _, proc in runs:
            proc.kill()
            proc.wait()
    outcome = "; ".join(f"{w}: exit {c}" for w, _, c, _ in rows)
    FAULT_TABLE.append(("truncated / foreign schedule and checkpoint files",
                        ("one line, exit 2 — " if all(ok for _, ok, _, _ in rows) else "FAILED: ") + outcome,
                        time.monotonic() - t0))
    for what, ok, code, last in rows:
        assert ok, (what, code, last)
