"""ros2 launch bac_ros grasp.launch.py [use_sim:=true] [robot_ip:=172.16.0.2] [config:=<params.yaml>]
[mode:=policy|teleop|shared] [input:=spacemouse|joy|twist] [schedule:=bac_s7|full|<file>] [checkpoint:=<dir>]
[namespace:=<ns>]
[rviz:=true] [operator:=none|drive|intervene (simulation)]

The nodes come from `bac_ros.graph.spec.grasp_graph`, the same description `bac demo` starts; they may start
in any order."""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from bac_ros.graph.spec import grasp_graph


def _nodes(context):
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    use_sim = arg("use_sim").lower() in ("true", "1", "yes")
    namespace, config = arg("namespace"), arg("config")
    # only what the command line names overrides the parameter file (empty: not given)
    nodes = [Node(package="bac_ros", executable=spec.executable, name=spec.name, namespace=namespace,
                  parameters=[config, spec.parameters], output="screen")
             for spec in grasp_graph(use_sim, arg("robot_ip") or None, arg("schedule") or None, mode=arg("mode") or None,
                                     teleop_input=arg("input") or None, operator=arg("operator") or None,
                                     checkpoint=arg("checkpoint") or None)]
    if arg("rviz").lower() in ("true", "1", "yes"):
        share = get_package_share_directory("bac_ros")
        nodes.append(Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace,
                          parameters=[{"use_sim_time": use_sim}],
                          arguments=["-d", os.path.join(share, "config", "grasp.rviz")]))
    return nodes


def generate_launch_description():
    share = get_package_share_directory("bac_ros")
    return LaunchDescription([
        DeclareLaunchArgument("use_sim", default_value="false", description="franky-sim world instead of a real FR3"),
        DeclareLaunchArgument("robot_ip", default_value="",
                              description="FR3 (FCI) address; empty: the parameter file's (default 172.16.0.2)"),
        DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "grasp.yaml"),
                              description="parameter file of every node"),
        DeclareLaunchArgument("schedule", default_value="",
                              description="policy_node's schedule (a name in schedules/<model>/, a path, or full); "
                                          "empty: the parameter file's"),
        DeclareLaunchArgument("mode", default_value="",
                              description="policy (empty: the default): the policy drives; teleop: a person drives; "
                                          "shared: the policy drives and a person can take over"),
        DeclareLaunchArgument("input", default_value="",
                              description="teleop input: spacemouse, joy (teleop/joy) or twist (teleop/twist); "
                                          "empty: the parameter file's (default twist)"),
        DeclareLaunchArgument("operator", default_value="",
                              description="simulation: the scripted operator drives (drive) or intervenes; empty: "
                                          "none"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="policy_node's checkpoint folder; empty: the parameter file's (shipped)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the whole graph"),
        DeclareLaunchArgument("rviz", default_value="true", description="rviz2 with config/grasp.rviz"),
        OpaqueFunction(function=_nodes),
    ])
