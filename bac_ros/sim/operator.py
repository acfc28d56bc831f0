"""A scripted operator: grasps the cube the way a person at a SpaceMouse would, so the whole teleoperation
path (twist -> teleop_node -> controller) runs in simulation and CI without a device.

It servos the TCP on its error to the expert's waypoints (above the cube with the wrist turned to it, down
to the grasp, close, lift, hold), on what it saw `reaction_s` ago, with its speed limited and its hand
trembling (low-pass filtered noise). In the intervening mode it watches a policy drive and takes over when
the TCP strays from the expert's path.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..core.settings import check_ranges, setting
from ..robot.kinematics import rotation_log, top_down
from .expert import ExpertConfig, wrap_yaw
from .world import CUBE_HALF, TABLE_TOP, CubePose

PHASES = ("approach", "descend", "close", "lift", "hold")


@dataclass(frozen=True)
class OperatorSettings:
    """How the scripted person behaves (also operator_node's parameters, by these names)."""
    reaction_s: float = setting(0.25, "the operator acts on what it saw this long ago (s)", 0.0, 2.0)
    gain: float = setting(3.0, "TCP velocity per metre of error (1/s)", 0.1, 20.0)
    turn_gain: float = setting(3.0, "TCP turn rate per radian of error (1/s)", 0.1, 20.0)
    max_linear_speed: float = setting(0.10, "the operator's top TCP speed (m/s)", 0.005, 0.5)
    max_angular_speed: float = setting(0.6, "the operator's top turn rate (rad/s)", 0.01, 3.0)
    tremor: float = setting(0.1, "hand tremor: noise as a fraction of the top speeds", 0.0, 1.0)
    tolerance_m: float = setting(0.006, "a waypoint counts as reached within this (m)", 0.001, 0.05)
    close_wait_s: float = setting(0.6, "after pressing close, the operator waits this long before lifting (s)",
                                  0.0, 5.0)
    stray_m: float = setting(0.05, "intervening: the TCP this far from the expert's path (m) ...", 0.005, 1.0)
    stray_s: float = setting(0.5, "... for this long (s) makes the operator take over", 0.0, 10.0)

    def __post_init__(self):
        check_ranges(self)


class ScriptedOperator:
    """One episode of the scripted person. `act(t, p, r)` with the robot clock (s) and the TCP pose (position
    (3,), rotation (3, 3)) -> (twist (6,) m/s and rad/s in the base frame, gripper closed?)."""

    def __init__(self, cube: CubePose, settings: OperatorSettings = OperatorSettings(), seed: int = 0,
                 expert: ExpertConfig = ExpertConfig()):
        self.s, self.expert = settings, expert
        self._aim(cube)
        self.phase, self._phase_t = "approach", None
        self.closed = False
        self._seen: deque = deque()  # (t, p, r): what the operator saw, for the reaction delay
        self._rng = np.random.default_rng(seed)
        self._tremor = np.zeros(6)

    def _aim(self, cube: CubePose, z: float | None = None) -> None:
        """The waypoints for a cube at (x, y, yaw), its centre at height `z` (default: resting on the table)."""
        e = self.expert
        self.yaw = wrap_yaw(cube.yaw)
        centre = np.array([cube.x, cube.y, TABLE_TOP + CUBE_HALF if z is None else z])
        above = centre + [0, 0, CUBE_HALF + e.approach_height]
        grasp = centre - [0, 0, e.grasp_depth]
        self.waypoints = {"approach": above, "descend": grasp, "close": grasp,
                          "lift": grasp + [0, 0, e.lift], "hold": grasp + [0, 0, e.lift]}

    def take_over(self, tcp: np.ndarray, closed: bool, cube: CubePose, cube_z: float) -> None:
        """A person takes the arm over from the policy, seeing the arm and the cube where they are now: with the
        gripper closed on the cube (its centre within 2.5 cm of the TCP) they keep it closed and lift; closed
        on nothing, they open it and grasp again; open, they grasp the cube where it lies now."""
        holding = closed and np.linalg.norm(np.asarray(tcp, float) - [cube.x, cube.y, cube_z]) < 0.025
        self._seen.clear()
        self._phase_t = None
        if holding:
            self._aim(cube, cube_z)
            self.phase, self.closed = "lift", True
        else:
            self._aim(cube)
            self.phase, self.closed = "approach", False

    def _delayed(self, t: float, p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._seen.append((t, p, r))
        while len(self._seen) > 1 and self._seen[1][0] <= t - self.s.reaction_s:
            self._seen.popleft()
        return self._seen[0][1], self._seen[0][2]

    def act(self, t: float, p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, bool]:
        s = self.s
        p, r = self._delayed(t, np.asarray(p, float), np.asarray(r, float))
        if self._phase_t is None:
            self._phase_t = t
        goal = self.waypoints[self.phase]
        err = goal - p
        reached = np.linalg.norm(err) < s.tolerance_m
        if self.phase in ("approach", "descend", "lift") and reached:
            self._next(t)
        elif self.phase == "close":
            self.closed = True
            if t - self._phase_t >= s.close_wait_s:
                self._next(t)
        v = s.gain * err
        v *= min(1.0, s.max_linear_speed / max(np.linalg.norm(v), 1e-12))
        w = s.turn_gain * rotation_log(top_down(self.yaw) @ r.T)
        w *= min(1.0, s.max_angular_speed / max(np.linalg.norm(w), 1e-12))
        # tremor: white noise through a first-order low-pass (~3 Hz at 30 Hz calls)
        scale = s.tremor * np.r_[np.full(3, s.max_linear_speed), np.full(3, s.max_angular_speed)]
        self._tremor = 0.5 * self._tremor + 0.5 * self._rng.normal(0.0, 1.0, 6) * scale
        return np.concatenate([v, w]) + self._tremor, self.closed

    def _next(self, t: float) -> None:
        self.phase = PHASES[min(PHASES.index(self.phase) + 1, len(PHASES) - 1)]
        self._phase_t = t


class StrayWatch:
    """Intervening mode: is the TCP off the expert's path (distance to the nearest planned TCP point over
    `stray_m`) for longer than `stray_s`?"""

    def __init__(self, path: np.ndarray, settings: OperatorSettings = OperatorSettings()):
        self.path, self.s = np.asarray(path, float), settings
        self._since: float | None = None

    def distance(self, p: np.ndarray) -> float:
        return float(np.min(np.linalg.norm(self.path - np.asarray(p, float), axis=1)))

    def strayed(self, t: float, p: np.ndarray) -> bool:
        if self.distance(p) <= self.s.stray_m:
            self._since = None
            return False
        if self._since is None:
            self._since = t
        return t - self._since >= self.s.stray_s

