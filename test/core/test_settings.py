"""Settings dataclasses that are also ROS parameters: defaults, ranges and names written once."""
import dataclasses

import pytest

from bac_ros.core.settings import from_mapping, node_parameters
from bac_ros.robot.streaming import ChunkRules
from bac_ros.robot.limits import ArmLimits


def test_fields_carry_description_and_range_and_are_checked():
    rows = {f.name: (f.default, f.metadata.get("description"), *f.metadata.get("range", (None, None)))
            for f in dataclasses.fields(ArmLimits)}
    assert rows["max_velocity_factor"][0] == ArmLimits().max_velocity_factor
    assert rows["max_velocity_factor"][2:] == (0.01, 1.0) and "velocity limit" in rows["max_velocity_factor"][1]
    assert all(desc for _, desc, _, _ in rows.values())  # every parameter says what it is
    with pytest.raises(ValueError, match=r"max_velocity_factor must be in \[0.01, 1.0\], got 1.5"):
        ArmLimits(max_velocity_factor=1.5)
    with pytest.raises(ValueError, match="chunk_timeout_s"):
        ChunkRules(chunk_timeout_s=0.0)
    with pytest.raises(ValueError, match="workspace_min < workspace_max"):
        ArmLimits(workspace_min=(1.0, 0.0, 0.0))


def test_from_mapping_takes_its_own_fields_and_strict_refuses_typos():
    p = {"max_velocity_factor": 0.2, "workspace_min": [0.3, -0.3, 0.05], "commit_steps": 4, "robot_ip": "x"}
    limits, rules = from_mapping(ArmLimits, p), from_mapping(ChunkRules, p)
    assert limits.max_velocity_factor == 0.2 and limits.workspace_min == (0.3, -0.3, 0.05)
    assert rules.commit_steps == 4 and rules.chunk_timeout_s == ChunkRules().chunk_timeout_s
    with pytest.raises(ValueError, match="max_velocty_factor"):
        from_mapping(ArmLimits, {"max_velocty_factor": 0.2}, strict=True)
    assert dataclasses.replace(limits, workspace_enabled=False).workspace is None


def test_node_parameters_reads_one_section_of_a_parameter_file(tmp_path):
    assert node_parameters("policy_node")["schedule"]  # the package's grasp.yaml
    f = tmp_path / "p.yaml"
    f.write_text("controller_node:\n  ros__parameters:\n    max_velocity_factor: 0.1\n")
    assert node_parameters("controller_node", f) == {"max_velocity_factor": 0.1}
    assert node_parameters("sim_node", f) == {}
    f.write_text("controller_node: [1, 2")
    with pytest.raises(ValueError, match="not a readable parameter file"):
        node_parameters("controller_node", f)


def test_node_parameters_merge_the_wildcard_section_as_ros_does(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    workspace_min: [0.3, -0.3, 0.05]\n    max_velocity_factor: 0.2\n"
                 "controller_node:\n  ros__parameters:\n    max_velocity_factor: 0.1\n")
    assert node_parameters("controller_node", f) == {"workspace_min": [0.3, -0.3, 0.05], "max_velocity_factor": 0.1}
    assert node_parameters("teleop_node", f) == {"workspace_min": [0.3, -0.3, 0.05], "max_velocity_factor": 0.2}
