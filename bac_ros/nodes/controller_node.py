"""controller_node: the only node that talks to the robot (franky). Publishes /joint_states; plays
/bac/action_chunk on the ROS clock at control_rate_hz (stale points dropped; each point held for its
step, as the demonstrations were streamed, or interpolated between points; the chunk's velocity as
feed-forward), holds when chunks stop coming, and reports commands and first-command latency for the
metrics. With use_sim_time the clock is the simulator's (see sim_node)."""
from __future__ import annotations

import math
import sys
import threading

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import JointState, TimeReference
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ..core.streaming import PLAYBACKS, RecedingHorizon, chunk_velocity, current_index
from .runtime import diagnostics, now_s, run_node, spin_in_background, steady_timer
from .messages import to_time, trajectory_to_chunk, vector_to_joint_state


class ControllerNode(Node):
    def __init__(self):
        super().__init__("controller_node")
        self.declare_parameter("robot_ip", "127.0.0.1")
        self.declare_parameter("joint_state_rate_hz", 100.0)
        self.declare_parameter("control_rate_hz", 100.0)
        self.declare_parameter("chunk_timeout_s", 0.5)
        self.declare_parameter("joint_limit_margin", 0.05)
        self.declare_parameter("max_velocity_factor", 0.5)
        self.declare_parameter("max_acceleration_factor", 0.5)  # 0: no acceleration limit (not advised)
        self.declare_parameter("stop_velocity_factor", 1.0)  # 0: no velocity stop (not advised)
        self.declare_parameter("relative_dynamics_factor", 0.3)
        self.declare_parameter("velocity_feedforward", True)
        self.declare_parameter("commit_steps", 8)  # a chunk plays this many steps before a newer one takes over
        self.declare_parameter("chunk_playback", "hold")  # hold | interpolate (see core.streaming)
        p = lambda n: self.get_parameter(n).value  # noqa: E731
        if p("chunk_playback") not in PLAYBACKS:
            raise ValueError(f"parameter chunk_playback: {p('chunk_playback')!r} is not one of {sorted(PLAYBACKS)}")
        self.playback = PLAYBACKS[p("chunk_playback")]
        # hold: each point is sent once, when it falls due, with the chunk's dt, as the expert streamed the
        # demonstrations; the tracker keeps it until the next. Re-sent every 10 ms tick, the velocity limit
        # per tick cut each 30 Hz step into pieces with their own feed-forward (real-time harness, BAC S=7,
        # seeds 0-7: 5/8 re-sent at 100 Hz, 8/8 sent once).
        self.hold_points = p("chunk_playback") == "hold"
        self._sent_point = (None, -1)  # (chunk, index) last sent in hold mode

        from ..sim.arm import Arm, ArmLimits

        import franky

        accel, stop = float(p("max_acceleration_factor")), float(p("stop_velocity_factor"))
        self.arm = Arm(p("robot_ip"), ArmLimits(float(p("joint_limit_margin")), float(p("max_velocity_factor")),
                                                accel if accel > 0 else None, stop if stop > 0 else None))
        self.arm.start()
        rdf = float(p("relative_dynamics_factor"))
        self.arm.robot.relative_dynamics_factor = franky.RelativeDynamicsFactor(rdf, rdf, rdf)
        self.timeout = float(p("chunk_timeout_s"))
        self.feedforward = bool(p("velocity_feedforward"))
        self._last_sent = None
        self._lock = threading.Lock()
        # Homing (its own executor thread) and the control tick both drive the Arm: one at a time. A tick
        # that finds the arm taken skips (it must not block the executor that publishes joint states).
        self._arm_lock = threading.Lock()
        self._horizon = RecedingHorizon(int(p("commit_steps")))  # chunks: (stamp, actions, dt)
        self._received = None  # when the newest chunk came (ROS clock)
        self._played = None
        self._paused = False
        self._start = -math.inf  # chunks stamped before this (observations from before /bac/start) are ignored
        self.stale_chunks = 0
        self._holding = False
        self._hold_q = None
        self.commands = 0
        self.holds = 0
        self.hold_ticks = 0  # control ticks spent holding (no new chunk within the timeout)
        self.still_ticks = 0  # control ticks skipped: the clock had not moved since the last command
        self.rejected = 0
        self._t0 = now_s(self)

        self.js_pub = self.create_publisher(JointState, "/joint_states", 20)
        self.cmd_pub = self.create_publisher(JointState, "/bac/command", 20)
        self.first_pub = self.create_publisher(TimeReference, "/bac/first_command", 20)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointTrajectory, "/bac/action_chunk", self.on_chunk, 5)
        steady_timer(self, 1.0 / float(p("joint_state_rate_hz")), self.publish_joint_state)
        self.period = 1.0 / float(p("control_rate_hz"))
        steady_timer(self, self.period, self.control_tick)
        self.create_timer(1.0, self.publish_diagnostics)
        # Homing blocks for seconds: its service lives on a side node with an executor of its own, so that
        # joint states, the clock and the control loop go on meanwhile.
        self._home_node = rclpy.create_node("controller_node_home", context=self.context)
        self._home_node.create_service(Trigger, "/bac/home", self.on_home)
        self.create_service(Trigger, "/bac/start", self.on_start)
        self._stop_home = spin_in_background(self._home_node, "home-service")
        self.get_logger().info(f"connected to FR3 at {p('robot_ip')}")

    def on_chunk(self, msg: JointTrajectory) -> None:
        try:
            stamp, actions, dt = trajectory_to_chunk(msg)
        except ValueError as e:
            self.rejected += 1
            self.get_logger().warn(f"rejected chunk: {e}", throttle_duration_sec=2.0)
            return
        if dt <= 0:
            dt = 1.0 / 30.0
        with self._lock:
            if stamp < self._start:
                self.stale_chunks += 1  # planned from what the camera saw before the start
                return
            self._horizon.offer((stamp, actions, dt))
            self._received = now_s(self)

    def control_tick(self) -> None:
        """Send the chunk's target for *now* (`chunk_playback`; points already in the past are never sent;
        hold: each point once, when it falls due), the last point once the chunk is used up; hold position
        after the timeout."""
        if not self._arm_lock.acquire(blocking=False):
            return  # homing
        try:
            stops = self.arm.velocity_stops
            self._control_tick()
            if self.arm.velocity_stops != stops:
                self.get_logger().warn(self.arm.errors[-1])
        finally:
            self._arm_lock.release()

    def _control_tick(self) -> None:
        now = now_s(self)
        with self._lock:
            paused, received = self._paused, self._received
            chunk = None if paused else self._horizon.current(now)
        if chunk is None:
            return
        if self._last_sent is not None and now <= self._last_sent:
            self.still_ticks += 1
            return  # the (sim) clock has not moved since the last command
        step = min(now - self._last_sent if self._last_sent is not None else self.period, 2 * self.period)
        if now - received > self.timeout:
            if not self._holding:  # hold where the last target was, braking to it at the acceleration limit
                self._hold_q = self.arm.last_target
                self.holds += 1
                self._holding = True
            self.arm.command(self._hold_q, None, dt=step)
            self._last_sent = now
            self.hold_ticks += 1
            return
        self._holding = False
        stamp, actions, dt = chunk
        if self.hold_points:
            i = min(current_index(stamp, dt, now), len(actions) - 1)
            if self._sent_point[0] is chunk and self._sent_point[1] == i:
                return  # this point is out; the tracker keeps it until the next falls due
            self._sent_point, step = (chunk, i), dt
        target = self.playback(actions, stamp, dt, now)
        dq = chunk_velocity(actions[:, :7], stamp, dt, now) if self.feedforward else None
        q = self.arm.command(target[:7], dq, dt=step)
        self.arm.gripper_command(float(target[7]))
        self.commands += 1
        sent = self._last_sent = now
        self.cmd_pub.publish(vector_to_joint_state(q, None, float(target[7]), sent))
        if chunk is not self._played:
            self._played = chunk
            ref = TimeReference(source="controller_node")
            ref.header.stamp, ref.time_ref = to_time(sent), to_time(stamp)
            self.first_pub.publish(ref)

    def publish_joint_state(self) -> None:
        q, dq, width = self.arm.state()
        self.js_pub.publish(vector_to_joint_state(q, dq, width, now_s(self)))

    def on_home(self, _req, resp):
        from ..sim.kinematics import Q_HOME

        with self._lock:
            self._paused, self._received = True, None
            self._horizon.clear()
            self._start = math.inf  # after homing, hold home until /bac/start
        try:
            with self._arm_lock:
                self.arm.restart_tracker()  # a fresh torque loop per episode (see Arm.restart_tracker)
                self.arm.move_home(Q_HOME, duration=1.5)
            resp.success, resp.message = True, "home"
        except Exception as e:  # noqa: BLE001 - reported to the caller
            resp.success, resp.message = False, str(e)
        finally:
            with self._lock:
                self._paused, self._received = False, None
                self._horizon.clear()
        return resp

    def on_start(self, _req, resp):
        """Play chunks again, only those planned from observations made from now on (after /bac/home the
        controller holds home: the scene may change before the start, e.g. a new object placed)."""
        with self._lock:
            self._start, self._received = now_s(self), None
            self._horizon.clear()
        resp.success, resp.message = True, f"playing chunks stamped from {self._start:.3f} s"
        return resp

    def publish_diagnostics(self) -> None:
        elapsed = max(1e-6, now_s(self) - self._t0)
        values = {"commands": self.commands, "holds": self.holds, "hold_ticks": self.hold_ticks,
                  "still_ticks": self.still_ticks, "chunks_rejected": self.rejected,
                  "chunks_stale": self.stale_chunks,
                  "targets_clamped": self.arm.clamped,
                  "targets_shaped": self.arm.shaped, "velocity_stops": self.arm.velocity_stops,
                  "robot_errors": len(self.arm.errors),
                  **{f"gripper_{k}": v for k, v in self.arm.gripper_counts().items()}}
        level = DiagnosticStatus.OK if not self.arm.errors else DiagnosticStatus.WARN
        self.diag_pub.publish(diagnostics(self, "bac: controller_node", f"{self.commands / elapsed:.1f} commands/s",
                                          values, level))

    def shutdown(self) -> None:
        self._stop_home()
        self._home_node.destroy_node()
        self.arm.hold()
        self.arm.stop()


def main(args=None) -> int:
    return run_node(ControllerNode, "controller_node", args=args)

if __name__ == "__main__":
    sys.exit(main())
