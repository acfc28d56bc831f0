"""Scripted expert: approach above the cube with the wrist matched to its yaw, descend, grasp, lift.

The plan is made in Cartesian space (TCP segments with short smooth speed ramps), turned into joint targets
at the action rate by IK warm-started along the path, and streamed through the same `Arm` as the policy's
actions.

The plan never stands still for long while its next move depends on time alone: a policy that sees one
frame cannot tell how long the arm has waited, and a pause in the demonstrations becomes a fixed point it
does not leave (docs/policy.md, the grasp task). Segments ramp up within `ramp` of their duration instead
of following a min-jerk curve, which barely moves in its first tenth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..robot.kinematics import Kinematics, top_down
from ..robot.model import GRIPPER_MAX_WIDTH
from .world import CUBE_HALF, TABLE_TOP, CubePose

OPEN, CLOSED = GRIPPER_MAX_WIDTH, 0.0


@dataclass(frozen=True)
class ExpertConfig:
    approach_height: float = 0.10  # TCP above the cube top before descending (m)
    grasp_depth: float = 0.004  # TCP below the cube centre at the grasp (m)
    lift: float = 0.15  # m
    t_approach: float = 2.2  # s, per phase
    t_descend: float = 1.3
    t_close: float = 0.3  # the fingers reach a cube in ~0.23 s at 0.1 m/s
    t_lift: float = 1.4
    t_hold: float = 1.8
    ramp: float = 0.2  # fraction of a moving segment spent speeding up (and again slowing down)

    def __post_init__(self):
        if not 0.0 < self.ramp <= 0.5:
            raise ValueError(f"ramp must lie in (0, 0.5], got {self.ramp}")
        for name in ("t_approach", "t_descend", "t_close", "t_lift", "t_hold"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass
class ExpertPlan:
    q: np.ndarray  # (N, 7) joint targets
    dq: np.ndarray  # (N, 7) joint velocities of the plan
    gripper: np.ndarray  # (N,) commanded width: 0.08 open, 0 closed
    tcp: np.ndarray  # (N, 3) planned TCP positions
    ik_error: float  # worst IK residual along the plan


def _progress(n: int, ramp: float) -> np.ndarray:
    """Path fraction at steps 1..n: the speed rises along a smoothstep over `ramp` of the time, stays
    constant, and falls back symmetrically; ends at exactly 1."""
    t = np.linspace(0.0, 1.0, 20 * n + 1)
    u = np.clip(np.minimum(t, 1.0 - t) / ramp, 0.0, 1.0)
    speed = u * u * (3 - 2 * u)
    dist = np.concatenate([[0.0], np.cumsum((speed[1:] + speed[:-1]) / 2)])
    return (dist / dist[-1])[20::20]


def wrap_yaw(yaw: float) -> float:
    """Cube yaw folded into [-pi/4, pi/4): the cube looks the same every 90 degrees."""
    return (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4


def plan_grasp(cube: CubePose, q_start: np.ndarray, dt: float, kin: Kinematics | None = None,
               cfg: ExpertConfig = ExpertConfig()) -> ExpertPlan:
    kin = kin or Kinematics.fr3()
    p0, _ = kin.fk(q_start)
    yaw = wrap_yaw(cube.yaw)
    centre = np.array([cube.x, cube.y, TABLE_TOP + CUBE_HALF])
    above = centre + [0, 0, CUBE_HALF + cfg.approach_height]
    grasp = centre - [0, 0, cfg.grasp_depth]
    lifted = grasp + [0, 0, cfg.lift]
    segments = [(p0, above, 0.0, yaw, cfg.t_approach, OPEN), (above, grasp, yaw, yaw, cfg.t_descend, OPEN),
                (grasp, grasp, yaw, yaw, cfg.t_close, CLOSED), (grasp, lifted, yaw, yaw, cfg.t_lift, CLOSED),
                (lifted, lifted, yaw, yaw, cfg.t_hold, CLOSED)]
    tcp, yaws, grip = [], [], []
    for a, b, ya, yb, dur, g in segments:
        s = _progress(max(1, round(dur / dt)), cfg.ramp)
        tcp.append(a + (b - a) * s[:, None])
        yaws.append(ya + (yb - ya) * s)
        grip.append(np.full(len(s), g))
    tcp, yaws, grip = np.concatenate(tcp), np.concatenate(yaws), np.concatenate(grip)
    qs, q, worst = [], np.asarray(q_start, float), 0.0
    for p, y in zip(tcp, yaws):
        q, err = kin.ik(p, top_down(y), q)
        worst = max(worst, err)
        qs.append(q)
    qs = np.array(qs)
    dq = np.gradient(qs, dt, axis=0)
    return ExpertPlan(q=qs, dq=dq, gripper=grip, tcp=tcp, ik_error=worst)


class ExpertChunks:
    """The scripted expert's plan for one cube, streamed as chunks of `chunk_len` points (point i due at
    t0 + i*dt) into the controller: the reference operator of `bac demo`, measured the same way as the
    policy. `tick(now)` publishes the chunk starting at the step due now, each step once."""

    def __init__(self, publish, cube: list[float], q_start: np.ndarray, now: float, dt: float = 1.0 / 30.0,
                 chunk_len: int = 16):
        plan = plan_grasp(CubePose(*cube), q_start, dt)
        self.actions = np.concatenate([plan.q, plan.gripper[:, None]], axis=1)
        self.publish, self.dt, self.chunk_len = publish, dt, chunk_len
        self.t0 = now + 0.05
        self.next_i = 0

    def tick(self, now: float) -> None:
        i = int((now - self.t0) // self.dt)
        if i < self.next_i or self.next_i >= len(self.actions):  # not due yet, or the plan's end was sent
            return
        i = min(max(i, 0), len(self.actions) - 1)
        self.publish(self.actions[i:i + self.chunk_len], self.t0 + i * self.dt, self.dt)
        self.next_i = i + 1
