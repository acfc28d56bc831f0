"""Safety by construction, on the pure stack (ChunkExecutor + FR3Arm + its Envelope on a recording stand-in
for franky): the open paths a probe found, each a named regression; then properties that must hold for every
command sent, whatever comes in (hypothesis: random chunk streams, measured states, switches, starts,
timeouts, latency and clock jumps).

CI runs a fixed seed with BAC_HYPOTHESIS_EXAMPLES examples per property (default 150); set it higher to search
longer."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bac_ros.robot.streaming import Chunk, ChunkExecutor, ChunkRules, CommandKind
from bac_ros.robot.fr3_arm import RobotFault, drive
from bac_ros.robot.kinematics import Kinematics
from bac_ros.robot.limits import ArmLimits, box_excess
from bac_ros.robot.model import Q_HIGH, Q_HOME, Q_LOW
from support import assert_within_envelope, fake_arm

EXAMPLES = int(os.environ.get("BAC_HYPOTHESIS_EXAMPLES", "150"))
DT = 1 / 30


def _plan(q, n=16, offsets=None):
    plan = np.tile(np.r_[q, 0.08], (n, 1))
    if offsets is not None:
        plan[:, :7] += offsets
    return plan


def _run_ticks(arm, robot, ex, t_from, seconds, tick=0.01, clock=None):
    """Control ticks every `tick` s of robot time; the chunks' clock is the robot's unless `clock(t)` says."""
    out = []
    for k in range(1, int(round(seconds / tick)) + 1):
        robot.t = t_from + k * tick
        r = drive(ex, arm, clock(robot.t) if clock else robot.t)
        if r is not None:
            out.append(r)
    return out


def _sent(robot, since=0.0):
    ts = np.array([t for t, _, _ in robot.sent if t >= since])
    qs = np.stack([q for t, q, _ in robot.sent if t >= since])
    return ts, qs


# ---- the table of open paths, one regression each -------------------------------------------------------------
@pytest.mark.parametrize("playback", ["hold", "interpolate"])
def test_row_1_a_chunk_past_joint_7s_limit_decelerates_within_the_envelope(playback):
    """Joint 7 asked to 5 rad at dt 1/30: it went 2.63 -> 0.13 rad/s in one 10 ms command (~25x the
    acceleration envelope) when the joint clamp came after the acceleration limit."""
    arm, robot = fake_arm(ArmLimits(workspace_enabled=False))
    ex = ChunkExecutor(ChunkRules(chunk_playback=playback, commit_steps=0))
    ex.start(0.0)
    for k in range(40):  # a new chunk every 1/30 s, each asking joint 7 ever further
        t0 = k * DT
        offsets = np.zeros((16, 7))
        offsets[:, 6] = np.linspace(0, 5.0, 16) + 0.1 * k
        ex.offer(Chunk(t0, _plan(Q_HOME, offsets=offsets), DT), t0)
        _run_ticks(arm, robot, ex, t0, DT)
    ts, qs = _sent(robot)
    assert_within_envelope(ts, qs, arm.limits)
    assert qs[:, 6].max() == pytest.approx(arm.limits.high[6], abs=0.05)  # got there, stopped at the margin


@pytest.mark.parametrize("joint", [3, 0, 6])
def test_row_2_a_start_closer_to_a_limit_than_the_margin_moves_in_without_a_jump(joint):
    """Start, recover or a velocity stop with a joint 0.01 rad from its limit (inside the 0.05 margin): the first
    command jumped 0.045 rad (3.4x a step) because the step clip ran before the joint clip."""
    q0 = Q_HOME.copy()
    q0[joint] = Q_HIGH[joint] - 0.01
    arm, robot = fake_arm(ArmLimits(workspace_enabled=False), q0=q0)
    ex = ChunkExecutor()
    ex.start(0.0)
    ex.offer(Chunk(0.0, _plan(q0, n=60), DT), 0.0)  # asked to stay where it is: outside the margin
    _run_ticks(arm, robot, ex, 0.0, 1.5)
    ts, qs = _sent(robot)
    assert_within_envelope(np.r_[0.0, ts], np.vstack([q0, qs]), arm.limits)
    assert qs[-1, joint] <= arm.limits.high[joint] + 1e-9  # brought inside, at the limits


def test_row_3_a_take_over_while_moving_holds_then_stays_without_a_jump():
    """Take-over while the policy moves joint 1 at 1.2 rad/s, nothing to play for 2 s, then "stay here": no hold
    came after the switch, the stale velocity feed-forward stayed, and the first command moved 0.041 rad in one
    tick (3.1x) and overshot 0.06 rad."""
    lim = ArmLimits(workspace_enabled=False)
    arm, robot = fake_arm(lim)
    ex = ChunkExecutor()
    ex.start(0.0)
    for k in range(8):  # a chunk every 0.1 s, moving joint 1 at 1.2 rad/s
        t0 = 0.1 * k
        offsets = np.zeros((16, 7))
        offsets[:, 0] = 1.2 * (t0 + DT * np.arange(16))
        ex.offer(Chunk(t0, _plan(Q_HOME, offsets=offsets), DT), t0)
        _run_ticks(arm, robot, ex, t0, 0.1)
    assert abs(arm.envelope.u[0]) > 1.1  # moving at ~1.2 rad/s when the person takes over
    q_switch, u_switch = arm.envelope.q.copy(), arm.envelope.u.copy()
    ex.start(0.8, commit_steps=0)  # the switch: only chunks planned from now on, a hold until one plays
    held = _run_ticks(arm, robot, ex, 0.8, 2.0)
    assert held and all(c.kind is CommandKind.HOLD for c, _ in held)
    stop = q_switch[0] + u_switch[0] * abs(u_switch[0]) / (2 * lim.acceleration[0])
    assert arm.envelope.q[0] == pytest.approx(stop, abs=1e-3) and abs(arm.envelope.u[0]) < 1e-6
    here = arm.envelope.q.copy()
    ex.offer(Chunk(2.8, _plan(here, n=2), DT), 2.8)  # the teleoperator: "stay here"
    _run_ticks(arm, robot, ex, 2.8, 0.3)
    ts, qs = _sent(robot)
    assert_within_envelope(ts, qs, lim)
    assert np.abs(arm.envelope.q - here).max() < 1e-9


def test_row_4_a_point_found_late_moves_within_the_envelope_over_the_real_tick():
    """In hold playback a point found late was limited against the due times: over the real 10 ms tick that
    could be ~2x the velocity envelope."""
    lim = ArmLimits(workspace_enabled=False)
    arm, robot = fake_arm(lim)
    ex = ChunkExecutor()
    ex.start(0.0)
    offsets = np.zeros((60, 7))
    offsets[:, 0] = 0.95 * lim.velocity[0] * DT * np.arange(60)  # points at 95 % of the speed limit
    ex.offer(Chunk(0.0, _plan(Q_HOME, n=60, offsets=offsets), DT), 0.0)
    t, rng = 0.0, np.random.default_rng(0)
    while t < 1.8:  # ticks found late and early: 2-25 ms apart
        t += float(rng.choice([0.002, 0.01, 0.025]))
        robot.t = t
        drive(ex, arm, t)
    ts, qs = _sent(robot)
    assert_within_envelope(ts, qs, lim)


def test_row_5_a_clock_jump_back_never_returns_to_an_old_point():
    """`use_sim_time` flipped at run time: `now - received` turned negative, the timeout never fired and point 0
    of the old chunk became the target again (0.29 rad back)."""
    lim = ArmLimits(workspace_enabled=False)
    arm, robot = fake_arm(lim)
    ex = ChunkExecutor()
    ex.start(1000.0)
    offsets = np.zeros((16, 7))
    offsets[:, 0] = np.linspace(0, 0.29, 16)
    ex.offer(Chunk(1000.0, _plan(Q_HOME, offsets=offsets), DT), 1000.0)
    _run_ticks(arm, robot, ex, 0.0, 0.5, clock=lambda t: 1000.0 + t)
    q_before = arm.envelope.q.copy()
    after = _run_ticks(arm, robot, ex, 0.5, 1.0, clock=lambda t: t - 0.5)  # the clock now reads 0.0 ...
    assert ex.counts["clock_jumps"] == 1 and all(c.kind is CommandKind.HOLD for c, _ in after)
    assert arm.envelope.q[0] >= q_before[0] - 1e-9  # never back towards the old point 0
    ts, qs = _sent(robot)
    assert_within_envelope(ts, qs, lim)


def test_row_6_non_finite_robot_data_faults_and_nothing_is_sent():
    """Non-finite positions or velocities from the robot: with acceleration_limit_enabled false a NaN target
    reached the tracker, and NaN velocities disabled the velocity stop."""
    for field in ("q", "dq"):
        arm, robot = fake_arm(ArmLimits(acceleration_limit_enabled=False, workspace_enabled=False))
        ex = ChunkExecutor()
        ex.start(0.0)
        ex.offer(Chunk(0.0, _plan(Q_HOME), DT), 0.0)
        getattr(robot, field)[4] = np.nan
        robot.t = 0.01
        with pytest.raises(RobotFault, match="not finite"):
            drive(ex, arm, 0.01)
        assert robot.sent == []


# ---- properties, whatever comes in ---------------------------------------------------------------------------
EVENTS = st.one_of(
    st.tuples(st.just("chunk"), st.floats(-1.0, 0.5), st.sampled_from([0.0, 0.001, 0.01, DT, 0.1, 0.3, 5.0]),
              st.integers(1, 40), st.floats(0.0, 4.0), st.booleans(), st.integers(0, 2 ** 16)),
    st.tuples(st.just("ticks"), st.floats(0.0005, 0.06), st.integers(1, 60)),
    st.tuples(st.just("gap"), st.floats(0.1, 3.0)),
    st.tuples(st.just("switch"), st.sampled_from([0, None])),
    st.tuples(st.just("clock_jump"), st.floats(-50.0, -0.01)),
    st.tuples(st.just("restart"), st.sampled_from(["home", "inside", "at", "outside", "nan"]), st.integers(0, 2 ** 16)),
)


def _pose(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lim = ArmLimits()
    q = rng.uniform(lim.low, lim.high) if kind == "inside" else Q_HOME.copy()
    j = int(rng.integers(7))
    if kind == "at":
        q[j] = lim.high[j] if rng.random() < 0.5 else lim.low[j]
    elif kind == "outside":  # past the margin, within the FR3's own limit
        q[j] = Q_HIGH[j] - 0.01 if rng.random() < 0.5 else Q_LOW[j] + 0.01
    elif kind == "nan":
        q[j] = np.nan
    return q


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(events=st.lists(EVENTS, min_size=1, max_size=25), box=st.booleans())
def test_every_command_stays_in_the_envelope_whatever_comes_in(events, box):
    lim = ArmLimits(workspace_enabled=box)
    rules = ChunkRules(chunk_timeout_s=0.5)
    arm, robot = fake_arm(lim)
    kin = Kinematics.fr3()
    ex = ChunkExecutor(rules)
    clock_offset = 0.0  # the chunks' clock = robot time + this (a jump moves it)
    segment = [(robot.t, arm.envelope.q.copy())]  # commands since the last (re)start of the torque loop
    last_accept = None  # robot time of the first tick after the newest accepted chunk
    ex.start(robot.t + clock_offset)

    def check_segment():
        if len(segment) > 1:
            ts, qs = map(np.array, zip(*segment))
            assert_within_envelope(ts, np.stack(qs), lim)
            if box:  # the TCP stays in the box, or its distance out of it does not grow (braking)
                excess = [box_excess(kin.fk(q)[0], lim.workspace) for q in qs]
                assert all(b <= max(a, 0.0) + 2e-3 for a, b in zip(excess, excess[1:])), excess

    def tick(dt):
        nonlocal last_accept
        robot.t += dt
        accepted = ex.counts["accepted"]
        try:
            out = drive(ex, arm, robot.t + clock_offset)
        except RobotFault:
            return
        if out is not None:
            cmd, q = out
            segment.append((robot.t, q))
            if last_accept is not None and robot.t - last_accept > rules.chunk_timeout_s + dt + 1e-9:
                assert cmd.kind is CommandKind.HOLD  # hold within chunk_timeout_s of the last chunk
        if accepted and last_accept is None or ex._received is not None and ex._received != last_accept:
            last_accept = ex._received

    for ev in events:
        kind = ev[0]
        if kind == "chunk":
            _, ahead, dt, n, reach, nan, seed = ev
            rng = np.random.default_rng(seed)
            plan = _plan(arm.envelope.q.copy(), n=n, offsets=rng.uniform(-reach, reach, (n, 7)))
            if nan:
                plan[rng.integers(n), rng.integers(8)] = np.nan
            now = robot.t + clock_offset
            ex.offer(Chunk(now + ahead, plan, dt if dt > 0 else 1e-9), now)
        elif kind == "ticks":
            for _ in range(ev[2]):
                tick(ev[1])
        elif kind == "gap":
            tick(ev[1])
        elif kind == "switch":
            ex.start(robot.t + clock_offset, ev[1])
            last_accept = None
        elif kind == "clock_jump":
            clock_offset += ev[1]
            last_accept = None
        elif kind == "restart":  # a connect, recover or velocity stop: a fresh torque loop at the measured pose
            check_segment()
            robot.q = _pose(ev[1], ev[2])
            robot.t += 0.01
            # the old loop brakes to rest on the running clock first; the arm is measured at the new pose
            robot.auto_advance, robot.follow = 0.001, False
            try:
                arm.restart_tracker()
            except ValueError:
                assert ev[1] == "nan"  # a non-finite measured pose: no torque loop is started from it
                robot.q = Q_HOME.copy()
                arm.restart_tracker()
            robot.auto_advance, robot.follow = 0.0, True
            robot.sent.clear()
            segment[:] = [(robot.t, arm.envelope.q.copy())]
            ex.start(robot.t + clock_offset)
            last_accept = None
    for _ in range(80):  # and afterwards the envelope still holds
        tick(0.01)
    check_segment()
