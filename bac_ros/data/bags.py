"""Episodes as rosbag2 bags with MCAP storage (written and read with `rosbags`), and the index beside them.

One bag per episode: a folder `<name>/` with `metadata.yaml` and `<name>_0.mcap`, which `ros2 bag info`,
Foxglove and rosbags open. `index.jsonl` beside the bags holds one JSON line per episode (label, source,
schedule, seed, success, duration, interventions, bag). `bac dataset` and `bac compare` read only these,
so a lab's real recordings work the same as simulated ones.

What survives a crash: a line is in the index only once its bag is closed, and each line is written whole and
synced to disk before the recorder says the episode is saved. A bag being recorded holds `recording.json` (the
index fields known at its start); a recorder killed mid-episode leaves its bag without metadata.yaml, its MCAP
file cut after the last chunk written (rosbags writes a chunk per MiB), which an MCAP stream reader reads up to
there. `recover_interrupted` (run by recorder_node when it starts) rewrites such a bag as a complete one with
what could be read and indexes it as `incomplete`; `bac dataset` and `bac compare` leave incomplete episodes
out and say so.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

INDEX = "index.jsonl"
RECORDING = "recording.json"  # in a bag's folder while it is recorded: the index fields known at its start

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
    """Append one line to the index, written whole and synced to disk before this returns."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(row) + "\n").encode()
    fd = os.open(folder / INDEX, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.write(fd, line) != len(line):
            raise OSError(f"{folder / INDEX}: short write (disk full?)")
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_text(path: Path, text: str) -> None:
    """Write a file whole or not at all: a temporary file synced, then renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_episode(folder: str | Path, bag: str) -> bool:
    """Delete episode `bag` (its folder, its index line); False when the index has no such episode."""
    import shutil

    folder = Path(folder)
    path = folder / INDEX
    lines = path.read_text().splitlines() if path.is_file() else []
    keep = [line for line in lines if not line.strip() or json.loads(line).get("bag") != bag]
    if len(keep) == len(lines):
        return False
    _replace_text(path, "".join(line + "\n" for line in keep))
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


def is_incomplete(row: dict) -> bool:
    """An episode whose recording was cut short (recorder killed, disk full, shutdown mid-episode)."""
    return bool(row.get("incomplete"))


def complete_rows(rows: list[dict], what: str, include_incomplete: bool = False) -> list[dict]:
    """`rows` without the incomplete episodes (unless `include_incomplete`), saying on stderr how many were left
    out of `what`."""
    import sys

    cut = [r for r in rows if is_incomplete(r)]
    if include_incomplete or not cut:
        return rows
    print(f"{what}: left out {len(cut)} incomplete episode(s) (recording cut short: "
          f"{', '.join(sorted({str(r.get('ended')) for r in cut}))})", file=sys.stderr)
    return [r for r in rows if not is_incomplete(r)]


def read_partial(mcap_path: str | Path):
    """The messages of an MCAP file up to its last complete record, with `mcap`'s stream reader (no summary
    or index needed): yields (topic, msgtype, offered QoS metadata, log time ns, CDR bytes)."""
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas, channels = {}, {}
    with open(mcap_path, "rb") as f:
        try:
            for record in StreamReader(f, skip_magic=False).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record.name
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message) and record.channel_id in channels:
                    ch = channels[record.channel_id]
                    yield (ch.topic, schemas.get(ch.schema_id, ""), ch.metadata.get("offered_qos_profiles", ""),
                           record.log_time, record.data)
        except (McapError, EOFError, ValueError, OSError):
            return  # the file ends inside a record: what came before it is all there is


def unindexed_bags(folder: str | Path) -> list[Path]:
    """Bag folders beside the index that it does not list: episodes whose recorder stopped before saving them."""
    folder = Path(folder)
    listed = {r["bag"] for r in read_index(folder)} if (folder / INDEX).is_file() else set()
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in listed
                  and any(p.glob("*.mcap"))) if folder.is_dir() else []


def recover_bag(path: str | Path) -> int:
    """Make the bag at `path` complete (metadata.yaml, an MCAP with its summary) from what its MCAP file holds up
    to where it was cut, rewritten beside it and moved into place; returns the messages kept. A bag that is
    complete already is left as it is."""
    import shutil

    path = Path(path)
    if (path / "metadata.yaml").is_file():
        return _message_count(path)
    staging = path.parent / ".recovering"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    writer = BagWriter(staging / path.name)
    try:
        for source in sorted(path.glob("*.mcap")):
            for topic, msgtype, qos, t_ns, cdr in read_partial(source):
                writer.write(topic, msgtype, t_ns, cdr, latched="durability: 1" in qos or "transient_local" in qos)
    finally:
        writer.close()
    keep = staging / path.name
    for extra in path.iterdir():  # recording.json and the like travel with the bag
        if extra.suffix != ".mcap":
            shutil.move(str(extra), keep / extra.name)
    shutil.rmtree(path)
    os.replace(keep, path)
    shutil.rmtree(staging, ignore_errors=True)
    return writer.count


def _message_count(path: Path) -> int:
    from rosbags.highlevel import AnyReader

    with AnyReader([path], default_typestore=typestore()) as reader:
        return sum(c.msgcount for c in reader.connections)


def recover_interrupted(folder: str | Path) -> list[dict]:
    """Index every bag a stopped recorder left unsaved (`unindexed_bags`) as `incomplete`, after `recover_bag`;
    the index fields come from its `recording.json` where it has one. Returns the rows added."""
    rows = []
    for path in unindexed_bags(folder):
        meta_path = path / RECORDING
        try:
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        except (OSError, json.JSONDecodeError):
            meta = {}
        try:
            kept, error = recover_bag(path), None
        except Exception as e:  # noqa: BLE001 - unreadable: indexed all the same, with why
            kept, error = 0, repr(e)
        row = {**meta, "bag": path.name, "success": False, "incomplete": True, "ended": "interrupted",
               "messages": kept}
        if error:
            row["recovery_error"] = error
        append_index(folder, row)
        meta_path.unlink(missing_ok=True)
        rows.append(row)
    return rows
