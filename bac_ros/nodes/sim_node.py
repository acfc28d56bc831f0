"""sim_node: the grasp world (franky-sim FR3 + table + cube + camera) as a ROS node. The arm is reached only
through franky at `hostname`, like a real FR3; this node publishes the camera, resets episodes and
reports their outcome. It is the graph's clock: it publishes the simulator's time on /clock, stamps the
camera with it and times episodes in it; the other nodes run with use_sim_time. franky-sim runs below real
time on a loaded machine, and on the wall clock the chunks would play faster, in robot time, than the
demonstrations were recorded."""
from __future__ import annotations

import json
import queue
import sys
import threading
import time

from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from ..robot.model import Q_HOME
from ..sim.world import GraspWorld, WorldConfig, sample_cube_pose
from .messages import array_to_image, to_time
from .params import Param, declare_params
from .runtime import Reporter, guarded, guarded_service, run_node


PARAMETERS = [
    Param("hostname", "127.0.0.1", "loopback address the simulated FR3 listens on (libfranka TCP ports 1337/1338: "
          "parallel worlds need distinct 127.0.0.x)"),
    Param("image_size", 96, "camera image side (px)", (8, 1024)),
    Param("camera_rate_hz", 30.0, "camera frames per second of sim time", (1.0, 240.0)),
    Param("seed_start", 0, "the seed of the next reset; each reset takes the next (settable: a new series of "
          "seeds)", (0, 2 ** 31 - 1), read_only=False),
    Param("episode_time_s", 12.0, "an episode ends after this long (sim s)", (0.5, 1e6)),
    Param("clock_rate_hz", 250.0, "clock messages per wall second", (1.0, 1000.0)),
]


class SimNode(Node):
    """See the module docstring. Threads: the simulator's physics (its server thread, which also renders the
    camera), the camera publisher, the /clock publisher, and the executor."""

    def __init__(self):
        super().__init__("sim_node")
        p = declare_params(self, PARAMETERS)
        hostname, image_size, camera_rate, clock_rate = p.hostname, p.image_size, p.camera_rate_hz, p.clock_rate_hz
        self.next_seed, self.episode_time = p.seed_start, p.episode_time_s
        self.reporter = Reporter(self)
        self.world = GraspWorld(WorldConfig(hostname=hostname, image_size=image_size)).start()
        self.add_on_set_parameters_callback(self._on_params)
        self.seed = None
        self.cube_start: list[float] = []
        self.episode = 0  # counts resets: outcomes of an earlier episode on the same seed are told apart
        self.t_episode = None
        self.image_pub = self.create_publisher(Image, "camera/color/image_raw", 5)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)  # absolute: ROS time is graph-wide
        self._clock_period = 1.0 / clock_rate
        self.outcome_pub = self.create_publisher(String, "bac/episode", 10)
        # Frames are rendered by the physics thread at every camera period of sim time (`trigger_camera`) and
        # published from a thread of their own.
        self._frames: queue.Queue = queue.Queue(maxsize=8)
        self.world.trigger_camera(1.0 / camera_rate, self._on_frame)
        self._running = True
        self._camera = threading.Thread(target=self._camera_loop, daemon=True, name="camera")
        self._camera.start()
        self._clock_thread = threading.Thread(target=self._clock_loop, daemon=True, name="clock")
        self._clock_thread.start()
        self.create_timer(0.1, self.publish_outcome)
        self.create_service(Trigger, "bac/reset", self.on_reset)
        self.create_service(Trigger, "bac/sim/home", self.on_sim_home)
        self.get_logger().info(f"grasp world up; FR3 at {hostname} (libfranka ports 1337/1338)")

    def _clock_loop(self) -> None:
        try:
            while self._running and self.context.ok():
                self.clock_pub.publish(Clock(clock=to_time(self.world.time)))
                time.sleep(self._clock_period)
        except Exception:  # noqa: BLE001 - Ctrl-C invalidates the context between the check and publish
            if self.context.ok():
                raise

    def _on_frame(self, stamp: float, image) -> None:
        """The physics thread's frame (it must not wait): queued; the oldest is dropped if publishing lags."""
        try:
            self._frames.put_nowait((stamp, image))
        except queue.Full:
            self.reporter.count("frames_dropped")

    def _camera_loop(self) -> None:
        """Publishes each rendered frame, stamped with the sim time it shows."""
        try:
            while self._running and self.context.ok():
                try:
                    stamp, image = self._frames.get(timeout=0.1)
                except queue.Empty:
                    continue
                self.image_pub.publish(array_to_image(image, stamp))
        except Exception:  # noqa: BLE001 - Ctrl-C invalidates the context between the check and publish
            if self.context.ok():
                raise

    def _on_params(self, params):
        from rcl_interfaces.msg import SetParametersResult

        for prm in params:
            if prm.name == "seed_start":  # the next reset starts from this seed again
                self.next_seed = int(prm.value)
        return SetParametersResult(successful=True)

    @guarded_service()
    def on_sim_home(self, _req, resp):
        """Put the arm at home in the simulator, at rest with the fingers open: for an arm the controller
        cannot bring home (tangled with the cube or table after a failed episode). Starts no episode."""
        self.world.place_arm(Q_HOME)
        resp.success, resp.message = True, "home"
        return resp

    @guarded_service()
    def on_reset(self, _req, resp):
        self.seed = self.next_seed
        self.next_seed += 1
        self.episode += 1
        pose = sample_cube_pose(self.world.cfg, self.seed)
        # Every episode starts from the same state: the arm exactly at home, at rest, fingers open.
        self.world.place_arm(Q_HOME)
        self.world.place_cube(pose)
        self.cube_start = [round(pose.x, 5), round(pose.y, 5), round(pose.yaw, 5)]  # x, y (m), yaw (rad)
        self.t_episode = self.world.time
        resp.success, resp.message = True, json.dumps({"episode": self.episode, "seed": self.seed,
                                                       "cube": [pose.x, pose.y, pose.yaw]})
        return resp

    @guarded()
    def publish_outcome(self) -> None:
        if self.seed is None:
            return
        elapsed = self.world.time - self.t_episode  # sim seconds
        done = self.world.success or elapsed >= self.episode_time
        self.outcome_pub.publish(String(data=json.dumps({"episode": self.episode, "seed": self.seed,
                                                         "success": self.world.success,
                                                         "elapsed_s": round(elapsed, 3), "done": done,
                                                         "cube": [round(float(v), 4) for v in
                                                                  self.world.cube_position()],
                                                         "cube_yaw": round(self.world.cube_yaw(), 4),
                                                         "cube_start": self.cube_start,
                                                         "fingers_m": round(self.world.finger_width(), 4),
                                                         "link": self.world.link.summary()})))

    def shutdown(self) -> None:
        self._running = False
        self._camera.join(2)
        self._clock_thread.join(2)
        self.world.stop()


def main(args=None) -> int:
    return run_node(SimNode, "sim_node", args=args)

if __name__ == "__main__":
    sys.exit(main())
