import numpy as np
import pytest

from bac_ros.robot.streaming import ObservationAligner, ObservationWindow, current_index, held_point


def test_current_index_holds_each_point_for_its_step_and_drops_stale_ones():
    dt = 0.1
    assert current_index(10.0, dt, 9.9) == 0  # chunk from the future: its first point
    assert current_index(10.0, dt, 10.0) == 0
    assert current_index(10.0, dt, 10.05) == 0  # point 1 is not due before 10.1: never sent early
    assert current_index(10.0, dt, 10.1) == 1  # due exactly now
    assert current_index(10.0, dt, 10.199) == 1
    assert current_index(10.0, dt, 10.35) == 3  # points 0..2 are stale
    with pytest.raises(ValueError):
        current_index(0.0, 0.0, 1.0)


def test_held_point_keeps_each_point_until_the_next_is_due():
    a = np.arange(4, dtype=float)[:, None] * np.ones((1, 8))
    assert held_point(a, 1.0, 0.1, 0.9)[0] == 0  # before the chunk: its first point
    assert held_point(a, 1.0, 0.1, 1.19)[0] == 1  # not yet point 2 (due at 1.2)
    assert held_point(a, 1.0, 0.1, 1.2)[0] == 2
    assert held_point(a, 1.0, 0.1, 5.0)[0] == 3  # after the chunk: its last point


def test_aligner_pairs_nearest_state_and_drops_far_ones():
    a = ObservationAligner(n_obs_steps=2, tolerance_s=0.02)
    img = lambda v: np.full((2, 2, 3), v, np.uint8)  # noqa: E731
    assert not a.add_image(1.0, img(1)) and a.dropped == 1  # no state yet
    for t in (0.99, 1.01, 1.03, 1.05):
        a.add_state(t, np.full(8, t))
    assert a.add_image(1.0, img(2))
    ims, sts, stamp = a.observations.window()
    assert ims.shape == (2, 2, 2, 3) and stamp == 1.0
    np.testing.assert_array_equal(ims[0], ims[1])  # padded with the single pair
    assert a.add_image(1.04, img(3))
    ims, sts, stamp = a.observations.window()
    assert ims[1, 0, 0, 0] == 3 and sts[1][0] == pytest.approx(1.03) and stamp == 1.04
    assert not a.add_image(1.2, img(4)) and a.dropped == 2  # nearest state 1.05 is 0.15 s away
    assert not a.add_image(1.04, img(5))  # repeated stamp
    a.add_state(0.5, np.zeros(8))  # out of order: ignored
    assert a.observations.window()[1][1][0] == pytest.approx(1.03)


def test_observation_window_keeps_the_newest_and_pads_a_short_history():
    w = ObservationWindow(3)
    assert not w.ready() and w.newest_stamp is None
    with pytest.raises(RuntimeError):
        w.window()
    img = lambda v: np.full((2, 2, 3), v, np.uint8)  # noqa: E731
    assert w.push(1.0, img(1), np.full(8, 1.0))
    ims, sts, stamp = w.window()
    assert ims.shape == (3, 2, 2, 3) and stamp == 1.0 and np.all(sts[:, 0] == 1.0)  # padded with the oldest
    assert not w.push(1.0, img(9), np.zeros(8)) and not w.push(0.5, img(9), np.zeros(8))  # not newer: ignored
    for t in (2.0, 3.0, 4.0):
        w.push(t, img(int(t)), np.full(8, t))
    ims, sts, stamp = w.window()
    assert stamp == 4.0 and list(sts[:, 0]) == [2.0, 3.0, 4.0] and list(ims[:, 0, 0, 0]) == [2, 3, 4]
    with pytest.raises(ValueError):
        ObservationWindow(0)


def test_interpolate_chunk():
    from bac_ros.robot.streaming import interpolate_chunk

    a = np.arange(4, dtype=float)[:, None] * np.ones((1, 8))
    np.testing.assert_allclose(interpolate_chunk(a, 1.0, 0.1, 0.9), a[0])
    np.testing.assert_allclose(interpolate_chunk(a, 1.0, 0.1, 1.15), 1.5)
    np.testing.assert_allclose(interpolate_chunk(a, 1.0, 0.1, 1.2), 2.0)
    np.testing.assert_allclose(interpolate_chunk(a, 1.0, 0.1, 5.0), a[-1])


def test_chunk_velocity_is_the_slope_interpolate_chunk_follows():
    from bac_ros.robot.streaming import chunk_velocity, interpolate_chunk

    dt, stamp = 0.1, 5.0
    actions = np.array([[0.0, 1.0], [0.2, 1.0], [0.6, 0.5], [0.6, 0.5]])
    v = chunk_velocity(actions, stamp, dt, stamp + 1.5 * dt)
    np.testing.assert_allclose(v, [4.0, -5.0])  # (actions[2] - actions[1]) / dt
    # it is the derivative of the interpolated target, checked numerically inside a segment
    t, h = stamp + 0.45 * dt, 1e-6
    num = (interpolate_chunk(actions, stamp, dt, t + h) - interpolate_chunk(actions, stamp, dt, t - h)) / (2 * h)
    np.testing.assert_allclose(chunk_velocity(actions, stamp, dt, t), num, atol=1e-4)
    # at rest before the chunk and once it is used up
    assert not chunk_velocity(actions, stamp, dt, stamp - 0.01).any()
    assert not chunk_velocity(actions, stamp, dt, stamp + 3.5 * dt).any()


def test_receding_horizon_plays_commit_steps_then_the_newest_chunk():
    from bac_ros.robot.streaming import Chunk, RecedingHorizon

    dt = 0.1
    h = RecedingHorizon(commit=3)
    assert h.current(0.0) is None
    a = Chunk(0.0, "a", dt)
    h.offer(a)
    assert h.current(0.05) is a
    b, c = Chunk(0.1, "b", dt), Chunk(0.2, "c", dt)
    h.offer(b)
    assert h.current(0.25) is a  # a has played 2.5 of its 3 steps: b waits
    h.offer(c)  # a newer chunk replaces the waiting one
    assert h.current(0.3) is c and h.switches == 2
    assert h.current(10.0) is c  # nothing newer: keep the last chunk
    h.clear()
    assert h.current(10.0) is None
    now = RecedingHorizon(commit=0)
    now.offer(a)
    now.current(0.0)
    now.offer(b)
    assert now.current(0.01) is b  # commit 0: every new chunk at once
    late = RecedingHorizon(commit=3)
    d, e = Chunk(1.0, "d", dt), Chunk(1.2, "e", dt)
    late.offer(d)
    assert late.current(1.25) is d and late.first_index == 2  # arrived 2.5 steps after its stamp
    late.offer(e)
    assert late.current(1.45) is d  # d plays 3 steps from its takeover (points 2..4), not until 1.3
    assert late.current(1.5) is e and late.first_index == 3
    with pytest.raises(ValueError):
        RecedingHorizon(commit=-1)


def _chunk(stamp, n=16, dt=1 / 30, value=0.0):
    from bac_ros.robot.streaming import Chunk

    return Chunk(stamp, np.full((n, 8), value, float), dt)


def test_executor_refuses_what_it_cannot_play_safely_and_counts_why():
    from bac_ros.robot.streaming import Chunk, ChunkExecutor, ChunkRules

    ex = ChunkExecutor(ChunkRules(chunk_max_future_s=0.25, chunk_max_points=64))
    assert ex.offer(_chunk(10.0), 10.0) == "before_start"  # nothing plays before start
    ex.start(5.0)
    nan = _chunk(10.0)
    nan.actions[3, 2] = np.nan
    cases = {
        "malformed": [nan, Chunk(10.0, np.zeros((4, 7)), 0.03), Chunk(float("inf"), np.zeros((4, 8)), 0.03)],
        "points": [_chunk(10.0, n=1), _chunk(10.0, n=1000)],
        "dt": [_chunk(10.0, dt=5.0), _chunk(10.0, dt=0.0), _chunk(10.0, dt=-0.03), _chunk(10.0, dt=float("nan"))],
        "future": [_chunk(25.0), _chunk(10.3)],  # a wall-clock stamp in a sim-time graph; 0.3 s ahead
        "expired": [_chunk(6.0), _chunk(9.0, n=16)],  # last point due at 9.5 s, now 10 s
        "before_start": [_chunk(4.9, dt=0.2, n=30)],  # still playing at 10 s, but planned before the start
    }
    for reason, chunks in cases.items():
        for c in chunks:
            assert ex.offer(c, 10.0) == reason, (reason, c.stamp, c.dt, c.actions.shape)
    assert ex.offer(_chunk(4.0), 10.0) == "expired"  # wholly past and before the start: expired comes first
    assert ex.offer(_chunk(10.1), 10.0) is None  # 0.1 s ahead: within the tolerance
    assert ex.offer(_chunk(10.05), 10.1) == "out_of_order"  # older than the newest offered
    assert ex.counts["accepted"] == 1
    assert {k: v for k, v in ex.counts.items() if k.startswith("refused_")} == {
        "refused_malformed": 3, "refused_points": 2, "refused_dt": 4, "refused_future": 2, "refused_expired": 3,
        "refused_before_start": 2, "refused_out_of_order": 1}
    with pytest.raises(ValueError):
        ChunkRules(chunk_min_dt_s=0.3, chunk_max_dt_s=0.2)
    with pytest.raises(ValueError):
        ChunkRules(chunk_playback="jump")


def test_executor_sends_each_point_once_when_due_and_holds_after_the_timeout():
    from bac_ros.robot.streaming import Chunk, ChunkExecutor, ChunkRules, CommandKind

    dt = 0.1
    ex = ChunkExecutor(ChunkRules(commit_steps=4, chunk_max_dt_s=0.2, chunk_timeout_s=1.0))
    ex.start(10.0)
    hold = ex.tick(10.0, robot_t=50.0)
    assert hold.kind is CommandKind.HOLD and hold.q is None  # after start: an explicit hold until a chunk plays
    plan = np.arange(8, dtype=float)[:, None] * np.ones((1, 8))  # point i has value i
    assert ex.offer(Chunk(10.0, plan, dt), 10.13) is None  # arrives 1.3 steps late
    sent, took_over = [], []
    for k, now in enumerate(np.arange(10.13, 10.75, 0.01)):  # polled every 10 ms
        cmd = ex.tick(float(now), robot_t=50.13 + 0.01 * k)
        if cmd is not None:
            sent.append((cmd.q[0], float(now)))
            ex.sent(cmd, held_back=False)
        if ex.took_over is not None:
            took_over.append((ex.took_over.stamp, round(float(now), 2)))
    assert took_over == [(10.0, 10.13)]  # the chunk's first command, once: where its latency ends
    values = [v for v, _ in sent]
    assert values == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # point 0 is stale; the rest each once, the last kept
    for v, now in sent:
        assert 10.0 + v * dt - 1e-9 <= now < 10.0 + (v + 1) * dt
    assert ex.counts["points_stale"] == 1 and ex.counts["points"] == 7
    # no new chunk for the timeout, on the robot's clock: hold, a command every tick
    cmd = ex.tick(10.9, robot_t=50.13 + 1.01)
    assert cmd.kind is CommandKind.HOLD and ex.counts["holds"] == 2  # (the first: after start)
    assert ex.tick(10.91, robot_t=50.13 + 1.02).kind is CommandKind.HOLD and ex.counts["hold_ticks"] == 3


def test_executor_times_out_on_the_robots_clock_not_the_chunks():
    """The chunks' clock (ROS time) may stall or run fast; the timeout counts the robot's monotonic time."""
    from bac_ros.robot.streaming import ChunkExecutor, ChunkRules, CommandKind

    ex = ChunkExecutor(ChunkRules(chunk_timeout_s=0.5))
    ex.start(0.0)
    ex.offer(_chunk(0.0, n=100), 0.0)
    assert ex.tick(0.0, robot_t=7.0).kind is CommandKind.POINT
    ex.sent(ex.tick(0.05, robot_t=7.05), held_back=False)
    assert ex.tick(0.06, robot_t=7.4) is None  # the point is out; 0.4 s of robot time: still playing
    assert ex.tick(0.07, robot_t=7.6).kind is CommandKind.HOLD  # 0.6 s of robot time, whatever the ROS clock


def test_a_clock_jump_back_empties_the_queue_and_holds():
    """`use_sim_time` flipped at run time, a bag played with --clock: the chunks' clock goes back. Point 0 of
    the old chunk must not become the target again (it did: 0.29 rad back); the new clock's chunks play."""
    from bac_ros.robot.streaming import Chunk, ChunkExecutor, CommandKind

    ex = ChunkExecutor()
    ex.start(1000.0)
    plan = np.zeros((16, 8))
    plan[:, 0] = np.linspace(0.0, 0.3, 16)
    ex.offer(Chunk(1000.0, plan, 1 / 30), 1000.0)
    for k in range(10):
        c = ex.tick(1000.0 + k * 0.01, robot_t=k * 0.01)
        if c is not None:
            ex.sent(c, held_back=False)
    back = ex.tick(3.0, robot_t=0.11)  # the clock jumped back by ~997 s
    assert back.kind is CommandKind.HOLD and ex.counts["clock_jumps"] == 1 and ex.playing is None
    assert ex.offer(Chunk(2.9, plan, 1 / 30), 3.0) == "before_start"  # planned before the jump's now
    assert ex.offer(Chunk(3.0, plan + 1.0, 1 / 30), 3.0) is None  # the new clock's chunks play
    assert ex.tick(3.0, robot_t=0.12).q[0] == 1.0


def test_executor_catches_up_a_point_the_limits_held_back():
    from bac_ros.robot.streaming import Chunk, ChunkExecutor, ChunkRules, CommandKind

    ex = ChunkExecutor(ChunkRules(chunk_max_dt_s=0.2))
    ex.start(0.0)
    plan = np.zeros((3, 8))
    plan[1:, 0] = 1.0  # a 1 rad step at point 1, due 0.2 s after the stamp
    ex.offer(Chunk(0.0, plan, 0.2), 0.0)
    first = ex.tick(0.0, 0.0)
    ex.sent(first, held_back=False)
    assert ex.tick(0.1, 0.1) is None  # point 0 is out; point 1 not due
    step = ex.tick(0.2, 0.2)
    assert step.kind is CommandKind.POINT and step.q[0] == 1.0
    ex.sent(step, held_back=True)
    again = ex.tick(0.21, 0.21)
    assert again.kind is CommandKind.CATCH_UP and again.q[0] == 1.0
    ex.sent(again, held_back=False)
    assert ex.tick(0.22, 0.22) is None and ex.counts["catch_ups"] == 1
    # stop: nothing at all until the next start
    ex.stop()
    assert ex.tick(1.0, 1.0) is None and ex.offer(_chunk(1.0), 1.0) == "before_start"


def test_executor_plays_again_after_the_clock_restarts():
    """A restarted simulator starts its clock at 0: the commands after a new start must not wait for the old
    clock (seen: no command after the controller reconnected to a restarted franky-sim)."""
    from bac_ros.robot.streaming import ChunkExecutor, CommandKind

    ex = ChunkExecutor()
    ex.start(100.0)
    ex.offer(_chunk(100.0), 100.0)
    c = ex.tick(100.0, 5.0)
    ex.sent(c, held_back=False)
    ex.stop()
    ex.start(2.0)  # the new clock
    ex.offer(_chunk(2.0), 2.0)
    assert ex.tick(2.0, 0.0).kind is CommandKind.POINT


def _play(ex, times, offers=()):
    """Tick `ex` at `times` (robot clock = chunks' clock), offering each (time, chunk) when its time comes; ->
    [(now, target q[0] or None, switch_gap)] of the commands sent."""
    out, offers = [], list(offers)
    for now in times:
        now = float(now)
        while offers and offers[0][0] <= now + 1e-12:
            assert ex.offer(offers.pop(0)[1], now) is None
        cmd = ex.tick(now, robot_t=now)
        gap = ex.switch_gap
        if cmd is not None:
            ex.sent(cmd, held_back=False)
            out.append((now, None if cmd.q is None else float(cmd.q[0]), gap))
    return out


def test_a_continuation_is_what_the_arm_plays_until_the_new_chunk_takes_over():
    """Prefix-conditioned stitching's input: for a chunk observed at s that arrives at a, the points the chunk
    playing until its takeover sends, on the new chunk's grid (offset here by a tick); a chunk that starts with
    them takes over without a gap, one that does not jumps by its difference."""
    from bac_ros.robot.streaming import Chunk, ChunkExecutor, ChunkRules

    dt = 1 / 30
    ramp = np.arange(16, dtype=float)[:, None] * 0.01 * np.ones((1, 8))  # point i: 0.01 i rad
    old = Chunk(0.0, ramp, dt)
    ex = ChunkExecutor(ChunkRules(commit_steps=8))
    ex.start(0.0)
    ticks = np.arange(0.0, 0.6, 0.01)
    _play(ex, ticks[ticks < 0.1], [(0.0, old)])
    assert ex.horizon.handover(0.2) == (old, pytest.approx(8 * dt))  # arrives before old's commit ends: then
    assert ex.horizon.handover(0.3)[1] == pytest.approx(0.3)  # after it: on arrival
    s = 0.101  # observed a tick after old's point 3 fell due
    pts = ex.continuation(s, dt, 0.2, room=15)
    # through the new chunk's point due half a step after the takeover (its point 5 falls due 1 ms after it)
    assert len(pts) == int((8 * dt + dt / 2 - s) / dt) + 1 == 6
    np.testing.assert_allclose(pts[:, 0], 0.01 * (3 + np.arange(6)))  # old's points 3..8, one per step
    assert len(ex.continuation(s, dt, 0.2, room=2)) == 2
    stitched = Chunk(s, np.concatenate([pts, pts[-1] + 0.05 + ramp[:16 - len(pts)]]), dt)
    sent = _play(ex, ticks[(ticks >= 0.1) & (ticks < 0.4)], [(0.2, stitched)])
    gaps = [g for _, _, g in sent if g is not None]
    assert gaps == [pytest.approx(0.0)]  # one switch, no gap
    ex2 = ChunkExecutor(ChunkRules(commit_steps=8))
    ex2.start(0.0)
    _play(ex2, ticks[ticks < 0.1], [(0.0, old)])
    plain = Chunk(s, ramp + 0.05, dt)  # the plan 0.05 rad off
    gaps = [g for _, _, g in _play(ex2, ticks[(ticks >= 0.1) & (ticks < 0.4)], [(0.2, plain)]) if g is not None]
    assert gaps == [pytest.approx(0.05 + 0.05 - 0.08)]  # at 0.27 s: its point 5 against old's point 8


def test_a_chunk_waiting_at_the_commit_plays_first_and_is_the_one_continued():
    from bac_ros.robot.streaming import ChunkExecutor, ChunkRules

    dt = 0.1
    ex = ChunkExecutor(ChunkRules(commit_steps=2, chunk_max_dt_s=0.2))
    ex.start(0.0)
    a, b = _chunk(0.0, dt=dt, value=1.0), _chunk(0.05, dt=dt, value=2.0)
    _play(ex, [0.0, 0.06], [(0.0, a), (0.06, b)])  # b waits for a's 2 steps (until 0.2)
    before, takeover = ex.horizon.handover(0.25)  # arriving after 0.2: b takes over first and plays 2 steps
    assert before is b and takeover == pytest.approx(0.05 + (1 + 2) * dt)
    np.testing.assert_allclose(ex.continuation(0.1, dt, 0.25, room=8)[:, 0], 2.0)
    assert ex.horizon.handover(0.15)[0] is a  # arriving before 0.2 it replaces b


def test_temporal_ensembling_averages_the_chunks_that_cover_now():
    from bac_ros.robot.streaming import ChunkExecutor, ChunkRules

    dt = 0.1
    ex = ChunkExecutor(ChunkRules(commit_steps=0, ensemble_chunks=4, chunk_max_dt_s=0.2))
    ex.start(0.0)
    a, b = _chunk(0.0, n=4, dt=dt, value=0.0), _chunk(0.1, n=8, dt=dt, value=1.0)  # a's points end at 0.3
    sent = _play(ex, np.arange(0.0, 0.6, 0.05), [(0.0, a), (0.1, b)])
    values = dict((round(t, 2), v) for t, v, _ in sent)
    assert values[0.0] == 0.0 and values[0.1] == pytest.approx(0.5)  # both cover 0.1..0.3
    assert values[0.4] == pytest.approx(1.0)  # a is over
    assert [g for _, _, g in sent if g is not None] == [pytest.approx(0.5)]  # the mean moved half way
    single = ChunkExecutor(ChunkRules(commit_steps=0, chunk_max_dt_s=0.2))  # ensemble_chunks 1: the newest alone
    single.start(0.0)
    assert dict((round(t, 2), v) for t, v, _ in _play(single, [0.0, 0.1], [(0.0, a), (0.1, b)]))[0.1] == 1.0


def test_a_stop_with_hold_holds_every_tick_plays_nothing_until_start():
    """bac/stop: nothing plays, a hold every tick (the arm brakes to where it can stop); a plain stop (homing, a
    fault) sends nothing; start plays again, only chunks planned from then on."""
    from bac_ros.robot.streaming import ChunkExecutor, CommandKind

    ex = ChunkExecutor()
    ex.start(0.0)
    ex.offer(_chunk(0.0, n=100, value=0.3), 0.0)
    assert ex.tick(0.01, robot_t=0.01).kind is CommandKind.POINT
    ex.stop(hold=True)
    assert ex.offer(_chunk(0.1, n=100, value=0.5), 0.1) == "before_start"
    assert all(ex.tick(t, robot_t=t).kind is CommandKind.HOLD for t in (0.11, 0.12, 0.13))
    ex.stop()
    assert ex.tick(0.14, robot_t=0.14) is None
    ex.start(0.2)
    ex.offer(_chunk(0.2, n=100, value=0.7), 0.2)
    cmd = ex.tick(0.21, robot_t=0.21)
    assert cmd.kind is CommandKind.POINT and cmd.q[0] == pytest.approx(0.7)
