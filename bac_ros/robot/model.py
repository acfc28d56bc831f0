"""The Franka FR3's numbers: joint names, limits, kinematic parameters, home, gripper.

Limits are those our controller enforces; where the FR3 datasheet and franky-sim's MuJoCo model differ,
the tighter value is kept.
"""
from __future__ import annotations

import math

import numpy as np

ARM_JOINTS = [f"fr3_joint{i}" for i in range(1, 8)]
GRIPPER_JOINT = "fr3_gripper_width"  # in /joint_states: measured width (m); in chunks and commands: commanded
JOINT_NAMES = ARM_JOINTS + [GRIPPER_JOINT]

Q_LOW = np.array([-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159])  # rad
Q_HIGH = np.array([2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159])  # rad
DQ_MAX = np.array([2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26])  # rad/s
DDQ_MAX = np.array([15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0])  # rad/s^2 (FR3 datasheet)
Q_HOME = np.array([0.0, 0.0, 0.0, -1.57, 0.0, 1.57, 0.785])  # rad
GRIPPER_MAX_WIDTH = 0.08  # m

# Modified (Craig) Denavit-Hartenberg parameters per joint: (a_{i-1} m, d_i m, alpha_{i-1} rad).
FR3_DH = [(0.0, 0.333, 0.0), (0.0, 0.0, -math.pi / 2), (0.0, 0.316, math.pi / 2), (0.0825, 0.0, math.pi / 2),
          (-0.0825, 0.384, -math.pi / 2), (0.0, 0.0, math.pi / 2), (0.088, 0.0, math.pi / 2)]
FR3_FLANGE_D = 0.107  # last joint -> flange along its axis (m)
TCP_OFFSET = 0.1034  # flange -> point between the finger pads, along the hand axis (m)
