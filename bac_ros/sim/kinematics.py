"""FR3 kinematics (pinocchio, franky-sim's FR3 URDF): TCP forward kinematics, damped least-squares IK,
and the joint limits our controller enforces."""
from __future__ import annotations

import math

import numpy as np

# Joint position limits of the FR3 (rad): the tighter of the URDF and the MuJoCo model's ranges.
Q_LOW = np.array([-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159])
Q_HIGH = np.array([2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159])
DQ_MAX = np.array([2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26])  # rad/s
DDQ_MAX = np.array([15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0])  # rad/s^2 (FR3 datasheet)
Q_HOME = np.array([0.0, 0.0, 0.0, -1.57, 0.0, 1.57, 0.785])
GRIPPER_MAX_WIDTH = 0.08
TCP_OFFSET = 0.1034  # flange -> point between the finger pads, along the hand axis (m)


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def top_down(yaw: float) -> np.ndarray:
    """TCP orientation pointing straight down, fingers closing along the world direction `yaw` + 90 deg."""
    return rot_z(yaw) @ np.diag([1.0, -1.0, -1.0])


class FR3Kinematics:
    def __init__(self):
        import pinocchio as pin
        from franky_sim import FR3_URDF

        self._pin = pin
        self.model = pin.buildModelFromXML(FR3_URDF)
        self.data = self.model.createData()
        flange = self.model.getFrameId("link8")
        frame = self.model.frames[flange]
        # The hand sits at -45 deg about the flange axis; the TCP is TCP_OFFSET further along it.
        tcp = pin.SE3(rot_z(-math.pi / 4), np.array([0.0, 0.0, TCP_OFFSET]))
        self.tcp_id = self.model.addFrame(pin.Frame("tcp", frame.parentJoint, flange, frame.placement * tcp,
                                                    pin.FrameType.OP_FRAME))
        self.data = self.model.createData()

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position (3,) and rotation (3, 3) in the robot base frame."""
        pin = self._pin
        pin.framesForwardKinematics(self.model, self.data, np.asarray(q, float))
        m = self.data.oMf[self.tcp_id]
        return m.translation.copy(), m.rotation.copy()

    def fk_path(self, qs: np.ndarray) -> np.ndarray:
        """(N, 7) joint configurations -> (N, 3) TCP positions."""
        return np.stack([self.fk(q)[0] for q in qs])

    def ik(self, pos: np.ndarray, rot: np.ndarray, q_init: np.ndarray, iters: int = 60, tol: float = 1e-4,
           damping: float = 1e-3) -> tuple[np.ndarray, float]:
        """Damped least squares from `q_init`, clamped to the joint limits. Returns (q, final error norm)."""
        pin = self._pin
        target = pin.SE3(np.asarray(rot, float), np.asarray(pos, float))
        q = np.clip(np.asarray(q_init, float).copy(), Q_LOW, Q_HIGH)
        err = np.inf
        for _ in range(iters):
            pin.framesForwardKinematics(self.model, self.data, q)
            current = self.data.oMf[self.tcp_id]
            # error in the world-aligned frame at the TCP
            e = np.concatenate([target.translation - current.translation,
                                pin.log3(target.rotation @ current.rotation.T)])
            err = float(np.linalg.norm(e))
            if err < tol:
                break
            jac = pin.computeFrameJacobian(self.model, self.data, q, self.tcp_id, pin.LOCAL_WORLD_ALIGNED)
            dq = jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(6), e)
            q = np.clip(q + dq, Q_LOW, Q_HIGH)
        return q, err
