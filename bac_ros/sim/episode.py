"""Episodes on the grasp world: reset, run the scripted expert (recording it), score."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .arm import Arm, HomingError
from .expert import ExpertConfig, plan_grasp
from .kinematics import Q_HOME, FR3Kinematics
from .world import CubePose, WorldProcess


@dataclass
class Step:
    """One tick: what was observed, and the action sent right after."""
    t_sim: float
    image: np.ndarray  # (H, W, 3) uint8
    state: np.ndarray  # (8,) q1..q7, gripper width
    action: np.ndarray  # (8,) joint targets, gripper command


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    cube: CubePose
    steps: list[Step] = field(default_factory=list)
    duration: float = 0.0  # sim seconds from the first action to the end
    info: dict = field(default_factory=dict)


def observe(world: WorldProcess, arm: Arm) -> tuple[float, np.ndarray, np.ndarray]:
    t_sim, image = world.render()
    q, _, width = arm.state()
    return t_sim, image, np.concatenate([q, [width]])


def reset(world: WorldProcess, arm: Arm, seed: int) -> CubePose:
    """Open the gripper, bring the arm home (if it cannot get there, the simulator puts it there), place the
    cube for `seed`, let it settle."""
    arm.restart_tracker()  # a fresh torque loop per episode (see Arm.restart_tracker)
    try:
        arm.move_home(Q_HOME, duration=1.5)  # opens the gripper and waits for it
    except HomingError:  # stuck or sagging: a simulator reset, a fresh torque loop, then home again
        arm.hold(Q_HOME)
        world.place_arm(Q_HOME)
        arm.restart_tracker()
        arm.move_home(Q_HOME, duration=1.5)
    pose = world.reset(seed)
    world.render()  # the first render creates the GL context (~0.5 s): not inside an episode
    time.sleep(0.3)
    return pose


def run_expert(world: WorldProcess, arm: Arm, seed: int, dt: float, kin: FR3Kinematics | None = None,
               cfg: ExpertConfig = ExpertConfig(), record: bool = True) -> EpisodeResult:
    pose = reset(world, arm, seed)
    plan = plan_grasp(pose, arm.joint_positions(), dt, kin, cfg)
    result = EpisodeResult(seed=seed, success=False, cube=pose, info={"ik_error": plan.ik_error})
    t_start = world.time()
    for i in range(len(plan.q)):
        world.wait_until(t_start + i * dt)  # the sim clock: the world may run slower than the wall clock
        t_sim, image, state = observe(world, arm)
        action = np.concatenate([plan.q[i], [plan.gripper[i]]])
        arm.command(plan.q[i], plan.dq[i], dt=dt)
        arm.gripper_command(plan.gripper[i])
        if record:
            result.steps.append(Step(t_sim, image, state, action))
    world.wait_until(t_start + len(plan.q) * dt)
    status = world.status()
    result.success = bool(status["success"])
    result.duration = status["time"] - t_start
    result.info["cube_final"] = status["cube"].tolist()
    return result
