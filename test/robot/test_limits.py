"""The envelope every command passes last (`limits.Envelope`), on its own: speed, acceleration and joint
limits with braking, all on the real time between commands."""
import numpy as np
import pytest

from bac_ros.robot.limits import ArmLimits, Envelope, braking_speed
from bac_ros.robot.model import DDQ_MAX, DQ_MAX, Q_HIGH, Q_HOME, Q_LOW

LIM = ArmLimits(workspace_enabled=False)
A, V = LIM.acceleration, LIM.velocity


def _run(env, targets, times, dq=None):
    out = []
    for q, t in zip(targets, times):
        s = env.step(q, dq, t)
        if s is not None:
            out.append((t, s))
    return out


def _check_motion(qs, ts, lim=LIM, tol=1e-9):
    """Speed and acceleration of the commanded positions over their real time gaps, each at most max_step_s (the
    step cap: a longer gap licenses no more)."""
    gaps = np.minimum(np.diff(ts), lim.max_step_s)
    u = np.diff(qs, axis=0) / gaps[:, None]
    assert np.all(np.abs(u) <= lim.velocity + tol), np.abs(u).max(0) / lim.velocity
    du = np.abs(np.diff(u, axis=0)) / gaps[1:, None]
    assert np.all(du <= lim.acceleration * (1 + 1e-6) + tol), (du / lim.acceleration).max(0)


def test_a_far_target_is_approached_at_the_limits_and_reached_at_rest():
    env = Envelope(LIM)
    env.reset(Q_HOME, 0.0)
    target = Q_HOME + 0.3
    ts = np.arange(1, 301) * 0.01
    out = _run(env, [target] * len(ts), ts)
    qs = np.stack([Q_HOME] + [s.q for _, s in out])
    _check_motion(qs, np.r_[0.0, ts])
    assert np.all(qs[-1] == pytest.approx(target, abs=1e-6)) and np.all(np.abs(env.u) < 1e-3)
    assert np.all(qs[:, 0] <= target[0] + 1e-6)  # braked in time: never past the target
    assert qs[1, 0] - qs[0, 0] < 0.001  # no jump on the first tick
    with pytest.raises(ValueError, match="finite"):
        env.step(np.full(7, np.nan), None, 4.0)
    with pytest.raises(ValueError, match="finite"):
        env.step(Q_HOME, np.full(7, np.nan), 4.0)
    assert env.step(Q_HOME, None, 3.0) is None  # no time has passed: nothing to send


def test_a_target_past_a_joint_limit_brakes_in_time_and_stops_at_the_margin():
    """Joint 7 asked to 5 rad (its limit 3.0159): it decelerates within the acceleration limit and comes to
    rest at the margin, where a clamp after the acceleration limit stopped it from 2.6 rad/s in one command."""
    env = Envelope(LIM)
    env.reset(Q_HOME, 0.0)
    target = Q_HOME.copy()
    target[6] = 5.0
    ts = np.arange(1, 401) * 0.01
    qs = np.stack([Q_HOME] + [s.q for _, s in _run(env, [target] * len(ts), ts)])
    _check_motion(qs, np.r_[0.0, ts])
    assert qs[:, 6].max() <= LIM.high[6] + 1e-9 and qs[-1, 6] == pytest.approx(LIM.high[6], abs=1e-3)


def test_from_outside_the_margins_only_back_inside_within_the_limits():
    """A start (or recover, or velocity stop) with joint 4 closer to its limit than the margin: the first
    commands move it inward within speed and acceleration, never a jump to the margin."""
    q0 = Q_HOME.copy()
    q0[3] = Q_HIGH[3] - 0.01  # inside the FR3 limit, 0.04 rad past the 0.05 margin
    env = Envelope(LIM)
    env.reset(q0, 10.0)
    ts = 10.0 + np.arange(1, 101) * 0.01
    out = _run(env, [q0] * len(ts), ts)  # asked to stay there: it is brought inside, slowly
    qs = np.stack([q0] + [s.q for _, s in out])
    _check_motion(qs, np.r_[10.0, ts])
    assert np.all(np.diff(qs[:, 3]) <= 1e-12)  # never further out
    assert qs[-1, 3] <= LIM.high[3] + 1e-9 and abs(qs[1, 3] - q0[3]) < 0.001


def test_a_long_gap_licenses_no_big_step_and_no_velocity_jump_after_it():
    env = Envelope(LIM)
    env.reset(Q_HOME, 0.0)
    far = Q_HOME + 1.0
    s = env.step(far, None, 5.0)  # 5 s since the last command
    assert np.all(np.abs(s.q - Q_HOME) <= V * LIM.max_step_s + 1e-12) and s.held_back
    ts = 5.0 + np.arange(1, 50) * 0.01
    qs = np.stack([Q_HOME, s.q] + [o.q for _, o in _run(env, [far] * len(ts), ts)])
    _check_motion(qs, np.r_[0.0, 5.0, ts])


@pytest.mark.parametrize("stall", [0.06, 0.1, 0.15, 0.175, 1.0])
def test_a_stall_while_moving_fast_licenses_no_step_past_the_cap(stall):
    """Issue 35: a control tick that stalls 100-175 ms while a joint moves at its limit made the acceleration
    band (on the real gap) override the step cap: a jump of 1.75x velocity x max_step_s. Every band is computed on
    min(gap, max_step_s): the step stays within the cap and the motion after it within the envelope."""
    env = Envelope(LIM)
    env.reset(Q_HOME, 0.0)
    far = Q_HOME + 2.0
    ts = np.arange(1, 100) * 0.01  # up to speed (joints 5-7 braking for their limits)
    _run(env, [far] * len(ts), ts)
    assert np.allclose(env.u[:4], V[:4])
    q_before, t_stall = env.q.copy(), ts[-1] + stall
    s = env.step(far, None, t_stall)
    assert np.all(np.abs(s.q - q_before) <= V * LIM.max_step_s + 1e-12), (s.q - q_before) / (V * LIM.max_step_s)
    after = t_stall + np.arange(1, 30) * 0.01
    qs = np.stack([q_before, s.q] + [o.q for _, o in _run(env, [far] * len(after), after)])
    _check_motion(qs, np.r_[ts[-1], t_stall, after])


def test_the_feed_forward_stays_in_the_acceleration_band():
    """Issue 35: on a smooth sine whose targets are reached the plan's own velocity went out as feed-forward,
    asking 1.3-1.5x the acceleration; it is now within the acceleration band around the last motion."""
    env = Envelope(LIM)
    env.reset(Q_HOME, 0.0)
    a, w = LIM.acceleration, 2 * np.pi * 1.5  # rad/s^2; 1.5 Hz
    amp = 0.8 * LIM.velocity / w  # within the speed limit, its acceleration amp w^2 beyond the band
    assert np.all(amp * w ** 2 > a)
    for k in range(1, 300):
        t = 0.01 * k
        u_prev = env.u.copy()
        out = env.step(Q_HOME + amp * np.sin(w * t), amp * w * np.cos(w * t), t)
        assert np.all(np.abs(out.dq - u_prev) <= a * 0.01 + 1e-9), k
    env.reset(Q_HOME, 0.0)  # from rest, a target one acceleration step away whose plan says "faster"
    out = env.step(Q_HOME + a * 0.01 ** 2, 1.7 * a * 0.01, 0.01)
    assert not out.held_back and np.all(np.abs(out.dq) <= a * 0.01 + 1e-9), out.dq / (a * 0.01)


def test_braking_speed_stops_exactly_at_the_limit():
    a, dt = np.array([3.0]), 0.02
    u = braking_speed(np.array([0.1]), a, dt)
    assert u * dt + u ** 2 / (2 * a) == pytest.approx(0.1)
    assert braking_speed(np.array([-0.1]), a, dt) == 0.0


def test_the_box_brakes_along_the_last_motion():
    left = lambda q_from, q_stop: q_stop[0] > 0.2  # noqa: E731 - "out of the box": joint 1 past 0.2 rad
    env = Envelope(LIM, leaves_box=left)
    env.reset(np.r_[0.0, Q_HOME[1:]], 0.0)
    ts = np.arange(1, 200) * 0.01
    out = _run(env, [np.r_[1.0, Q_HOME[1:]]] * len(ts), ts)
    qs = np.stack([np.r_[0.0, Q_HOME[1:]]] + [s.q for _, s in out])
    _check_motion(qs, np.r_[0.0, ts])
    assert any(s.box_refused for _, s in out) and qs[:, 0].max() <= 0.2 + 1e-6
    assert abs(env.u[0]) < 1e-9  # at rest at the box


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_acceleration_factor"):
        ArmLimits(max_acceleration_factor=0.0)
    with pytest.raises(ValueError):
        ArmLimits(max_velocity_factor=1.5)
    assert ArmLimits(acceleration_limit_enabled=False).acceleration == pytest.approx(DDQ_MAX)
    assert np.all(ArmLimits().low > Q_LOW) and np.all(ArmLimits().velocity == 0.5 * DQ_MAX)
