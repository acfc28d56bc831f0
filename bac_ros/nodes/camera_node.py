"""camera_node: a RealSense colour stream on /camera/color/image_raw (+ camera_info), for labs without
realsense-ros. Each frame is stamped with its capture time in the RealSense global time domain (the
host clock, corrected for the camera's clock drift), not its arrival: the policy pairs it with the joint
state of that moment. With no camera attached it exits with a clear message."""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from .messages import array_to_image, to_time
from .params import Param, declare_params
from .runtime import run_node


PARAMETERS = [
    Param("width", 640, "colour stream width (px)", (8, 4096)),
    Param("height", 480, "colour stream height (px)", (8, 4096)),
    Param("fps", 30, "frames per second", (1, 120)),
    Param("frame_id", "camera_color_optical_frame", "frame_id of the images"),
]


class CameraError(RuntimeError):
    """No usable camera: the node exits 2 with this one line."""


class CameraNode(Node):
    """See the module docstring. Threads: a frame thread waits for the camera and publishes; the executor serves
    the parameters."""

    def __init__(self):
        super().__init__("camera_node")
        p = declare_params(self, PARAMETERS)
        self.frame_id = p.frame_id
        self.pipeline, profile = open_camera(p.width, p.height, p.fps)  # CameraError: exit 2
        self.arrival_stamped = 0  # frames whose capture time was not in the global domain
        self.info = camera_info(profile, p.frame_id)
        self.image_pub = self.create_publisher(Image, "camera/color/image_raw", 5)
        self.info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info", 5)
        self._running = True
        self._frames = threading.Thread(target=self._frame_loop, daemon=True, name="frames")
        self._frames.start()

    def capture_time(self, frame) -> float:
        """Capture time (s, epoch): the frame's timestamp when it is in the global time domain; otherwise
        (an old firmware) the arrival time, counted and warned about once."""
        import pyrealsense2 as rs

        if frame.get_frame_timestamp_domain() == rs.timestamp_domain.global_time:
            return frame.get_timestamp() * 1e-3
        if self.arrival_stamped == 0:
            self.get_logger().warning("frames are not in the RealSense global time domain: stamped on arrival "
                                      "(the observation age includes the USB transfer)")
        self.arrival_stamped += 1
        return time.time()

    def _frame_loop(self) -> None:
        try:
            while self._running and self.context.ok():
                frames = self.pipeline.wait_for_frames(1000)
                color = frames.get_color_frame()
                if not color:
                    continue
                stamp = self.capture_time(color)
                self.image_pub.publish(array_to_image(np.asanyarray(color.get_data()), stamp, self.frame_id))
                self.info.header.stamp = to_time(stamp)
                self.info_pub.publish(self.info)
        except Exception:  # noqa: BLE001 - Ctrl-C invalidates the context between the check and publish
            if self.context.ok():
                raise

    def shutdown(self) -> None:
        self._running = False
        self._frames.join(2.0)
        self.pipeline.stop()


def open_camera(width: int, height: int, fps: int):
    """A RealSense colour stream (rgb8) with capture times on the host clock; CameraError saying what is missing."""
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        raise CameraError(f"pyrealsense2 is not importable ({e}); install it (pip install pyrealsense2; Debian needs "
                          "libusb-1.0-0)") from None
    if len(rs.context().query_devices()) == 0:
        raise CameraError("no RealSense camera is attached")
    pipeline, config = rs.pipeline(), rs.config()
    config.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
    profile = pipeline.start(config)
    sensor = profile.get_device().first_color_sensor()
    if sensor.supports(rs.option.global_time_enabled):  # capture times on the host clock
        sensor.set_option(rs.option.global_time_enabled, 1.0)
    return pipeline, profile


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
