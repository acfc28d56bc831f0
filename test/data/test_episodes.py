"""Recorded episodes -> training rows on the robot's action clock: one row every dt, the frame and joint state
at the tick, the target the robot was sent for it; checked against a simulated episode whose true commands
are known (points, catch-ups between them, holds)."""
import numpy as np
import pytest

from bac_ros.data.episodes import SOURCES, Episode, Switch, corrections, to_steps

DT = 1 / 30


def _episode(rng, n_ticks=40, drop_frame=None, switches=()):
    """Frames every DT from t=5.0 (render jitter up to 2 ms), joint states at 100 Hz, and the controller's
    commands: the point of each tick 8 ms after it, a catch-up 10 and 20 ms after that on every third tick,
    holds at 100 Hz during ticks 30-33 (nothing played). Returns the episode and the target in effect at each
    tick's end (the truth)."""
    t0 = 5.0
    frames_t = t0 + DT * np.arange(n_ticks) + rng.uniform(0, 0.002, n_ticks)
    images = [np.full((40, 40, 3), k % 250, np.uint8) for k in range(n_ticks)]
    if drop_frame is not None:
        frames_t = np.delete(frames_t, drop_frame)
        images = images[:drop_frame] + images[drop_frame + 1:]
    joints_t = np.arange(4.9, t0 + DT * n_ticks + 0.1, 0.01)
    joints = rng.normal(size=(len(joints_t), 8))
    cmd_t, cmds, truth = [], [], []
    for k in range(n_ticks):
        tick = t0 + k * DT
        if 30 <= k < 34:  # holds: the last target again, every 10 ms
            times = tick + 0.001 + 0.01 * np.arange(3)
            targets = [cmds[-1]] * 3
        else:
            times = [tick + 0.008] + ([tick + 0.018, tick + 0.028] if k % 3 == 0 else [])
            targets = list(rng.normal(size=(len(times), 8)))
        cmd_t += list(times)
        cmds += targets
        truth.append(targets[-1])
    ep = Episode(row={"bag": "x", "source": "teleop"}, joints_t=joints_t, joints=joints, commands_t=np.array(cmd_t),
                 commands=np.array(cmds), latency_ms=np.zeros(0), success_time=None, switches=list(switches),
                 images_t=frames_t, images=images)
    return ep, np.array(truth)


def test_rows_are_one_tick_apart_and_carry_what_the_robot_was_sent_for_the_tick():
    ep, truth = _episode(np.random.default_rng(0))
    s = to_steps(ep, 20, DT)
    n = len(truth)
    assert len(s) == n and s.repeated_frames == 0
    np.testing.assert_allclose(np.diff(s.times), DT, atol=1e-9)  # the action clock, exactly
    np.testing.assert_array_equal(s.actions, truth)  # the last target sent before each tick ended
    assert [int(i[0, 0, 0]) for i in s.images] == list(range(n))  # each frame once, in order
    nearest = [int(np.abs(ep.joints_t - t).argmin()) for t in ep.images_t]
    np.testing.assert_array_equal(s.states, ep.joints[nearest])
    assert s.images.shape == (n, 20, 20, 3)
    assert set(s.source.tolist()) == {SOURCES.index("teleop")} and not s.intervention.any()


def test_a_dropped_frame_repeats_its_neighbour_and_is_counted():
    ep, truth = _episode(np.random.default_rng(1), drop_frame=12)
    s = to_steps(ep, 20, DT)
    assert len(s) == len(truth) and s.repeated_frames == 1
    np.testing.assert_array_equal(s.actions, truth)


def test_rows_start_with_the_first_command_and_refuse_an_empty_recording():
    ep, truth = _episode(np.random.default_rng(2))
    late = ep.commands_t >= 5.0 + 10 * DT  # nothing commanded before tick 10
    ep.commands_t, ep.commands = ep.commands_t[late], ep.commands[late]
    s = to_steps(ep, 20, DT)
    assert len(s) == len(truth) - 10 and abs(s.times[0] - ep.images_t[10]) < 1e-9
    np.testing.assert_array_equal(s.actions, truth[10:])
    ep.images_t, ep.images = np.zeros(0), []
    with pytest.raises(ValueError, match="no camera frames"):
        to_steps(ep, 20, DT)


def test_sources_and_corrections_follow_the_take_overs():
    t0 = 5.0
    switches = [Switch(0.0, "policy"), Switch(t0 + 10.5 * DT, "teleop", True), Switch(t0 + 20.5 * DT, "policy"),
                Switch(t0 + 25.5 * DT, "teleop", True)]
    ep, _ = _episode(np.random.default_rng(3), switches=switches)
    s = to_steps(ep, 20, DT)
    expect = np.zeros(len(s), bool)
    expect[11:21] = expect[26:] = True
    np.testing.assert_array_equal(s.intervention, expect)
    np.testing.assert_array_equal(s.source, np.where(expect, SOURCES.index("teleop"), SOURCES.index("policy")))
    parts = corrections(s, context=2)
    assert [len(p) for p, _ in parts] == [12, len(s) - 24]
    (first, train), (second, train2) = parts
    np.testing.assert_array_equal(train, [False, False] + [True] * 10)  # history rows are not trained on
    np.testing.assert_array_equal(first.times, s.times[9:21])
    assert train2[:2].tolist() == [False, False] and train2[2:].all()
    assert corrections(to_steps(_episode(np.random.default_rng(4))[0], 20, DT)) == []


def test_a_region_of_interest_is_cropped_before_the_resize_the_same_for_policy_node_and_datasets():
    """Issue 36: a 640x480 frame was squashed to the policy's square; image_roi crops first (x, y, w, h)."""
    import pytest

    from bac_ros.core.images import to_policy_size

    frame = np.zeros((480, 640, 3), np.uint8)
    frame[100:300, 200:400] = 200  # the square a lab wants the policy to see
    np.testing.assert_array_equal(to_policy_size(frame, 96, (200, 100, 200, 200)), np.full((96, 96, 3), 200, np.uint8))
    assert to_policy_size(frame, 96, (0, 0, 0, 0)).shape == (96, 96, 3)  # width 0: the whole frame
    assert 0 < to_policy_size(frame, 96).mean() < 200
    with pytest.raises(ValueError, match="outside"):
        to_policy_size(frame, 96, (500, 0, 200, 200))
