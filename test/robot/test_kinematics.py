"""The shipped FR3 model (Denavit-Hartenberg parameters, numpy) against a URDF of the FR3, and its IK."""
import numpy as np
import pytest

from bac_ros.robot.kinematics import Kinematics, rotation_log, top_down, transform
from bac_ros.robot.model import Q_HIGH, Q_HOME, Q_LOW


def _fr3_urdf() -> str:
    """The FR3 URDF franky-sim simulates (the same kinematics a real FR3 reports through franky)."""
    franky_sim = pytest.importorskip("franky_sim")
    return franky_sim.FR3_URDF


def test_dh_model_matches_the_urdf_chain_and_its_jacobian():
    dh, urdf = Kinematics.fr3(), Kinematics.from_urdf(_fr3_urdf())
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.uniform(Q_LOW, Q_HIGH)
        (p1, r1), (p2, r2) = dh.fk(q), urdf.fk(q)
        np.testing.assert_allclose(p1, p2, atol=1e-9)
        np.testing.assert_allclose(r1, r2, atol=1e-9)
        np.testing.assert_allclose(dh.jacobian(q), urdf.jacobian(q), atol=1e-9)


def test_jacobian_is_the_derivative_of_fk():
    kin, q, h = Kinematics.fr3(), Q_HOME + 0.1, 1e-6
    p0, r0 = kin.fk(q)
    jac = kin.jacobian(q)
    for i in range(7):
        dq = np.zeros(7)
        dq[i] = h
        p1, r1 = kin.fk(q + dq)
        np.testing.assert_allclose((p1 - p0) / h, jac[:3, i], atol=1e-5)
        np.testing.assert_allclose(rotation_log(r1 @ r0.T) / h, jac[3:, i], atol=1e-5)


def test_home_points_down_and_ik_reaches_top_down_targets():
    kin = Kinematics.fr3()
    _, r0 = kin.fk(Q_HOME)
    np.testing.assert_allclose(r0, top_down(0.0), atol=1e-3)
    for x, y, yaw in [(0.5, 0.0, 0.0), (0.42, -0.2, 0.7), (0.62, 0.22, -0.7)]:
        q, err = kin.ik(np.array([x, y, 0.06]), top_down(yaw), Q_HOME, iters=100)
        assert err < 1e-3
        np.testing.assert_allclose(kin.fk(q)[0], [x, y, 0.06], atol=1e-3)
        assert np.all(q >= Q_LOW) and np.all(q <= Q_HIGH)


def test_a_chain_about_other_axes_and_the_rotation_log():
    # two joints about x then y: the TCP 0.2 m past the second, which sits 0.3 m up
    kin = Kinematics([np.eye(4), transform(np.eye(3), [0, 0, 0.3])], [np.array([1.0, 0, 0]), np.array([0, 1.0, 0])],
                     transform(np.eye(3), [0, 0, 0.2]), np.full(2, -3.0), np.full(2, 3.0))
    a, b = 0.5, 0.3
    expect = np.array([0.2 * np.sin(b), -np.sin(a) * (0.3 + 0.2 * np.cos(b)), np.cos(a) * (0.3 + 0.2 * np.cos(b))])
    np.testing.assert_allclose(kin.fk(np.array([a, b]))[0], expect, atol=1e-12)
    for v in ([0.3, -0.2, 0.1], [0.0, 0.0, np.pi - 1e-7], [3.14 / np.sqrt(2), -3.14 / np.sqrt(2), 0.0]):
        v = np.asarray(v)
        k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]]) / np.linalg.norm(v)
        ang = np.linalg.norm(v)
        r = np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * k @ k
        np.testing.assert_allclose(rotation_log(r), v, atol=1e-6)


def test_bad_urdf_and_joint_counts_are_clear_errors():
    with pytest.raises(ValueError, match="no link 'link8'"):
        Kinematics.from_urdf("<robot name='r'><link name='link0'/></robot>")
    with pytest.raises(ValueError, match="7 joint positions"):
        Kinematics.fr3().fk(np.zeros(6))
