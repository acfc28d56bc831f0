"""Training rows exported as a LeRobot dataset (v3.0): the format's files checked here; loaded with LeRobot's
own loader where the `lerobot` package installs beside our pins (it does not here: it pins torch < 2.12 and
numpy < 2.3 on its main branch; the registry here serves 0.4.4, which needs torch < 2.11)."""
import json

import numpy as np
import pytest

from bac_ros.data.lerobot import IMAGE_KEY, LeRobotWriter


def _export(tmp_path, episodes=(5, 3)):
    rng = np.random.default_rng(0)
    w = LeRobotWriter(tmp_path / "lr", (16, 16, 3), 1 / 30, task="grasp the cube")
    data = []
    for seed, n in enumerate(episodes):
        ep = (rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8), rng.normal(size=(n, 8)), rng.normal(size=(n, 8)),
              10.0 + np.arange(n) / 30)
        w.add_episode(seed, True, *ep, intervention=np.arange(n) >= n - 2)
        data.append(ep)
    w.close()
    return tmp_path / "lr", data


def test_the_export_has_the_v3_files_and_reads_back(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import cv2

    root, data = _export(tmp_path)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 30 and info["total_episodes"] == 2
    assert info["total_frames"] == 8 and info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["features"][IMAGE_KEY]["dtype"] == "image" and info["features"]["action"]["shape"] == [8]
    assert {"timestamp", "frame_index", "episode_index", "index", "task_index"} <= set(info["features"])
    table = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    assert set(table.column_names) == set(info["features"]) and table.num_rows == 8
    assert pq.ParquetFile(root / "data" / "chunk-000" / "file-000.parquet").num_row_groups == 2  # one per episode
    rows = table.to_pylist()
    assert [r["episode_index"] for r in rows] == [0] * 5 + [1] * 3 and [r["index"] for r in rows] == list(range(8))
    assert [r["frame_index"] for r in rows[5:]] == [0, 1, 2]
    assert rows[1]["timestamp"] == pytest.approx(1 / 30, abs=1e-6) and rows[4]["intervention"]
    np.testing.assert_allclose(rows[6]["action"], data[1][2][1], atol=1e-6)
    png = np.frombuffer(rows[2][IMAGE_KEY]["bytes"], np.uint8)
    np.testing.assert_array_equal(cv2.imdecode(png, cv2.IMREAD_COLOR)[:, :, ::-1], data[0][0][2])  # lossless
    episodes = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [(e["dataset_from_index"], e["dataset_to_index"], e["length"]) for e in episodes] == [(0, 5, 5), (5, 8, 3)]
    assert episodes[0]["tasks"] == ["grasp the cube"] and episodes[1]["data/chunk_index"] == 0
    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    assert tasks.to_pylist() == [{"task_index": 0, "task": "grasp the cube"}]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]  # the task is the index
    stats = json.loads((root / "meta" / "stats.json").read_text())
    actions = np.concatenate([d[2] for d in data])
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), atol=1e-5)
    assert stats["action"]["count"] == [8] and np.shape(stats[IMAGE_KEY]["mean"]) == (3, 1, 1)
    with pytest.raises(FileExistsError):
        LeRobotWriter(root, (16, 16, 3), 1 / 30, task="x")


def test_lerobot_loads_it_where_it_installs(tmp_path):
    pytest.importorskip("lerobot", reason="lerobot does not install beside these pins (0.4.4 here needs torch < 2.11)")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, data = _export(tmp_path)
    ds = LeRobotDataset("local/bac_ros_export", root=root)
    assert len(ds) == 8 and ds.num_episodes == 2
    np.testing.assert_allclose(ds[6]["action"].numpy(), data[1][2][1], atol=1e-6)
