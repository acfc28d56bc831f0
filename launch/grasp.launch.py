"""ros2 launch bac_ros grasp.launch.py [use_sim:=false] [robot_ip:=172.16.0.2] [config:=...] [schedule:=...] [rviz:=true]"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("bac_ros")
    use_sim = LaunchConfiguration("use_sim")
    robot_ip = LaunchConfiguration("robot_ip")
    config = LaunchConfiguration("config")
    schedule = LaunchConfiguration("schedule")
    rviz = LaunchConfiguration("rviz")
    # In simulation the FR3 is franky-sim on the sim node's loopback address.
    arm_ip = PythonExpression(["'127.0.0.1' if '", use_sim, "' == 'true' else '", robot_ip, "'"])
    # A real FR3 needs libfranka's real-time mode (a real-time kernel); franky-sim runs without it.
    realtime = PythonExpression(["'ignore' if '", use_sim, "' == 'true' else 'enforce'"])
    # In simulation sim_node publishes the simulator's time on /clock and every other node keeps it.
    sim_time = {"use_sim_time": ParameterValue(use_sim, value_type=bool)}
    # The nodes may start in any order: controller_node retries the FR3 (connect_timeout_s) while sim_node
    # brings its libfranka server up, and waits in "ready" (holding) for /bac/start.
    return LaunchDescription([
        DeclareLaunchArgument("use_sim", default_value="false", description="franky-sim world instead of a real FR3"),
        DeclareLaunchArgument("robot_ip", default_value="172.16.0.2", description="FR3 (FCI) address"),
        DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "grasp.yaml")),
        DeclareLaunchArgument("schedule", default_value="grasp_dpt_cpu_bac_s7",
                              description="a schedule in schedules/ or a path; 'full' disables caching"),
        DeclareLaunchArgument("rviz", default_value="true"),
        Node(package="bac_ros", executable="sim_node", name="sim_node", parameters=[config],
             condition=IfCondition(use_sim), output="screen"),
        Node(package="bac_ros", executable="camera_node", name="camera_node", parameters=[config],
             condition=UnlessCondition(use_sim), output="screen"),
        Node(package="bac_ros", executable="controller_node", name="controller_node",
             parameters=[config, {"robot_ip": arm_ip, "realtime_mode": realtime}, sim_time], output="screen"),
        Node(package="bac_ros", executable="policy_node", name="policy_node",
             parameters=[config, {"schedule": schedule}, sim_time], output="screen"),
        Node(package="bac_ros", executable="metrics_node", name="metrics_node", parameters=[config, sim_time],
             output="screen"),
        Node(package="rviz2", executable="rviz2", name="rviz2", parameters=[sim_time],
             arguments=["-d", os.path.join(share, "config", "grasp.rviz")], condition=IfCondition(rviz)),
    ])
