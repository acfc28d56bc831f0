"""The Franka Hand from its own thread: open/close only when the decision changes, state read from the gripper.

A franky gripper action takes ~0.5 s and a new `*_async` call waits for the previous one, so the arm's
control loop never calls the gripper itself."""
from __future__ import annotations

import queue
import threading
import time

from .model import GRIPPER_MAX_WIDTH


class GripperWorker(threading.Thread):
    """Sends open/close to the gripper when the decision changes; latest decision wins. Whether an action
    is needed is read from the gripper (its width, whether it holds something), not from what was last
    requested: a grasp that timed out must not leave the worker believing "closed" while the fingers stand
    open. An action that has not finished within `timeout` s of robot time (`clock`) is stopped and counted
    (a grasp whose fingers end past closed may never return)."""

    def __init__(self, gripper, clock, speed: float = 0.1, force: float = 40.0, timeout: float = 3.0):
        super().__init__(daemon=True, name="gripper")
        self.gripper, self.clock, self.speed, self.force, self.timeout = gripper, clock, speed, force, timeout
        self._want: queue.Queue = queue.Queue()
        self.errors = 0
        self.timeouts = 0
        self.actions = 0

    def request(self, close: bool) -> None:
        self._want.put(close)

    def _done(self, close: bool) -> bool:
        """The gripper is already where `close` wants it."""
        width = float(self.gripper.width)
        if close:
            return bool(self.gripper.is_grasped) or width < 0.002
        return width > GRIPPER_MAX_WIDTH - 0.005

    def run(self) -> None:
        while True:
            close = self._want.get()
            while not self._want.empty():  # only the newest decision matters
                close = self._want.get()
            if close is None:
                return
            try:
                if self._done(close):
                    continue
                self.actions += 1
                if close:
                    fut = self.gripper.grasp_async(0.0, self.speed, self.force, epsilon_inner=0.08,
                                                   epsilon_outer=0.08)
                else:
                    fut = self.gripper.move_async(GRIPPER_MAX_WIDTH, self.speed)
                t0, wall0 = self.clock(), time.monotonic()
                while not fut.wait(0.05):
                    # robot time; the wall clock only as a backstop if the robot's clock stopped
                    if self.clock() - t0 > self.timeout or time.monotonic() - wall0 > 10 * self.timeout + 5:
                        self.timeouts += 1
                        self.gripper.stop()
                        break
            except Exception:  # noqa: BLE001 - a failed grasp (nothing in hand), or the gripper gone
                self.errors += 1

    def stop(self) -> None:
        self._want.put(None)
