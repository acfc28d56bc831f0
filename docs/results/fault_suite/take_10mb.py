"""How long a control executor spends on a chunk it refuses unread (issue 35): the raw take of a 16-point, 1 MB and
10 MB JointTrajectory by a SingleThreadedExecutor, as controller_node subscribes to chunks (raw=True, 5 deep).
Run: ROS_DOMAIN_ID=91 python docs/results/fault_suite/take_10mb.py"""
import time
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from trajectory_msgs.msg import JointTrajectory
from bac_ros.nodes.messages import chunk_to_trajectory
from bac_ros.robot.model import Q_HOME

rclpy.init()
sub_node, pub_node = rclpy.create_node("sub"), rclpy.create_node("pub")
got = []
sub_node.create_subscription(JointTrajectory, "bac/action_chunk", lambda m, info: got.append(len(m)), 5, raw=True)
pub = pub_node.create_publisher(JointTrajectory, "bac/action_chunk", 5)
ex = SingleThreadedExecutor(); ex.add_node(sub_node)
pex = SingleThreadedExecutor(); pex.add_node(pub_node)
for n_points in (16, 10_000, 100_000):
    msg = chunk_to_trajectory(np.tile(np.r_[Q_HOME, 0.08], (n_points, 1)), 0.0, 1 / 30)
    times = []
    for _ in range(5):
        n = len(got)
        pub.publish(msg)
        t_end = time.monotonic() + 5
        while len(got) == n and time.monotonic() < t_end:
            # wait until the message is ready, then time the spin that takes it
            t0 = time.perf_counter(); ex.spin_once(timeout_sec=0.0); dt = time.perf_counter() - t0
            if len(got) > n:
                times.append(dt * 1e3)
            time.sleep(0.0005)
    print(f"{n_points:>7} points, {got[-1] / 1e6:.2f} MB: spin_once that took it {np.median(times):.2f} ms median, {max(times):.2f} max ({len(times)})")
rclpy.shutdown()
