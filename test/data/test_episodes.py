"""Recorded episodes -> training steps: every command, exactly as sent, with the frame before it."""
import numpy as np
import pytest

from bac_ros.data.episodes import Episode, to_steps


def test_steps_pair_each_command_with_the_newest_frame_and_keep_it_exact():
    rng = np.random.default_rng(0)
    frames_t = np.array([1.00, 1.033, 1.067, 1.100])
    images = [np.full((40, 40, 3), k * 50, np.uint8) for k in range(4)]
    joints_t = np.arange(0.95, 1.2, 0.01)
    joints = rng.normal(size=(len(joints_t), 8))
    commands_t = np.array([0.99, 1.01, 1.05, 1.09, 1.12])  # the first comes before any frame
    commands = rng.normal(size=(5, 8))
    ep = Episode(row={"bag": "x"}, joints_t=joints_t, joints=joints, commands_t=commands_t, commands=commands,
                 latency_ms=np.zeros(0), success_time=None, images_t=frames_t, images=images)
    imgs, states, actions, times = to_steps(ep, 20)
    np.testing.assert_array_equal(actions, commands[1:])  # exactly the commands (from the first frame on)
    np.testing.assert_array_equal(times, [1.00, 1.033, 1.067, 1.100])  # the newest frame at or before each
    assert imgs.shape == (4, 20, 20, 3) and [int(i[0, 0, 0]) for i in imgs] == [0, 50, 100, 150]
    nearest = [int(np.abs(joints_t - t).argmin()) for t in times]
    np.testing.assert_array_equal(states, joints[nearest])
    with pytest.raises(ValueError, match="no camera frames"):
        to_steps(Episode(row={"bag": "y"}, joints_t=joints_t, joints=joints, commands_t=commands_t,
                         commands=commands, latency_ms=np.zeros(0), success_time=None), 20)
