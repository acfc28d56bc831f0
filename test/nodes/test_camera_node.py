"""camera_node without a camera."""
import pytest


def test_camera_node_without_camera_exits_clearly():
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "bac_ros.nodes.camera_node"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "ROS_DOMAIN_ID": "202"})
    if r.returncode == 0:
        pytest.skip("a RealSense camera is attached")
    assert r.returncode == 2
    assert "no RealSense camera is attached" in r.stderr or "pyrealsense2 is not importable" in r.stderr
