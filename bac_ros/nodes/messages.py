"""Conversions between ROS 2 messages and the arrays the policy and the arm use."""
from __future__ import annotations

import json
from enum import StrEnum

import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..core.images import decode_rgb
from ..robot.streaming import Chunk, Source
from ..robot.model import JOINT_NAMES


def to_sec(t: Time) -> float:
    return t.sec + t.nanosec * 1e-9


def _split_ns(seconds: float) -> tuple[int, int]:
    # rounded as a whole: rounding the fraction alone turned 8.9999999996 s into 8 s (a stamp 1 s back)
    ns = int(round(seconds * 1e9))
    return ns // 1_000_000_000, ns % 1_000_000_000


def to_time(seconds: float) -> Time:
    sec, nanosec = _split_ns(seconds)
    return Time(sec=sec, nanosec=nanosec)


def to_duration(seconds: float) -> Duration:
    sec, nanosec = _split_ns(seconds)
    return Duration(sec=sec, nanosec=nanosec)


def image_to_array(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB (`core.images.decode_rgb`: ValueError for what it cannot use)."""
    return decode_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def array_to_image(rgb: np.ndarray, stamp: float, frame_id: str = "camera_color_optical_frame") -> Image:
    h, w, _ = rgb.shape
    msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3)
    msg.header.stamp = to_time(stamp)
    msg.header.frame_id = frame_id
    msg.data = np.ascontiguousarray(rgb, np.uint8).tobytes()
    return msg


def joint_state_to_vector(msg: JointState) -> np.ndarray:
    """(8,) q1..q7 + gripper width, by name. ValueError when a joint is missing or a value not finite."""
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in JOINT_NAMES if n not in index]
    if missing or len(msg.position) != len(msg.name):
        raise ValueError(f"joint state lacks {missing or 'positions (one per name)'}")
    q = np.array([msg.position[index[n]] for n in JOINT_NAMES], dtype=np.float32)
    if not np.all(np.isfinite(q)):
        raise ValueError("joint state has non-finite positions")
    return q


def vector_to_joint_state(q: np.ndarray, dq: np.ndarray | None, width: float, stamp: float,
                          fingers: bool = False) -> JointState:
    """q1..q7 and the gripper width (+ with `fingers`, the hand's two finger joints at half the width each, last:
    what a robot_state_publisher needs for the hand's links) -> JointState."""
    from ..robot.description import FINGER_JOINTS

    extra = list(FINGER_JOINTS) if fingers else []
    msg = JointState(name=list(JOINT_NAMES) + extra)
    msg.header.stamp = to_time(stamp)
    msg.position = [float(x) for x in q] + [float(width)] + [float(width) / 2] * len(extra)
    if dq is not None:
        msg.velocity = [float(x) for x in dq] + [0.0] * (1 + len(extra))
    return msg


def chunk_to_trajectory(actions: np.ndarray, stamp: float, dt: float, origin: float | None = None) -> JointTrajectory:
    """(n, 8) actions, point i due at stamp + i*dt -> JointTrajectory: header.stamp = `origin` (the newest
    observation used, a teleoperator's input; default `stamp`), point i at time_from_start stamp - origin + i*dt."""
    origin = stamp if origin is None else origin
    msg = JointTrajectory(joint_names=list(JOINT_NAMES))
    msg.header.stamp = to_time(origin)
    for i, a in enumerate(np.asarray(actions, float)):
        msg.points.append(JointTrajectoryPoint(positions=[float(x) for x in a],
                                               time_from_start=to_duration(stamp - origin + i * dt)))
    return msg


def trajectory_to_chunk(msg: JointTrajectory) -> Chunk:
    """-> Chunk: its first point due at header.stamp + the first time_from_start, actions (n, 8) in
    JOINT_NAMES order, dt, origin = header.stamp. ValueError on a malformed chunk: names other than exactly
    JOINT_NAMES (any order), a point without one finite position per name, fewer than 2 points, uneven
    spacing. The executor's rules (dt range, point count, stamps) are checked by `ChunkExecutor.offer`."""
    names = list(msg.joint_names)
    if sorted(names) != sorted(JOINT_NAMES):
        unknown = sorted(set(names) - set(JOINT_NAMES))
        raise ValueError(f"chunk joints {names} are not {JOINT_NAMES}" + (f" (unknown: {unknown})" if unknown else ""))
    if len(msg.points) < 2:
        raise ValueError(f"chunk has {len(msg.points)} point(s); at least 2 are needed")
    if any(len(p.positions) != len(names) for p in msg.points):
        raise ValueError(f"every chunk point needs {len(names)} positions, one per joint name")
    cols = [names.index(n) for n in JOINT_NAMES]
    actions = np.array([[p.positions[c] for c in cols] for p in msg.points], dtype=float)
    if not np.all(np.isfinite(actions)):
        raise ValueError("chunk contains non-finite positions")
    times = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])
    dt = float(times[1] - times[0])
    if not np.allclose(np.diff(times), dt, atol=1e-6):
        raise ValueError("chunk points must be evenly spaced in time")
    origin = to_sec(msg.header.stamp)
    return Chunk(origin + float(times[0]), actions, dt, origin)


class ControllerState(StrEnum):
    """controller_node's state (its module docstring says what each means)."""
    CONNECTING = "connecting"
    READY = "ready"
    RUNNING = "running"
    FAULTED = "faulted"

    @property
    def usable(self) -> bool:
        """Connected and without a fault: it takes /bac/start, /bac/home and chunks."""
        return self in (ControllerState.READY, ControllerState.RUNNING)


def controller_state_message(state: ControllerState, reason: str) -> String:
    """bac/controller_state (std_msgs/String, latched): "<state>: <reason>"."""
    return String(data=f"{state}: {reason}")


def controller_state_of(msg) -> ControllerState:
    """The state in a bac/controller_state message (`controller_state_message`)."""
    return ControllerState(msg.data.split(":", 1)[0].strip())


def source_message(source: Source, since: float, interventions: list[float]) -> String:
    """bac/source (std_msgs/String, latched JSON): who plays, since when (node clock, s), how many take-overs
    interrupted a running policy and the stamps of the last 20."""
    return String(data=json.dumps({"source": str(source), "since": round(since, 4), "interventions": len(interventions),
                                   "intervention_stamps": [round(t, 4) for t in interventions[-20:]]}))


def source_of(msg) -> Source:
    """The source in a bac/source message (`source_message`)."""
    return Source(json.loads(msg.data)["source"])


def teleop_plays(msg) -> bool:
    """bac/source: whether the teleoperator is the source that plays."""
    return source_of(msg) == Source.TELEOP


class RecorderState(StrEnum):
    """recorder_node's state (its module docstring has the session's transitions)."""
    IDLE = "idle"
    RECORDING = "recording"
    RESET = "reset"


def record_state_message(state: RecorderState, bag: str | None, elapsed_s: float | None, episode_time_s: float,
                         reset_left_s: float | None, last_saved: str | None) -> String:
    """bac/record/state (std_msgs/String, latched JSON): the state, the bag being recorded and for how long (s of
    the node's clock), the episode's time limit (0: none), the reset time left, the last bag saved."""
    return String(data=json.dumps({"state": str(state), "bag": bag, "elapsed_s": elapsed_s,
                                   "episode_time_s": episode_time_s, "reset_left_s": reset_left_s,
                                   "last_saved": last_saved}))


def record_state_text(data: str | None) -> str:
    """A bac/record/state message's data (`record_state_message`) as a person reads it."""
    if data is None:
        return "not heard from yet"
    s = json.loads(data)
    state = RecorderState(s["state"])
    if state == RecorderState.RECORDING:
        limit = f" of {s['episode_time_s']:.0f}" if s.get("episode_time_s") else ""
        return f"recording {s['bag']} ({s['elapsed_s']:.0f}{limit} s)"
    if state == RecorderState.RESET:
        return f"resetting the scene ({s['reset_left_s']:.0f} s left)"
    return "idle" + (f"; last saved {s['last_saved']}" if s.get("last_saved") else "")


def commanded_closed(msg: JointState) -> bool | None:
    """bac/command: whether the gripper decision it carries is closed (None: no gripper value)."""
    from ..robot.model import GRIPPER_MAX_WIDTH

    return float(msg.position[7]) < GRIPPER_MAX_WIDTH / 2 if len(msg.position) > 7 else None
