"""Teleoperation's inner loop: a 6-DoF TCP velocity (a SpaceMouse, a joystick, a keyboard's twist) turned
into the next joint target at the action rate, by damped differential IK on the FR3 model, with the TCP
kept in the workspace box and the joints inside their limits (moveit_servo's job, for one arm).

The target is integrated from the previous target, not from the measured joints: a person steers the
commanded pose, and the controller's limits and torque loop decide how the arm follows it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.settings import check_ranges, setting
from .kinematics import Kinematics
from .limits import ArmLimits, box_excess


@dataclass(frozen=True)
class ServoSettings:
    """How an input device's axes become a TCP velocity (also teleop_node's parameters, by these names)."""
    frame: str = setting("base", "frame of the input twist: base (fr3_link0: x forward, z up) or tool (the TCP)",
                         choices=("base", "tool"))
    deadband: float = setting(0.1, "input below this fraction of full scale counts as zero (a device at rest "
                              "never reads exactly zero)", 0.0, 0.9)
    max_linear_speed: float = setting(0.10, "TCP speed at full input (m/s)", 0.001, 0.5)
    max_angular_speed: float = setting(0.6, "TCP turn rate at full input (rad/s)", 0.01, 3.0)
    ik_damping: float = setting(0.05, "damping of the least-squares IK (near a singularity the arm slows "
                                "instead of the joints racing)", 0.001, 1.0)

    def __post_init__(self):
        check_ranges(self)


def shape_input(axes: np.ndarray, settings: ServoSettings) -> np.ndarray:
    """Six device axes in [-1, 1] (linear x y z, angular x y z) -> a TCP twist (m/s, rad/s): each axis past
    the deadband rescaled to start at zero, then scaled to the maximum speeds."""
    a = np.clip(np.asarray(axes, float), -1.0, 1.0)
    if a.shape != (6,) or not np.all(np.isfinite(a)):
        raise ValueError(f"need 6 finite axes, got {axes!r}")
    d = settings.deadband
    a = np.sign(a) * np.clip((np.abs(a) - d) / (1.0 - d), 0.0, 1.0)
    return np.concatenate([a[:3] * settings.max_linear_speed, a[3:] * settings.max_angular_speed])


def servo_step(q_ref: np.ndarray, twist: np.ndarray, dt: float, kin: Kinematics, limits: ArmLimits,
               settings: ServoSettings) -> np.ndarray:
    """The joint target `dt` seconds on from `q_ref` moving the TCP at `twist` (6,: m/s and rad/s, in
    `settings.frame`), capped at the maximum speeds; the TCP stays in the workspace box (the motion out of
    it is dropped, the rest kept) and the joints inside their limits (with the margin)."""
    q_ref = np.asarray(q_ref, float)
    twist = np.nan_to_num(np.asarray(twist, float))
    p, r = kin.fk(q_ref)
    v, w = twist[:3], twist[3:]
    if settings.frame == "tool":
        v, w = r @ v, r @ w
    v = v * min(1.0, settings.max_linear_speed / max(np.linalg.norm(v), 1e-12))
    w = w * min(1.0, settings.max_angular_speed / max(np.linalg.norm(w), 1e-12))
    box = limits.workspace
    if box is not None:  # no motion out of the box; a TCP already outside may stay or come back in
        v = (np.clip(p + v * dt, np.minimum(box[0], p), np.maximum(box[1], p)) - p) / dt
    jac = kin.jacobian(q_ref)
    lam2 = settings.ik_damping ** 2
    dq = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(6), np.concatenate([v, w]))
    q = np.clip(q_ref + dq * dt, limits.low, limits.high)
    if box is not None:
        for _ in range(4):  # the linearisation can overshoot a face of the box: shorten the step
            out = box_excess(kin.fk(q)[0], box)
            if out <= max(box_excess(p, box), 0.0) + 1e-6:
                break
            q = q_ref + (q - q_ref) / 2
    return q
