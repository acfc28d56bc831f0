"""Training rows as a LeRobot dataset (format v3.0), so a lab's LeRobot tools (the visualiser, its training
scripts) open our recordings. Images are stored inside the data parquet (feature dtype `image`: PNG bytes),
so no video encoder is needed; one row group per episode.

    meta/info.json  meta/stats.json  meta/tasks.parquet  meta/episodes/chunk-000/file-000.parquet
    data/chunk-000/file-000.parquet: observation.images.scene, observation.state, action, intervention,
                                     timestamp, frame_index, episode_index, index, task_index
The layout and field names follow LeRobot's documented v3.0 format (facts of the format, written here)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
IMAGE_KEY = "observation.images.scene"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
JOINTS = [f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_gripper_width"]


def features(image_shape: tuple[int, int, int]) -> dict:
    """info.json's features: ours, then the five every LeRobot frame carries."""
    scalar = lambda dtype: {"dtype": dtype, "shape": [1], "names": None}  # noqa: E731
    return {IMAGE_KEY: {"dtype": "image", "shape": list(image_shape), "names": ["height", "width", "channel"]},
            "observation.state": {"dtype": "float32", "shape": [8], "names": JOINTS},
            "action": {"dtype": "float32", "shape": [8], "names": JOINTS},
            "intervention": scalar("bool"),
            "timestamp": scalar("float32"), "frame_index": scalar("int64"), "episode_index": scalar("int64"),
            "index": scalar("int64"), "task_index": scalar("int64")}


def _stats(x: np.ndarray) -> dict:
    """min, max, mean, std, count and LeRobot's quantiles over the first axis (images: per channel)."""
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([len(x)])}
    out.update({f"q{int(q * 100):02d}": np.quantile(x, q, axis=0) for q in QUANTILES})
    return out


def tasks_table(task: str):
    """meta/tasks.parquet: task_index by task, the task string being the table's (pandas) index, as LeRobot
    reads it."""
    import pyarrow as pa

    column = lambda name, kind, numpy: {"name": name, "field_name": name, "pandas_type": kind,  # noqa: E731
                                        "numpy_type": numpy, "metadata": None}
    pandas = {"index_columns": ["task"], "column_indexes": [],
              "columns": [column("task_index", "int64", "int64"), column("task", "unicode", "object")],
              "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0"}
    schema = pa.schema([("task_index", pa.int64()), ("task", pa.string())], metadata={"pandas": json.dumps(pandas)})
    return pa.table({"task_index": [0], "task": [task]}, schema=schema)


class LeRobotWriter:
    """`add_episode` as `DemoWriter`'s; `close()` writes the metadata. `root` must not exist (a lab's data is
    never overwritten)."""

    def __init__(self, root: str | Path, image_shape: tuple[int, int, int], dt: float, task: str,
                 robot_type: str = "franka_fr3"):
        import pyarrow as pa

        self.root = Path(root)
        if (self.root / "meta" / "info.json").exists():
            raise FileExistsError(f"{self.root} holds a LeRobot dataset already: choose another --out-dir")
        fps = 1.0 / dt
        if abs(fps - round(fps)) > 1e-3:
            raise ValueError(f"LeRobot datasets need a whole number of frames per second, not {fps:.4f}")
        self.fps, self.image_shape, self.task, self.robot_type = int(round(fps)), tuple(image_shape), task, robot_type
        self.features = features(self.image_shape)
        vec = pa.list_(pa.float32(), 8)
        self.schema = pa.schema([
            (IMAGE_KEY, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("observation.state", vec), ("action", vec), ("intervention", pa.bool_()),
            ("timestamp", pa.float32()), ("frame_index", pa.int64()), ("episode_index", pa.int64()),
            ("index", pa.int64()), ("task_index", pa.int64())],
            metadata={"huggingface": json.dumps({"info": {"features": self._hf_features()}})})
        self._writer = None
        self.episodes: list[dict] = []
        self._numbers = {k: [] for k in ("observation.state", "action")}
        self._pixels: list[np.ndarray] = []
        self.frames = 0

    def _hf_features(self) -> dict:
        """The same columns as Hugging Face `datasets` types them (so its loader decodes the images)."""
        seq = {"feature": {"dtype": "float32", "_type": "Value"}, "length": 8, "_type": "Sequence"}
        value = lambda dtype: {"dtype": dtype, "_type": "Value"}  # noqa: E731
        return {IMAGE_KEY: {"_type": "Image"}, "observation.state": seq, "action": seq,
                "intervention": value("bool"), "timestamp": value("float32"), "frame_index": value("int64"),
                "episode_index": value("int64"), "index": value("int64"), "task_index": value("int64")}

    def add_episode(self, seed, success, images, states, actions, times, source=None, intervention=None,
                    train=None) -> None:
        import cv2
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = len(images)
        if n == 0:
            raise ValueError("an episode needs at least one row")
        pngs = [cv2.imencode(".png", np.ascontiguousarray(im[:, :, ::-1]))[1].tobytes() for im in images]
        ep = len(self.episodes)
        inter = np.zeros(n, bool) if intervention is None else np.asarray(intervention, bool)
        states, actions = np.asarray(states, np.float32), np.asarray(actions, np.float32)
        table = pa.table({
            IMAGE_KEY: [{"bytes": b, "path": f"frame-{i:06d}.png"} for i, b in enumerate(pngs)],
            "observation.state": list(states), "action": list(actions), "intervention": inter,
            "timestamp": (np.asarray(times, float) - float(times[0])).astype(np.float32),
            "frame_index": np.arange(n), "episode_index": np.full(n, ep), "index": self.frames + np.arange(n),
            "task_index": np.zeros(n, np.int64)}, schema=self.schema)
        if self._writer is None:
            path = self.root / DATA_PATH.format(chunk_index=0, file_index=0)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(str(path), self.schema)
        self._writer.write_table(table)  # one row group per episode
        self.episodes.append({"episode_index": ep, "tasks": [self.task], "length": n, "data/chunk_index": 0,
                              "data/file_index": 0, "dataset_from_index": self.frames,
                              "dataset_to_index": self.frames + n, "meta/episodes/chunk_index": 0,
                              "meta/episodes/file_index": 0, "seed": int(seed), "success": bool(success)})
        self._numbers["observation.state"].append(states)
        self._numbers["action"].append(actions)
        self._pixels.append(np.asarray(images[:: max(1, n // 20)], np.float32).reshape(-1, 3) / 255.0)
        self.frames += n

    def close(self) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            raise ValueError("no episode was added")
        self._writer.close()
        stats = {k: _stats(np.concatenate(v)) for k, v in self._numbers.items()}
        pix = _stats(np.concatenate(self._pixels))
        stats[IMAGE_KEY] = {k: np.asarray(v).reshape(-1, 1, 1) if k != "count" else v for k, v in pix.items()}
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        (meta / "stats.json").write_text(json.dumps(
            {f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in stats.items()}, indent=1))
        pq.write_table(tasks_table(self.task), str(meta / "tasks.parquet"))
        path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episodes), str(path))
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
                "total_episodes": len(self.episodes), "total_frames": self.frames, "total_tasks": 1,
                "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": self.fps,
                "splits": {"train": f"0:{len(self.episodes)}"}, "data_path": DATA_PATH, "video_path": None,
                "features": self.features}
        (meta / "info.json").write_text(json.dumps(info, indent=4))
        return self.root
