"""Demonstrations on disk (zarr, diffusion_policy's layout) and the training-window sampler: what `bac
train` reads, whether `bac record` (the scripted expert) or `bac dataset` (recorded episodes) wrote it.

    data/image   (N, H, W, 3) uint8     data/state  (N, 8) float32   q1..q7, gripper width
    data/action  (N, 8) float32         data/time   (N,) float64     the robot clock of the observation
    data/source  (N,) uint8             who commanded the row: index into `episodes.SOURCES` (expert, policy,
                                        teleop)
    data/intervention (N,) bool         a person had taken over from the policy (DAgger corrections)
    data/train   (N,) bool              training windows start only at these rows (the rest is observation
                                        history, e.g. the policy's steps before a correction)
    meta/episode_ends (E,) int64        attrs: seeds, success, dt, format
Rows are one `dt` of robot time apart. Format /1 (no source, intervention, train) still reads: all rows train.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FORMAT = "bac-grasp-demos/2"
READABLE = ("bac-grasp-demos/1", FORMAT)


class DemoWriter:
    def __init__(self, path: str | Path, image_shape: tuple[int, int, int], dt: float):
        import zarr

        self.path = Path(path)
        if self.path.exists():  # a lab's recorded demonstrations are not overwritten by a second run
            raise FileExistsError(f"{self.path} exists: choose another --out-dir (or remove it)")
        self.root = zarr.open_group(str(self.path), mode="w")
        h, w, c = image_shape
        data = self.root.create_group("data")
        chunk = 256
        self.image = data.create_array("image", shape=(0, h, w, c), chunks=(chunk, h, w, c), dtype="uint8")
        self.state = data.create_array("state", shape=(0, 8), chunks=(4096, 8), dtype="float32")
        self.action = data.create_array("action", shape=(0, 8), chunks=(4096, 8), dtype="float32")
        self.time = data.create_array("time", shape=(0,), chunks=(4096,), dtype="float64")
        self.source = data.create_array("source", shape=(0,), chunks=(4096,), dtype="uint8")
        self.intervention = data.create_array("intervention", shape=(0,), chunks=(4096,), dtype="bool")
        self.train = data.create_array("train", shape=(0,), chunks=(4096,), dtype="bool")
        self.ends = self.root.create_group("meta").create_array("episode_ends", shape=(0,), chunks=(4096,),
                                                                 dtype="int64")
        self.root.attrs.update({"format": FORMAT, "dt": dt, "seeds": [], "success": []})
        self._n = 0

    def add_episode(self, seed: int, success: bool, images, states, actions, times, source=None,
                    intervention=None, train=None) -> None:
        """One episode's rows; `source` (index into SOURCES, default expert), `intervention` (default none) and
        `train` (default all) per row."""
        from .episodes import SOURCES

        images, states = np.asarray(images, np.uint8), np.asarray(states, np.float32)
        actions, times = np.asarray(actions, np.float32), np.asarray(times, np.float64)
        n = len(images)
        source = np.full(n, SOURCES.index("expert"), np.uint8) if source is None else np.asarray(source, np.uint8)
        intervention = np.zeros(n, bool) if intervention is None else np.asarray(intervention, bool)
        train = np.ones(n, bool) if train is None else np.asarray(train, bool)
        if not (len(states) == len(actions) == len(times) == len(source) == len(intervention) == len(train) == n) \
                or n == 0:
            raise ValueError("an episode needs equally many (>0) images, states, actions, times and flags")
        if not train.any():
            raise ValueError("an episode needs at least one training row")
        self.image.append(images)
        self.state.append(states)
        self.action.append(actions)
        self.time.append(times)
        self.source.append(source)
        self.intervention.append(intervention)
        self.train.append(train)
        self._n += n
        self.ends.append(np.array([self._n], np.int64))
        attrs = dict(self.root.attrs)
        self.root.attrs.update({"seeds": attrs["seeds"] + [int(seed)], "success": attrs["success"] + [bool(success)]})


class Demos:
    """The whole data set in memory (uint8 images), successful episodes (and a person's corrections, however
    the episode ended) only unless asked otherwise.
    `path`: one zarr data set, several (a list, or one string with commas), recorded at the same dt."""

    def __init__(self, path: str | Path | list, successful_only: bool = True):
        paths = path.split(",") if isinstance(path, str) else ([path] if isinstance(path, Path) else list(path))
        if not paths:
            raise ValueError("no data set given")
        parts = [_read(p, successful_only) for p in paths]
        dts = {round(p["dt"], 9) for p in parts}
        if len(dts) > 1:
            raise ValueError(f"data sets recorded at different dt: {sorted(dts)}")
        self.dt = parts[0]["dt"]
        self.seeds = [s for p in parts for s in p["seeds"]]
        self.image = np.concatenate([p["image"] for p in parts])
        self.state = np.concatenate([p["state"] for p in parts])
        self.action = np.concatenate([p["action"] for p in parts])
        self.source = np.concatenate([p["source"] for p in parts])
        self.intervention = np.concatenate([p["intervention"] for p in parts])
        self.train = np.concatenate([p["train"] for p in parts])
        self.episode_ends = np.cumsum(np.concatenate([p["lengths"] for p in parts])).astype(np.int64)
        self.num_episodes = sum(p["kept"] for p in parts)
        self.total_episodes = sum(p["total"] for p in parts)

    def __len__(self) -> int:
        return len(self.state)


def _read(path: str | Path, successful_only: bool) -> dict:
    import zarr

    root = zarr.open_group(str(path), mode="r")
    if root.attrs.get("format") not in READABLE:
        raise ValueError(f"{path}: not a {FORMAT} data set (format {root.attrs.get('format')!r})")
    ends = np.asarray(root["meta/episode_ends"][:])
    starts = np.concatenate([[0], ends[:-1]])
    data = root["data"]
    n = int(ends[-1]) if len(ends) else 0
    whole = lambda name, default: np.asarray(data[name][:]) if name in data else np.full(n, default)  # noqa: E731
    train, intervention = whole("train", True).astype(bool), whole("intervention", False).astype(bool)
    keep = np.ones(len(ends), bool)
    if successful_only:
        # a person's correction (every training row after a take-over) is a label however the episode
        # ended, as DAgger has it: `bac dataset --corrections` keeps failed episodes' corrections too
        correction = np.array([bool(train[s:e].any() and intervention[s:e][train[s:e]].all())
                               for s, e in zip(starts, ends)], bool)
        keep = np.asarray(root.attrs["success"], bool) | correction
    idx = np.concatenate([np.arange(s, e) for s, e, k in zip(starts, ends, keep) if k] or [np.zeros(0, int)])
    from .episodes import SOURCES

    return {"dt": float(root.attrs["dt"]), "seeds": [s for s, k in zip(root.attrs["seeds"], keep) if k],
            "image": np.asarray(data["image"][:])[idx], "state": np.asarray(data["state"][:])[idx],
            "action": np.asarray(data["action"][:])[idx], "lengths": (ends - starts)[keep],
            "source": whole("source", SOURCES.index("expert")).astype(np.uint8)[idx],
            "intervention": intervention[idx], "train": train[idx], "kept": int(keep.sum()), "total": len(ends)}


class WindowSampler:
    """Training windows: observations at steps t-To+1..t, actions at t-To+1..t-To+horizon, padded by
    repeating the first/last step of the episode (diffusion_policy's convention); t runs over the rows marked
    `train`."""

    def __init__(self, demos: Demos, horizon: int, n_obs_steps: int):
        self.d, self.horizon, self.to = demos, horizon, n_obs_steps
        starts = np.concatenate([[0], demos.episode_ends[:-1]])
        self._index = []  # (t, episode start, episode end)
        for s, e in zip(starts, demos.episode_ends):
            self._index.extend((t, s, e) for t in range(s, e) if demos.train[t])
        self._index = np.array(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def _indices(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t, s, e = self._index[ids].T
        first = t - self.to + 1
        obs_idx = np.clip(first[:, None] + np.arange(self.to)[None], s[:, None], e[:, None] - 1)
        act_idx = np.clip(first[:, None] + np.arange(self.horizon)[None], s[:, None], e[:, None] - 1)
        return obs_idx, act_idx

    def batch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image (B, To, H, W, 3) uint8, state (B, To, 8), action (B, horizon, 8))."""
        obs_idx, act_idx = self._indices(ids)
        return self.d.image[obs_idx], self.d.state[obs_idx], self.d.action[act_idx]

    def states_and_actions(self) -> tuple[np.ndarray, np.ndarray]:
        """Every window's (state (N, To, 8), action (N, horizon, 8)), without images (for normalisers)."""
        obs_idx, act_idx = self._indices(np.arange(len(self)))
        return self.d.state[obs_idx], self.d.action[act_idx]
