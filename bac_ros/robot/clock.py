"""`RobotClockMap`: robot time -> the graph's clock, to stamp a measured state with the time it was measured.

Why: the controller reads a joint state measured at robot time t; stamped with the node's clock when it is
published, the stamp carries that clock's lag instead. Under load the lag jitters by tens of ms (with
use_sim_time the node's clock is the last /clock message taken in), and a joint trace whose stamps jitter by
10 ms shows velocity changes as accelerations twice the real ones. A state read is at most a control period
old, while the node's clock can be late by much more: over a recent window the largest (graph clock - robot
clock) is the pair least late, and as one constant it leaves the stamps as even as the robot's own clock.
"""
from __future__ import annotations

from collections import deque


class RobotClockMap:
    """Offset between the robot's clock and the graph's, from pairs (graph now, robot now) read together.
    The estimate is the largest offset of the last `window_s` of robot time; it starts again when the
    robot's clock goes back (a restarted robot or simulator) or the offset jumps by more than `jump_s` (a
    clock set, a robot that was away)."""

    def __init__(self, window_s: float = 5.0, jump_s: float = 0.25):
        self.window_s, self.jump_s = window_s, jump_s
        self._best: deque[tuple[float, float]] = deque()  # (robot time, offset), offsets decreasing
        self._last_robot: float | None = None
        self.resets = 0

    def update(self, graph_now: float, robot_now: float) -> None:
        offset = graph_now - robot_now
        if self._last_robot is not None and (
                robot_now < self._last_robot or abs(offset - self._best[0][1]) > self.jump_s):
            self._best.clear()
            self.resets += 1
        self._last_robot = robot_now
        while self._best and self._best[-1][1] <= offset:
            self._best.pop()
        self._best.append((robot_now, offset))
        while self._best[0][0] < robot_now - self.window_s:
            self._best.popleft()

    def to_graph(self, robot_t: float) -> float:
        """`robot_t` on the graph's clock. ValueError before the first `update`."""
        if not self._best:
            raise ValueError("RobotClockMap: no (graph, robot) pair yet")
        return robot_t + self._best[0][1]
