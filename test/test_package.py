"""The ROS 2 package metadata agrees with itself, and colcon can build it."""
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "bac_ros"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "trajectory_msgs", "visualization_msgs", "diagnostic_msgs", "std_msgs",
            "launch_ros"} <= deps
    assert root.find("export/build_type").text == "ament_python"


def test_layout_and_setup_cfg():
    for p in ("package.xml", "setup.py", "setup.cfg", "resource/bac_ros", "bac_ros", "launch", "config",
              "schedules", "test", "README.md"):
        assert (ROOT / p).exists(), p
    cfg = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/bac_ros" in cfg and "install_scripts=$base/lib/bac_ros" in cfg


def test_core_imports_no_ros():
    code = ("import sys, bac_ros.core.policy, bac_ros.core.calibrate, bac_ros.core.bench, bac_ros.core.acs;"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('rclpy','sensor_msgs','std_msgs','franky')];"
            "sys.exit(str(bad) if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_colcon_build(tmp_path):
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not Path(colcon).exists():
        pytest.skip("colcon is not installed (make colcon-check installs it)")
    src = tmp_path / "ws" / "src" / "bac_ros"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "install", "log", "*.egg-info",
                                                              "__pycache__", "runs"))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run([colcon, "build", "--packages-select", "bac_ros"], cwd=tmp_path / "ws",
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    install = tmp_path / "ws" / "install" / "bac_ros"
    assert (install / "lib" / "bac_ros" / "bac").exists()
    assert (install / "share" / "bac_ros" / "package.xml").exists()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "bac_ros").exists()
    assert list((install / "share" / "bac_ros" / "config").glob("*.yaml"))


def test_shipped_configs_have_their_checkpoint():
    """Every config in config/ loads and finds its shipped weights (cpu_ddpm100 samples the cpu policy's)."""
    from bac_ros.core.config import CONFIG_DIR, PolicyConfig
    from bac_ros.core.policy import resolve_checkpoint

    cpu = PolicyConfig.load("cpu")
    ddpm100 = PolicyConfig.load("cpu_ddpm100")
    assert ddpm100.sampler.num_inference_steps == 100 and ddpm100.sampler.type == "ddpm"
    assert ddpm100.weights_hash == cpu.weights_hash
    assert resolve_checkpoint(ddpm100, "auto") == resolve_checkpoint(cpu, "auto") is not None
    for path in CONFIG_DIR.glob("*.yaml"):
        if path.stem in ("grasp",):  # node parameters, not a policy
            continue
        PolicyConfig.load(path.stem)
    # no weights shipped for the paper-size model: auto names the config instead of handing out untrained ones
    with pytest.raises(ValueError, match="no checkpoint is shipped for config 'grasp_dpt_paper'"):
        resolve_checkpoint(PolicyConfig.load("paper"), "auto")
    assert resolve_checkpoint(PolicyConfig.load("paper"), "none") is None  # untrained only when asked


def test_readme_names_every_node_parameter():
    """The README is where a lab looks a parameter up: every declared one is named there."""
    import dataclasses
    import re

    from bac_ros.core.drift import DriftSettings
    from bac_ros.core.streaming import ChunkRules
    from bac_ros.robot.limits import ArmLimits
    from bac_ros.robot.servo import ServoSettings
    from bac_ros.sim.operator import OperatorSettings

    readme = (ROOT / "README.md").read_text()
    names = {f.name for cls in (ArmLimits, ChunkRules, ServoSettings, OperatorSettings, DriftSettings)
             for f in dataclasses.fields(cls)}
    for node in ("controller_node", "policy_node", "sim_node", "camera_node", "metrics_node", "teleop_node",
                 "operator_node", "recorder_node"):
        names |= set(re.findall(r'd(?:eclare)?\((?:node, |self, )?"(\w+)"', (ROOT / "bac_ros" / "nodes" /
                                                                           f"{node}.py").read_text()))
    assert len(names) > 40
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing, missing


def test_robot_and_nodes_do_not_need_the_simulator():
    """A lab's real-robot graph must not depend on the simulated world: nothing under robot/ or nodes/
    imports bac_ros.sim or franky_sim, except sim_node."""
    import ast

    for path in [*(ROOT / "bac_ros" / "robot").glob("*.py"), *(ROOT / "bac_ros" / "nodes").glob("*.py")]:
        if path.name in ("sim_node.py", "operator_node.py"):  # simulation-only nodes
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [(node.module or "", node.level)]
            elif isinstance(node, ast.Import):
                names = [(a.name, 0) for a in node.names]
            else:
                continue
            for module, level in names:
                resolved = module if level == 0 else ("bac_ros." + module if level == 2 else module)
                assert not resolved.startswith(("bac_ros.sim", "sim", "franky_sim")), (path.name, module)
