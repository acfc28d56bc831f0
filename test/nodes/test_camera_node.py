"""camera_node through pyrealsense2 itself: a recording made with a `software_device` and `rs.recorder` plays
through camera_node's own pipeline code (`playback_file`), so a stream that ends reads as an unplug and the
reopen as a replug. Start failures end the node with exit 2 and the reason."""
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bac_ros.nodes.messages", reason="rclpy / ROS 2 messages not importable")
if importlib.util.find_spec("pyrealsense2") is None:
    pytest.skip("pyrealsense2 not installed", allow_module_level=True)

W, H, FPS = 640, 480, 30


def record(path, frames: int = 45) -> None:
    """A colour recording of `frames` rgb8 frames (each a flat grey of its index), written by librealsense in a
    process of its own (librealsense's threads beside rclpy's in one process crash it at exit)."""
    r = subprocess.run([sys.executable, "-c", f"import test_camera_node as t; t._record({str(path)!r}, {frames})"],
                       cwd=Path(__file__).parent, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                                         os.environ.get("PYTHONPATH", "")])})
    assert r.returncode == 0 and Path(path).is_file(), r.stderr[-2000:]


def _record(path: str, frames: int) -> None:
    import pyrealsense2 as rs

    dev = rs.software_device()
    sensor = dev.add_sensor("Color")
    intr = rs.intrinsics()
    intr.width, intr.height, intr.ppx, intr.ppy, intr.fx, intr.fy = W, H, W / 2, H / 2, 600.0, 600.0
    intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid, vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = (rs.stream.color, 0, 0, W, H, FPS, 3,
                                                                             rs.format.rgb8)
    vs.intrinsics = intr
    profile = sensor.add_video_stream(vs)
    dev.register_info(rs.camera_info.name, "bac test camera")
    dev.register_info(rs.camera_info.serial_number, "000001")
    recorder = rs.recorder(path, dev)
    sensor.open(profile)
    sensor.start(rs.frame_queue())
    for i in range(frames):
        f = rs.software_video_frame()
        f.pixels, f.bpp, f.stride = np.full((H, W, 3), (i * 5) % 256, np.uint8), 3, W * 3
        f.timestamp, f.domain, f.frame_number = i * 1000 / FPS, rs.timestamp_domain.hardware_clock, i
        f.profile = profile.as_video_stream_profile()
        sensor.on_video_frame(f)
        time.sleep(1 / FPS)
    sensor.stop()
    sensor.close()
    del recorder  # the file is complete once the recorder is gone


def _run(*params, timeout=60):
    args = [a for p in params for a in ("-p", p)]
    return subprocess.run([sys.executable, "-m", "bac_ros.nodes.camera_node", "--ros-args", *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "ROS_DOMAIN_ID": "202"})


def test_a_camera_that_cannot_start_exits_2_with_the_reason(tmp_path):
    r = _run()
    if r.returncode == 0:
        pytest.skip("a RealSense camera is attached")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no RealSense camera is attached" in r.stderr and "udev" in r.stderr, r.stderr
    r = _run("serial:='123456'")
    assert r.returncode == 2 and "no RealSense" in r.stderr, r.stderr
    r = _run("serial:=123456")  # an integer on the command line: said, not a traceback
    assert r.returncode == 2 and "quote" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _run(f"playback_file:={tmp_path / 'none.db3'}")
    assert r.returncode == 2 and "no such file" in r.stderr, r.stderr
    path = tmp_path / "cam.db3"
    record(path, frames=5)
    r = _run(f"playback_file:={path}", "width:=320", "height:=240")  # a mode the device does not have
    assert r.returncode == 2 and "would not stream colour 320x240" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_an_unplug_shows_on_diagnostics_and_frames_resume_after_the_replug(tmp_path):
    """The recording ends (an unplug: no frame for frame_timeout_s): /diagnostics says stalled, the node reopens the
    camera (a replug: the recording again) and frames resume; the node never exits."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from support import node_process

    path = tmp_path / "cam.db3"
    record(path)
    with node_process("camera_node", 204, "-p", f"playback_file:={path}", "-p", "frame_timeout_s:=0.5",
                      "-p", "reconnect_period_s:=0.2") as (proc, ctx):
        node = rclpy.create_node("watcher", context=ctx)
        images, states = [], []
        node.create_subscription(Image, "/camera/color/image_raw", lambda m: images.append(time.monotonic()), 50)
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: states.extend(
            {kv.key: kv.value for kv in s.values} for s in m.status if s.name == "bac: camera_node"), 10)
        executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(int(s["reconnects"]) >= 2 for s in states):
            executor.spin_once(timeout_sec=0.1)
            assert proc.poll() is None, proc.stdout.read()
        node.destroy_node()
    assert any(s["state"] == "stalled" or s["state"] == "reconnecting" for s in states) or \
        any(int(s["stalls"]) >= 1 for s in states), states
    last = states[-1]
    assert int(last["stalls"]) >= 2 and int(last["reconnects"]) >= 2, last
    assert len(images) > 45 * 2, len(images)  # the first play and at least one after a replug
    gaps = np.diff(images)
    assert gaps.max() >= 0.4, "no gap in the frames: the stall was not seen"
