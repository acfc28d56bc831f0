"""RobotClockMap: joint states stamped when they were measured, whatever the lag of the node's clock."""
import numpy as np
import pytest

from bac_ros.robot.clock import RobotClockMap


def test_a_late_jittering_clock_gives_even_stamps():
    """The node's clock late by 0-40 ms (a loaded machine taking /clock in late), the robot's offset 100 s:
    every stamp is within the least lag seen of the truth, where the node's own clock was off by up to 40 ms."""
    rng = np.random.default_rng(0)
    m = RobotClockMap()
    robot = np.arange(0.0, 3.0, 0.01)
    lag = rng.uniform(0.0, 0.04, robot.size)
    lag[::50] = 0.001  # now and then a /clock message is taken in at once
    errors = []
    for r, late in zip(robot, lag):
        m.update(100.0 + r - late, r)
        errors.append(m.to_graph(r) - (100.0 + r))
    errors = np.array(errors[50:])  # after the first quick take-in
    assert np.max(np.abs(errors)) <= 0.001 + 1e-9
    assert np.max(np.abs(lag[50:])) > 0.03  # what stamping with the node's clock would have carried


def test_a_restarted_robot_or_a_jump_starts_again():
    m = RobotClockMap(window_s=5.0, jump_s=0.25)
    for r in np.arange(50.0, 51.0, 0.01):
        m.update(r + 10.0, r)
    assert m.to_graph(51.0) == pytest.approx(61.0)
    m.update(70.0, 0.0)  # the simulator restarted: its clock at 0 again
    assert m.resets == 1 and m.to_graph(0.0) == pytest.approx(70.0)
    m.update(71.0, 0.5)  # the robot away 0.5 s of graph time it did not count: offset +0.5
    assert m.resets == 2 and m.to_graph(0.5) == pytest.approx(71.0)


def test_old_pairs_leave_the_window():
    """A better pair ages out after `window_s` of robot time (a drifting clock is followed)."""
    m = RobotClockMap(window_s=1.0)
    m.update(10.0, 0.0)  # offset 10.0
    for r in np.arange(0.01, 2.0, 0.01):
        m.update(r + 9.9, r)  # offset 9.9 from now on
    assert m.to_graph(2.0) == pytest.approx(11.9)


def test_no_pair_yet_is_an_error():
    with pytest.raises(ValueError):
        RobotClockMap().to_graph(1.0)
