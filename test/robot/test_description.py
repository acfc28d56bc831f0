"""The FR3's description and its links' transforms: every link's pose from our joint transforms equals what a
maintained URDF library (yourdfpy) computes from the same file, fingers included."""
import numpy as np
import pytest

from bac_ros.robot.description import FINGER_JOINTS, Description, quaternion
from bac_ros.robot.model import Q_HIGH, Q_LOW

yourdfpy = pytest.importorskip("yourdfpy")


def test_link_poses_agree_with_a_urdf_library_and_meshes_resolve():
    d = Description()
    urdf = yourdfpy.URDF.load(str(d.path), load_meshes=False, build_collision_scene_graph=False,
                              load_collision_meshes=False)
    rng = np.random.default_rng(0)
    for _ in range(5):
        q, width = rng.uniform(Q_LOW, Q_HIGH), rng.uniform(0.0, 0.08)
        edges = {c: (p, m) for p, c, m in d.static_transforms() + d.transforms(d.positions(q, width))}

        def pose(link):
            if link == "fr3_link0":
                return np.eye(4)
            parent, m = edges[link]
            return pose(parent) @ m

        urdf.update_cfg({**dict(zip(urdf.actuated_joint_names[:7], q)), FINGER_JOINTS[0]: width / 2})
        for link in urdf.link_map:
            if link != "base":
                np.testing.assert_allclose(pose(link), urdf.get_transform(link, "fr3_link0"), atol=1e-9)
    assert "file://" in d.xml and "meshes/" in d.xml and 'filename="meshes' not in d.xml  # viewers find the meshes


def test_a_quaternion_rebuilds_its_rotation():
    from scipy.spatial.transform import Rotation

    from bac_ros.robot.description import _axis_angle

    for axis, angle in (([0, 0, 1], 0.3), ([1, 0, 0], 3.1), ([0.3, -0.5, 0.8], -2.0), ([0, 1, 0], np.pi)):
        r = _axis_angle(np.array(axis, float), angle)
        back = Rotation.from_quat(quaternion(r)).as_matrix()  # (x, y, z, w), as geometry_msgs orders it
        np.testing.assert_allclose(back, r, atol=1e-12)


def test_a_description_without_the_hand_is_refused(tmp_path):
    bad = tmp_path / "arm.urdf"
    bad.write_text('<robot name="x"><link name="a"/><link name="b"/><joint name="fr3_joint1" type="revolute">'
                   '<parent link="a"/><child link="b"/><axis xyz="0 0 1"/></joint></robot>')
    with pytest.raises(ValueError, match="fr3_finger_joint1"):
        Description(bad)
