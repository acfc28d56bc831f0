"""Episodes on the grasp world: reset (home, with the simulator's help when the arm cannot get there),
run the scripted expert (recording it), score."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..robot.fr3_arm import FR3Arm, HomingError
from ..robot.kinematics import Kinematics
from ..robot.limits import ArmLimits
from ..robot.model import Q_HOME
from .expert import ExpertConfig, plan_grasp
from .world import CubePose, WorldConfig, WorldProcess

WORLD_RESTARTS = 3  # fresh worlds one episode may need before a run gives up


class FreshWorld:
    """A grasp world and its arm client, restartable: an episode that breaks the world (an arm it cannot
    reset any more, a torque link a starved machine let time out) runs again on a fresh one."""

    def __init__(self, cfg: WorldConfig, limits: ArmLimits = ArmLimits()):
        self.cfg, self.limits, self.world, self.arm, self.restarts = cfg, limits, None, None, 0

    def restart(self, count: bool = False) -> None:
        self.close()
        self.world = WorldProcess(self.cfg).start()
        self.arm = FR3Arm(self.cfg.hostname, self.limits).start()  # the controller's envelope: as the robot runs
        self.restarts += count

    def run(self, episode: Callable, what: str):
        """`episode(world, arm)`, on a fresh world again after a RuntimeError or a franky error (a broken libfranka
        link), at most WORLD_RESTARTS times."""
        import sys

        import franky

        if self.world is None:
            self.restart()
        for attempt in range(1, WORLD_RESTARTS + 2):
            try:
                return episode(self.world, self.arm)
            except (RuntimeError, franky.Exception) as e:
                if attempt > WORLD_RESTARTS:
                    raise
                print(f"\n{what}: {e}; restarting the world", file=sys.stderr)
                self.restart(count=True)

    def close(self) -> None:
        if self.arm is not None:
            self.arm.stop()
        if self.world is not None:
            self.world.stop()
        self.world = self.arm = None

    def __enter__(self) -> "FreshWorld":
        self.restart()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


def pause_and_observe(world: WorldProcess, arm: FR3Arm) -> tuple[float, np.ndarray, np.ndarray]:
    """Pause the world and observe it: (sim time, image, state) of one instant, whatever the machine's
    speed. The gripper width is read first, while the physics still runs: franky takes it from the
    gripper's next state packet, which a paused world never sends. Resume with `world.resume()`."""
    width = arm.gripper_width()
    t = world.pause()
    _, image = world.render()
    return t, image, np.concatenate([arm.joint_positions(), [width]])


def observe(world: WorldProcess, arm: FR3Arm) -> tuple[float, np.ndarray, np.ndarray]:
    t_sim, image = world.render()
    state = arm.state()
    return t_sim, image, np.concatenate([state.q, [state.width]])


def home_with_fallback(home: Callable[[], None], put_home: Callable[[], None], attempts: int = 3) -> int:
    """Bring the arm home under its own control (`home` raises HomingError when it cannot: stuck on the
    table or the cube, sagging); each time it cannot, the simulator puts it there (`put_home`) and `home`
    runs again, at most `attempts` times. The one homing rule of the evaluation harness and `bac demo`.
    Returns how many simulator resets it took; the last HomingError when they did not help."""
    for resets in range(attempts + 1):
        try:
            home()
            return resets
        except HomingError:
            if resets == attempts:
                raise
            put_home()
    return attempts


def reset(world: WorldProcess, arm: FR3Arm, seed: int) -> CubePose:
    """Open the gripper, bring the arm home (`home_with_fallback`), place the cube for `seed`, let it settle."""
    def put_home():  # the simulator puts the arm home; a fresh torque loop holds it there
        arm.hold(Q_HOME)
        world.place_arm(Q_HOME)
        arm.restart_tracker()

    arm.restart_tracker()  # a fresh torque loop per episode (see FR3Arm.restart_tracker)
    home_with_fallback(lambda: arm.move_home(Q_HOME, duration=1.5), put_home)  # opens the gripper too
    pose = world.reset(seed)
    world.render()  # the first render creates the GL context (~0.5 s): not inside an episode
    time.sleep(0.3)
    return pose


def run_expert(world: WorldProcess, arm: FR3Arm, seed: int, dt: float, kin: Kinematics | None = None,
               cfg: ExpertConfig = ExpertConfig(), record: bool = True) -> EpisodeResult:
    pose = reset(world, arm, seed)
    plan = plan_grasp(pose, arm.joint_positions(), dt, kin, cfg)
    result = EpisodeResult(seed=seed, success=False, cube=pose, info={"ik_error": plan.ik_error})
    t_start = world.time()
    try:
        for i in range(len(plan.q)):
            world.wait_until(t_start + i * dt)  # the sim clock: the world may run slower than the wall clock
            # observe and send the step's action at one instant of sim time: on a slow machine the world
            # would otherwise step on while the client renders (seen: steps 40 ms apart instead of 33)
            t_sim, image, state = pause_and_observe(world, arm)
            action = np.concatenate([plan.q[i], [plan.gripper[i]]])
            arm.command(plan.q[i], plan.dq[i])
            arm.gripper_command(plan.gripper[i])
            world.resume()
            if record:
                result.steps.append(Step(t_sim, image, state, action))
    finally:
        world.resume()
    world.wait_until(t_start + len(plan.q) * dt)
    status = world.status()
    result.success = bool(status["success"])
    result.duration = status["time"] - t_start
    result.info["cube_final"] = status["cube"].tolist()
    return result
