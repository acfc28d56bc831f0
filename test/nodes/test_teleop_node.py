"""teleop_node as a process: no device, a clear line and exit 2; a bad parameter likewise."""
import os
import subprocess
import sys

import pytest


def _run(*params):
    return subprocess.run([sys.executable, "-m", "bac_ros.nodes.teleop_node", "--ros-args",
                           *[a for p in params for a in ("-p", p)]], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ROS_DOMAIN_ID": "214"})


def test_without_a_spacemouse_it_exits_2_with_one_line():
    r = _run("input:=spacemouse")
    if r.returncode == 0:
        pytest.skip("a SpaceMouse is attached")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("teleop_node: error:") and ("SpaceMouse" in last or "pyspacemouse" in last), last


def test_an_unknown_input_is_refused():
    r = _run("input:=mind_control")
    assert r.returncode == 2 and "input" in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr
