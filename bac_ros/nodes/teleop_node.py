"""teleop_node: a person drives the arm. A 3Dconnexion SpaceMouse (pyspacemouse), any joystick
(sensor_msgs/Joy on teleop/joy) or a twist (geometry_msgs/TwistStamped on teleop/twist, moveit_servo's
convention: keyboards and scripts publish that) becomes a TCP velocity; at the action rate damped
differential IK turns it into the next joint target (`robot.servo`), which goes to the controller as a
two-point chunk on bac/teleop_chunk, through the same executor, limits and acceleration shaping as the
policy's chunks. Buttons: gripper close / open, take over / hand back (the controller's bac/take_over and
bac/hand_back), stop (bac/stop). With `input: twist` the gripper follows teleop/gripper (std_msgs/Bool, true = closed).

While the policy plays, the target follows what the controller last sent (so a take-over starts where the
arm is going, without a jump); while teleop plays it is integrated from the previous target, and re-synced
when the arm has fallen behind it by more than `resync_rad` (the controller's limits held it back).

A SpaceMouse unplugged mid-episode reads as released (the arm holds its target), with an ERROR on /diagnostics
("bac: teleop_node", 1 Hz) while it is gone; it is opened again every second until it is back."""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from ..robot.kinematics import Kinematics
from ..robot.limits import ArmLimits
from ..robot.model import GRIPPER_MAX_WIDTH
from ..robot.servo import ServoSettings, servo_step, shape_input
from .messages import chunk_to_trajectory, commanded_closed, joint_state_to_vector, teleop_plays
from .params import Param, declare_params, from_settings, settings_from
from .runtime import LATCHED_QOS, Pace, Reporter, diagnostics, guarded, now_s, run_node, steady_timer

INPUTS = ("twist", "joy", "spacemouse")
# (name, default index, what it does); the episode buttons call the recorder's services (a gamepad's LB, RB,
# back, start)
BUTTONS = (("close", 0, "closes the gripper"), ("open", 1, "opens it"),
           ("take_over", 2, "takes over from the policy"), ("hand_back", 3, "hands back to the policy"),
           ("stop", 8, "stops the arm: nothing plays, it brakes and holds (the controller's bac/stop)"),
           ("episode_failure", 4, "ends the recorded episode as a failure"),
           ("episode_success", 5, "ends the recorded episode as a success"),
           ("episode_discard", 6, "discards the episode being recorded (or the last one saved)"),
           ("episode_start", 7, "starts recording an episode"))


class SpaceMouse:
    """pyspacemouse (hidapi) in ROS axis convention: x forward, y left, z up; read from one thread."""

    def __init__(self):
        try:
            import pyspacemouse
        except (ImportError, OSError) as e:  # OSError: the hidapi library is missing
            raise DeviceError(f"pyspacemouse is not usable ({e}); install it (pip install pyspacemouse) and the "
                              "hidapi library (Debian: libhidapi-hidraw0)") from None
        try:
            self.device = pyspacemouse.open(axis_convention=pyspacemouse.AxisConvention.ROS)
        except Exception as e:  # noqa: BLE001 - RuntimeError when none is found; hid errors otherwise
            raise DeviceError(f"no SpaceMouse attached ({e}); check the USB cable and the udev rule for "
                              "/dev/hidraw* (read access for this user)") from None

    def read(self) -> tuple[np.ndarray, list[int]]:
        s = self.device.read()
        return np.array([s.x, s.y, s.z, s.roll, s.pitch, s.yaw], float), list(s.buttons)

    def close(self) -> None:
        self.device.close()


class DeviceError(RuntimeError):
    """The input device cannot be opened: the node exits 2 with this one line."""


class Reconnecting:
    """An input device that can be unplugged: `read` gives the device's reading, or None while it is gone (a read
    that raised: a person pulled the cable); it is opened again every `retry_s` (wall s) until it is back. The first
    open is the caller's (DeviceError: the node exits 2)."""

    def __init__(self, open_device: Callable[[], object], retry_s: float = 1.0):
        self._open, self.retry_s = open_device, retry_s
        self.device = open_device()
        self.lost: str | None = None  # why it is gone
        self.losses = self.reconnects = 0
        self._next_try = 0.0

    def read(self):
        if self.device is None:
            if time.monotonic() < self._next_try:
                return None
            try:
                self.device = self._open()
            except DeviceError as e:
                self._next_try, self.lost = time.monotonic() + self.retry_s, str(e)
                return None
            self.reconnects += 1
            self.lost = None
        try:
            return self.device.read()
        except Exception as e:  # noqa: BLE001 - hid and OS errors alike: the device went away
            self.losses += 1
            self.lost = f"read failed: {e!r}"
            self.close()
            self._next_try = time.monotonic() + self.retry_s
            return None

    def close(self) -> None:
        device, self.device = self.device, None
        if device is not None:
            try:
                device.close()
            except Exception:  # noqa: BLE001 - closing what is unplugged
                pass


PARAMETERS = [
    Param("input", "twist", "input device: twist (teleop/twist), joy (teleop/joy) or spacemouse", choices=INPUTS),
    Param("rate_hz", 30.0, "targets per second (the action rate)", (1.0, 500.0)),
    Param("input_timeout_s", 0.2, "an input older than this (s) counts as released", (0.01, 5.0)),
    Param("resync_rad", 0.2, "the target is re-synced to the measured joints when one lags it by more than this (rad)",
          (0.01, 3.0)),
    Param("joy_axes", (1, 0, 4, 3, 5, 2), "Joy axes for linear x y z, angular x y z (-1: unused)"),
    Param("joy_signs", (1.0, 1.0, 1.0, 1.0, 1.0, 1.0), "sign of each of those axes"),
    *[Param(f"button_{name}", default, f"Joy / SpaceMouse button index that {what} (-1: none)")
      for name, default, what in BUTTONS],
] + from_settings(ServoSettings) + from_settings(ArmLimits)  # the controller's box and margins (share them via /**)


class TeleopNode(Node):
    """See the module docstring. Threads: the executor runs inputs and the action-rate tick; a SpaceMouse is read
    in the tick."""

    def __init__(self):
        super().__init__("teleop_node")
        self.params = p = declare_params(self, PARAMETERS)
        if len(p.joy_axes) != 6 or len(p.joy_signs) != 6:
            raise ValueError("joy_axes and joy_signs need 6 values each")
        self.input, self.timeout, self.resync = p.input, p.input_timeout_s, p.resync_rad
        self.joy_axes, self.joy_signs = p.joy_axes, p.joy_signs
        self.buttons = {name: getattr(p, f"button_{name}") for name, _, _ in BUTTONS}
        self.servo, self.limits = settings_from(ServoSettings, p), settings_from(ArmLimits, p)
        self.kin = Kinematics.fr3()
        self.reporter = Reporter(self)
        self.dt = 1.0 / p.rate_hz
        self.device = Reconnecting(SpaceMouse) if self.input == "spacemouse" else None  # DeviceError: exit 2
        self._init_state()
        self._create_interfaces()
        self.get_logger().info(f"teleop from {self.input} at {p.rate_hz:.0f} Hz ({self.servo.frame} frame, "
                               f"{self.servo.max_linear_speed} m/s, {self.servo.max_angular_speed} rad/s at full "
                               "input)")

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self.axes, self._axes_t = np.zeros(6), -1e9  # the latest input, scaled to [-1, 1], and when it came
        self.twist, self._twist_t = np.zeros(6), -1e9  # a twist input (m/s, rad/s)
        self._buttons: list[int] = []
        self.closed = False  # the gripper decision
        self.q_measured: np.ndarray | None = None
        self.q_commanded: np.ndarray | None = None  # what the controller last sent
        self.q_target: np.ndarray | None = None
        self.active = False  # teleop plays (bac/source)

    def _create_interfaces(self) -> None:
        self.create_subscription(JointState, "joint_states", self.on_joint_state, 20)
        self.create_subscription(JointState, "bac/command", self.on_command, 20)
        self.create_subscription(String, "bac/source", self.on_source,
                                 LATCHED_QOS)
        self.create_subscription(TwistStamped, "teleop/twist", self.on_twist, 10)
        self.create_subscription(Joy, "teleop/joy", self.on_joy, 10)
        self.create_subscription(Bool, "teleop/gripper", self.on_gripper, 10)
        self.chunk_pub = self.create_publisher(JointTrajectory, "bac/teleop_chunk", 5)
        self.switches = {k: self.create_client(Trigger, f"bac/{k}") for k in ("take_over", "hand_back", "stop")}
        self.record = {"episode_start": self.create_client(Trigger, "bac/record/start"),
                       "episode_success": self.create_client(SetBool, "bac/record/stop"),
                       "episode_failure": self.create_client(SetBool, "bac/record/stop"),
                       "episode_discard": self.create_client(Trigger, "bac/record/discard")}
        self.pace = Pace(self.dt)  # the action rate on the graph's clock
        steady_timer(self, self.dt / 4, self.tick)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        steady_timer(self, 1.0, self.publish_diagnostics)

    # ---- inputs ----------------------------------------------------------------------------------------
    @guarded()
    def on_joint_state(self, msg: JointState) -> None:
        self.q_measured = joint_state_to_vector(msg)[:7].astype(float)

    @guarded()
    def on_command(self, msg: JointState) -> None:
        """What the controller sent; while another source plays, the gripper decision follows it too, so a
        take-over keeps the gripper as it is (a grasp in progress stays closed)."""
        self.q_commanded = np.asarray(msg.position[:7], float)
        closed = commanded_closed(msg)
        if not self.active and closed is not None:
            self.closed = closed

    @guarded()
    def on_source(self, msg: String) -> None:
        self.active = teleop_plays(msg)

    @guarded()
    def on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        v = np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z], float)
        if not np.all(np.isfinite(v)):
            self.reporter.count("twists_refused", "twist with non-finite values refused")
            return
        with self._lock:
            self.twist, self._twist_t = v, now_s(self)

    @guarded()
    def on_joy(self, msg: Joy) -> None:
        axes = np.array([msg.axes[i] * s if 0 <= i < len(msg.axes) else 0.0
                         for i, s in zip(self.joy_axes, self.joy_signs)], float)
        with self._lock:
            self.axes, self._axes_t = np.nan_to_num(axes), now_s(self)
        self._press(list(msg.buttons))

    @guarded()
    def on_gripper(self, msg: Bool) -> None:
        self.closed = bool(msg.data)

    def _press(self, buttons: list[int]) -> None:
        """Act on buttons that went down since the last reading."""
        down = [i for i, b in enumerate(buttons) if b and (i >= len(self._buttons) or not self._buttons[i])]
        self._buttons = buttons
        b = self.buttons
        if b["close"] in down:
            self.closed = True
        if b["open"] in down:
            self.closed = False
        for name in ("take_over", "hand_back", "stop"):
            if b[name] in down:
                self.switches[name].call_async(Trigger.Request())  # the answer shows on bac/source
                self.get_logger().info(f"button: {name.replace('_', ' ')}")
        for name, client in self.record.items():
            if b[name] in down:  # the answer shows on bac/record/state
                client.call_async(SetBool.Request(data=name == "episode_success") if client.srv_type is SetBool
                                  else Trigger.Request())
                self.get_logger().info(f"button: {name.replace('_', ' ')}")

    # ---- the action-rate loop --------------------------------------------------------------------------
    def current_twist(self, now: float) -> tuple[np.ndarray, float]:
        """(the TCP velocity asked for now, when that input was taken): zero, taken now, when the input went
        quiet."""
        if self.device is not None:
            reading = self.device.read()
            if reading is None:  # unplugged: released (the arm holds its target) until it is back
                self.reporter.warn("device_lost", f"the SpaceMouse is gone ({self.device.lost}): holding, reopening "
                                   f"every {self.device.retry_s:.0f} s", "error")
                return np.zeros(6), now
            axes, buttons = reading
            self._press(buttons)
            return shape_input(axes, self.servo), now
        with self._lock:
            if self.input == "joy":
                fresh = now - self._axes_t < self.timeout
                return (shape_input(self.axes, self.servo), self._axes_t) if fresh else (np.zeros(6), now)
            fresh = now - self._twist_t < self.timeout
            return (self.twist.copy(), self._twist_t) if fresh else (np.zeros(6), now)

    @guarded()
    def tick(self) -> None:
        now = now_s(self)
        if self.q_measured is None or not self.pace.due(now):
            return
        twist, taken = self.current_twist(now)
        if not self.active or self.q_target is None:
            # follow the arm: what the controller last sent, else where the arm is
            self.q_target = (self.q_commanded if self.q_commanded is not None else self.q_measured).copy()
            if not self.active:
                return
        if np.max(np.abs(self.q_target - self.q_measured)) > self.resync:
            self.reporter.count("resyncs", "the arm fell behind the teleop target: re-synced to the arm")
            self.q_target = self.q_measured.copy()
        q_next = servo_step(self.q_target, twist, self.dt, self.kin, self.limits, self.servo)
        after = servo_step(q_next, twist, self.dt, self.kin, self.limits, self.servo)  # the velocity to feed forward
        width = 0.0 if self.closed else GRIPPER_MAX_WIDTH
        plan = np.array([np.r_[q_next, width], np.r_[after, width]])
        # stamped with the input it comes from: the controller's latency is input -> command, as the policy's
        # is observation -> command
        self.chunk_pub.publish(chunk_to_trajectory(plan, now, self.dt, origin=min(taken, now)))
        self.q_target = q_next

    def publish_diagnostics(self) -> None:
        device = self.device
        lost = device is not None and device.device is None
        values = {"input": self.input, "active": self.active, **self.reporter.counts}
        if device is not None:
            values.update(device="lost" if lost else "ok", device_losses=device.losses, reconnects=device.reconnects)
        self.diag_pub.publish(diagnostics(
            self, "bac: teleop_node", f"input device lost: {device.lost}" if lost else f"{self.input} input",
            values, DiagnosticStatus.ERROR if lost else DiagnosticStatus.OK))

    def shutdown(self) -> None:
        if self.device is not None:
            self.device.close()


def main(args=None) -> int:
    return run_node(TeleopNode, "teleop_node", args=args, startup_errors=(ValueError, DeviceError))


if __name__ == "__main__":
    sys.exit(main())
