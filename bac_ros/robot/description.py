"""The FR3 with its hand as a URDF (`robot_description`) and the transforms between its links (tf) from the
measured joints, so that rviz, a bag in Foxglove, or any MCAP viewer shows the arm moving.

The description is a file: a lab's own (xacro'd from its franka_description) or, by default, the FR3 + hand URDF
that franky-sim installs (generated from Franka's franka_description). Its links' transforms are computed here
from the URDF's joints (origin, axis, type): the fixed ones once (`static_transforms`, /tf_static), the moving
ones per joint state (`transforms`, /tf), finger joints included (each finger at half the gripper's width)."""
from __future__ import annotations

import dataclasses
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .model import ARM_JOINTS

FINGER_JOINTS = ("fr3_finger_joint1", "fr3_finger_joint2")  # prismatic, each half the gripper's opening (m)
ROOT = "fr3_link0"  # the frame every command and the workspace box is in


def default_urdf() -> Path:
    """franky-sim's FR3 + hand URDF, a data file of the installed package (not imported: the real arm's graph runs
    no simulator code); FileNotFoundError naming what to install or set when it is not there."""
    import importlib.util

    spec = importlib.util.find_spec("franky_sim")
    if spec is None or not spec.origin:
        raise FileNotFoundError("no robot description: install franky-sim (its FR3 URDF) or set "
                                "robot_description_file to your FR3's URDF (xacro franka_description)")
    path = Path(spec.origin).parent / "assets" / "fr3.urdf"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: franky-sim's FR3 URDF is missing")
    return path


@dataclasses.dataclass(frozen=True)
class Joint:
    name: str
    kind: str  # fixed, revolute, continuous, prismatic
    parent: str
    child: str
    origin: np.ndarray  # (4, 4) parent -> joint frame
    axis: np.ndarray  # (3,)


def _rpy(r: float, p: float, y: float) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    x, y, z = axis / np.linalg.norm(axis)
    c, s, t = math.cos(angle), math.sin(angle), 1 - math.cos(angle)
    return np.array([[t * x * x + c, t * x * y - s * z, t * x * z + s * y],
                     [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
                     [t * x * z - s * y, t * y * z + s * x, t * z * z + c]])


def quaternion(rot: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix."""
    m = rot
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = (0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = ((m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s)
    return tuple(float(v) for v in q)


class Description:
    """A URDF's text (meshes as absolute file:// URIs, so rviz and Foxglove find them) and its joints."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_urdf()
        root = ET.parse(self.path).getroot()
        for mesh in root.iter("mesh"):
            name = mesh.get("filename", "")
            if name and "://" not in name:
                mesh.set("filename", (self.path.parent / name).resolve().as_uri())
        self.xml = ET.tostring(root, encoding="unicode")
        self.joints: list[Joint] = []
        for j in root.iter("joint"):
            o = j.find("origin")
            xyz = [float(v) for v in (o.get("xyz", "0 0 0") if o is not None else "0 0 0").split()]
            rpy = [float(v) for v in (o.get("rpy", "0 0 0") if o is not None else "0 0 0").split()]
            origin = np.eye(4)
            origin[:3, :3], origin[:3, 3] = _rpy(*rpy), xyz
            a = j.find("axis")
            axis = np.array([float(v) for v in (a.get("xyz") if a is not None else "1 0 0").split()])
            self.joints.append(Joint(j.get("name"), j.get("type"), j.find("parent").get("link"),
                                     j.find("child").get("link"), origin, axis))
        self.links = [link.get("name") for link in root.iter("link")]
        moving = {j.name for j in self.joints if j.kind != "fixed"}
        missing = [n for n in (*ARM_JOINTS, *FINGER_JOINTS) if n not in moving]
        if missing:
            raise ValueError(f"{self.path}: not an FR3 with its hand (no joint {', '.join(missing)})")

    @staticmethod
    def positions(q: np.ndarray, width: float) -> dict[str, float]:
        """Joint positions by name: the arm's 7 and each finger at half the opening (m)."""
        return {**{n: float(v) for n, v in zip(ARM_JOINTS, q)}, **{n: float(width) / 2 for n in FINGER_JOINTS}}

    def static_transforms(self) -> list[tuple[str, str, np.ndarray]]:
        """(parent, child, 4x4) of the fixed joints."""
        return [(j.parent, j.child, j.origin) for j in self.joints if j.kind == "fixed"]

    def transforms(self, positions: dict[str, float]) -> list[tuple[str, str, np.ndarray]]:
        """(parent, child, 4x4) of the moving joints at `positions` (rad, m; a joint not given: 0)."""
        out = []
        for j in self.joints:
            if j.kind == "fixed":
                continue
            motion = np.eye(4)
            value = positions.get(j.name, 0.0)
            if j.kind == "prismatic":
                motion[:3, 3] = j.axis / np.linalg.norm(j.axis) * value
            else:
                motion[:3, :3] = _axis_angle(j.axis, value)
            out.append((j.parent, j.child, j.origin @ motion))
        return out
