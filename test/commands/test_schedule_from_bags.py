"""`bac schedule --reference --closed-loop-bags`: the drift guard's closed-loop reference from recorded episodes of
the policy playing (a lab's own arm), not from simulated ones: a shadow check at the observation of every chunk."""
import json
import subprocess
import sys

import numpy as np
import pytest



def record_policy_episode(folder, name: str, seed: int, chunks: int = 6) -> None:
    """A bag as recorder_node writes one while policy_node plays: camera frames at 30 Hz, joint states beside them,
    a chunk stamped with the frame it was planned from at every third frame (CDR written by rosbags: rclpy's
    serialize_message adds 4 bytes that a DDS sample does not have)."""
    from bac_ros.data.bags import BagWriter, append_index
    from bac_ros.robot.model import JOINT_NAMES, Q_HOME

    rng = np.random.default_rng(seed)
    bag = BagWriter(folder / name)
    T, none = bag.store.types, np.zeros(0)

    def header(t):
        sec, nsec = divmod(int(round(t * 1e9)), 1_000_000_000)
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec, nsec), frame_id="")

    def write(topic, typename, t, msg):
        bag.write(topic, typename, int(round(t * 1e9)), bytes(bag.store.serialize_cdr(msg, typename)))

    for k in range(3 * chunks):
        t = 10.0 + k / 30
        q = np.r_[Q_HOME + 0.02 * np.sin(t + np.arange(7)), 0.08]
        write("/joint_states", "sensor_msgs/msg/JointState", t, T["sensor_msgs/msg/JointState"](
            header=header(t), name=list(JOINT_NAMES), position=q, velocity=np.zeros(8), effort=none))
        rgb = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
        write("/camera/color/image_raw", "sensor_msgs/msg/Image", t, T["sensor_msgs/msg/Image"](
            header=header(t), height=96, width=96, encoding="rgb8", is_bigendian=0, step=96 * 3, data=rgb.reshape(-1)))
        if k % 3 == 0:
            points = [T["trajectory_msgs/msg/JointTrajectoryPoint"](
                positions=q, velocities=none, accelerations=none, effort=none,
                time_from_start=T["builtin_interfaces/msg/Duration"](0, int(i / 30 * 1e9))) for i in range(16)]
            write("/bac/action_chunk", "trajectory_msgs/msg/JointTrajectory", t, T["trajectory_msgs/msg/JointTrajectory"](
                header=header(t), joint_names=list(JOINT_NAMES), points=points))
    bag.close()
    append_index(folder, {"bag": name, "label": "bac_s7", "source": "policy", "schedule": "bac(S=7)", "seed": seed,
                          "success": seed % 2 == 0})


def test_a_guard_reference_from_recorded_policy_episodes(tmp_path):
    import shutil

    from bac_ros.policy.config import PolicyConfig
    from bac_ros.policy.schedule import Schedule, schedule_dir

    folder = tmp_path / "episodes"
    for seed in range(3):
        record_policy_episode(folder, f"ep{seed}", seed)
    cfg = PolicyConfig.load("cpu")
    path = tmp_path / "bac_s7.json"
    shutil.copy(schedule_dir(cfg) / "bac_s7.json", path)
    r = subprocess.run([sys.executable, "-m", "bac_ros.cli", "schedule", "--config", "cpu", "--reference", str(path),
                        "--closed-loop-bags", str(folder)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    cal = Schedule.load(path, cfg).calibration
    loop, seen = cal["shadow_closed_loop"], cal["observation_closed_loop"]
    assert loop["seeds"] == ["ep0", "ep1", "ep2"] and loop["episode_success"] == [True, False, True]
    assert loop["checks"] == 3 * 6 and [len(ep) for ep in loop["episodes"]] == [6, 6, 6]  # one per chunk
    assert loop["inference_period_s"] == pytest.approx(0.1, abs=1e-3)  # the chunks' spacing in the bags
    assert "recorded episodes" in loop["source"] and seen["checks"] == 18 and loop["median"] > 0
    assert "closed-loop shadow deviation median" in r.stdout
    # one recorded episode is not enough to score observations on the others: said, nothing written
    lone = tmp_path / "lone"
    record_policy_episode(lone, "ep0", 0)
    r = subprocess.run([sys.executable, "-m", "bac_ros.cli", "schedule", "--config", "cpu", "--reference", str(path),
                        "--closed-loop-bags", str(lone)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "two or more" in r.stderr
    assert json.loads(path.read_text())["calibration"]["shadow_closed_loop"]["checks"] == 18
