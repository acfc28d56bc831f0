"""ros2 launch bac_ros grasp.launch.py [use_sim:=true] [robot_ip:=172.16.0.2] [config:=<params.yaml>]
[mode:=policy|teleop|shared] [input:=spacemouse|joy|twist] [schedule:=bac_s7|full|<file>] [checkpoint:=<dir>]
[namespace:=<ns>]
[rviz:=true] [operator:=none|drive|intervene (simulation)] [robot_description:=<urdf>]

The nodes come from `bac_ros.graph.spec.grasp_graph`, the same description `bac demo` starts; they may start
in any order."""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from bac_ros.graph.spec import LAUNCH_ARGUMENTS, grasp_graph


def _nodes(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    use_sim = arg("use_sim").lower() in ("true", "1", "yes")
    share = get_package_share_directory("bac_ros")
    namespace = arg("namespace")
    config = arg("config") or os.path.join(share, "config", "grasp.yaml")
    # only what the command line names overrides the parameter file (empty: not given); the nodes that may be
    # restarted after a crash are (spec.respawn_delay_s), never the controller
    nodes = [Node(package="bac_ros", executable=spec.executable, name=spec.name, namespace=namespace,
                  parameters=[config, spec.parameters], output="screen",
                  respawn=spec.respawn_delay_s is not None, respawn_delay=spec.respawn_delay_s or 0.0)
             for spec in grasp_graph(use_sim, arg("robot_ip") or None, arg("schedule") or None, mode=arg("mode") or None,
                                     teleop_input=arg("input") or None, operator=arg("operator") or None,
                                     checkpoint=arg("checkpoint") or None)]
    try:  # the arm's links on /tf from joint_states (the lab's robot_state_publisher), for rviz's RobotModel
        from bac_ros.robot.description import Description

        description = Description(arg("robot_description") or None).xml
        nodes.append(Node(package="robot_state_publisher", executable="robot_state_publisher",
                          namespace=namespace, parameters=[{"robot_description": description,
                                                            "use_sim_time": use_sim}], output="screen"))
    except (OSError, ValueError) as e:
        print(f"[grasp.launch.py] no robot_state_publisher (rviz shows no arm): {e}")
    if arg("rviz").lower() in ("true", "1", "yes"):
        nodes.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace,
                          parameters=[{"use_sim_time": use_sim}],
                          arguments=["-d", os.path.join(share, "config", "grasp.rviz")]))
    return nodes


def generate_launch_description():
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in LAUNCH_ARGUMENTS),
        OpaqueFunction(function=_nodes),
    ])
