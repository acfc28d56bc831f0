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


# node | kind (publishes, subscribes, serves, calls) | name | type | what
TABLE = """
controller_node | subscribes | bac/action_chunk         | trajectory_msgs/JointTrajectory   | the policy's chunks (from chunk_source)
controller_node | subscribes | bac/teleop_chunk         | trajectory_msgs/JointTrajectory   | the teleoperator's targets (from teleop_source)
controller_node | publishes  | joint_states             | sensor_msgs/JointState            | fr3_joint1..7 + fr3_gripper_width (m), joint_state_rate_hz
controller_node | publishes  | bac/command              | sensor_msgs/JointState            | each target sent to the robot (after the envelope)
controller_node | publishes  | bac/first_command        | sensor_msgs/TimeReference         | when a chunk's first command went out, for which observation or input
controller_node | publishes  | bac/controller_state     | std_msgs/String                   | latched: connecting, ready, running or faulted, with the reason
controller_node | publishes  | bac/source               | std_msgs/String                   | latched JSON: who plays, since when, interventions
controller_node | publishes  | /diagnostics             | diagnostic_msgs/DiagnosticArray   | state, refusals, holds, stops, commands
controller_node | serves     | bac/start                | std_srvs/Trigger                  | play chunks planned from now on
controller_node | serves     | bac/home                 | std_srvs/Trigger                  | open the gripper, move home slowly, hold until bac/start
controller_node | serves     | bac/recover              | std_srvs/Trigger                  | clear a robot error, a fresh torque loop, hold
controller_node | serves     | bac/stop                 | std_srvs/Trigger                  | a person's stop: nothing plays, homing ends, brake and hold (ready)
controller_node | serves     | bac/take_over            | std_srvs/Trigger                  | the teleoperator plays (an intervention while running)
controller_node | serves     | bac/hand_back            | std_srvs/Trigger                  | the policy plays again (chunks planned from now on)
policy_node     | subscribes | camera/color/image_raw   | sensor_msgs/Image                 | the camera (image_topic)
policy_node     | subscribes | joint_states             | sensor_msgs/JointState            | the arm (joint_states_topic)
policy_node     | subscribes | bac/controller_state     | std_msgs/String                   | latched; the drift guard checks only while the policy plays (drift_watch_when)
policy_node     | subscribes | bac/source               | std_msgs/String                   | latched; which source plays (for the drift guard)
policy_node     | subscribes | bac/first_command        | sensor_msgs/TimeReference         | which of its chunks took over, when (prefix stitching)
policy_node     | publishes  | bac/action_chunk         | trajectory_msgs/JointTrajectory   | stamped with the newest observation used; point i at i·dt; the whole predicted future
policy_node     | publishes  | bac/markers              | visualization_msgs/MarkerArray    | for rviz: the chunk's TCP path, the measured path beside it, the controller's state
policy_node     | publishes  | /diagnostics             | diagnostic_msgs/DiagnosticArray   | inference Hz and ms, backend, refusals, the drift guard
policy_node     | serves     | bac/policy/reset         | std_srvs/Trigger                  | forget the observation history, restart the drift guard (a new episode)
teleop_node     | subscribes | joint_states             | sensor_msgs/JointState            | the arm
teleop_node     | subscribes | bac/command              | sensor_msgs/JointState            | what the controller sent (followed while another source plays, the gripper too)
teleop_node     | subscribes | bac/source               | std_msgs/String                   | who plays
teleop_node     | subscribes | teleop/twist             | geometry_msgs/TwistStamped        | input twist (moveit_servo's convention)
teleop_node     | subscribes | teleop/joy               | sensor_msgs/Joy                   | a joystick's axes and buttons
teleop_node     | subscribes | teleop/gripper           | std_msgs/Bool                     | with input twist: true = closed
teleop_node     | publishes  | bac/teleop_chunk         | trajectory_msgs/JointTrajectory   | the next target (2 points), stamped with the input it came from
teleop_node     | publishes  | /diagnostics             | diagnostic_msgs/DiagnosticArray   | the input; ERROR while a SpaceMouse is unplugged
teleop_node     | calls      | bac/take_over            | std_srvs/Trigger                  | the take-over button
teleop_node     | calls      | bac/hand_back            | std_srvs/Trigger                  | the hand-back button
teleop_node     | calls      | bac/stop                 | std_srvs/Trigger                  | the stop button
teleop_node     | calls      | bac/record/start         | std_srvs/Trigger                  | the episode-start button
teleop_node     | calls      | bac/record/stop          | std_srvs/SetBool                  | the success and failure buttons
teleop_node     | calls      | bac/record/discard       | std_srvs/Trigger                  | the discard button
recorder_node   | subscribes | (topics)                 | data.bags.RECORDED                | the topics recorded (parameter topics); the camera compressed unless image_format is raw
recorder_node   | subscribes | bac/source               | std_msgs/String                   | who plays (the index line)
recorder_node   | subscribes | bac/episode              | std_msgs/String                   | the simulator's seed and outcome (the index line)
recorder_node   | subscribes | /diagnostics             | diagnostic_msgs/DiagnosticArray   | the policy's schedule (the label)
recorder_node   | publishes  | bac/record/state         | std_msgs/String                   | latched JSON: idle, recording or reset
recorder_node   | publishes  | /diagnostics             | diagnostic_msgs/DiagnosticArray   | state, episodes saved and incomplete, free disk; ERROR after a failed write
recorder_node   | serves     | bac/record/start         | std_srvs/Trigger                  | open an episode's bag
recorder_node   | serves     | bac/record/stop          | std_srvs/SetBool                  | close it, data = success
recorder_node   | serves     | bac/record/discard       | std_srvs/Trigger                  | drop the episode being recorded, or the last saved
metrics_node    | subscribes | bac/command              | sensor_msgs/JointState            | commands per second
metrics_node    | subscribes | bac/action_chunk         | trajectory_msgs/JointTrajectory   | observation -> chunk latency
metrics_node    | subscribes | bac/first_command        | sensor_msgs/TimeReference         | observation -> first command latency
metrics_node    | publishes  | /diagnostics             | diagnostic_msgs/DiagnosticArray   | control Hz, latency p50/p95/p99
operator_node   | subscribes | joint_states             | sensor_msgs/JointState            | where the TCP is
operator_node   | subscribes | bac/command              | sensor_msgs/JointState            | the gripper decision at a take-over
operator_node   | subscribes | bac/episode              | std_msgs/String                   | the cube (the simulator's truth)
operator_node   | subscribes | bac/source               | std_msgs/String                   | who plays
operator_node   | publishes  | teleop/twist             | geometry_msgs/TwistStamped        | the scripted person's input
operator_node   | publishes  | teleop/gripper           | std_msgs/Bool                     | its gripper decision
operator_node   | calls      | bac/take_over            | std_srvs/Trigger                  | intervene mode: when the TCP strays
sim_node        | publishes  | camera/color/image_raw   | sensor_msgs/Image                 | rgb8, stamped with the sim time it shows, camera_rate_hz of sim time
sim_node        | publishes  | /clock                   | rosgraph_msgs/Clock               | the simulator's time
sim_node        | publishes  | bac/episode              | std_msgs/String                   | JSON: episode, seed, success, elapsed, done, the cube
sim_node        | serves     | bac/reset                | std_srvs/Trigger                  | arm home, the next seed's cube; the episode's clock starts
sim_node        | serves     | bac/sim/home             | std_srvs/Trigger                  | put the arm home in the simulator
camera_node     | publishes  | camera/color/image_raw   | sensor_msgs/Image                 | rgb8, stamped with the capture time
camera_node     | publishes  | camera/color/camera_info | sensor_msgs/CameraInfo            | the colour stream's intrinsics
"""


def _parse(table: str) -> dict[str, list[Endpoint]]:
    interfaces: dict[str, list[Endpoint]] = {}
    for line in table.strip().splitlines():
        node, kind, name, type_, what = (cell.strip() for cell in line.split("|"))
        interfaces.setdefault(node, []).append(Endpoint(kind, name, type_, what))
    return interfaces


INTERFACES: dict[str, list[Endpoint]] = _parse(TABLE)
