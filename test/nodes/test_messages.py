"""Conversions between ROS 2 messages and arrays."""
import numpy as np
import pytest

msgs = pytest.importorskip("bac_ros.nodes.messages", reason="rclpy / ROS 2 messages not importable")


def test_image_round_trip_and_encodings():
    rgb = np.random.default_rng(0).integers(0, 255, (8, 10, 3), dtype=np.uint8)
    m = msgs.array_to_image(rgb, 12.5)
    assert m.encoding == "rgb8" and msgs.to_sec(m.header.stamp) == pytest.approx(12.5)
    np.testing.assert_array_equal(msgs.image_to_array(m), rgb)
    m.encoding = "bgr8"
    np.testing.assert_array_equal(msgs.image_to_array(m), rgb[:, :, ::-1])
    m.encoding = "mono16"
    with pytest.raises(ValueError, match="unsupported"):
        msgs.image_to_array(m)
    m.encoding, m.data = "rgb8", bytes(10)
    with pytest.raises(ValueError, match="too short"):
        msgs.image_to_array(m)
    for h, w in ((0, 0), (4, 5), (100000, 100000)):
        with pytest.raises(ValueError, match="outside"):
            msgs.image_to_array(msgs.Image(height=h, width=w, encoding="rgb8", step=w * 3))


def test_stamps_round_as_a_whole():
    for t in (8.9999999996, 12.5, 0.0, 3.0000000004):
        assert msgs.to_sec(msgs.to_time(t)) == pytest.approx(t, abs=1e-9)


def test_joint_state_by_name():
    q = np.arange(7) * 0.1
    m = msgs.vector_to_joint_state(q, np.zeros(7), 0.04, 3.0)
    np.testing.assert_allclose(msgs.joint_state_to_vector(m), np.r_[q, 0.04], atol=1e-6)
    m.name, m.position = list(reversed(m.name)), list(reversed(m.position))  # order must not matter
    np.testing.assert_allclose(msgs.joint_state_to_vector(m), np.r_[q, 0.04], atol=1e-6)
    m.name = m.name[1:]
    m.position = m.position[1:]
    with pytest.raises(ValueError, match="lacks"):
        msgs.joint_state_to_vector(m)


def test_chunk_round_trip_and_validation():
    actions = np.random.default_rng(1).normal(size=(8, 8))
    m = msgs.chunk_to_trajectory(actions, 100.25, 1 / 30)
    c = msgs.trajectory_to_chunk(m)
    assert c.stamp == pytest.approx(100.25) and c.dt == pytest.approx(1 / 30, abs=1e-9)
    assert c.planned_from == pytest.approx(100.25)
    np.testing.assert_allclose(c.actions, actions)
    # a teleoperator's chunk: planned from an input 20 ms before its first point falls due
    c = msgs.trajectory_to_chunk(msgs.chunk_to_trajectory(actions, 100.25, 1 / 30, origin=100.23))
    assert c.stamp == pytest.approx(100.25) and c.planned_from == pytest.approx(100.23)
    assert c.dt == pytest.approx(1 / 30, abs=1e-9)
    m.points[2].positions[0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        msgs.trajectory_to_chunk(m)
    m = msgs.chunk_to_trajectory(actions, 1.0, 0.1)
    m.points[3].time_from_start = msgs.to_duration(0.5)
    with pytest.raises(ValueError, match="evenly"):
        msgs.trajectory_to_chunk(m)
    m = msgs.chunk_to_trajectory(actions, 1.0, 0.1)
    m.points[4].positions = m.points[4].positions[:7]  # 8 names, 7 positions (crashed the controller once)
    with pytest.raises(ValueError, match="positions"):
        msgs.trajectory_to_chunk(m)
    for names in (m.joint_names[:-1], m.joint_names[:-1] + ["panda_joint9"], m.joint_names[:-1] + ["fr3_joint1"]):
        m.joint_names = names
        with pytest.raises(ValueError, match="are not"):
            msgs.trajectory_to_chunk(m)
    m = msgs.chunk_to_trajectory(actions[:1], 1.0, 0.1)
    with pytest.raises(ValueError, match="at least 2"):
        msgs.trajectory_to_chunk(m)
    m = msgs.chunk_to_trajectory(actions, 1.0, 0.1)  # points starting 0.5 s after the header stamp
    for i, p in enumerate(m.points):
        p.time_from_start = msgs.to_duration(0.5 + 0.1 * i)
    assert msgs.trajectory_to_chunk(m).stamp == pytest.approx(1.5)
