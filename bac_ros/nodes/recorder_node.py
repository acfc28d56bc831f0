"""recorder_node: episodes as rosbag2 MCAP bags with the graph's topics, and a line per episode in index.jsonl
beside them (`data.bags`). Messages are recorded as they arrive on the wire (raw CDR, stamped with this node's
clock: the simulator's with use_sim_time), each topic with the QoS it is offered with (latched topics replay
latched). Camera frames are stored compressed (`image_format`: jpeg by default, png, or raw) on
`camera/color/image_raw/compressed`, as ROS's compressed image transport names them; a frame captured before
the episode began (delivered late) is left out and counted (`frames_before_start`). Each bag also holds the
arm's shape (`robot.description`): /robot_description and /tf_static at its start, /tf from the joint states at
up to `tf_rate_hz` (the links' transforms, fingers included), so Foxglove or any MCAP viewer shows the arm
replaying.

An episode session, as a person records one (LeRobot's and diffusion_policy's recording scripts work alike):
    idle --start--> recording --stop(success) / time limit--> reset --reset_time_s--> idle (or the next episode
    with `auto_start`); discard while recording deletes the bag being recorded (record that episode again);
    discard while idle or resetting deletes the last episode saved.
Services (the teleop device's buttons and `bac session`'s keys call them):
    bac/record/start    std_srvs/Trigger  open a bag (its name comes back in the message)
    bac/record/stop     std_srvs/SetBool  close it; `data` = whether the episode succeeded (a person says so on
                        a real arm; `bac demo` passes the simulator's verdict)
    bac/record/discard  std_srvs/Trigger  see above
bac/record/state (std_msgs/String, latched, JSON): state, bag, elapsed_s, episode_time_s, reset_left_s, saved.
The index line: label (the `label` parameter, else the source: teleop, or the policy's schedule), source,
schedule, seed and cube (from sim_node when there is one), success, how it ended (stop, time_limit), duration,
interventions (take-overs during the bag), bag, when, and clock_rate: the graph's clock seconds per wall second
(below 1: a simulated world ran slower than a real arm, so the policy had more robot time per inference).

What a crash loses (`data.bags`): a saved episode's index line is synced to disk before the stop is answered. A
recorder killed mid-episode leaves that bag cut after its last chunk; on its next start the node rewrites it as a
complete bag of what was written and indexes it `incomplete` (ended `interrupted`). A write that fails (a full
disk, a file-size limit) ends the episode at once: indexed `incomplete` (ended `write_failed`), an ERROR on
/diagnostics until an episode opens again, the earlier bags untouched; shutdown mid-episode indexes it
`incomplete` (ended `shutdown`). /diagnostics ("bac: recorder_node", 1 Hz): state, bag, episodes saved and
incomplete, the disk's free space, write failures."""
from __future__ import annotations

import datetime as _dt
import importlib
import json
import re
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from ..core.images import IMAGE_FORMATS, encode_compressed
from ..robot.streaming import Source
from ..data.bags import (CAMERA, COMPRESSED, COMPRESSED_TYPE, DESCRIPTION, LATCHED, RECORDED, RECORDING, STRING_TYPE,
                         TF, TF_STATIC, TF_TYPE, BagWriter, append_index, cdr_header_stamp, recover_interrupted,
                         remove_episode, string_cdr, tf_cdr)
from .messages import RecorderState, image_to_array, joint_state_to_vector, record_state_message, to_sec
from .params import Param, declare_params
from .runtime import (LATCHED_QOS, Reporter, diagnostics, guarded, guarded_service, log_at, now_s, run_node,
                      steady_timer)

OUTCOMES = ("failure", "success")


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


PARAMETERS = [
    Param("out_dir", "runs/episodes", "folder of the bags and their index.jsonl"),
    Param("label", "", "who or what drives the recorded episodes (an operator's name, a method; read at each "
          "bac/record/start); empty: the source (teleop) or the policy's schedule", read_only=False),
    Param("topics", tuple(RECORDED), "topics recorded (message types as data.bags.RECORDED)"),
    Param("image_format", "jpeg", "how camera frames are stored: jpeg (compressed, lossy), png (compressed, "
          "lossless) or raw (sensor_msgs/Image)", choices=IMAGE_FORMATS),
    Param("jpeg_quality", 95, "JPEG quality of stored camera frames", (1, 100)),
    Param("episode_time_s", 0.0, "an episode ends by itself after this long (s of the node's clock); 0: only "
          "bac/record/stop ends it", (0.0, 86400.0)),
    Param("reset_time_s", 0.0, "after an episode, this long (s) to reset the scene before the next can start",
          (0.0, 3600.0)),
    Param("time_limit_outcome", "failure", "what an episode that reached its time limit is recorded as",
          choices=OUTCOMES),
    Param("auto_start", False, "start the next episode by itself when the reset time is over"),
    Param("robot_description_file", "", "the FR3's URDF, for /robot_description, /tf_static and /tf in every bag "
          "(a viewer shows the arm replaying); empty: franky-sim's FR3 + hand; none found: bags without them"),
    Param("tf_rate_hz", 30.0, "/tf is written at most this often (Hz of the node's clock) from the joint states, "
          "which come at the control rate", (1.0, 1000.0)),
]


def _clock_rate(graph_s: float, wall_s: float) -> float | None:
    """Seconds of the graph's clock per wall second over an episode (1 on a real arm; below 1 when a simulated
    world waited for late commands); None when too short to tell."""
    return round(graph_s / wall_s, 3) if wall_s > 0.5 else None


class RecorderNode(Node):
    """See the module docstring. Threads: the executor only."""

    def __init__(self):
        super().__init__("recorder_node")
        self.params = p = declare_params(self, PARAMETERS)
        unknown = [t for t in p.topics if t not in RECORDED]
        if unknown:
            raise ValueError(f"parameter topics: no known message type for {unknown} (known: {sorted(RECORDED)})")
        self.out, self.image_format, self.quality = Path(p.out_dir), p.image_format, p.jpeg_quality
        self.episode_time, self.reset_time = p.episode_time_s, p.reset_time_s
        self.time_limit_outcome, self.auto_start = p.time_limit_outcome, p.auto_start
        self.reporter = Reporter(self)
        self.bag: BagWriter | None = None
        self.meta: dict = {}
        self.state, self._reset_until, self._last_saved = RecorderState.IDLE, None, None
        self._latest: dict[str, tuple[int, bytes]] = {}  # latched topics: their last message, for each bag's start
        self.source, self.interventions, self.episode = None, 0, {}
        self._schedule: tuple[str, float] | None = None  # policy_node's schedule and when it said so (wall s)
        self.description = self._description(p.robot_description_file)
        self._tf_period_ns, self._tf_last_ns = int(1e9 / p.tf_rate_hz), None
        self.saved = self.incomplete = 0
        self.write_error: str | None = None  # why the last episode was cut short by a failed write (an ERROR)
        self._recover()
        self._subscribe(p.topics)
        self._create_interfaces()
        self.get_logger().info(f"recording episodes to {self.out} on bac/record/start (camera as {self.image_format})")

    def _recover(self) -> None:
        """Episodes a killed recorder left unsaved: rewritten with what was written, indexed as incomplete."""
        for row in recover_interrupted(self.out):
            self.incomplete += 1
            self.get_logger().warning(
                f"episode {row['bag']} was cut short (the recorder stopped mid-episode): {row['messages']} messages "
                f"kept, indexed as incomplete" + (f" ({row['recovery_error']})" if "recovery_error" in row else ""))

    def _create_interfaces(self) -> None:
        self.state_pub = self.create_publisher(String, "bac/record/state", LATCHED_QOS)
        self.create_service(Trigger, "bac/record/start", self.on_start)
        self.create_service(SetBool, "bac/record/stop", self.on_stop)
        self.create_service(Trigger, "bac/record/discard", self.on_discard)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        steady_timer(self, 0.1, self.tick)
        steady_timer(self, 1.0, self.publish_diagnostics)
        self._publish_state()

    def _subscribe(self, topics) -> None:
        latched = LATCHED_QOS
        for topic in topics:
            if topic == CAMERA and self.image_format != "raw":  # compressed here: the one topic deserialised
                self.create_subscription(Image, topic, self.on_camera, 10)
                continue
            qos = latched if topic in LATCHED else QoSProfile(depth=50, durability=DurabilityPolicy.VOLATILE)
            self.create_subscription(message_class(RECORDED[topic]), topic,
                                     lambda raw, t=topic: self.on_message(t, raw), qos, raw=True)
        self._names = {t: self.resolve_topic_name(t) for t in (*topics, COMPRESSED)}  # absolute names in the bag
        # what the index says, from the messages it understands
        self.create_subscription(String, "bac/source", self.on_source, latched)
        self.create_subscription(String, "bac/episode", self.on_episode, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)

    def _description(self, path: str):
        """The arm's description for the bags' tf (None, said once, when there is none)."""
        from ..robot.description import Description

        try:
            return Description(path or None)
        except (OSError, ValueError, ET.ParseError) as e:
            self.get_logger().warning(f"bags without /tf and /robot_description: {e}")
            return None

    # ---- recording ---------------------------------------------------------------------------------------
    def on_message(self, topic: str, raw: bytes) -> None:
        if topic == CAMERA and self._before_start(cdr_header_stamp(raw)):  # raw frames (image_format raw)
            return
        t_ns = self.get_clock().now().nanoseconds
        if topic in LATCHED:
            self._latest[topic] = (t_ns, raw)
        self._write(topic, RECORDED[topic], t_ns, raw)
        if topic == "joint_states" and self.bag is not None and self.description is not None:
            self._write_tf(raw, t_ns)

    def _write_tf(self, raw: bytes, t_ns: int) -> None:
        """The links' transforms at this joint state, stamped as it is, unless one was written less than a
        `tf_rate_hz` period ago (a state without the arm's joints: none)."""
        if self._tf_last_ns is not None and 0 <= t_ns - self._tf_last_ns < self._tf_period_ns:
            return  # decided before deserialising: the joint states come at the control rate
        try:
            msg = deserialize_message(raw, JointState)
            q = joint_state_to_vector(msg)
        except ValueError:
            return
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        transforms = self.description.transforms(self.description.positions(q[:7], float(q[7])))
        self._write(TF, TF_TYPE, t_ns, tf_cdr(self.bag.store, transforms, stamp))
        self._tf_last_ns = t_ns

    def _before_start(self, stamp: float) -> bool:
        """A camera frame captured before the episode being recorded began, delivered after it (a loaded machine:
        seen 130 ms late): a frame with no command of its episode in effect yet, left out and counted."""
        if self.bag is None or stamp >= self.meta["t_start"]:
            return False
        self.reporter.count("frames_before_start")
        return True

    @guarded()
    def on_camera(self, msg: Image) -> None:
        if self.bag is None or self._before_start(to_sec(msg.header.stamp)):
            return
        t_ns = self.get_clock().now().nanoseconds
        fmt, data = encode_compressed(image_to_array(msg), self.image_format, self.quality)
        out = CompressedImage(header=msg.header, format=fmt)
        out.data = data
        self._write(COMPRESSED, COMPRESSED_TYPE, t_ns, serialize_message(out))

    def _write(self, topic: str, msgtype: str, t_ns: int, cdr: bytes) -> None:
        if self.bag is None:
            return
        try:
            self.bag.write(self._names.get(topic, topic), msgtype, t_ns, cdr, latched=topic in LATCHED)
        except Exception as e:  # noqa: BLE001 - a full disk, a file-size limit: the episode ends here, the node goes on
            self.reporter.count("write_failed")
            self._cut_short("write_failed", f"writing {topic} failed: {e!r}")

    @guarded()
    def on_source(self, msg: String) -> None:
        d = json.loads(msg.data)
        self.source, self.interventions = d["source"], int(d.get("interventions", 0))

    @guarded()
    def on_episode(self, msg: String) -> None:
        self.episode = json.loads(msg.data)

    @guarded()
    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name == "bac: policy_node":
                self._schedule = ({kv.key: kv.value for kv in s.values}.get("method"), time.monotonic())

    # ---- the session ---------------------------------------------------------------------------------------
    @guarded()
    def tick(self) -> None:
        """The time limit and the reset phase, on the node's clock."""
        now = now_s(self)
        recording = self.state == RecorderState.RECORDING
        if recording and self.episode_time > 0 and now - self.meta["t_start"] >= self.episode_time:
            row = self._save(self.time_limit_outcome == "success", "time_limit")
            if not row.get("incomplete"):
                self.get_logger().info(f"episode {row['bag']} reached its time limit ({self.episode_time:.0f} s): "
                                       f"saved as {self.time_limit_outcome}")
        elif self.state == RecorderState.RESET and now >= self._reset_until:
            self.state = RecorderState.IDLE
            if self.auto_start:
                ok, message = self._open()
                if not ok:
                    self.reporter.count("start_failed", message, "error")
            self._publish_state()

    def _open(self) -> tuple[bool, str]:
        if self.state == RecorderState.RECORDING:
            return False, f"recording {self.bag.path.name} already: stop or discard it first"
        if self.state == RecorderState.RESET:
            return False, f"resetting the scene for {self._reset_until - now_s(self):.1f} s more"
        # the policy's schedule, if a policy_node reported in the last few seconds (it reports every second)
        fresh = self._schedule is not None and time.monotonic() - self._schedule[1] < 5.0
        schedule = self._schedule[0] if fresh and self.source == Source.POLICY else None
        label = self.get_parameter("label").value or (Source.TELEOP if self.source == Source.TELEOP else
                                                      (schedule or Source.POLICY))
        stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")
        name = base = re.sub(r"[^A-Za-z0-9_.-]", "", f"{stamp}_{label}_{self.episode.get('episode', 0)}")
        for k in range(2, 1000):  # two episodes started within a second (auto_start without a reset time)
            if not (self.out / name).exists():
                break
            name = f"{base}_{k}"
        try:
            self.bag = BagWriter(self.out / name)
        except Exception as e:  # noqa: BLE001 - the folder exists, no permission, ...
            return False, f"cannot open a bag at {self.out / name}: {e}"
        now_ns = self.get_clock().now().nanoseconds
        for topic, (_, raw) in self._latest.items():  # every bag starts with the latched state
            self.bag.write(self._names[topic], RECORDED[topic], now_ns, raw, latched=True)
        if self.description is not None:  # and the arm's shape
            store = self.bag.store
            self.bag.write(DESCRIPTION, STRING_TYPE, now_ns, string_cdr(store, self.description.xml), latched=True)
            self.bag.write(TF_STATIC, TF_TYPE, now_ns, tf_cdr(store, self.description.static_transforms(), now_ns),
                           latched=True)
        self.meta = {"bag": name, "label": label, "source": self.source, "schedule": schedule,
                     "started": _dt.datetime.now().isoformat(timespec="seconds"), "t_start": now_s(self),
                     "wall_start": time.monotonic(), "interventions_at_start": self.interventions}
        try:  # what the index would say, for an episode a crash cuts short
            (self.out / name / RECORDING).write_text(json.dumps(self._row(False, "interrupted")))
        except OSError as e:
            self.bag.close()
            shutil.rmtree(self.out / name, ignore_errors=True)
            self.bag = None
            return False, f"cannot write to {self.out / name}: {e}"
        self.write_error = None
        self.state = RecorderState.RECORDING
        self._publish_state()
        return True, name

    def _close(self) -> tuple[BagWriter, Exception | None]:
        """End the episode's bag: (the bag, the error closing it raised: a full disk fails the summary too)."""
        bag, self.bag = self.bag, None
        try:
            bag.close()
            error = None
        except Exception as e:  # noqa: BLE001 - OSError mostly; the bag stays readable up to its last chunk
            error = e
        self.state = RecorderState.RESET if self.reset_time > 0 else RecorderState.IDLE
        self._reset_until = now_s(self) + self.reset_time
        return bag, error

    def _row(self, success: bool, ended: str, messages: int = 0) -> dict:
        """The episode's index line."""
        m = self.meta
        ep = self.episode if self.episode.get("episode") is not None else {}
        return {"bag": m["bag"], "label": m["label"], "source": m["source"], "schedule": m["schedule"],
                "seed": ep.get("seed"), "cube": ep.get("cube_start"), "success": bool(success), "ended": ended,
                "duration_s": round(now_s(self) - m["t_start"], 3),
                "interventions": self.interventions - m["interventions_at_start"], "messages": messages,
                "started": m["started"], "clock_rate": _clock_rate(now_s(self) - m["t_start"],
                                                                    time.monotonic() - m["wall_start"])}

    def _save(self, success: bool, ended: str) -> dict:
        bag, error = self._close()
        if error is not None:
            self.reporter.count("write_failed")
            return self._index_cut_short(bag, "write_failed", f"closing the bag failed: {error!r}")
        row = self._row(success, ended, bag.count)
        append_index(self.out, row)  # synced: the episode is saved once this returns
        (bag.path / RECORDING).unlink(missing_ok=True)
        self.saved += 1
        self._last_saved = row["bag"]
        self._publish_state()
        return row

    def _cut_short(self, ended: str, why: str) -> None:
        """End the episode being recorded without its verdict (`ended`: write_failed, shutdown): its bag closed as
        far as it goes, indexed as incomplete; a write failure is an ERROR with `why` until the next start."""
        if self.bag is None:
            return
        bag, error = self._close()
        if error is not None:
            why += f"; closing the bag failed too ({error!r}): readable up to its last chunk"
        self._index_cut_short(bag, ended, why)

    def _index_cut_short(self, bag: BagWriter, ended: str, why: str) -> dict:
        row = {**self._row(False, ended, bag.count), "incomplete": True, "error": why}
        try:
            append_index(self.out, row)
            (bag.path / RECORDING).unlink(missing_ok=True)
        except OSError as e:  # the bag's recording.json stays: the next start indexes it
            why += f"; indexing it failed ({e!r}): the next start of recorder_node indexes it"
        self.incomplete += 1
        if ended == "write_failed":
            self.write_error = why
        log_at(self.get_logger(), "error" if ended == "write_failed" else "warn",
               f"episode {row['bag']} cut short ({ended}): {why}; {bag.count} messages kept, indexed as incomplete")
        self._publish_state()
        return row

    @guarded_service()
    def on_start(self, _req, resp):
        resp.success, resp.message = self._open()
        return resp

    @guarded_service()
    def on_stop(self, req, resp):
        if self.state != RecorderState.RECORDING:
            resp.success = False
            resp.message = f"not recording (the last episode was cut short: {self.write_error})" if self.write_error \
                else "not recording"
            return resp
        row = self._save(bool(req.data), "stop")
        resp.success = not row.get("incomplete")
        resp.message = json.dumps(row) if resp.success else f"the episode was cut short: {row['error']}"
        return resp

    @guarded_service()
    def on_discard(self, _req, resp):
        if self.state == RecorderState.RECORDING:
            name = self._close()[0].path
            shutil.rmtree(name, ignore_errors=True)
            resp.success, resp.message = True, f"discarded {name.name} while recording: record that episode again"
        elif self._last_saved is not None and remove_episode(self.out, self._last_saved):
            resp.success, resp.message = True, f"discarded the last saved episode {self._last_saved}"
            self._last_saved = None
        else:
            resp.success, resp.message = False, "nothing to discard"
        self.get_logger().info(resp.message)
        self._publish_state()
        return resp

    def _publish_state(self) -> None:
        now = now_s(self)
        recording = self.state == RecorderState.RECORDING
        self.state_pub.publish(record_state_message(
            self.state, self.meta.get("bag") if recording else None,
            round(now - self.meta["t_start"], 2) if recording else None, self.episode_time,
            round(max(0.0, self._reset_until - now), 2) if self.state == RecorderState.RESET else None,
            self._last_saved))

    def publish_diagnostics(self) -> None:
        try:
            free_gb = round(shutil.disk_usage(self.out if self.out.is_dir() else self.out.parent).free / 1e9, 2)
        except OSError:
            free_gb = None
        if self.write_error:
            level, message = DiagnosticStatus.ERROR, f"recording stopped: {self.write_error}"
        else:
            level, message = DiagnosticStatus.OK, self.state.value
        self.diag_pub.publish(diagnostics(self, "bac: recorder_node", message, {
            "state": self.state.value, "bag": self.meta.get("bag", "") if self.bag is not None else "",
            "episodes_saved": self.saved, "episodes_incomplete": self.incomplete, "disk_free_gb": free_gb,
            **self.reporter.counts}, level))

    def shutdown(self) -> None:
        if self.bag is not None:  # an episode cut short by the shutdown: kept, indexed as incomplete
            self._cut_short("shutdown", "the recorder was shut down mid-episode")


def main(args=None) -> int:
    return run_node(RecorderNode, "recorder_node", args=args, startup_errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
