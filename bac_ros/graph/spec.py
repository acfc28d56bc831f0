"""The grasp graph's nodes, described once: `ros2 launch bac_ros grasp.launch.py` and `bac demo` start the
same executables with the same parameter file (config/grasp.yaml) and these per-node overrides. Topic and
service names are relative, so a namespace moves the whole graph; the nodes may start in any order
(controller_node retries the robot until it answers, policy_node plans once images and joint states come)."""
from __future__ import annotations

from dataclasses import dataclass, field

SIM_HOSTNAME = "127.0.0.1"  # franky-sim's libfranka server in the launch file's simulation


@dataclass(frozen=True)
class NodeSpec:
    executable: str  # console script of the package; the node is named after it
    parameters: dict = field(default_factory=dict)  # on top of the parameter file

    @property
    def name(self) -> str:
        return self.executable


def grasp_graph(use_sim: bool, robot_ip: str = "172.16.0.2", schedule: str | None = None,
                sim_hostname: str = SIM_HOSTNAME) -> list[NodeSpec]:
    """The nodes of the grasp graph. Simulation: sim_node (franky-sim at `sim_hostname`, the camera, and the
    graph's /clock, so every other node keeps sim time) instead of camera_node, and libfranka's real-time
    mode off. `schedule`: policy_node's schedule, None = the parameter file's."""
    sim_time = {"use_sim_time": use_sim}
    robot = {"robot_ip": sim_hostname if use_sim else robot_ip, "realtime_mode": "ignore" if use_sim else "enforce"}
    return [NodeSpec("controller_node", {**robot, **sim_time}),
            NodeSpec("sim_node", {"hostname": sim_hostname}) if use_sim else NodeSpec("camera_node"),
            NodeSpec("metrics_node", sim_time),
            NodeSpec("policy_node", {**({"schedule": schedule} if schedule else {}), **sim_time})]
