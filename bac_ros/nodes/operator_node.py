"""operator_node (simulation only): the scripted operator (`sim.operator`) as a person at the teleop input.
It reads the cube's pose from sim_node's bac/episode at each new episode, the TCP from joint_states, and
publishes teleop/twist (geometry_msgs/TwistStamped, base frame) and teleop/gripper (std_msgs/Bool) for
teleop_node, at the action rate on the graph's clock.

mode drive      it teleoperates the episode (the controller's source is teleop).
mode intervene  it watches the policy; when the TCP strays from the expert's path it calls bac/take_over
                and finishes the grasp itself from where the arm, the gripper and the cube are then (a grasp
                in hand stays closed and is lifted; `ScriptedOperator.take_over`).
"""
from __future__ import annotations

import json
import sys

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from ..robot.kinematics import Kinematics
from ..sim.expert import plan_grasp
from ..sim.operator import OperatorSettings, ScriptedOperator, StrayWatch
from ..sim.world import CubePose
from .messages import commanded_closed, joint_state_to_vector, teleop_plays, to_time
from .params import Param, declare_params, from_settings, settings_from
from .runtime import LATCHED_QOS, Pace, Reporter, guarded, now_s, run_node, steady_timer

MODES = ("drive", "intervene")


PARAMETERS = [
    Param("mode", "drive", "drive: teleoperate every episode; intervene: take over a policy episode when the TCP "
          "strays from the expert's path", choices=MODES),
    Param("seed", 0, "seed of the hand tremor (each episode adds its number)", (0, 2 ** 31 - 1)),
    Param("rate_hz", 30.0, "actions per second", (1.0, 200.0)),
] + from_settings(OperatorSettings)


class OperatorNode(Node):
    """See the module docstring. Threads: the executor only."""

    def __init__(self):
        super().__init__("operator_node")
        p = declare_params(self, PARAMETERS)
        self.mode, self.seed, rate = p.mode, p.seed, p.rate_hz
        self.settings = settings_from(OperatorSettings, p)
        self.reporter = Reporter(self)
        self.kin = Kinematics.fr3()
        self.q: np.ndarray | None = None
        self.episode: int | None = None
        self.operator: ScriptedOperator | None = None
        self.watch: StrayWatch | None = None
        self.driving = self.mode == "drive"
        self.active = False  # the controller plays teleop (bac/source)
        self.closed = False  # the gripper decision the controller last sent
        self.cube: dict = {}  # the latest bac/episode (the cube where it is now)
        self.create_subscription(JointState, "joint_states", self.on_joint_state, 20)
        self.create_subscription(JointState, "bac/command", self.on_command, 20)
        self.create_subscription(String, "bac/episode", self.on_episode, 10)
        self.create_subscription(String, "bac/source", self.on_source,
                                 LATCHED_QOS)
        self.twist_pub = self.create_publisher(TwistStamped, "teleop/twist", 10)
        self.gripper_pub = self.create_publisher(Bool, "teleop/gripper", 10)
        self.take_over = self.create_client(Trigger, "bac/take_over")
        self.pace = Pace(1.0 / rate)  # on the graph's clock: the operator's reactions are in robot time
        steady_timer(self, 0.25 / rate, self.tick)

    @guarded()
    def on_joint_state(self, msg: JointState) -> None:
        self.q = joint_state_to_vector(msg)[:7].astype(float)

    @guarded()
    def on_command(self, msg: JointState) -> None:
        closed = commanded_closed(msg)
        self.closed = self.closed if closed is None else closed

    @guarded()
    def on_source(self, msg: String) -> None:
        self.active = teleop_plays(msg)

    @guarded()
    def on_episode(self, msg: String) -> None:
        ep = json.loads(msg.data)
        self.cube = ep
        if ep["episode"] == self.episode or ep["done"] or len(ep.get("cube_start", [])) != 3 or self.q is None:
            return
        self.episode = ep["episode"]  # a new episode: look at the cube, plan where to go
        cube = CubePose(*ep["cube_start"])
        self.operator = ScriptedOperator(cube, self.settings, seed=self.seed + self.episode)
        self.driving = self.mode == "drive"
        self.watch = StrayWatch(plan_grasp(cube, self.q, 1 / 30, self.kin).tcp, self.settings)

    @guarded()
    def tick(self) -> None:
        now = now_s(self)
        if self.operator is None or self.q is None or not self.pace.due(now):
            return
        p, r = self.kin.fk(self.q)
        if not self.driving:
            if self.watch.strayed(now, p):
                self.driving = True
                x, y, z = self.cube.get("cube", self.cube.get("cube_start", [0.0, 0.0, 0.0]))
                self.operator.take_over(p, self.closed, CubePose(x, y, self.cube.get("cube_yaw", 0.0)), z)
                self.take_over.call_async(Trigger.Request())
                self.reporter.count("take_overs", f"episode {self.episode}: the TCP strayed "
                                    f"{self.watch.distance(p) * 100:.0f} cm from the expert's path: taking over",
                                    "info")
            else:
                return
        if not self.active:  # teleop does not play (yet): nothing to steer
            return
        twist, closed = self.operator.act(now, p, r)
        msg = TwistStamped()
        msg.header.stamp, msg.header.frame_id = to_time(now), "fr3_link0"
        (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z,
         msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z) = (float(v) for v in twist)
        self.twist_pub.publish(msg)
        self.gripper_pub.publish(Bool(data=bool(closed)))


def main(args=None) -> int:
    return run_node(OperatorNode, "operator_node", args=args, startup_errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
