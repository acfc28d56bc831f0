"""recorder_node as a process, driven from `bac session` in a terminal (a pty): episodes started, ended as
success or failure, discarded while recording and after saving, ended by the time limit; the bag keeps the
camera compressed and the latched topics' QoS."""
import json
import os
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

msgs = pytest.importorskip("bac_ros.nodes.messages", reason="rclpy / ROS 2 messages not importable")


class Terminal:
    """`bac session` on a pseudo-terminal: keys in, screen out."""

    def __init__(self, env):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "bac_ros.cli", "session", "--timeout", "20"],
                                     stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.screen = ""

    def read(self, seconds: float) -> str:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.screen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    break
        return self.screen

    def key(self, k: str, expect: str, timeout: float = 30.0) -> None:
        mark = len(self.screen)
        os.write(self.master, k.encode())
        end = time.monotonic() + timeout
        while expect not in self.screen[mark:] and time.monotonic() < end:
            self.read(0.1)
        assert expect in self.screen[mark:], self.screen[mark:]


@pytest.mark.slow
def test_a_recording_session_from_the_keyboard(tmp_path):
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from bac_ros.data.bags import read_index, read_messages
    from bac_ros.robot.model import Q_HOME

    env = {**os.environ, "ROS_DOMAIN_ID": "217", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "episodes"
    rec = subprocess.Popen([sys.executable, "-m", "bac_ros.nodes.recorder_node", "--ros-args", "-p", f"out_dir:={out}",
                            "-p", "episode_time_s:=2.0", "-p", "reset_time_s:=0.5", "-p", "label:=alice", "-p", "tf_rate_hz:=10.0"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=217)
    term = None
    try:
        node = rclpy.create_node("camera_and_arm", context=ctx)
        img_pub = node.create_publisher(Image, "camera/color/image_raw", 10)
        js_pub = node.create_publisher(JointState, "joint_states", 10)
        src_pub = node.create_publisher(String, "bac/source", QoSProfile(depth=1,
                                                                         durability=DurabilityPolicy.TRANSIENT_LOCAL))
        src_pub.publish(String(data=json.dumps({"source": "teleop", "since": 0.0, "interventions": 0})))
        rgb = (np.arange(96 * 96 * 3).reshape(96, 96, 3) % 200).astype(np.uint8)
        timer = node.create_timer(1 / 30, lambda: (img_pub.publish(msgs.array_to_image(rgb, time.time())),
                                                   js_pub.publish(msgs.vector_to_joint_state(Q_HOME, np.zeros(7), 0.08,
                                                                                             time.time()))))
        from bac_ros.nodes.runtime import spin_in_background

        stop_spin = spin_in_background(node, "feeder")
        term = Terminal(env)
        deadline = time.monotonic() + 60
        while "recorder: idle" not in term.screen and time.monotonic() < deadline:
            term.read(0.2)
        assert "keys:" in term.screen and "recorder: idle" in term.screen, term.screen
        term.key("\n", "ok:", 60)  # start
        img_pub.publish(msgs.array_to_image(rgb, time.time() - 60.0))  # captured long before: left out
        time.sleep(0.6)
        term.key("s", "ok:")  # success
        rows = read_index(out)
        assert len(rows) == 1 and rows[0]["success"] and rows[0]["label"] == "alice" and rows[0]["ended"] == "stop"
        time.sleep(0.7)  # the reset phase
        term.key("\n", "ok:")  # start ...
        time.sleep(0.3)
        term.key("d", "discarded")  # ... discard while recording: nothing saved
        assert len(read_index(out)) == 1 and len([p for p in out.iterdir() if p.is_dir()]) == 1
        time.sleep(0.7)
        term.key(" ", "ok:")  # start, then let the 2 s time limit end it: saved as a failure
        time.sleep(3.5)
        rows = read_index(out)
        assert len(rows) == 2 and not rows[1]["success"] and rows[1]["ended"] == "time_limit"
        time.sleep(0.5)
        term.key("d", "discarded the last saved")  # between episodes: the last one saved goes
        assert len(read_index(out)) == 1 and not (out / rows[1]["bag"]).exists()
        term.key("q", "")
        term.proc.wait(20)
        assert term.proc.returncode == 0
        timer.cancel()
        stop_spin()
    finally:
        rclpy.try_shutdown(context=ctx)
        if term is not None and term.proc.poll() is None:
            os.killpg(term.proc.pid, 9)
        os.killpg(rec.pid, 2)
        rec.wait(15)
    bag = read_index(out)[0]["bag_path"]
    got = read_messages(bag)
    frames = got["/camera/color/image_raw/compressed"]
    assert len(frames) >= 5 and "/camera/color/image_raw" not in got
    started = min(msgs.to_sec(m.header.stamp) for _, m in got["/joint_states"])
    assert all(msgs.to_sec(m.header.stamp) > started - 1.0 for _, m in frames)  # none from before the start
    from bac_ros.core.images import decode_compressed

    back = decode_compressed(frames[0][1].format, frames[0][1].data)
    assert frames[0][1].format.startswith("rgb8; jpeg") and np.abs(back.astype(int) - rgb).mean() < 3.0
    meta = (out / read_index(out)[0]["bag"] / "metadata.yaml").read_text()
    assert "durability: 1" in meta or "transient_local" in meta.lower()  # bac/source replays latched
    assert_the_arm_replays(got, tf_rate_hz=10.0)


def assert_the_arm_replays(got: dict, tf_rate_hz: float) -> None:
    """The bag holds the arm's description and its transforms: parsed with a maintained URDF library (yourdfpy),
    every link reaches fr3_link0 through /tf_static and each /tf message, and the TCP there is where the URDF puts
    it for the recorded joint state; /tf no more often than `tf_rate_hz` (the joint states came 3x as often)."""
    import io

    from scipy.spatial.transform import Rotation

    yourdfpy = pytest.importorskip("yourdfpy")

    (_, desc), = got["/robot_description"]
    urdf = yourdfpy.URDF.load(io.StringIO(desc.data), load_meshes=False, build_collision_scene_graph=False,
                              load_collision_meshes=False)
    (_, static), = got["/tf_static"]
    edges = {t.child_frame_id: t for t in static.transforms}
    joints = {(m.header.stamp.sec, m.header.stamp.nanosec): m for _, m in got["/joint_states"]}
    tfs = [m for _, m in got["/tf"]]
    assert 3 <= len(tfs) < 0.5 * len(joints)
    assert np.min(np.diff([t for t, _ in got["/tf"]])) >= 1e9 / tf_rate_hz  # bag time, ns

    def matrix(t):
        m = np.eye(4)
        r = t.transform.rotation
        m[:3, :3] = Rotation.from_quat([r.x, r.y, r.z, r.w]).as_matrix()
        m[:3, 3] = t.transform.translation.x, t.transform.translation.y, t.transform.translation.z
        return m

    for tf in tfs:
        tree = {**edges, **{t.child_frame_id: t for t in tf.transforms}}
        stamps = {(t.header.stamp.sec, t.header.stamp.nanosec) for t in tf.transforms}
        assert len(stamps) == 1 and stamps <= joints.keys()  # stamped as the joint state it shows
        js = joints[stamps.pop()]

        def pose(link):
            if link == "fr3_link0":
                return np.eye(4)
            t = tree[link]  # KeyError: a link that does not reach fr3_link0
            return pose(t.header.frame_id) @ matrix(t)

        for link in urdf.link_map:
            if link != "base":  # fr3_link0's parent, above it
                pose(link)
        cfg = dict(zip(js.name, js.position))
        urdf.update_cfg({**{n: cfg[n] for n in urdf.actuated_joint_names if n in cfg},
                         "fr3_finger_joint1": cfg["fr3_gripper_width"] / 2})
        np.testing.assert_allclose(pose("fr3_hand_tcp"), urdf.get_transform("fr3_hand_tcp", "fr3_link0"), atol=1e-6)


@pytest.mark.parametrize("image_format", ["raw", "jpeg"])
def test_a_frame_captured_before_the_episode_began_is_left_out(tmp_path, image_format):
    """A frame delivered after the bag opened but captured before (a loaded machine) has no command of its episode
    in effect: left out and counted, whether frames are stored raw (taken from the wire) or compressed."""
    import rclpy
    from rclpy.serialization import serialize_message

    from bac_ros.data.bags import read_messages
    from bac_ros.nodes.recorder_node import CAMERA, RecorderNode

    rgb = (np.arange(8 * 8 * 3).reshape(8, 8, 3) % 200).astype(np.uint8)
    rclpy.init(domain_id=223, args=["--ros-args", "-p", f"out_dir:={tmp_path}", "-p", f"image_format:={image_format}"])
    node = RecorderNode()
    try:
        ok, name = node._open()
        assert ok, name
        start = node.meta["t_start"]
        for stamp in (start - 0.13, start + 0.01):
            frame = msgs.array_to_image(rgb, stamp)
            if image_format == "raw":
                node.on_message(CAMERA, serialize_message(frame))
            else:
                node.on_camera(frame)
        node._save(True, "stop")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    got = read_messages(tmp_path / name)
    frames = got["/camera/color/image_raw" if image_format == "raw" else "/camera/color/image_raw/compressed"]
    assert [round(msgs.to_sec(m.header.stamp) - start, 3) for _, m in frames] == [0.01]
    assert node.reporter.counts["frames_before_start"] == 1


class Feeder:
    """A camera and an arm at 30 Hz (raw 160x120 frames: a bag grows by about 1.7 MB/s, a chunk every 0.6 s), the
    recorder's services and its /diagnostics, in a context of its own."""

    def __init__(self, domain: int):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String
        from std_srvs.srv import SetBool, Trigger

        from bac_ros.nodes.runtime import LATCHED_QOS, spin_in_background
        from bac_ros.robot.model import Q_HOME

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = n = rclpy.create_node("camera_and_arm", context=self.ctx)
        img_pub, js_pub = n.create_publisher(Image, "camera/color/image_raw", 10), n.create_publisher(
            JointState, "joint_states", 10)
        n.create_publisher(String, "bac/source", LATCHED_QOS).publish(
            String(data=json.dumps({"source": "teleop", "since": 0.0, "interventions": 0})))
        rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        n.create_timer(1 / 30, lambda: (img_pub.publish(msgs.array_to_image(rgb, time.time())),
                                        js_pub.publish(msgs.vector_to_joint_state(Q_HOME, np.zeros(7), 0.08, time.time()))))
        self.recorder_status = []
        n.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self.recorder_status.extend(
            s for s in m.status if s.name == "bac: recorder_node"), 10)
        self._start, self._stop = n.create_client(Trigger, "bac/record/start"), n.create_client(SetBool, "bac/record/stop")
        self._trigger, self._setbool = Trigger, SetBool
        self.stop_spin = spin_in_background(n, "feeder")

    def start(self) -> str:
        from bac_ros.nodes.runtime import call_service

        r = call_service(self._start, self._trigger.Request(), 60)
        assert r.success, r.message
        return r.message

    def stop(self, success: bool):
        from bac_ros.nodes.runtime import call_service

        return call_service(self._stop, self._setbool.Request(data=success), 30)

    def episode(self, seconds: float, success: bool = True) -> str:
        """One episode recorded for `seconds` and saved: its bag's name."""
        name = self.start()
        time.sleep(seconds)
        answer = self.stop(success)
        assert answer.success, answer.message
        return name

    def close(self) -> None:
        import rclpy

        self.stop_spin()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def _recorder(out, domain: int, file_size_limit: int | None = None) -> subprocess.Popen:
    import resource

    def limit():
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "bac_ros.nodes.recorder_node", "--ros-args", "-p", f"out_dir:={out}",
                             "-p", "image_format:=raw", "-p", "label:=alice"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True, preexec_fn=limit)


def _end(proc: subprocess.Popen, sig=signal.SIGINT) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    out, _ = proc.communicate(timeout=20)
    return out


@pytest.mark.slow
def test_a_recorder_killed_mid_episode_loses_only_its_last_chunk(tmp_path):
    """Issue 38: SIGKILL mid-episode. The episode saved before it is intact and indexed; the cut bag is readable by an
    independent MCAP reader (`mcap`'s stream reader: no summary, no metadata.yaml) up to its last chunk; the next
    start of the recorder rewrites it as a complete bag of what was written and indexes it as incomplete, with the
    fields known when it began; `bac dataset`'s filter then leaves it out. A shutdown (SIGINT) mid-episode closes
    the bag and indexes it incomplete too."""
    from bac_ros.data.bags import complete_rows, read_index, read_messages, read_partial

    out = tmp_path / "episodes"
    feeder, rec = Feeder(227), _recorder(out, 227)
    try:
        first = feeder.episode(1.0)
        cut = feeder.start()
        time.sleep(2.5)
        os.killpg(rec.pid, signal.SIGKILL)
        rec.wait(10)
        rows = read_index(out)
        assert [r["bag"] for r in rows] == [first] and rows[0]["success"]
        assert sum(len(v) for v in read_messages(rows[0]["bag_path"]).values()) == rows[0]["messages"]
        assert not (out / cut / "metadata.yaml").exists()  # cut: no summary, no metadata
        partial = [m for f in (out / cut).glob("*.mcap") for m in read_partial(f)]
        frames = [m for m in partial if m[0] == "/camera/color/image_raw"]
        assert len(frames) >= 15, len(frames)  # 2.5 s at 30 Hz, less the last chunk (~0.6 s) that was in memory
        feeder.recorder_status.clear()
        rec = _recorder(out, 227)
        deadline = time.monotonic() + 60
        while not feeder.recorder_status and time.monotonic() < deadline:
            time.sleep(0.2)  # the new recorder is up (the killed one's services linger in discovery a while)
        assert len(read_index(out)) == 2  # it indexed the cut episode before it started serving
        feeder.episode(0.5, success=False)  # the restarted recorder records again
        feeder.start()
        time.sleep(0.5)  # and is shut down (SIGINT) mid-episode
    finally:
        log = _end(rec)
        feeder.close()
    rows = read_index(out)
    assert len(rows) == 4 and rows[3]["incomplete"] and rows[3]["ended"] == "shutdown", (rows, log)
    assert sum(len(v) for v in read_messages(rows[3]["bag_path"]).values()) == rows[3]["messages"] > 0
    r = rows[1]
    assert r["bag"] == cut and r["incomplete"] and r["ended"] == "interrupted" and r["label"] == "alice", r
    got = read_messages(r["bag_path"])  # rosbags opens the rewritten bag
    assert r["messages"] == len(partial) == sum(len(v) for v in got.values())
    assert "cut short" in log and "indexed as incomplete" in log, log
    assert [x["bag"] for x in complete_rows(rows, "test")] == [first, rows[2]["bag"]]  # what bac dataset takes


@pytest.mark.slow
def test_a_full_disk_ends_the_episode_with_an_error_and_keeps_the_earlier_bags(tmp_path):
    """Issue 38: a write that fails (a file-size limit of 3 MB on the recorder stands in for a full disk) ends the
    episode: an ERROR on /diagnostics with the reason, the episode indexed as incomplete (write_failed), the earlier
    bag intact, and the recorder alive: the next episode records."""
    from diagnostic_msgs.msg import DiagnosticStatus

    from bac_ros.data.bags import read_index, read_messages

    out = tmp_path / "episodes"
    feeder, rec = Feeder(229), _recorder(out, 229, file_size_limit=3_000_000)
    try:
        first = feeder.episode(0.5)
        full = feeder.start()
        deadline = time.monotonic() + 30
        while not any(s.level == DiagnosticStatus.ERROR for s in feeder.recorder_status) and time.monotonic() < deadline:
            time.sleep(0.2)  # about 1.7 MB/s: the 3 MB limit comes within 2 s
        errors = [s for s in feeder.recorder_status if s.level == DiagnosticStatus.ERROR]
        assert errors and "recording stopped" in errors[0].message, [s.message for s in feeder.recorder_status]
        answer = feeder.stop(True)
        assert not answer.success and "cut short" in answer.message, answer.message
        assert rec.poll() is None
        third = feeder.episode(0.3)
    finally:
        log = _end(rec)
        feeder.close()
    rows = read_index(out)
    assert [r["bag"] for r in rows] == [first, full, third], (rows, log)
    assert rows[1]["incomplete"] and rows[1]["ended"] == "write_failed" and "File too large" in rows[1]["error"]
    assert not rows[0].get("incomplete") and not rows[2].get("incomplete")
    for r in (rows[0], rows[2]):
        assert sum(len(v) for v in read_messages(r["bag_path"]).values()) == r["messages"] > 10
    assert "cut short (write_failed)" in log, log
