"""Recorded episodes (bags + index, `data.bags`) as arrays: what `bac dataset` and `bac compare` work from.
Times are the bag's clock (the robot's; the simulator's in simulation), in seconds."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..robot.streaming import Source
from .bags import CAMERA, COMPRESSED, read_messages

SOURCES = ("expert", "policy", "teleop")  # who commanded a training row (data/source holds the index)


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


@dataclass(frozen=True)
class Switch:
    """From `since` (s) on, `source` plays; `intervention`: a person took over from a running policy there."""
    since: float
    source: str
    intervention: bool = False


@dataclass
class Episode:
    row: dict  # its index line
    joints_t: np.ndarray  # (N,) measured joint states: time
    joints: np.ndarray  # (N, 8) q1..q7 (rad), gripper width (m)
    commands_t: np.ndarray  # (K,) targets the controller sent to the robot: time
    commands: np.ndarray  # (K, 8) joint targets (rad), commanded gripper width (m)
    latency_ms: np.ndarray  # per chunk that reached the robot: its observation or input -> first command
    success_time: float | None  # robot seconds from the episode's start to success (simulation), else None
    switches: list[Switch] = field(default_factory=list)  # who played, from when (bac/source), in time order
    images_t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (M,) camera frames: capture time
    images: list = field(default_factory=list)  # (H, W, 3) uint8 RGB each

    @property
    def interventions_t(self) -> list[float]:
        """When a person took over from the running policy (s)."""
        return [s.since for s in self.switches if s.intervention]

    def source_at(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source index into SOURCES, intervention flag) of who played at each time `t`; before the first
        switch the first one's source (a bag starts with the latched source)."""
        t = np.asarray(t, float)
        if not self.switches:
            return np.full(t.shape, SOURCES.index(self.row.get("source") or "teleop")), np.zeros(t.shape, bool)
        since = np.array([s.since for s in self.switches])
        i = np.clip(np.searchsorted(since, t, side="right") - 1, 0, None)
        src = np.array([SOURCES.index(s.source) for s in self.switches])
        inter = np.array([s.intervention for s in self.switches])
        return src[i], inter[i]


def _by_name(msg, names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(msg.name)}
    return np.array([msg.position[index[n]] for n in names], float)


def _switches(messages) -> list[Switch]:
    """bac/source's JSON lines -> the switches, each once, in time order."""
    out: dict[float, Switch] = {}
    for _, m in messages:
        d = json.loads(m.data)
        since = float(d.get("since", 0.0))
        stamps = {round(float(s), 4) for s in d.get("intervention_stamps", [])}
        out[since] = Switch(since, d["source"], d["source"] == Source.TELEOP and round(since, 4) in stamps)
    return [out[k] for k in sorted(out)]


def load_episode(row: dict, images: bool = False) -> Episode:
    """One recorded episode: joint states and commands by joint name, latencies, who played when, the
    simulator's success time (from bac/episode), and with `images` the camera frames (raw or compressed,
    decoded to RGB)."""
    from ..robot.model import JOINT_NAMES

    topics = ["/joint_states", "/bac/command", "/bac/first_command", "/bac/episode", "/bac/source"]
    if images:
        topics += ["/" + CAMERA, "/" + COMPRESSED]
    msgs = read_messages(row["bag_path"], topics)
    js = [m for _, m in msgs.get("/joint_states", []) if set(JOINT_NAMES) <= set(m.name)]
    cmds = [m for _, m in msgs.get("/bac/command", [])]
    lat = [(ref.header.stamp.sec + ref.header.stamp.nanosec * 1e-9
            - ref.time_ref.sec - ref.time_ref.nanosec * 1e-9) * 1e3 for _, ref in msgs.get("/bac/first_command", [])]
    success_time = None
    for _, m in msgs.get("/bac/episode", []):
        d = json.loads(m.data)
        if d.get("success") and d.get("seed") == row.get("seed"):
            success_time = float(d["elapsed_s"])
            break
    ep = Episode(row=row, joints_t=np.array([_stamp(m) for m in js]),
                 joints=np.array([_by_name(m, JOINT_NAMES) for m in js]).reshape(-1, 8),
                 commands_t=np.array([_stamp(m) for m in cmds]),
                 commands=np.array([_by_name(m, JOINT_NAMES) for m in cmds]).reshape(-1, 8),
                 latency_ms=np.array(lat), success_time=success_time,
                 switches=_switches(msgs.get("/bac/source", [])))
    if images:
        from ..core.images import decode_compressed, decode_rgb

        raw = [m for _, m in msgs.get("/" + CAMERA, [])]
        packed = [m for _, m in msgs.get("/" + COMPRESSED, [])]
        ep.images_t = np.array([_stamp(m) for m in raw + packed])
        ep.images = [decode_rgb(m.encoding, m.height, m.width, m.step, m.data) for m in raw] + \
            [decode_compressed(m.format, m.data) for m in packed]
    return ep


@dataclass
class Steps:
    """Training rows of one episode on the robot's action clock: row k at `times[k]` = t0 + k dt."""
    images: np.ndarray  # (n, s, s, 3) uint8: the camera frame at the tick
    states: np.ndarray  # (n, 8): the joint state nearest that frame
    actions: np.ndarray  # (n, 8): the target in effect at the end of the tick (what the robot was sent for it)
    times: np.ndarray  # (n,) the ticks (s)
    source: np.ndarray  # (n,) uint8 index into SOURCES: who commanded the row
    intervention: np.ndarray  # (n,) bool: a person had taken over from the policy
    repeated_frames: int  # ticks whose nearest frame was the previous tick's (a dropped camera frame)

    def __len__(self) -> int:
        return len(self.times)

    def rows(self, index: np.ndarray) -> "Steps":
        index = np.asarray(index)
        return Steps(self.images[index], self.states[index], self.actions[index], self.times[index],
                     self.source[index], self.intervention[index], self.repeated_frames)


def to_steps(ep: Episode, image_size: int, dt: float, roi=None) -> Steps:
    """One episode as training rows with the meaning of the expert's demonstrations (`bac record`): one row
    every `dt` of robot time, the observation = the camera frame and joint state at that tick, the action =
    what the robot was commanded for it (the last target the controller sent before the tick ended; a tick
    in which nothing new was sent keeps the target in effect). The ticks start at the first frame whose
    tick ends after the first command, and stop at the last frame (within half a tick) or the last command,
    whichever comes first. `roi`: the crop before the resize (`core.images.to_policy_size`)."""
    from ..core.images import to_policy_size

    if not len(ep.images_t) or not len(ep.joints_t) or not len(ep.commands_t):
        raise ValueError(f"{ep.row.get('bag')}: no camera frames, joint states or commands recorded")
    f_order = np.argsort(ep.images_t, kind="stable")
    f_t = ep.images_t[f_order]
    c_order = np.argsort(ep.commands_t, kind="stable")
    c_t, cmds = ep.commands_t[c_order], ep.commands[c_order]
    first = np.flatnonzero(f_t + dt > c_t[0])
    end = min(f_t[-1] + dt / 2, c_t[-1])  # a tick's nearest frame within half a tick; nothing past the commands
    if not len(first) or f_t[first[0]] > end:
        return _empty(image_size)
    ticks = f_t[first[0]] + dt * np.arange(int(np.floor((end - f_t[first[0]]) / dt + 1e-6)) + 1)
    nearest = np.clip(np.searchsorted(f_t, ticks), 1, len(f_t) - 1)
    nearest = np.where(np.abs(f_t[nearest - 1] - ticks) <= np.abs(f_t[nearest] - ticks), nearest - 1, nearest)
    frame = f_order[nearest]
    command = np.searchsorted(c_t, ticks + dt - 1e-9, side="left") - 1  # sent before the tick's end
    j_t = ep.joints_t
    joint = np.abs(j_t[None, :] - ep.images_t[frame][:, None]).argmin(axis=1)
    source, intervention = ep.source_at(ticks)
    return Steps(images=np.stack([to_policy_size(ep.images[i], image_size, roi) for i in frame]),
                 states=ep.joints[joint], actions=cmds[command], times=ticks, source=source.astype(np.uint8),
                 intervention=intervention, repeated_frames=int(np.sum(np.diff(nearest) == 0)))


def _empty(image_size: int) -> Steps:
    return Steps(np.zeros((0, image_size, image_size, 3), np.uint8), np.zeros((0, 8)), np.zeros((0, 8)),
                 np.zeros(0), np.zeros(0, np.uint8), np.zeros(0, bool), 0)


def corrections(steps: Steps, context: int = 0) -> list[tuple[Steps, np.ndarray]]:
    """The person's corrections in an episode (DAgger): each run of intervention rows, with `context` rows
    before it as observation history, -> [(rows, train mask: True on the person's rows only)]."""
    flags = steps.intervention.astype(int)
    starts = np.flatnonzero(np.diff(np.r_[0, flags]) == 1)
    ends = np.flatnonzero(np.diff(np.r_[flags, 0]) == -1) + 1
    out = []
    for s, e in zip(starts, ends):
        lo = max(0, s - context)
        out.append((steps.rows(np.arange(lo, e)), np.arange(lo, e) >= s))
    return out


def chunk_observations(ep: Episode, chunk_stamps: list[float], cfg, roi=None, tolerance_s: float = 0.03) -> list:
    """(images (n_obs, S, S, 3) uint8, states (n_obs, 8)) of each chunk (by its stamp) whose observation the recorded
    episode holds: its frames up to the chunk's stamp, each with the nearest joint state (policy_node's own
    pairing); `cfg` a PolicyConfig (n_obs_steps, the encoder's image size), `roi` the crop policy_node applies."""
    from ..core.images import to_policy_size
    from ..robot.streaming import ObservationAligner

    wanted = {round(t, 6) for t in chunk_stamps}
    aligner = ObservationAligner(cfg.n_obs_steps, tolerance_s)
    order = np.argsort(ep.joints_t, kind="stable")
    js_t, js = ep.joints_t[order], ep.joints[order]
    size, k, out = cfg.encoder.image_shape[1], 0, []
    for i in np.argsort(ep.images_t, kind="stable"):
        t = float(ep.images_t[i])
        while k < len(js_t) and js_t[k] <= t + tolerance_s:
            aligner.add_state(float(js_t[k]), js[k])
            k += 1
        aligner.add_image(t, to_policy_size(ep.images[i], size, roi))
        if round(t, 6) in wanted and aligner.observations.ready() and aligner.observations.newest_stamp == t:
            images, states, _ = aligner.observations.window()
            out.append((images, states))
    return out
