"""`bac preflight`: each check says PASS / WARN / FAIL with the reason; no robot fails naming it; real-time rules
warn in simulation and fail when enforced; a missing camera fails with the fix; against franky-sim (slow) it passes."""
import json
import subprocess
import sys

import pytest

from bac_ros.graph import preflight as pf

CHECKS = ["envelope", "policy", "realtime kernel", "rtprio", "memlock", "robot", "camera", "clock"]


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "bac_ros.cli", "preflight", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_no_robot_fails_naming_it_and_the_json_lists_every_check(tmp_path):
    out = tmp_path / "preflight.json"
    r = _run("--robot-ip", "127.0.0.97", "--sim", "--json", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads(out.read_text())
    assert [c["name"] for c in report["checks"]] == CHECKS and report["failed"] == ["robot"]
    robot = report["checks"][CHECKS.index("robot")]
    assert robot["status"] == "FAIL" and "127.0.0.97" in robot["detail"] and "FCI" in robot["fix"]
    assert "| robot | FAIL | the FR3 at 127.0.0.97" in r.stdout and "FAIL (robot)" in r.stdout


def test_realtime_warns_in_simulation_and_fails_when_enforced():
    lacking = dict(rt_kernel=False, root=False, rtprio=0, memlock=64 * 1024)
    assert [c.status for c in pf.realtime_checks(False, **lacking)] == ["WARN"] * 3
    enforced = pf.realtime_checks(True, **lacking)
    assert [c.status for c in enforced] == ["FAIL"] * 3 and all(c.fix for c in enforced)
    assert "rtprio 99" in enforced[1].fix and "memlock" in enforced[2].fix
    fine = pf.realtime_checks(True, rt_kernel=True, root=False, rtprio=99, memlock=pf.resource.RLIM_INFINITY)
    assert [c.status for c in fine] == ["PASS"] * 3


def test_a_missing_camera_fails_with_the_fix(tmp_path):
    """No RealSense on this machine (CI has none): FAIL with what to check. (In a process of its own: librealsense's
    threads beside rclpy's in one process crash it at exit.)"""
    out = tmp_path / "preflight.json"
    _run("--robot-ip", "127.0.0.97", "--json", str(out))
    camera = next(c for c in json.loads(out.read_text())["checks"] if c["name"] == "camera")
    assert camera["status"] == "FAIL" and "RealSense" in camera["detail"] and camera["fix"], camera


def test_the_envelope_and_the_policy_are_checked_as_the_nodes_would():
    from bac_ros.core.settings import node_parameters

    controller = node_parameters("controller_node")
    assert pf.envelope_check(controller).status == "PASS"
    assert pf.envelope_check({**controller, "workspace_max": [0.5, 0.4, 0.8]}).status == "FAIL"  # home outside
    assert pf.envelope_check({**controller, "max_velocity_factor": 3.0}).status == "FAIL"  # out of range
    assert pf.envelope_check({**controller, "max_velocity_factor": 0.8}).status == "WARN"
    policy = node_parameters("policy_node")
    assert pf.policy_check(policy, sim=True).status == "PASS"
    robot = pf.policy_check(policy, sim=False)  # the shipped simulation policy on a robot
    assert robot.status == "FAIL" and "simulated" in robot.detail
    assert pf.policy_check({**policy, "checkpoint": "shipped"}, sim=False).status == "WARN"
    assert pf.policy_check({**policy, "schedule": "bac_s99"}, sim=True).status == "FAIL"


@pytest.mark.slow
def test_against_franky_sim_every_check_passes_or_warns_with_its_reason(tmp_path):
    from bac_ros.sim.world import WorldConfig, WorldProcess

    out = tmp_path / "preflight.json"
    with WorldProcess(WorldConfig(hostname="127.0.0.14")):
        r = _run("--robot-ip", "127.0.0.14", "--sim", "--link-test", "1", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    checks = json.loads(out.read_text())["checks"]
    assert [c["name"] for c in checks] == CHECKS[:6] + ["gripper", "link"] + CHECKS[6:]
    assert all(c["status"] in ("PASS", "WARN") and c["detail"] for c in checks), checks
    status = {c["name"]: c["status"] for c in checks}
    assert status["robot"] == status["gripper"] == status["link"] == "PASS", checks
