"""Recorded episodes (bags + index, `data.bags`) as arrays: what `bac dataset` and `bac compare` work from.
Times are the bag's clock (the robot's; the simulator's in simulation), in seconds."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .bags import read_messages


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


@dataclass
class Episode:
    row: dict  # its index line
    joints_t: np.ndarray  # (N,) measured joint states: time
    joints: np.ndarray  # (N, 8) q1..q7 (rad), gripper width (m)
    commands_t: np.ndarray  # (K,) targets the controller sent to the robot: time
    commands: np.ndarray  # (K, 8) joint targets (rad), commanded gripper width (m)
    latency_ms: np.ndarray  # per chunk that reached the robot: observation -> first command
    success_time: float | None  # robot seconds from the episode's start to success (simulation), else None
    images_t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (M,) camera frames: capture time
    images: list = field(default_factory=list)  # (H, W, 3) uint8 RGB each


def _by_name(msg, names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(msg.name)}
    return np.array([msg.position[index[n]] for n in names], float)


def load_episode(row: dict, images: bool = False) -> Episode:
    """One recorded episode: joint states and commands by joint name, latencies, the simulator's success time
    (from bac/episode), and with `images` the camera frames (decoded to RGB)."""
    from ..robot.model import JOINT_NAMES

    topics = ["/joint_states", "/bac/command", "/bac/first_command", "/bac/episode"]
    if images:
        topics.append("/camera/color/image_raw")
    msgs = read_messages(row["bag_path"], topics)
    js = [m for _, m in msgs.get("/joint_states", []) if set(JOINT_NAMES) <= set(m.name)]
    cmds = [m for _, m in msgs.get("/bac/command", [])]
    lat = [(ref.header.stamp.sec + ref.header.stamp.nanosec * 1e-9
            - ref.time_ref.sec - ref.time_ref.nanosec * 1e-9) * 1e3 for _, ref in msgs.get("/bac/first_command", [])]
    success_time = None
    for _, m in msgs.get("/bac/episode", []):
        d = json.loads(m.data)
        if d.get("success") and d.get("seed") == row.get("seed"):
            success_time = float(d["elapsed_s"])
            break
    ep = Episode(row=row, joints_t=np.array([_stamp(m) for m in js]),
                 joints=np.array([_by_name(m, JOINT_NAMES) for m in js]).reshape(-1, 8),
                 commands_t=np.array([_stamp(m) for m in cmds]),
                 commands=np.array([_by_name(m, JOINT_NAMES) for m in cmds]).reshape(-1, 8),
                 latency_ms=np.array(lat), success_time=success_time)
    if images:
        from ..core.images import decode_rgb

        frames = [m for _, m in msgs.get("/camera/color/image_raw", [])]
        ep.images_t = np.array([_stamp(m) for m in frames])
        ep.images = [decode_rgb(m.encoding, m.height, m.width, m.step, m.data) for m in frames]
    return ep


def to_steps(ep: Episode, image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training steps of one episode, one per command the controller sent (the action rate): action k = the
    command, exactly as sent; its observation = the newest camera frame at or before the command (resized to
    `image_size`) and the joint state nearest that frame. Commands before the first frame are left out.
    -> (images (n, s, s, 3) uint8, states (n, 8), actions (n, 8), times (n,) of the frames)."""
    from ..core.images import to_policy_size

    if not len(ep.images_t) or not len(ep.joints_t):
        raise ValueError(f"{ep.row.get('bag')}: no camera frames or joint states recorded")
    order = np.argsort(ep.images_t, kind="stable")
    img_t = ep.images_t[order]
    keep = ep.commands_t >= img_t[0]
    frame = order[np.searchsorted(img_t, ep.commands_t[keep], side="right") - 1]
    nearest = np.abs(ep.joints_t[None, :] - ep.images_t[frame][:, None]).argmin(axis=1)
    images = np.stack([to_policy_size(ep.images[i], image_size) for i in frame]) if len(frame) else \
        np.zeros((0, image_size, image_size, 3), np.uint8)
    return images, ep.joints[nearest], ep.commands[keep], ep.images_t[frame]
