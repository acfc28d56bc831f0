"""`Arm`: what controller_node and the evaluation harness use of a robot arm. `FR3Arm` (franky: a real FR3 or
franky-sim) is the one implementation; a lab with another arm writes a class with these members and passes it
where FR3Arm is made (controller_node's connect, `sim.episode.FreshWorld`). Every joint target goes through the
lab's envelope (`robot.limits.Envelope`) inside `command` and `brake`, so an implementation keeps that."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .limits import ArmLimits


@runtime_checkable
class Arm(Protocol):
    """Joint targets in rad (7 arm joints), speeds in rad/s, the gripper as an opening in m, times in s of the
    robot's clock. Errors: `check` raises `RobotFault` (fr3_arm) for a robot error or one of the envelope's own
    faults; the others raise what the robot's library raises when the robot is gone."""

    limits: ArmLimits
    held_back: bool  # the last command stopped short of its target (the executor plays the point again)
    # counters for /diagnostics and evaluation rows
    commands_sent: int
    clamped: int
    shaped: int
    workspace_refusals: int
    velocity_stops: int
    auto_recoveries: int
    errors: list[str]
    gripper_closed: bool  # the last gripper decision

    # ---- connect and disconnect ----------------------------------------------------------------
    def start(self) -> "Arm":
        """Connect and hold the measured pose."""

    def stop(self) -> None:
        """Brake to rest and disconnect (best effort: the robot may be gone)."""

    # ---- state -------------------------------------------------------------------------------
    def robot_time(self) -> float: ...

    def state(self):
        """The measured arm: (q (7,), dq (7,), gripper width)."""

    def joint_positions(self) -> np.ndarray: ...

    def gripper_width(self) -> float: ...

    def gripper_counts(self) -> dict[str, int]:
        """Gripper actions sent, stopped after their timeout, and failed."""

    def check(self) -> None:
        """Every control tick: faults, the velocity stop, tracking."""

    # ---- commands ----------------------------------------------------------------------------
    def command(self, q_target: np.ndarray, dq_target: np.ndarray | None = None,
                workspace: bool = True) -> np.ndarray | None:
        """One joint target through the envelope; the target sent, or None when nothing was."""

    def brake(self) -> np.ndarray | None:
        """A hold: brake within the envelope to where the arm can stop."""

    def hold(self, q: np.ndarray | None = None) -> None:
        """Keep the arm still (with `q`, simulation only: hold that pose at once)."""

    def gripper_command(self, value: float) -> None:
        """A width-like command in [0, 0.08] m; below the middle closes."""

    def move_home(self, q_home: np.ndarray, duration: float = 3.0, *args, **kwargs) -> None:
        """An internal motion home within the envelope (HomingError if it does not get there)."""

    def restart_tracker(self, recover: bool = False) -> None:
        """A fresh torque loop holding the measured pose."""

    def recover(self) -> None:
        """Clear a robot error (a person's decision on a real arm) and hold."""
