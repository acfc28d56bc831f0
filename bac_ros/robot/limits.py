"""The safety envelope a lab sets (`ArmLimits`), and `Envelope`: the one function every joint target passes
last, whatever its source (a policy's point, a catch-up, a teleoperator's target, a hold, homing, the first
command after a connect, recover, start or switch).

Each command is shaped on the **real** time since the previous one (the robot's clock), never on the time a
point was due; the commanded motion u = Δq / Δt then obeys, per joint:
- speed: |u| ≤ max_velocity_factor × the FR3 velocity limit, and no step larger than that × `max_step_s`
  however long the gap (the torque loop takes a target at once): every band below is computed on
  Δt = min(gap, `max_step_s`), so after a stall the arm resumes within the limits as if `max_step_s` had passed;
- acceleration: |u − u_prev| ≤ max_acceleration_factor × the FR3 acceleration limit × Δt (a jump of the
  target sends franky's torque loop ringing: docs/control.md);
- joint limits with braking in time: q + u Δt + u² / 2a stays inside the limits minus the margin, so the arm
  can always stop before a limit at that acceleration (not a clamp after the acceleration limit, which can
  ask a stop from full speed in one command: docs/safety.md); outside the margins (a start there) only
  motion back inside is allowed;
- the workspace box (a callable, as it needs kinematics): a target whose TCP would leave the box where the arm
  comes to rest braking is refused, and the arm brakes along its last motion.
If the bands cannot all hold (a velocity beyond them left by an earlier envelope), the acceleration band wins:
the arm brakes as hard as it may. Non-finite or malformed targets are refused (ValueError) and change nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.settings import check_ranges, setting
from .model import DDQ_MAX, DQ_MAX, Q_HIGH, Q_LOW


@dataclass(frozen=True)
class ArmLimits:
    """The envelope (also controller_node's parameters, by these names)."""
    joint_limit_margin: float = setting(0.05, "rad kept from every joint limit", 0.0, 0.49)
    max_velocity_factor: float = setting(0.5, "no target moves a joint faster than this x its FR3 velocity limit",
                                         0.01, 1.0)
    max_step_s: float = setting(0.05, "no target moves further than velocity limit x this (s) from the last one, "
                                "however long ago that was", 0.001, 0.2)
    acceleration_limit_enabled: bool = setting(True, "limit the commanded acceleration (off: the torque loop can "
                                               "ring; not advised; braking for the joint limits and the box still "
                                               "uses the FR3's own acceleration limits)")
    max_acceleration_factor: float = setting(0.5, "the commanded velocity changes by at most this x the FR3 "
                                             "acceleration limits", 0.01, 1.0)
    velocity_stop_enabled: bool = setting(True, "stop the arm when a joint is measured faster than "
                                          "stop_velocity_factor x its limit (as the FR3's reflex would)")
    stop_velocity_factor: float = setting(1.0, "measured joint speed over this x its FR3 limit: damped stop, then "
                                          "hold where the arm came to rest", 0.1, 1.5)
    workspace_enabled: bool = setting(True, "refuse targets that take the TCP out of the workspace box")
    workspace_min: tuple = setting((0.25, -0.40, 0.03), "TCP box low corner (m, fr3_link0): x, y, z")
    workspace_max: tuple = setting((0.80, 0.40, 0.80), "TCP box high corner (m, fr3_link0): x, y, z")
    tracking_tolerance: float = setting(0.25, "a joint measured further than this (rad) from its commanded target "
                                        "for tracking_timeout_s faults the controller (0: off)", 0.0, 3.0)
    tracking_timeout_s: float = setting(0.5, "how long (s of robot time) the tracking error may last", 0.01, 10.0)
    watchdog_s: float = setting(0.1, "no command for this long (s of robot time) while the arm moves (a hung "
                                "controller): it brakes to rest through the envelope and holds there", 0.02, 5.0)

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
    def velocity(self) -> np.ndarray:
        """The speed limit (rad/s per joint)."""
        return self.max_velocity_factor * DQ_MAX

    @property
    def acceleration(self) -> np.ndarray:
        """The acceleration the envelope brakes with and limits to (rad/s² per joint)."""
        return (self.max_acceleration_factor if self.acceleration_limit_enabled else 1.0) * DDQ_MAX

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


def box_excess(p: np.ndarray, box) -> float:
    """How far (m) point `p` lies outside the box ((low xyz), (high xyz)); 0 inside."""
    lo, hi = (np.asarray(v, float) for v in box)
    return float(np.linalg.norm(np.maximum(lo - p, 0.0) + np.maximum(p - hi, 0.0)))


def braking_speed(distance: np.ndarray, a: np.ndarray, dt: float) -> np.ndarray:
    """The largest speed toward a limit `distance` away (≤ 0: at or past it) such that moving one step of
    `dt` and then braking at `a` stops at the limit: u dt + u² / 2a ≤ distance."""
    return -a * dt + np.sqrt((a * dt) ** 2 + 2.0 * a * np.maximum(distance, 0.0))


@dataclass
class Shaped:
    """One command out of the envelope."""
    q: np.ndarray  # the target to send (rad)
    dq: np.ndarray  # its velocity feed-forward (rad/s)
    held_back: bool  # the limits stopped it short of the target
    clamped: bool  # a safety bound (speed, step, joint limit, braking) moved it, not only the acceleration
    shaped: bool  # the acceleration limit moved it
    box_refused: bool  # the workspace box refused it: the arm brakes


class Envelope:
    """The envelope's state (the last target, its real velocity, when it was sent) and `step`, the one function
    every command passes. `leaves_box(q_from, q_stop)`: whether the TCP at `q_stop` is outside the workspace box
    and further out than at `q_from` (None: no box). Not thread-safe."""

    def __init__(self, limits: ArmLimits, leaves_box: Callable[[np.ndarray, np.ndarray], bool] | None = None):
        self.limits, self.leaves_box = limits, leaves_box
        self.q: np.ndarray | None = None
        self.u = np.zeros(7)
        self.t: float | None = None

    def reset(self, q: np.ndarray, t: float, u: np.ndarray | None = None) -> None:
        """At `q` at robot time `t`, moving at `u` (rad/s; None: at rest): a fresh torque loop from the measured
        state. A `u` beyond the bands is braked at the acceleration limit from there."""
        u = np.zeros(7) if u is None else np.asarray(u, float)
        if u.shape != (7,) or not np.all(np.isfinite(u)):
            raise ValueError(f"velocity must be 7 finite values, got {u}")
        self.q, self.u, self.t = checked_target(q).copy(), u.copy(), float(t)

    def stop_point(self) -> np.ndarray:
        """Where the arm comes to rest braking now at the envelope's acceleration (a hold's target)."""
        a = self.limits.acceleration
        return self.q + self.u * np.abs(self.u) / (2.0 * a)

    def step(self, q_target, dq_target, t: float, box: bool = True) -> Shaped | None:
        """The command for robot time `t` on the way to `q_target` (arriving with velocity `dq_target`, None:
        at rest); None when no time has passed since the last one (send nothing). `box=False`: without the
        workspace box (homing)."""
        q_target = checked_target(q_target)
        dq_target = np.zeros(7) if dq_target is None else np.asarray(dq_target, float)
        if dq_target.shape != (7,) or not np.all(np.isfinite(dq_target)):
            raise ValueError(f"velocity feed-forward must be 7 finite values, got {dq_target}")
        if self.q is None:
            raise RuntimeError("the envelope has no state: reset it at the measured pose first")
        gap = float(t) - self.t
        if not gap > 1e-6:
            return None
        lim, a, q, u_prev = self.limits, self.limits.acceleration, self.q, self.u
        # every band on at most max_step_s: a stall (a hung executor, a slow message) licenses no longer step,
        # and the acceleration band on the whole gap would (it wins where the bands conflict)
        dt = min(gap, lim.max_step_s)
        # the motion that reaches the target (inside the margins) arriving at its velocity, braking in time
        q_target = np.clip(q_target, lim.low, lim.high)
        err = q_target - q
        brake = braking_speed(np.abs(err), a, dt)  # this step, then braking, ends at the target
        want = np.clip(err / dt, dq_target - brake, dq_target + brake)
        # safety bands: speed (and the step a long gap may never license), joint limits braking in time
        vmax = lim.velocity
        hi = np.minimum(vmax, braking_speed(lim.high - q, a, dt))
        lo = np.maximum(-vmax, -braking_speed(q - lim.low, a, dt))
        u = np.clip(want, lo, hi)
        clamped = not np.allclose(u, want, rtol=0.0, atol=1e-12)
        shaped = False
        if lim.acceleration_limit_enabled:  # the acceleration band wins where the two cannot both hold
            limited = np.clip(u, u_prev - a * dt, u_prev + a * dt)
            shaped = not np.allclose(limited, u, rtol=0.0, atol=1e-12)
            u = limited
        box_refused = False
        if box and self.leaves_box is not None:
            q_next = q + u * dt
            if self.leaves_box(q, q_next + u * np.abs(u) / (2.0 * a)):
                box_refused, clamped = True, True
                u = np.sign(u_prev) * np.maximum(np.abs(u_prev) - a * dt, 0.0)  # brake along the last motion
        q_new = q + u * dt
        reached = np.allclose(q_new, q_target, rtol=0.0, atol=1e-9)
        # on target: the plan's own velocity as feed-forward (within the bands, the acceleration band too: a
        # feed-forward beyond it asked 1.3-1.5x the acceleration on a smooth sine); on the way: the limited motion
        if reached and not box_refused:
            dq = np.clip(dq_target, lo, hi)
            if lim.acceleration_limit_enabled:
                dq = np.clip(dq, u_prev - a * dt, u_prev + a * dt)
        else:
            dq = u
        self.q, self.u, self.t = q_new, u, float(t)
        return Shaped(q_new, dq, held_back=not reached and not box_refused, clamped=clamped, shaped=shaped,
                      box_refused=box_refused)
