"""What each node of the grasp graph publishes, subscribes to, serves and calls (names relative, as the nodes
create them: a namespace moves the whole graph; `/diagnostics` and `/clock` are absolute, as everywhere in
ROS). `bac reference` writes it into docs/reference.md beside the nodes' parameter tables; a test checks it
against the nodes themselves."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    kind: str  # publishes | subscribes | serves | calls
    name: str
    type: str
    what: str


def _e(kind, name, type_, what):
    return Endpoint(kind, name, type_, what)


INTERFACES: dict[str, list[Endpoint]] = {
    "controller_node": [
        _e("subscribes", "bac/action_chunk", "trajectory_msgs/JointTrajectory", "the policy's chunks (from chunk_source)"),
        _e("subscribes", "bac/teleop_chunk", "trajectory_msgs/JointTrajectory", "the teleoperator's targets (from "
           "teleop_source)"),
        _e("publishes", "joint_states", "sensor_msgs/JointState", "fr3_joint1..7 + fr3_gripper_width (m), "
           "joint_state_rate_hz"),
        _e("publishes", "bac/command", "sensor_msgs/JointState", "each target sent to the robot (after the envelope)"),
        _e("publishes", "bac/first_command", "sensor_msgs/TimeReference", "when a chunk's first command went out, "
           "for which observation or input"),
        _e("publishes", "bac/controller_state", "std_msgs/String", "latched: connecting, ready, running or faulted, "
           "with the reason"),
        _e("publishes", "bac/source", "std_msgs/String", "latched JSON: who plays, since when, interventions"),
        _e("publishes", "/diagnostics", "diagnostic_msgs/DiagnosticArray", "state, refusals, holds, stops, commands"),
        _e("serves", "bac/start", "std_srvs/Trigger", "play chunks planned from now on"),
        _e("serves", "bac/home", "std_srvs/Trigger", "open the gripper, move home slowly, hold until bac/start"),
        _e("serves", "bac/recover", "std_srvs/Trigger", "clear a robot error, a fresh torque loop, hold"),
        _e("serves", "bac/take_over", "std_srvs/Trigger", "the teleoperator plays (an intervention while running)"),
        _e("serves", "bac/hand_back", "std_srvs/Trigger", "the policy plays again (chunks planned from now on)"),
    ],
    "policy_node": [
        _e("subscribes", "camera/color/image_raw", "sensor_msgs/Image", "the camera (image_topic)"),
        _e("subscribes", "joint_states", "sensor_msgs/JointState", "the arm (joint_states_topic)"),
        _e("publishes", "bac/action_chunk", "trajectory_msgs/JointTrajectory", "stamped with the newest observation "
           "used; point i at i·dt; the whole predicted future"),
        _e("publishes", "bac/markers", "visualization_msgs/MarkerArray", "the chunk's TCP path for rviz"),
        _e("publishes", "/diagnostics", "diagnostic_msgs/DiagnosticArray", "inference Hz and ms, backend, refusals, "
           "the drift guard"),
        _e("serves", "bac/policy/reset", "std_srvs/Trigger", "forget the observation history (a new episode)"),
    ],
    "teleop_node": [
        _e("subscribes", "joint_states", "sensor_msgs/JointState", "the arm"),
        _e("subscribes", "bac/command", "sensor_msgs/JointState", "what the controller sent (followed while another "
           "source plays, the gripper too)"),
        _e("subscribes", "bac/source", "std_msgs/String", "who plays"),
        _e("subscribes", "teleop/twist", "geometry_msgs/TwistStamped", "input twist (moveit_servo's convention)"),
        _e("subscribes", "teleop/joy", "sensor_msgs/Joy", "a joystick's axes and buttons"),
        _e("subscribes", "teleop/gripper", "std_msgs/Bool", "with input twist: true = closed"),
        _e("publishes", "bac/teleop_chunk", "trajectory_msgs/JointTrajectory", "the next target (2 points), stamped "
           "with the input it came from"),
        _e("calls", "bac/take_over", "std_srvs/Trigger", "the take-over button"),
        _e("calls", "bac/hand_back", "std_srvs/Trigger", "the hand-back button"),
        _e("calls", "bac/record/start", "std_srvs/Trigger", "the episode-start button"),
        _e("calls", "bac/record/stop", "std_srvs/SetBool", "the success and failure buttons"),
        _e("calls", "bac/record/discard", "std_srvs/Trigger", "the discard button"),
    ],
    "recorder_node": [
        _e("subscribes", "(topics)", "data.bags.RECORDED", "the topics recorded (parameter topics); the camera "
           "compressed unless image_format is raw"),
        _e("subscribes", "bac/source", "std_msgs/String", "who plays (the index line)"),
        _e("subscribes", "bac/episode", "std_msgs/String", "the simulator's seed and outcome (the index line)"),
        _e("subscribes", "/diagnostics", "diagnostic_msgs/DiagnosticArray", "the policy's schedule (the label)"),
        _e("publishes", "bac/record/state", "std_msgs/String", "latched JSON: idle, recording or reset"),
        _e("serves", "bac/record/start", "std_srvs/Trigger", "open an episode's bag"),
        _e("serves", "bac/record/stop", "std_srvs/SetBool", "close it, data = success"),
        _e("serves", "bac/record/discard", "std_srvs/Trigger", "drop the episode being recorded, or the last saved"),
    ],
    "metrics_node": [
        _e("subscribes", "bac/command", "sensor_msgs/JointState", "commands per second"),
        _e("subscribes", "bac/action_chunk", "trajectory_msgs/JointTrajectory", "observation -> chunk latency"),
        _e("subscribes", "bac/first_command", "sensor_msgs/TimeReference", "observation -> first command latency"),
        _e("publishes", "/diagnostics", "diagnostic_msgs/DiagnosticArray", "control Hz, latency p50/p95/p99"),
    ],
    "operator_node": [
        _e("subscribes", "joint_states", "sensor_msgs/JointState", "where the TCP is"),
        _e("subscribes", "bac/command", "sensor_msgs/JointState", "the gripper decision at a take-over"),
        _e("subscribes", "bac/episode", "std_msgs/String", "the cube (the simulator's truth)"),
        _e("subscribes", "bac/source", "std_msgs/String", "who plays"),
        _e("publishes", "teleop/twist", "geometry_msgs/TwistStamped", "the scripted person's input"),
        _e("publishes", "teleop/gripper", "std_msgs/Bool", "its gripper decision"),
        _e("calls", "bac/take_over", "std_srvs/Trigger", "intervene mode: when the TCP strays"),
    ],
    "sim_node": [
        _e("publishes", "camera/color/image_raw", "sensor_msgs/Image", "rgb8, stamped with the sim time it shows, "
           "camera_rate_hz of sim time"),
        _e("publishes", "/clock", "rosgraph_msgs/Clock", "the simulator's time"),
        _e("publishes", "bac/episode", "std_msgs/String", "JSON: episode, seed, success, elapsed, done, the cube"),
        _e("serves", "bac/reset", "std_srvs/Trigger", "arm home, the next seed's cube; the episode's clock starts"),
        _e("serves", "bac/sim/home", "std_srvs/Trigger", "put the arm home in the simulator"),
    ],
    "camera_node": [
        _e("publishes", "camera/color/image_raw", "sensor_msgs/Image", "rgb8, stamped with the capture time"),
        _e("publishes", "camera/color/camera_info", "sensor_msgs/CameraInfo", "the colour stream's intrinsics"),
    ],
}
