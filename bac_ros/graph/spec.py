"""The grasp graph's nodes, described once: `ros2 launch bac_ros grasp.launch.py` and `bac demo` start the
same executables with the same parameter file (config/grasp.yaml) and these per-node overrides. Topic and
service names are relative, so a namespace moves the whole graph; the nodes may start in any order
(controller_node retries the robot until it answers, policy_node plans once images and joint states come)."""
from __future__ import annotations

from dataclasses import dataclass, field

SIM_HOSTNAME = "127.0.0.1"  # franky-sim's libfranka server in the launch file's simulation
MODES = ("policy", "teleop", "shared")  # who drives: the policy, a person, or the policy with a person ready
INPUTS = ("spacemouse", "joy", "twist")
OPERATORS = ("none", "drive", "intervene")  # the scripted operator (simulation only)


@dataclass(frozen=True)
class NodeSpec:
    executable: str  # console script of the package; the node is named after it
    parameters: dict = field(default_factory=dict)  # on top of the parameter file

    @property
    def name(self) -> str:
        return self.executable


def grasp_graph(use_sim: bool, robot_ip: str = "172.16.0.2", schedule: str | None = None,
                sim_hostname: str = SIM_HOSTNAME, mode: str = "policy", teleop_input: str = "spacemouse",
                operator: str = "none", checkpoint: str | None = None) -> list[NodeSpec]:
    """The nodes of the grasp graph. Simulation: sim_node (franky-sim at `sim_hostname`, the camera, and the
    graph's /clock, so every other node keeps sim time) instead of camera_node, and libfranka's real-time
    mode off. `mode`: policy (policy_node drives), teleop (teleop_node drives, from `teleop_input`) or shared
    (the policy drives, a person can take over). `schedule`, `checkpoint`: policy_node's, None = the parameter
    file's.
    `operator` (simulation): the scripted operator drives (`drive`, mode teleop) or watches and intervenes."""
    if mode not in MODES or teleop_input not in INPUTS or operator not in OPERATORS:
        raise ValueError(f"mode must be one of {MODES}, input one of {INPUTS}, operator one of {OPERATORS}; got "
                         f"{mode!r}, {teleop_input!r}, {operator!r}")
    if operator != "none" and not use_sim:
        raise ValueError("the scripted operator needs the simulated world (use_sim)")
    sim_time = {"use_sim_time": use_sim}
    robot = {"robot_ip": sim_hostname if use_sim else robot_ip, "realtime_mode": "ignore" if use_sim else "enforce"}
    nodes = [NodeSpec("controller_node", {**robot, "source": "teleop" if mode == "teleop" else "policy", **sim_time}),
             NodeSpec("sim_node", {"hostname": sim_hostname}) if use_sim else NodeSpec("camera_node"),
             NodeSpec("metrics_node", sim_time), NodeSpec("recorder_node", sim_time)]
    if mode != "teleop":
        given = {k: v for k, v in (("schedule", schedule), ("checkpoint", checkpoint)) if v}
        nodes.append(NodeSpec("policy_node", {**given, **sim_time}))
    if mode != "policy":
        nodes.append(NodeSpec("teleop_node", {"input": "twist" if operator != "none" else teleop_input, **sim_time}))
    if operator != "none":
        nodes.append(NodeSpec("operator_node", {"mode": operator, **sim_time}))
    return nodes
