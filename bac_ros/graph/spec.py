"""The grasp graph's nodes, described once: `ros2 launch bac_ros grasp.launch.py` and `bac demo` start the
same executables with the same parameter file (config/grasp.yaml) and these per-node overrides. Topic and
service names are relative, so a namespace moves the whole graph; the nodes may start in any order
(controller_node retries the robot until it answers, policy_node plans once images and joint states come)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..robot.streaming import Source

SIM_HOSTNAME = "127.0.0.1"  # franky-sim's libfranka server (sim_node's default hostname)


class Mode(StrEnum):
    """Who drives the launched graph."""
    POLICY = "policy"  # policy_node
    TELEOP = "teleop"  # a person through teleop_node
    SHARED = "shared"  # the policy, with a person ready to take over


MODES = tuple(Mode)
INPUTS = ("spacemouse", "joy", "twist")
OPERATORS = ("none", "drive", "intervene")  # the scripted operator (simulation only)

# grasp.launch.py's arguments: name, default, description (strings; empty: the parameter file's)
LAUNCH_ARGUMENTS = (
    ("use_sim", "false", "franky-sim world instead of a real FR3"),
    ("robot_ip", "", "FR3 (FCI) address; empty: the parameter file's (default 172.16.0.2)"),
    ("config", "", "parameter file of every node; empty: the package's config/grasp.yaml"),
    ("schedule", "", "policy_node's schedule (a name in schedules/<model>/, a path, or full); empty: the "
                     "parameter file's"),
    ("mode", "", "policy (empty: the default): the policy drives; teleop: a person drives; shared: the policy "
                 "drives and a person can take over"),
    ("input", "", "teleop input: spacemouse, joy (teleop/joy) or twist (teleop/twist); empty: the parameter "
                  "file's (default twist)"),
    ("operator", "", "simulation: the scripted operator drives (drive) or intervenes; empty: none"),
    ("checkpoint", "", "policy_node's checkpoint folder; empty: the parameter file's (shipped)"),
    ("namespace", "", "namespace of the whole graph"),
    ("rviz", "true", "rviz2 with config/grasp.rviz"),
    ("robot_description", "", "the FR3's URDF for robot_state_publisher (the lab's ROS install runs it: /tf for rviz); "
                              "empty: franky-sim's FR3 + hand; none found: no robot_state_publisher"),
)


@dataclass(frozen=True)
class NodeSpec:
    executable: str  # console script of the package; the node is named after it
    parameters: dict = field(default_factory=dict)  # on top of the parameter file

    @property
    def respawn_delay_s(self) -> float | None:
        """The launch file starts the node again this long (s) after it exits; None: never. The controller is
        never restarted by itself (a person recovers the arm); nor is the simulator, whose world would reset."""
        return RESPAWN_DELAY_S.get(self.executable)

    @property
    def name(self) -> str:
        return self.executable


# nodes the launch file restarts after a crash: the chunk timeout holds the arm meanwhile, and /bac/start plays
# again once the policy is back (the recorder indexes the episode it was cut in as incomplete when it comes back)
RESPAWN_DELAY_S = {"policy_node": 2.0, "camera_node": 2.0, "recorder_node": 2.0, "teleop_node": 2.0,
                   "metrics_node": 2.0, "operator_node": 2.0}


def grasp_graph(use_sim: bool, robot_ip: str | None = None, schedule: str | None = None,
                sim_hostname: str | None = None, mode: str | None = None, teleop_input: str | None = None,
                operator: str | None = None, checkpoint: str | None = None) -> list[NodeSpec]:
    """The nodes of the grasp graph and the parameters the command line asked for: everything not given (None
    or '') is left to the parameter file, then to the node's default, so a lab's YAML decides every parameter it
    sets unless the command line names it. Simulation (`use_sim`): sim_node (franky-sim, the camera and the
    graph's /clock, so every other node keeps sim time) instead of camera_node, libfranka's real-time mode off,
    and the controller pointed at the simulator (`sim_hostname`, default 127.0.0.1). `mode`: policy (default:
    policy_node drives), teleop (teleop_node drives) or shared (the policy drives, a person can take over);
    `teleop_input`: teleop_node's input; `operator` (simulation): the scripted operator drives (`drive`, mode
    teleop) or watches and intervenes; `schedule`, `checkpoint`: policy_node's."""
    mode, operator = mode or Mode.POLICY, operator or "none"
    if mode not in MODES or (teleop_input or "twist") not in INPUTS or operator not in OPERATORS:
        raise ValueError(f"mode must be one of {MODES}, input one of {INPUTS}, operator one of {OPERATORS}; got "
                         f"{mode!r}, {teleop_input!r}, {operator!r}")
    if operator != "none" and not use_sim:
        raise ValueError("the scripted operator needs the simulated world (use_sim)")
    # arguments that would start nothing that uses them: said, not ignored
    if teleop_input and mode == Mode.POLICY:
        raise ValueError(f"input:={teleop_input} needs a teleoperator: add mode:=teleop or mode:=shared")
    if operator == "drive" and mode == Mode.POLICY:
        raise ValueError("operator:=drive drives through teleop_node: add mode:=teleop or mode:=shared")
    if operator == "intervene" and mode != Mode.SHARED:
        raise ValueError("operator:=intervene takes over from a running policy: add mode:=shared")
    if mode == Mode.TELEOP and (schedule or checkpoint):
        raise ValueError("schedule:= and checkpoint:= are policy_node's, which mode:=teleop does not start: "
                         "mode:=policy or mode:=shared")
    given = lambda **kw: {k: v for k, v in kw.items() if v not in (None, "")}  # noqa: E731
    sim_time = {"use_sim_time": True} if use_sim else {}
    host = (sim_hostname or SIM_HOSTNAME) if use_sim else None
    controller = given(robot_ip=host or robot_ip, realtime_mode="ignore" if use_sim else None,
                       source={Mode.TELEOP: Source.TELEOP.value, Mode.SHARED: Source.POLICY.value}.get(mode))
    nodes = [NodeSpec("controller_node", {**controller, **sim_time}),
             NodeSpec("sim_node", given(hostname=sim_hostname)) if use_sim else NodeSpec("camera_node"),
             NodeSpec("metrics_node", sim_time), NodeSpec("recorder_node", sim_time)]
    if mode != Mode.TELEOP:
        nodes.append(NodeSpec("policy_node", {**given(schedule=schedule, checkpoint=checkpoint), **sim_time}))
    if mode != Mode.POLICY:
        nodes.append(NodeSpec("teleop_node", {**given(input="twist" if operator != "none" else teleop_input),
                                              **sim_time}))
    if operator != "none":
        nodes.append(NodeSpec("operator_node", {"mode": operator, **sim_time}))
    return nodes
