"""camera_node: a RealSense colour stream on /camera/color/image_raw (+ camera_info), for labs without
realsense-ros. Each frame is stamped with its capture time in the RealSense global time domain (the
host clock, corrected for the camera's clock drift), not its arrival: the policy pairs it with the joint
state of that moment. With no camera attached it exits with a clear message."""
from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from .messages import array_to_image, to_time
from .runtime import declare


class CameraNode(Node):
    def __init__(self, pipeline, profile, frame_id: str):
        super().__init__("camera_node")
        self.pipeline, self.frame_id = pipeline, frame_id
        self.arrival_stamped = 0  # frames whose capture time was not in the global domain
        intr = profile.get_stream(__import__("pyrealsense2").stream.color).as_video_stream_profile().get_intrinsics()
        self.info = CameraInfo(width=intr.width, height=intr.height, distortion_model="plumb_bob")
        self.info.k = [intr.fx, 0.0, intr.ppx, 0.0, intr.fy, intr.ppy, 0.0, 0.0, 1.0]
        self.info.d = [float(c) for c in intr.coeffs]
        self.info.p = [intr.fx, 0.0, intr.ppx, 0.0, 0.0, intr.fy, intr.ppy, 0.0, 0.0, 0.0, 1.0, 0.0]
        self.info.header.frame_id = frame_id
        self.image_pub = self.create_publisher(Image, "camera/color/image_raw", 5)
        self.info_pub = self.create_publisher(CameraInfo, "camera/color/camera_info", 5)

    def capture_time(self, frame) -> float:
        """Capture time (s, epoch): the frame's timestamp when it is in the global time domain; otherwise
        (an old firmware) the arrival time, counted and warned about once."""
        import pyrealsense2 as rs

        if frame.get_frame_timestamp_domain() == rs.timestamp_domain.global_time:
            return frame.get_timestamp() * 1e-3
        if self.arrival_stamped == 0:
            self.get_logger().warn("frames are not in the RealSense global time domain: stamped on arrival "
                                   "(the observation age includes the USB transfer)")
        self.arrival_stamped += 1
        return time.time()

    def spin_frames(self) -> None:
        while rclpy.ok():
            frames = self.pipeline.wait_for_frames(1000)
            color = frames.get_color_frame()
            if not color:
                continue
            stamp = self.capture_time(color)
            self.image_pub.publish(array_to_image(np.asanyarray(color.get_data()), stamp, self.frame_id))
            self.info.header.stamp = to_time(stamp)
            self.info_pub.publish(self.info)
            rclpy.spin_once(self, timeout_sec=0.0)


def main(args=None) -> int:
    rclpy.init(args=args)
    node = rclpy.create_node("camera_node_params")
    width = declare(node, "width", 640, "colour stream width (px)", 8, 4096)
    height = declare(node, "height", 480, "colour stream height (px)", 8, 4096)
    fps = declare(node, "fps", 30, "frames per second", 1, 120)
    frame_id = declare(node, "frame_id", "camera_color_optical_frame", "frame_id of the images")
    node.destroy_node()
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        print(f"camera_node: error: pyrealsense2 is not importable ({e}); "
              "install it (pip install pyrealsense2; Debian needs libusb-1.0-0)", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    if len(rs.context().query_devices()) == 0:
        print("camera_node: error: no RealSense camera is attached", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    pipeline, config = rs.pipeline(), rs.config()
    config.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
    profile = pipeline.start(config)
    sensor = profile.get_device().first_color_sensor()
    if sensor.supports(rs.option.global_time_enabled):  # capture times on the host clock
        sensor.set_option(rs.option.global_time_enabled, 1.0)
    cam = CameraNode(pipeline, profile, frame_id)
    try:
        cam.spin_frames()
    except KeyboardInterrupt:
        pass
    finally:
        pipeline.stop()
        cam.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
