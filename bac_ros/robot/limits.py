"""The safety envelope a lab sets, and the pure functions that shape every joint target into it.

Every target sent to the arm is made safe here first (`FR3Arm.command`): non-finite or malformed targets are
refused; the target is clamped into the joint limits minus a margin; it moves at most velocity limit x
min(dt, `max_step_s`) from the previous target (the torque loop takes a target at once, so a long gap never
licenses a big step: a 1 rad step sent after 5 s of holding once flung a simulated arm at 9-12x its
velocity limits); the commanded velocity changes by at most the acceleration limit (`limit_acceleration`:
on franky-sim a 0.3 rad jump of joint 2's target sent the torque loop into an oscillation that never
decayed; measurements in docs/control.md). The TCP workspace box needs kinematics and lives in
`FR3Arm.command`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.settings import check_ranges, setting
from .model import DQ_MAX, Q_HIGH, Q_LOW


@dataclass(frozen=True)
class ArmLimits:
    """The envelope (also controller_node's parameters, by these names)."""
    joint_limit_margin: float = setting(0.05, "rad kept from every joint limit", 0.0, 0.49)
    max_velocity_factor: float = setting(0.5, "no target moves a joint faster than this x its FR3 velocity limit",
                                         0.01, 1.0)
    max_step_s: float = setting(0.05, "no target moves further than velocity limit x this (s) from the last one, "
                                "however long ago that was", 0.001, 0.2)
    acceleration_limit_enabled: bool = setting(True, "limit the commanded acceleration (off: the torque loop can "
                                               "ring; not advised)")
    max_acceleration_factor: float = setting(0.5, "the commanded velocity changes by at most this x the FR3 "
                                             "acceleration limits", 0.01, 1.0)
    velocity_stop_enabled: bool = setting(True, "stop the arm when a joint is measured faster than "
                                          "stop_velocity_factor x its limit (as the FR3's reflex would)")
    stop_velocity_factor: float = setting(1.0, "measured joint speed over this x its FR3 limit: damped stop, then "
                                          "hold where the arm came to rest", 0.1, 1.5)
    workspace_enabled: bool = setting(True, "refuse targets that take the TCP out of the workspace box")
    workspace_min: tuple = setting((0.25, -0.40, 0.03), "TCP box low corner (m, fr3_link0): x, y, z")
    workspace_max: tuple = setting((0.80, 0.40, 0.80), "TCP box high corner (m, fr3_link0): x, y, z")

    def __post_init__(self):
        check_ranges(self)
        lo, hi = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo < hi):
            raise ValueError(f"workspace_min < workspace_max needs three values each, got {self.workspace_min}, "
                             f"{self.workspace_max}")

    @property
    def low(self) -> np.ndarray:
        return Q_LOW + self.joint_limit_margin

    @property
    def high(self) -> np.ndarray:
        return Q_HIGH - self.joint_limit_margin

    @property
    def workspace(self) -> tuple[np.ndarray, np.ndarray] | None:
        """((x, y, z) low, (x, y, z) high) in m, or None when the box is off."""
        if not self.workspace_enabled:
            return None
        return np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)


def checked_target(q_target) -> np.ndarray:
    """`q_target` as 7 finite floats; ValueError otherwise."""
    q = np.asarray(q_target, dtype=float)
    if q.shape != (7,):
        raise ValueError(f"joint target must have 7 values, got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"joint target is not finite: {q}")
    return q


def safe_target(q_target: np.ndarray, q_ref: np.ndarray, dt: float, limits: ArmLimits) -> np.ndarray:
    """Clamp a joint target into the limits and to at most `max_velocity_factor * DQ_MAX * dt` from
    `q_ref` (the previous target), dt capped at `max_step_s`. Raises ValueError on a malformed or
    non-finite target."""
    q = checked_target(q_target)
    step = limits.max_velocity_factor * DQ_MAX * min(dt, limits.max_step_s)
    q = np.clip(q, q_ref - step, q_ref + step)
    return np.clip(q, limits.low, limits.high)


def limit_acceleration(q_target: np.ndarray, dq_target: np.ndarray, q_ref: np.ndarray, v_ref: np.ndarray,
                       dt: float, a_max: np.ndarray) -> np.ndarray:
    """This tick's target on the way to `q_target` (moving at `dq_target`), from `q_ref` moving at `v_ref`:
    the velocity changes by at most `a_max * dt`, and the approach brakes in time not to pass the target.
    A target that moves within the limits is reached exactly."""
    err = np.asarray(q_target, float) - q_ref
    brake = np.sqrt(2.0 * a_max * np.abs(err))
    v = np.clip(err / dt, dq_target - brake, dq_target + brake)
    v = np.clip(v, v_ref - a_max * dt, v_ref + a_max * dt)
    return q_ref + v * dt


def box_excess(p: np.ndarray, box) -> float:
    """How far (m) point `p` lies outside the box ((low xyz), (high xyz)); 0 inside."""
    lo, hi = (np.asarray(v, float) for v in box)
    return float(np.linalg.norm(np.maximum(lo - p, 0.0) + np.maximum(p - hi, 0.0)))
