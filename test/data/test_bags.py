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


def test_a_bag_cut_mid_chunk_is_read_to_its_last_chunk_and_recovered(tmp_path):
    """What a killed recorder leaves (issue 38): the MCAP file cut inside a chunk, no summary, no metadata.yaml.
    The stream reader gives every message of the complete chunks; `recover_interrupted` rewrites the bag with
    them (rosbags opens it again), indexes it incomplete with the fields of its recording.json, keeps the bag the
    index listed before, and does nothing a second time."""
    from bac_ros.data.bags import RECORDING, complete_rows, read_partial, recover_interrupted

    store = typestore()
    out = tmp_path / "episodes"
    saved = BagWriter(out / "saved", store)
    saved.write("/joint_states", "sensor_msgs/msg/JointState", 1, _cdr_joint_state(store, 1.0, np.zeros(7)))
    saved.close()
    append_index(out, {"bag": "saved", "label": "teleop", "success": True, "messages": 1})
    cut = BagWriter(out / "cut", store)
    q = np.random.default_rng(1).normal(size=7)
    n = 3 * 2**20 // len(_cdr_joint_state(store, 0.0, q)) + 10  # three and a bit 1 MiB chunks
    for k in range(n):
        cut.write("/joint_states", "sensor_msgs/msg/JointState", 10**9 + k * 10**7, _cdr_joint_state(store, k * 0.01, q))
    cut.close()
    (out / "cut" / RECORDING).write_text(json.dumps({"label": "alice", "seed": 7}))
    (out / "cut" / "metadata.yaml").unlink()
    mcap = out / "cut" / "cut.mcap"
    whole = len(list(read_partial(mcap)))
    assert whole == n
    data = mcap.read_bytes()
    (tmp_path / "one.mcap").write_bytes(data[:int(1.5 * 2**20)])
    per_chunk = len(list(read_partial(tmp_path / "one.mcap")))
    mcap.write_bytes(data[:int(2.5 * 2**20)])  # killed while the third chunk was being written
    kept = len(list(read_partial(mcap)))
    assert 0 < per_chunk < n and per_chunk <= kept - per_chunk <= per_chunk + 10  # two whole chunks (the first
    # also holds the schema and channel records)
    rows = recover_interrupted(out)
    assert [(r["bag"], r["label"], r["seed"], r["incomplete"], r["ended"], r["messages"]) for r in rows] == \
        [("cut", "alice", 7, True, "interrupted", kept)]
    assert len(read_messages(out / "cut")["/joint_states"]) == kept and not (out / "cut" / RECORDING).exists()
    assert [r["bag"] for r in read_index(out)] == ["saved", "cut"] and len(read_messages(out / "saved")) == 1
    assert recover_interrupted(out) == []
    assert [r["bag"] for r in complete_rows(read_index(out), "test")] == ["saved"]
    assert len(complete_rows(read_index(out), "test", include_incomplete=True)) == 2
