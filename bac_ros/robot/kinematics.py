"""FR3 kinematics in numpy: TCP forward kinematics, the geometric Jacobian, damped least-squares IK.

The model is a serial chain of revolute joints, each a fixed transform followed by a rotation about its
axis. `Kinematics.fr3()` builds it from the FR3's published (modified) Denavit-Hartenberg parameters, so
nothing here needs the simulator or a URDF library; `Kinematics.from_urdf(text)` builds it from a URDF,
e.g. the one a real robot reports (`franky.Robot.model_urdf`), when a lab wants the arm's own model.
The TCP is the point between the finger pads of the Franka Hand: `TCP_OFFSET` along the flange axis,
the hand turned -45 deg about it.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np

from .model import FR3_DH, FR3_FLANGE_D, Q_HIGH, Q_LOW, TCP_OFFSET


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF's fixed-axis roll-pitch-yaw: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cp, sp = math.cos(pitch), math.sin(pitch)
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    return rot_z(yaw) @ ry @ rot_x(roll)


def transform(rot: np.ndarray, pos) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rot, pos
    return t


def _z_to(a: np.ndarray) -> np.ndarray:
    """A rotation that maps the z axis onto the unit vector `a`."""
    z = np.array([0.0, 0.0, 1.0])
    v, c = np.cross(z, a), float(np.dot(z, a))
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def rotation_log(r: np.ndarray) -> np.ndarray:
    """The rotation vector (axis x angle, rad) of a rotation matrix; robust near 0 and pi."""
    cos = float(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))
    angle = math.acos(cos)
    w = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if angle < 1e-6:
        return 0.5 * w
    if math.pi - angle > 1e-4:
        return angle / (2.0 * math.sin(angle)) * w
    # near pi: the axis from the symmetric part, its sign from the (small) skew part
    b = (r + np.eye(3)) / 2.0
    i = int(np.argmax(np.diag(b)))
    axis = b[:, i] / math.sqrt(max(b[i, i], 1e-12))
    if np.dot(axis, w) < 0:
        axis = -axis
    return angle * axis


class Kinematics:
    """A serial chain: joint i = fixed transform `joints[i]` (4x4, from the previous joint's frame), then a
    rotation of q_i about `axes[i]`; `tip` (4x4) maps the last joint's frame to the TCP. Positions in m,
    angles in rad, frames in the robot base frame (fr3_link0)."""

    def __init__(self, joints: list[np.ndarray], axes: list[np.ndarray], tip: np.ndarray,
                 q_low: np.ndarray = Q_LOW, q_high: np.ndarray = Q_HIGH):
        if len(joints) != len(axes) or not joints:
            raise ValueError("a chain needs one fixed transform and one axis per joint")
        self.q_low, self.q_high = np.asarray(q_low, float), np.asarray(q_high, float)
        # Every joint rewritten to turn about its own z axis (Rot(a, q) = A Rot_z(q) A^T with A z = a; A goes
        # into this joint's fixed transform, A^T into the next one's): one fast path for any chain.
        self._parts, carry = [], np.eye(4)
        for j, a in zip(joints, axes):
            align = transform(_z_to(np.asarray(a, float) / np.linalg.norm(a)), [0.0, 0.0, 0.0])
            fixed = carry @ np.asarray(j, float) @ align
            self._parts.append((fixed[:3, :3].copy(), fixed[:3, 3].copy()))
            carry = align.T
        tip = carry @ np.asarray(tip, float)
        self._tip_r, self._tip_p = tip[:3, :3].copy(), tip[:3, 3].copy()

    @property
    def dof(self) -> int:
        return len(self._parts)

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def fr3(cls) -> "Kinematics":
        """The FR3 from its modified DH parameters (Franka's documentation), TCP between the finger pads."""
        joints = [transform(rot_x(alpha), [a, 0.0, 0.0]) @ transform(np.eye(3), [0.0, 0.0, d])
                  for a, d, alpha in FR3_DH]
        flange = transform(np.eye(3), [0.0, 0.0, FR3_FLANGE_D])
        return cls(joints, [np.array([0.0, 0.0, 1.0])] * len(joints), flange @ _hand())

    @classmethod
    def from_urdf(cls, urdf: str, base_link: str = "link0", flange_link: str = "link8") -> "Kinematics":
        """The chain from `base_link` to `flange_link` of a URDF (revolute and fixed joints), with the TCP
        placed on the flange as on the FR3 with its hand. Link names may carry a prefix (`fr3_link0`)."""
        root = ET.fromstring(urdf)
        by_child = {}
        for j in root.iter("joint"):
            by_child[j.find("child").get("link")] = j
        links = {link.get("name") for link in root.iter("link")}
        base = _find_link(links, base_link)
        link, chain = _find_link(links, flange_link), []
        while link != base:
            j = by_child.get(link)
            if j is None:
                raise ValueError(f"URDF: no joint leads to link '{link}' on the way from '{flange_link}' to "
                                 f"'{base_link}'")
            chain.append(j)
            link = j.find("parent").get("link")
        chain.reverse()
        joints, axes, pending = [], [], np.eye(4)
        for j in chain:
            origin = j.find("origin")
            xyz = [float(v) for v in (origin.get("xyz", "0 0 0") if origin is not None else "0 0 0").split()]
            rpy = [float(v) for v in (origin.get("rpy", "0 0 0") if origin is not None else "0 0 0").split()]
            fixed = pending @ transform(rpy_matrix(*rpy), xyz)
            kind = j.get("type")
            if kind == "fixed":
                pending = fixed
            elif kind in ("revolute", "continuous"):
                axis = j.find("axis")
                joints.append(fixed)
                axes.append(np.array([float(v) for v in (axis.get("xyz") if axis is not None else "1 0 0").split()]))
                pending = np.eye(4)
            else:
                raise ValueError(f"URDF joint '{j.get('name')}' is {kind}: only revolute and fixed are supported")
        return cls(joints, axes, pending @ _hand())

    # ---- kinematics --------------------------------------------------------------------------------
    def frames(self, q: np.ndarray) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
        """Base-frame (rotation, position) of each joint (after its fixed transform; it turns about that
        frame's z axis), and of the TCP."""
        q = np.asarray(q, float)
        if q.shape != (self.dof,):
            raise ValueError(f"need {self.dof} joint positions, got shape {q.shape}")
        r, p, out = np.eye(3), np.zeros(3), []
        for (rf, pf), angle in zip(self._parts, q.tolist()):
            p = p + r @ pf
            r = r @ rf
            out.append((r, p))
            c, s = math.cos(angle), math.sin(angle)
            r = r @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return out, (r @ self._tip_r, p + r @ self._tip_p)

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position (3,) and rotation (3, 3) in the robot base frame."""
        _, (r, p) = self.frames(q)
        return p, r

    def fk_path(self, qs: np.ndarray) -> np.ndarray:
        """(N, dof) joint configurations -> (N, 3) TCP positions."""
        return np.stack([self.fk(q)[0] for q in np.asarray(qs, float)])

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """(6, dof): TCP linear velocity (m/s) and angular velocity (rad/s), both in the base frame, per
        unit joint velocity."""
        frames, (_, p) = self.frames(q)
        jac = np.zeros((6, self.dof))
        for i, (r, o) in enumerate(frames):
            z = r[:, 2]
            jac[:3, i] = np.cross(z, p - o)
            jac[3:, i] = z
        return jac

    def ik(self, pos: np.ndarray, rot: np.ndarray, q_init: np.ndarray, iters: int = 60, tol: float = 1e-4,
           damping: float = 1e-3) -> tuple[np.ndarray, float]:
        """Damped least squares from `q_init`, clamped to the joint limits. Returns (q, final error norm)."""
        q = np.clip(np.asarray(q_init, float).copy(), self.q_low, self.q_high)
        err = math.inf
        for _ in range(iters):
            p, r = self.fk(q)
            e = np.concatenate([np.asarray(pos, float) - p, rotation_log(np.asarray(rot, float) @ r.T)])
            err = float(np.linalg.norm(e))
            if err < tol:
                break
            jac = self.jacobian(q)
            q = np.clip(q + jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(6), e), self.q_low, self.q_high)
        return q, err


def _hand() -> np.ndarray:
    """Flange -> TCP: the Franka Hand sits at -45 deg about the flange axis, the pads TCP_OFFSET further."""
    return transform(rot_z(-math.pi / 4), [0.0, 0.0, TCP_OFFSET])


def _find_link(links: set[str], name: str) -> str:
    if name in links:
        return name
    matches = [link for link in links if link.endswith("_" + name)]
    if len(matches) != 1:
        raise ValueError(f"URDF has no link '{name}'" + (f" (several end with it: {matches})" if matches else ""))
    return matches[0]


def top_down(yaw: float) -> np.ndarray:
    """TCP orientation pointing straight down, fingers closing along the world direction `yaw` + 90 deg."""
    return rot_z(yaw) @ np.diag([1.0, -1.0, -1.0])
