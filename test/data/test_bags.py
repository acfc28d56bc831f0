"""Episode bags: written as raw CDR (as recorder_node gets it off the wire), read back with rosbags' reader;
the index beside them."""
import json

import numpy as np
import pytest

from bac_ros.data.bags import BagWriter, append_index, read_index, read_messages, typestore


def _cdr_joint_state(store, t: float, q):
    t_ = store.types["builtin_interfaces/msg/Time"](sec=int(t), nanosec=int(round((t % 1) * 1e9)))
    header = store.types["std_msgs/msg/Header"](stamp=t_, frame_id="")
    msg = store.types["sensor_msgs/msg/JointState"](header=header, name=[f"fr3_joint{i}" for i in range(1, 8)],
                                                    position=np.asarray(q, float), velocity=np.zeros(0),
                                                    effort=np.zeros(0))
    return bytes(store.serialize_cdr(msg, "sensor_msgs/msg/JointState"))


def test_a_bag_round_trips_through_rosbags_own_reader(tmp_path):
    store = typestore()
    bag = BagWriter(tmp_path / "ep", store)
    qs = np.random.default_rng(0).normal(size=(5, 7))
    for k, q in enumerate(qs):
        bag.write("/joint_states", "sensor_msgs/msg/JointState", 10_000_000_000 + k * 33_000_000,
                  _cdr_joint_state(store, 10.0 + k / 30, q))
    string = store.types["std_msgs/msg/String"](data=json.dumps({"source": "teleop"}))
    bag.write("/bac/source", "std_msgs/msg/String", 10_000_000_000, bytes(store.serialize_cdr(string, "std_msgs/msg/String")))
    bag.close()
    assert (tmp_path / "ep" / "metadata.yaml").is_file() and list((tmp_path / "ep").glob("*.mcap"))
    msgs = read_messages(tmp_path / "ep")
    assert [t for t, _ in msgs["/joint_states"]] == [10_000_000_000 + k * 33_000_000 for k in range(5)]
    np.testing.assert_array_equal(np.stack([m.position for _, m in msgs["/joint_states"]]), qs)
    assert json.loads(msgs["/bac/source"][0][1].data) == {"source": "teleop"}
    assert set(read_messages(tmp_path / "ep", ["/bac/source"])) == {"/bac/source"}


def test_index_lines_and_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.jsonl"):
        read_index(tmp_path)
    append_index(tmp_path, {"bag": "a", "label": "teleop", "success": True})
    append_index(tmp_path, {"bag": "b", "label": "bac", "success": False})
    rows = read_index(tmp_path)
    assert [r["label"] for r in rows] == ["teleop", "bac"] and rows[0]["bag_path"] == str((tmp_path / "a").resolve())
    with (tmp_path / "index.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match="index.jsonl:3"):
        read_index(tmp_path)
