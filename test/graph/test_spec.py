"""The graph described once: the launch file, setup.py, the parameter file and `bac demo` agree."""
import ast
import importlib.util
import re
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
    assert "grasp_graph(" in launch and "OpaqueFunction" in launch  # the launch file's nodes are the spec's
    for arg in ("use_sim", "robot_ip", "config", "schedule", "checkpoint", "namespace", "rviz", "mode", "input",
                "operator"):
        assert f'DeclareLaunchArgument("{arg}"' in launch
    assert (ROOT / "config" / "grasp.rviz").exists() and "grasp.rviz" in launch
    demo = (ROOT / "bac_ros" / "graph" / "demo.py").read_text()
    assert "grasp_graph(" in demo  # bac demo starts the same spec
    scripts = _setup_scripts()
    sim = {s.name: s.parameters for s in grasp_graph(use_sim=True, sim_hostname="127.0.0.9")}
    real = {s.name: s.parameters for s in grasp_graph(use_sim=False, robot_ip="172.16.0.5", schedule="full")}
    assert set(sim) == {"controller_node", "sim_node", "metrics_node", "recorder_node", "policy_node"}
    assert set(real) == {"controller_node", "camera_node", "metrics_node", "recorder_node", "policy_node"}
    assert sim["controller_node"]["robot_ip"] == sim["sim_node"]["hostname"] == "127.0.0.9"
    assert sim["controller_node"]["realtime_mode"] == "ignore" and real["controller_node"]["realtime_mode"] == "enforce"
    assert real["controller_node"]["robot_ip"] == "172.16.0.5" and real["policy_node"]["schedule"] == "full"
    assert "schedule" not in sim["policy_node"]  # the parameter file's, unless given
    assert all(p.get("use_sim_time") is True for n, p in sim.items() if n != "sim_node")
    teleop = {s.name: s.parameters for s in grasp_graph(use_sim=False, mode="teleop", teleop_input="joy")}
    shared = {s.name: s.parameters for s in grasp_graph(use_sim=True, mode="shared", operator="intervene")}
    assert "policy_node" not in teleop and teleop["teleop_node"]["input"] == "joy"
    assert teleop["controller_node"]["source"] == "teleop" and shared["controller_node"]["source"] == "policy"
    assert {"policy_node", "teleop_node", "operator_node"} <= set(shared) and shared["teleop_node"]["input"] == "twist"
    with pytest.raises(ValueError, match="simulated world"):
        grasp_graph(use_sim=False, mode="teleop", operator="drive")
    with pytest.raises(ValueError, match="mode must be one of"):
        grasp_graph(use_sim=True, mode="autopilot")
    for exe in set(sim) | set(real) | set(shared):
        module, func = scripts[exe].split(":")
        assert importlib.util.find_spec(module) is not None, module
        assert callable(getattr(importlib.import_module(module), func))  # imports: no syntax or import error


def test_parameter_file_names_only_declared_parameters_and_the_default_schedule_once():
    """A typo in a lab's parameter file would be ignored by ROS: every key must be a declared parameter.
    The default schedule is named in config/grasp.yaml only; the launch file and `bac demo` read it there."""
    import dataclasses

    from bac_ros.core.config import PolicyConfig
    from bac_ros.core.schedule import find_schedule
    from bac_ros.core.streaming import ChunkRules
    from bac_ros.robot.limits import ArmLimits

    params = yaml.safe_load((ROOT / "config" / "grasp.yaml").read_text())
    for node, section in params.items():
        source = (ROOT / "bac_ros" / "nodes" / f"{node}.py").read_text()
        declared = set(re.findall(r'd(?:eclare)?\((?:node, |self, )?"(\w+)"', source))
        if node == "controller_node":
            declared |= {f.name for cls in (ArmLimits, ChunkRules) for f in dataclasses.fields(cls)}
        unknown = set(section["ros__parameters"]) - declared
        assert not unknown, (node, unknown)
    name = params["policy_node"]["ros__parameters"]["schedule"]
    assert find_schedule(name, PolicyConfig.load(params["policy_node"]["ros__parameters"]["config"])) is not None
    from bac_ros.cli import build_parser

    assert build_parser().parse_args(["demo"]).schedule is None  # demo: from the parameter file
    launch = (ROOT / "launch" / "grasp.launch.py").read_text()
    assert 'DeclareLaunchArgument("schedule", default_value=""' in launch
    assert re.search(r'd\("schedule", ""', (ROOT / "bac_ros" / "nodes" / "policy_node.py").read_text())


def test_launch_file_runs_where_launch_ros_is_installed():
    pytest.importorskip("launch_ros", reason="launch_ros has no wheels here; a lab's ROS 2 install has it")
    spec = importlib.util.spec_from_file_location("grasp_launch", ROOT / "launch" / "grasp.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    assert len(ld.entities) >= 10
