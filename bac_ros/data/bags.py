"""Episodes as rosbag2 bags with MCAP storage (written and read with `rosbags`), and the index beside them.

One bag per episode: a folder `<name>/` with `metadata.yaml` and `<name>_0.mcap`, which `ros2 bag info`,
Foxglove and rosbags open. `index.jsonl` beside the bags holds one JSON line per episode (label, source,
schedule, seed, success, duration, interventions, bag). `bac dataset` and `bac compare` read only these,
so a lab's real recordings work the same as simulated ones.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

INDEX = "index.jsonl"

# topic (relative, as the nodes publish them) -> message type: what an episode bag holds
RECORDED = {
    "camera/color/image_raw": "sensor_msgs/msg/Image",
    "joint_states": "sensor_msgs/msg/JointState",
    "bac/action_chunk": "trajectory_msgs/msg/JointTrajectory",
    "bac/teleop_chunk": "trajectory_msgs/msg/JointTrajectory",
    "bac/command": "sensor_msgs/msg/JointState",
    "bac/first_command": "sensor_msgs/msg/TimeReference",
    "bac/source": "std_msgs/msg/String",
    "bac/controller_state": "std_msgs/msg/String",
    "bac/episode": "std_msgs/msg/String",
    "teleop/twist": "geometry_msgs/msg/TwistStamped",
    "teleop/joy": "sensor_msgs/msg/Joy",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
LATCHED = ("bac/source", "bac/controller_state")  # transient local: each bag starts with their latest
CAMERA = "camera/color/image_raw"
COMPRESSED = CAMERA + "/compressed"  # the camera's frames in a bag, as sensor_msgs/CompressedImage (jpeg, png)
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"


def offered_qos(latched: bool) -> list:
    """The QoS a topic is offered with, as a bag stores it (`ros2 bag play` offers it again): latched
    topics are transient local with depth 1, so a player's late subscribers get their last message."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(0, 0)
    return [Qos(QosHistory.KEEP_LAST, 1 if latched else 10, QosReliability.RELIABLE,
                QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE, never, never,
                QosLiveliness.AUTOMATIC, never, False)]


def typestore():
    """rosbags' message definitions of the ROS 2 in use: the sourced install's (ROS_DISTRO), else those of
    the PyPI wheels this package installs (Kilted)."""
    from rosbags.typesys import Stores, get_typestore

    distro = os.environ.get("ROS_DISTRO", "kilted").upper()
    return get_typestore(getattr(Stores, f"ROS2_{distro}", Stores.ROS2_KILTED))


TF, TF_STATIC, DESCRIPTION = "/tf", "/tf_static", "/robot_description"  # the arm's shape, for a viewer
TF_TYPE, STRING_TYPE = "tf2_msgs/msg/TFMessage", "std_msgs/msg/String"


def tf_cdr(store, transforms, t_ns: int) -> bytes:
    """(parent, child, 4x4) transforms stamped `t_ns` as a serialised tf2_msgs/TFMessage (rosbags' own types: no
    ROS message package needed to write them)."""
    from ..robot.description import quaternion

    T = store.types
    sec, nsec = divmod(int(t_ns), 1_000_000_000)
    out = []
    for parent, child, m in transforms:
        x, y, z, w = quaternion(m[:3, :3])
        tf = T["geometry_msgs/msg/Transform"](translation=T["geometry_msgs/msg/Vector3"](*map(float, m[:3, 3])),
                                              rotation=T["geometry_msgs/msg/Quaternion"](x, y, z, w))
        header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec, nsec), frame_id=parent)
        out.append(T["geometry_msgs/msg/TransformStamped"](header=header, child_frame_id=child, transform=tf))
    return bytes(store.serialize_cdr(T[TF_TYPE](transforms=out), TF_TYPE))


def string_cdr(store, text: str) -> bytes:
    return bytes(store.serialize_cdr(store.types[STRING_TYPE](data=text), STRING_TYPE))


class BagWriter:
    """A rosbag2 bag (MCAP storage) taking messages already serialised as CDR, e.g. from an rclpy raw
    subscription: nothing is deserialised on the recording path."""

    def __init__(self, path: str | Path, store=None):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        self.store = store or typestore()
        self._writer = Writer(self.path, version=8, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: dict[str, object] = {}
        self.count = 0

    def write(self, topic: str, msgtype: str, t_ns: int, cdr: bytes, latched: bool = False) -> None:
        """Append one message (`t_ns`: receive time, ns); the topic's first message fixes its type and QoS."""
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self.store, offered_qos_profiles=offered_qos(latched))
        self._writer.write(conn, int(t_ns), bytes(cdr))
        self.count += 1

    def close(self) -> None:
        self._writer.close()


def read_messages(path: str | Path, topics: list[str] | None = None) -> dict[str, list[tuple[int, object]]]:
    """{topic: [(receive time ns, message), ...]} of a bag, in time order, for `topics` (all when None),
    read with rosbags' own reader (message definitions from the bag)."""
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([Path(path)], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, t_ns, raw in reader.messages(connections=conns):
            out.setdefault(conn.topic, []).append((t_ns, reader.deserialize(raw, conn.msgtype)))
    return out


def cdr_header_stamp(raw: bytes) -> float:
    """The header stamp (s) of a serialised message that starts with a std_msgs/Header, read without deserialising
    the rest (a camera frame is 27 kB or more; its stamp is 8 bytes after the CDR encapsulation)."""
    import struct

    sec, nsec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return sec + nsec * 1e-9


def header_stamps(path: str | Path, topic: str) -> list[float]:
    """The header stamps (s) of a topic's messages (`cdr_header_stamp`), read from a bag."""
    from rosbags.highlevel import AnyReader

    with AnyReader([Path(path)], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [cdr_header_stamp(raw) for _, _, raw in reader.messages(connections=conns)]


def append_index(folder: str | Path, row: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / INDEX).open("a") as f:
        f.write(json.dumps(row) + "\n")


def remove_episode(folder: str | Path, bag: str) -> bool:
    """Delete episode `bag` (its folder, its index line); False when the index has no such episode."""
    import shutil

    folder = Path(folder)
    path = folder / INDEX
    lines = path.read_text().splitlines() if path.is_file() else []
    keep = [line for line in lines if not line.strip() or json.loads(line).get("bag") != bag]
    if len(keep) == len(lines):
        return False
    path.write_text("".join(line + "\n" for line in keep))
    shutil.rmtree(folder / bag, ignore_errors=True)
    return True


def read_index(folder: str | Path) -> list[dict]:
    """The episodes recorded in `folder` (its index.jsonl), each with `bag_path` (absolute). ValueError
    naming the line for a line that is not JSON; FileNotFoundError without an index."""
    folder = Path(folder)
    path = folder / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {INDEX} (record episodes with recorder_node or `bac demo`)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not a JSON line ({e})") from None
        row["bag_path"] = str((folder / row["bag"]).resolve())
        rows.append(row)
    return rows
