import numpy as np
import pytest

from bac_ros.core.streaming import ObservationAligner, current_index, held_point


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
    ims, sts, stamp = a.window()
    assert ims.shape == (2, 2, 2, 3) and stamp == 1.0
    np.testing.assert_array_equal(ims[0], ims[1])  # padded with the single pair
    assert a.add_image(1.04, img(3))
    ims, sts, stamp = a.window()
    assert ims[1, 0, 0, 0] == 3 and sts[1][0] == pytest.approx(1.03) and stamp == 1.04
    assert not a.add_image(1.2, img(4)) and a.dropped == 2  # nearest state 1.05 is 0.15 s away
    assert not a.add_image(1.04, img(5))  # repeated stamp
    a.add_state(0.5, np.zeros(8))  # out of order: ignored
    assert a.window()[1][1][0] == pytest.approx(1.03)


def test_interpolate_chunk():
    from bac_ros.core.streaming import interpolate_chunk

    a = np.arange(4, dtype=float)[:, None] * np.ones((1, 8))
    np.testing.assert_allclose(interpolate_chunk(a, 1.0, 0.1, 0.9), a[0])
    np.testing.assert_allclose(interpolate_chunk(a, 1.0, 0.1, 1.15), 1.5)
    np.testing.assert_allclose(interpolate_chunk(a, 1.0, 0.1, 1.2), 2.0)
    np.testing.assert_allclose(interpolate_chunk(a, 1.0, 0.1, 5.0), a[-1])


def test_chunk_velocity_is_the_slope_interpolate_chunk_follows():
    from bac_ros.core.streaming import chunk_velocity, interpolate_chunk

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
    from bac_ros.core.streaming import RecedingHorizon

    dt = 0.1
    h = RecedingHorizon(commit=3)
    assert h.current(0.0) is None
    a = (0.0, "a", dt)
    h.offer(a)
    assert h.current(0.05) is a
    b, c = (0.1, "b", dt), (0.2, "c", dt)
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
    d, e = (1.0, "d", dt), (1.2, "e", dt)
    late.offer(d)
    assert late.current(1.25) is d and late.first_index == 2  # arrived 2.5 steps after its stamp
    late.offer(e)
    assert late.current(1.45) is d  # d plays 3 steps from its takeover (points 2..4), not until 1.3
    assert late.current(1.5) is e and late.first_index == 3
    with pytest.raises(ValueError):
        RecedingHorizon(commit=-1)
