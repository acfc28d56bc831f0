"""camera_node: a RealSense colour stream on /camera/color/image_raw (+ camera_info), for labs without
realsense-ros. Each frame is stamped with its capture time in the RealSense global time domain (the
host clock, corrected for the camera's clock drift), not its arrival: the policy pairs it with the joint
state of that moment.

A camera that cannot start (none attached, another serial, a mode it lacks, busy, no permission) ends the node
with exit 2 and the reason. Once streaming, a camera that stops (unplugged, a stalled USB link) is reported on
/diagnostics (state `stalled`, then `reconnecting` with the reason) and reopened every `reconnect_period_s`
until frames come again; the node never exits for it, and policy_node holds meanwhile (it refuses observations
older than its tolerance). `playback_file` plays a RealSense recording (.bag, .db3) through the same pipeline
instead of a device: its end reads as an unplug, and the reopen as a replug."""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from ..robot.camera import CameraError, describe, open_camera
from .messages import array_to_image, to_time
from .params import Param, declare_params
from .runtime import Reporter, diagnostics, guarded, run_node, steady_timer


PARAMETERS = [
    Param("width", 640, "colour stream width (px)", (8, 4096)),
    Param("height", 480, "colour stream height (px)", (8, 4096)),
    Param("fps", 30, "frames per second", (1, 120)),
    Param("frame_id", "camera_color_optical_frame", "frame_id of the images"),
    Param("serial", "", "the camera's serial number (rs-enumerate-devices); empty: the only one attached"),
    Param("exposure", 0.0, "manual exposure of the colour sensor, in its own units (rs-enumerate-devices -o; D4xx "
          "RGB: 0.1 ms); 0: auto exposure", (0.0, 1e6)),
    Param("white_balance", 0.0, "manual white balance (K); 0: auto", (0.0, 1e5)),
    Param("frame_timeout_s", 1.0, "no frame for this long (s): the stream has stalled; reported, then reopened",
          (0.05, 60.0)),
    Param("reconnect_period_s", 1.0, "how often a stalled or unplugged camera is tried again (s)", (0.1, 60.0)),
    Param("playback_file", "", "a RealSense recording (.bag, .db3) to play instead of a device (tests, replays)"),
]


class CameraNode(Node):
    """See the module docstring. Threads: a frame thread waits for the camera, publishes, and reopens it after a
    stall; the executor serves the parameters and /diagnostics."""

    def __init__(self):
        super().__init__("camera_node")
        self.p = p = declare_params(self, PARAMETERS)
        self.frame_id = p.frame_id
        self.reporter = Reporter(self)
        self.pipeline, profile = self.open()  # CameraError: exit 2
        self.arrival_stamped = 0  # frames whose capture time was not in the global domain
        self.info = camera_info(profile, p.frame_id)
        self.state, self.reason = "streaming", describe(profile)
        self.frames = self.stalls = self.reconnects = 0
        self._last_frame = time.monotonic()
        self.image_pub = self.create_publisher(Image, "camera/color/image_raw", 5)
        self.info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info", 5)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        steady_timer(self, 1.0, self.publish_diagnostics)
        self._running = True
        self._frames = threading.Thread(target=self._frame_loop, daemon=True, name="frames")
        self._frames.start()

    def open(self):
        p = self.p
        return open_camera(p.width, p.height, p.fps, p.serial, p.exposure, p.white_balance, p.playback_file,
                           self.get_logger().warning)

    def capture_time(self, frame) -> float:
        """Capture time (s, epoch): the frame's timestamp when it is in the global time domain; otherwise
        (an old firmware, a recording) the arrival time, counted and warned about once."""
        import pyrealsense2 as rs

        if frame.get_frame_timestamp_domain() == rs.timestamp_domain.global_time:
            return frame.get_timestamp() * 1e-3
        if self.arrival_stamped == 0:
            self.get_logger().warning("frames are not in the RealSense global time domain: stamped on arrival "
                                      "(the observation age includes the USB transfer)")
        self.arrival_stamped += 1
        return time.time()

    def _frame_loop(self) -> None:
        timeout_ms = int(self.p.frame_timeout_s * 1000)
        while self._running and self.context.ok():
            try:
                if self.pipeline is None:
                    self._reopen()
                    continue
                try:
                    frames = self.pipeline.wait_for_frames(timeout_ms)
                except RuntimeError as e:  # no frame within the timeout: unplugged, or the link stalled
                    self._stalled(str(e))
                    continue
                color = frames.get_color_frame()
                if not color:
                    continue
                stamp = self.capture_time(color)
                self.image_pub.publish(array_to_image(np.asanyarray(color.get_data()), stamp, self.frame_id))
                self.info.header.stamp = to_time(stamp)
                self.info_pub.publish(self.info)
                self.frames += 1
                self._last_frame = time.monotonic()
            except Exception as e:  # noqa: BLE001 - Ctrl-C invalidates the context between the check and publish
                if not self.context.ok() or not self._running:
                    return
                self._stalled(f"{type(e).__name__}: {e}")

    def _stalled(self, why: str) -> None:
        self.stalls += 1
        self.state, self.reason = "stalled", f"no frame for {self.p.frame_timeout_s:g} s ({why}); reopening"
        self.reporter.count("camera_stalls", f"camera stalled: {self.reason}", "error")
        pipeline, self.pipeline = self.pipeline, None
        try:
            pipeline.stop()
        except Exception:  # noqa: BLE001 - a camera that went away may refuse even this
            pass

    def _reopen(self) -> None:
        try:
            self.pipeline, profile = self.open()
        except (CameraError, RuntimeError) as e:
            self.state, self.reason = "reconnecting", str(e)
            time.sleep(self.p.reconnect_period_s)
            return
        self.reconnects += 1
        self.state, self.reason = "streaming", f"{describe(profile)} (reopened after {self.stalls} stall(s))"
        self.reporter.warn("camera_reopened", f"camera streaming again: {self.reason}", "info")

    @guarded()
    def publish_diagnostics(self) -> None:
        age = time.monotonic() - self._last_frame
        level = DiagnosticStatus.OK if self.state == "streaming" else DiagnosticStatus.ERROR
        self.diag_pub.publish(diagnostics(self, "bac: camera_node", f"{self.state}: {self.reason}", {
            "state": self.state, "frames": self.frames, "stalls": self.stalls, "reconnects": self.reconnects,
            "last_frame_age_s": round(age, 3), "arrival_stamped": self.arrival_stamped}, level))

    def shutdown(self) -> None:
        self._running = False
        self._frames.join(2.0 + self.p.frame_timeout_s)
        if self.pipeline is not None:
            try:
                self.pipeline.stop()
            except RuntimeError:
                pass


def camera_info(profile, frame_id: str) -> CameraInfo:
    import pyrealsense2 as rs

    intr = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
    info = CameraInfo(width=intr.width, height=intr.height, distortion_model="plumb_bob")
    info.k = [intr.fx, 0.0, intr.ppx, 0.0, intr.fy, intr.ppy, 0.0, 0.0, 1.0]
    info.d = [float(c) for c in intr.coeffs]
    info.p = [intr.fx, 0.0, intr.ppx, 0.0, 0.0, intr.fy, intr.ppy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.frame_id = frame_id
    return info


def main(args=None) -> int:
    return run_node(CameraNode, "camera_node", args=args, startup_errors=(ValueError, CameraError))


if __name__ == "__main__":
    sys.exit(main())
