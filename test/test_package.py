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
            "launch_ros", "rviz2"} <= deps  # the launch file starts rviz2 by default
    assert root.find("export/build_type").text == "ament_python"


def test_layout_and_setup_cfg():
    for p in ("package.xml", "setup.py", "setup.cfg", "resource/bac_ros", "bac_ros", "launch", "config",
              "schedules", "test", "README.md"):
        assert (ROOT / p).exists(), p
    cfg = (ROOT / "setup.cfg").read_text()
    assert "script_dir=$base/lib/bac_ros" in cfg and "install_scripts=$base/lib/bac_ros" in cfg


def test_the_policy_imports_no_ros():
    code = ("import sys, bac_ros.policy.diffusion, bac_ros.policy.calibrate, bac_ros.policy.bench, bac_ros.policy.acs,"
            " bac_ros.policy.runner, bac_ros.drift.guarded;"
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
    from bac_ros.core.paths import CONFIG_DIR
    from bac_ros.policy.config import PolicyConfig
    from bac_ros.policy.diffusion import resolve_checkpoint

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


def test_readme_agrees_with_the_code():
    """The README keeps what a lab needs first and links the generated reference for the rest; what it does
    name must be true: every `node | parameter | default` row is a declared parameter with that default, every
    option in its `bac` examples is one of that command's, every launch argument it names exists."""
    import argparse
    import importlib
    import re

    from bac_ros.cli import build_parser
    from bac_ros.commands.reference import _value
    from bac_ros.graph.spec import LAUNCH_ARGUMENTS

    readme = (ROOT / "README.md").read_text()
    assert "](docs/reference.md)" in readme and (ROOT / "docs" / "reference.md").is_file()
    rows = re.findall(r"^\| (\w+_node) \| `(\w+)` \| `([^`]*)` \|", readme, re.M)
    assert len(rows) >= 20, rows
    for node, name, default in rows:
        declared = {p.name: p for p in importlib.import_module(f"bac_ros.nodes.{node}").PARAMETERS}
        assert name in declared, (node, name)
        assert _value(declared[name].default) == default, (node, name, default, declared[name].default)
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = re.findall(r"^bac +(\w+)(.*)$", readme, re.M)
    assert {c for c, _ in commands} >= {"schedule", "bench", "dataset", "train", "eval", "demo", "compare"}
    for command, line in commands:
        options = {o for a in sub.choices[command]._actions for o in a.option_strings}
        used = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", line.split("#")[0]))
        assert used <= options, (command, used - options)
    launch = {name for name, _, _ in LAUNCH_ARGUMENTS}
    named = set(re.findall(r"(?<![\w/-])(\w+):=", readme))
    assert named <= launch, named - launch


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


def test_the_readmes_layout_names_every_package_and_no_other():
    """The README's layout section and the tree agree (each `bac_ros/<room>/` line is a package, and every
    package has its line)."""
    import re

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    listed = set(re.findall(r"^bac_ros/(\w+)/", layout, flags=re.M))
    packages = {p.parent.name for p in (root / "bac_ros").glob("*/__init__.py")}
    assert listed == packages, (listed ^ packages)


# a chunk's path from the bottom up: each package imports only those before it
LAYERS = ("core", "robot", "data", "drift", "policy", "sim", "analysis", "nodes", "graph", "commands", "cli")


def _imports() -> dict[str, set[str]]:
    """bac_ros's modules and the bac_ros modules each imports (at module level or inside functions)."""
    import ast

    root = ROOT / "bac_ros"
    modules = {}
    for f in root.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    edges = {}
    for name, f in modules.items():
        package = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges[name] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            edges[name] |= {t for t in targets if t in modules and t != name}
    return edges


def test_the_house_imports_downward_without_circles():
    """Issue 37: every import runs down LAYERS (nodes -> policy / robot -> core), and no modules import each other
    round a circle (the two there were: cli <-> commands.reference, caching -> drift -> inference -> caching)."""
    edges = _imports()
    room = lambda m: m.split(".")[1] if m.count(".") else "core"  # noqa: E731 - bac_ros/__init__: no code
    upward = [(m, t) for m, ts in edges.items() for t in ts
              if room(m) != room(t) and LAYERS.index(room(t)) > LAYERS.index(room(m))]
    assert not upward, upward
    assert {room(m) for m in edges} <= set(LAYERS)
    seen, on_path = set(), []

    def visit(m):  # depth first; a module met again on the current path closes a circle
        if m in on_path:
            raise AssertionError(f"import circle: {' -> '.join(on_path[on_path.index(m):] + [m])}")
        if m in seen:
            return
        on_path.append(m)
        for t in sorted(edges[m]):
            visit(t)
        on_path.pop()
        seen.add(m)

    for m in sorted(edges):
        visit(m)


def test_the_command_line_starts_without_the_heavy_libraries():
    """`bac --help` (and every command's parser) imports neither the simulator, the robot, ROS nor diffusers: each
    command imports what it runs when it runs (the parser once pulled diffusers in through calibrate: 2x slower)."""
    code = ("import sys, bac_ros.cli; bac_ros.cli.build_parser();"
            "heavy=[m for m in ('mujoco','franky','rclpy','diffusers','onnxruntime') if m in sys.modules];"
            "sys.exit(str(heavy) if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
