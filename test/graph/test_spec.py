"""The graph described once: the launch file, setup.py, the parameter file and `bac demo` agree."""
import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _setup_scripts():
    tree = ast.parse((ROOT / "setup.py").read_text())
    scripts = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "=" in node.value and ":" in node.value:
            name, target = [x.strip() for x in node.value.split("=", 1)]
            scripts[name] = target
    return scripts


def test_launch_file_and_demo_start_the_graph_spec_and_it_agrees_with_setup():
    from bac_ros.graph.spec import grasp_graph

    launch = (ROOT / "launch" / "grasp.launch.py").read_text()
    assert "grasp_graph(" in launch and "OpaqueFunction" in launch and "in LAUNCH_ARGUMENTS)" in launch  # the launch file's nodes are the spec's
    assert set(_launch_arguments()) == {"use_sim", "robot_ip", "config", "schedule", "checkpoint", "namespace", "rviz",
                                        "mode", "input", "operator", "robot_description"}
    assert (ROOT / "config" / "grasp.rviz").exists() and "grasp.rviz" in launch
    assert "robot_state_publisher" in launch and "Description(" in launch  # the arm on /tf, from joint_states
    # issue 38: a crashed policy, camera, recorder or teleop node comes back by itself; the controller never does
    assert "respawn=spec.respawn_delay_s is not None" in launch and "respawn_delay=spec.respawn_delay_s" in launch
    specs = {s.name: s for s in [*grasp_graph(use_sim=False, mode="shared"), *grasp_graph(use_sim=True)]}
    assert specs["controller_node"].respawn_delay_s is None and specs["sim_node"].respawn_delay_s is None
    assert all(specs[n].respawn_delay_s > 0 for n in ("policy_node", "camera_node", "recorder_node", "teleop_node"))
    import yaml

    rviz = yaml.safe_load((ROOT / "config" / "grasp.rviz").read_text())
    displays = {d["Class"]: d for d in rviz["Visualization Manager"]["Displays"]}
    assert displays["rviz_default_plugins/RobotModel"]["Description Topic"]["Value"] == "robot_description"
    topics = [d["Topic"]["Value"] for d in displays.values() if "Topic" in d]
    assert topics and not any(t.startswith("/") for t in topics), topics  # relative: namespace:= moves the view
    demo = (ROOT / "bac_ros" / "graph" / "demo.py").read_text()
    assert "grasp_graph(" in demo  # bac demo starts the same spec
    scripts = _setup_scripts()
    sim = {s.name: s.parameters for s in grasp_graph(use_sim=True, sim_hostname="127.0.0.9")}
    real = {s.name: s.parameters for s in grasp_graph(use_sim=False, robot_ip="172.16.0.5", schedule="full")}
    assert set(sim) == {"controller_node", "sim_node", "metrics_node", "recorder_node", "policy_node"}
    assert set(real) == {"controller_node", "camera_node", "metrics_node", "recorder_node", "policy_node"}
    assert sim["controller_node"]["robot_ip"] == sim["sim_node"]["hostname"] == "127.0.0.9"
    assert sim["controller_node"]["realtime_mode"] == "ignore" and "realtime_mode" not in real["controller_node"]
    assert real["controller_node"]["robot_ip"] == "172.16.0.5" and real["policy_node"]["schedule"] == "full"
    assert "schedule" not in sim["policy_node"]  # the parameter file's, unless given
    assert all(p.get("use_sim_time") is True for n, p in sim.items() if n != "sim_node")
    assert grasp_graph(use_sim=True)[0].parameters["robot_ip"] == "127.0.0.1"  # the sim's, whatever the file says
    teleop = {s.name: s.parameters for s in grasp_graph(use_sim=False, mode="teleop", teleop_input="joy")}
    shared = {s.name: s.parameters for s in grasp_graph(use_sim=True, mode="shared", operator="intervene")}
    assert "policy_node" not in teleop and teleop["teleop_node"]["input"] == "joy"
    assert teleop["controller_node"]["source"] == "teleop" and shared["controller_node"]["source"] == "policy"
    assert {"policy_node", "teleop_node", "operator_node"} <= set(shared) and shared["teleop_node"]["input"] == "twist"
    with pytest.raises(ValueError, match="simulated world"):
        grasp_graph(use_sim=False, mode="teleop", operator="drive")
    with pytest.raises(ValueError, match="mode must be one of"):
        grasp_graph(use_sim=True, mode="autopilot")
    # combinations that would start nothing that uses them name the missing argument
    for kw, missing in ((dict(teleop_input="joy"), "mode:=teleop"), (dict(operator="drive"), "mode:=teleop"),
                        (dict(operator="intervene", mode="teleop"), "mode:=shared"),
                        (dict(mode="teleop", checkpoint="runs/mine"), "mode:=policy")):
        with pytest.raises(ValueError, match=missing):
            grasp_graph(use_sim=True, **kw)
    for exe in set(sim) | set(real) | set(shared):
        module, func = scripts[exe].split(":")
        assert importlib.util.find_spec(module) is not None, module
        assert callable(getattr(importlib.import_module(module), func))  # imports: no syntax or import error


def _launch_arguments() -> dict[str, str]:
    from bac_ros.graph.spec import LAUNCH_ARGUMENTS

    return {name: default for name, default, _ in LAUNCH_ARGUMENTS}


def _declared(node: str) -> dict:
    import importlib

    return {p.name: p for p in importlib.import_module(f"bac_ros.nodes.{node}").PARAMETERS}


def test_parameter_file_names_only_declared_parameters_and_the_default_schedule_once():
    """A typo in a lab's parameter file would be ignored by ROS: every key must be a declared parameter, with a
    value its table allows. The default schedule is named in config/grasp.yaml only; the launch file and `bac demo`
    read it there."""
    from bac_ros.policy.config import PolicyConfig
    from bac_ros.policy.schedule import find_schedule

    params = yaml.safe_load((ROOT / "config" / "grasp.yaml").read_text())
    for node, section in params.items():
        declared = _declared(node)
        unknown = set(section["ros__parameters"]) - set(declared)
        assert not unknown, (node, unknown)
        for name, value in section["ros__parameters"].items():
            assert declared[name].check(value) is None, (node, name, value)
    name = params["policy_node"]["ros__parameters"]["schedule"]
    assert find_schedule(name, PolicyConfig.load(params["policy_node"]["ros__parameters"]["config"])) is not None
    from bac_ros.cli import build_parser

    assert build_parser().parse_args(["demo"]).schedule is None  # demo: from the parameter file
    assert _launch_arguments()["schedule"] == ""
    assert _declared("policy_node")["schedule"].default == ""


def test_a_labs_yaml_decides_unless_the_command_line_names_it(tmp_path):
    """The launch file and `bac demo` pass the parameter file, then the spec's parameters (which win, as in ROS):
    the spec holds only what the command line asked for, so the lab's robot_ip and realtime_mode reach
    controller_node unless the command line names them."""
    from bac_ros.core.settings import node_parameters
    from bac_ros.graph.spec import grasp_graph

    lab = tmp_path / "my_grasp.yaml"
    lab.write_text(yaml.safe_dump({"controller_node": {"ros__parameters": {
        "robot_ip": "192.168.10.2", "realtime_mode": "enforce", "source": "teleop", "max_velocity_factor": 0.1}},
        "teleop_node": {"ros__parameters": {"input": "joy"}}}))

    def effective(specs, node):  # what ROS hands the node: the file's section, then the overrides
        spec = next(s for s in specs if s.name == node)
        return {**node_parameters(node, lab), **spec.parameters}

    plain = effective(grasp_graph(use_sim=False), "controller_node")
    assert plain["robot_ip"] == "192.168.10.2" and plain["realtime_mode"] == "enforce" and plain["source"] == "teleop"
    named = effective(grasp_graph(use_sim=False, robot_ip="172.16.0.9", mode="shared"), "controller_node")
    assert named["robot_ip"] == "172.16.0.9" and named["source"] == "policy" and named["max_velocity_factor"] == 0.1
    assert effective(grasp_graph(use_sim=False, mode="shared"), "teleop_node")["input"] == "joy"
    simulated = effective(grasp_graph(use_sim=True), "controller_node")
    assert simulated["robot_ip"] == "127.0.0.1" and simulated["realtime_mode"] == "ignore"  # use_sim:=true said so


def test_launch_file_runs_where_launch_ros_is_installed():
    pytest.importorskip("launch_ros", reason="launch_ros has no wheels here; a lab's ROS 2 install has it")
    spec = importlib.util.spec_from_file_location("grasp_launch", ROOT / "launch" / "grasp.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    assert len(ld.entities) >= 10
