"""Calibration: every block's output at every denoising step over a set of observations -> per-block
K x K similarity between steps and mean pairwise L1 change; and schedules built from them.

Two similarities drive the ACS dynamic program. `cosine` (the paper's): cos(X_i, X_t), direction only.
`l1`: 1 - mean|X_i - X_t| / mean|X_t|, one minus the relative error of standing in X_i for X_t; it also
sees a block whose output keeps its direction but changes its size, which a residual stream adds as is."""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..drift.reference import SHADOW_STATISTIC, shadow_deviation
from . import acs
from .caching import CachedDenoiser, TeaCacheDenoiser
from .diffusion import DiffusionPolicy
from .schedule import ACS_METHODS, PER_BLOCK_METHODS, Method, Schedule

SIMILARITIES = ("cosine", "l1")


@dataclass
class CalibrationStats:
    block_ids: list[str]
    similarity: dict[str, np.ndarray]  # block -> (K, K) mean cosine similarity between steps
    l1_error: dict[str, float]  # block -> mean over step pairs of mean |X_t - X_u|
    num_observations: int
    l1_similarity: dict[str, np.ndarray] | None = None  # block -> (K, K) 1 - mean|X_i - X_t| / mean|X_t|
    gram: dict[str, np.ndarray] | None = None  # block -> (N, K, K) each observation's <X_i, X_t> (forecast ACS)
    _forecast: dict = field(default_factory=dict, repr=False, compare=False)

    def forecast_matrix(self, block: str) -> np.ndarray:
        """(K, K, K) similarity of the linear forecast (acs.forecast_similarity), computed on first use."""
        if self.gram is None:
            raise ValueError("these statistics have no per-observation Gram matrices (collect(..., gram=True))")
        if block not in self._forecast:
            self._forecast[block] = acs.forecast_similarity(self.gram[block])
        return self._forecast[block]

    def matrix(self, block: str, kind: str = "cosine") -> np.ndarray:
        """The (K, K) similarity of `kind` (cosine | l1) for one block."""
        if kind == "cosine":
            return self.similarity[block]
        if kind == "l1":
            if self.l1_similarity is None:
                raise ValueError("these statistics have no l1 similarity (collected before it existed)")
            return self.l1_similarity[block]
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")

    @property
    def num_steps(self) -> int:
        return next(iter(self.similarity.values())).shape[0]


@torch.inference_mode()
def collect(policy: DiffusionPolicy, image: torch.Tensor, state: torch.Tensor, batch_size: int = 16,
            seed: int = 0, progress: Callable[[int], None] | None = None, gram: bool = False) -> CalibrationStats:
    """Run full precision on every observation (N, To, ...) and accumulate the statistics per block; `gram`:
    also keep each observation's Gram matrices (N x K x K per block; the forecast-aware ACS needs them)."""
    cfg = policy.cfg
    n, k, ids = image.shape[0], cfg.num_steps, cfg.block_ids
    sim_sum = torch.zeros(len(ids), k, k, dtype=torch.float64)
    l1_sum = torch.zeros(len(ids), dtype=torch.float64)
    l1_pair_sum = torch.zeros(len(ids), k, k, dtype=torch.float64)  # mean |X_i - X_t| per step pair
    l1_size_sum = torch.zeros(len(ids), k, dtype=torch.float64)  # mean |X_t| per step
    grams: list[list[torch.Tensor]] = [[] for _ in ids]
    feats: list[list[torch.Tensor | None]] = [[None] * k for _ in ids]

    def record(step: int, j: int, out: torch.Tensor) -> None:
        feats[j][step] = out.reshape(out.shape[0], -1).double().cpu()

    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        img, st = image[start:start + batch_size], state[start:start + batch_size]
        b = img.shape[0]
        policy.check_obs(img, st)
        cond = policy.encode_obs(img.to(policy.device), st.to(policy.device))
        runtime = CachedDenoiser(policy.model, Schedule.full(cfg), policy.scheduler.timesteps, recorder=record)
        noise = torch.randn(b, cfg.horizon, cfg.action_dim, generator=g)
        policy.sample(cond, runtime, noise=noise, generator=g)
        for j in range(len(ids)):
            x = torch.stack(feats[j])  # (K, B, D)
            if gram:
                grams[j].append(torch.einsum("kbd,jbd->bkj", x, x))
            xn = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            sim_sum[j] += torch.einsum("kbd,jbd->kj", xn, xn)
            xb = x.transpose(0, 1)  # (B, K, D)
            pair = torch.cdist(xb, xb, p=1).sum(0) / x.shape[-1]  # (K, K), summed over the batch
            l1_sum[j] += pair.sum() / (k * k)
            l1_pair_sum[j] += pair
            l1_size_sum[j] += x.abs().mean(-1).sum(1)
        if progress:
            progress(b)
    rel = l1_pair_sum / l1_size_sum.clamp_min(1e-12)[:, None, :]  # error of X_i standing in for X_t
    return CalibrationStats(block_ids=ids,
                            similarity={b: (sim_sum[j] / n).numpy() for j, b in enumerate(ids)},
                            l1_error={b: float(l1_sum[j] / n) for j, b in enumerate(ids)},
                            num_observations=n,
                            l1_similarity={b: (1.0 - rel[j]).numpy() for j, b in enumerate(ids)},
                            gram={b: torch.cat(grams[j]).numpy() for j, b in enumerate(ids)} if gram else None)


@dataclass(frozen=True)
class BlockRequest:
    """What a static method picks update steps from (`static_blocks`)."""
    stats: CalibrationStats | None
    num_steps: int
    block_ids: list[str]
    num_updates: int
    top_n: int
    force_last: bool
    similarity: str
    reuse: str


def _full(r: BlockRequest) -> tuple[dict, None]:
    return {b: list(range(r.num_steps)) for b in r.block_ids}, None


def _uniform(r: BlockRequest) -> tuple[dict, None]:
    steps = acs.uniform_steps(r.num_steps, r.num_updates)
    if r.force_last and steps[-1] != r.num_steps - 1:
        steps = acs.uniform_steps(r.num_steps, r.num_updates - 1) + [r.num_steps - 1]
    return {b: steps for b in r.block_ids}, None


def _acs_unified(r: BlockRequest) -> tuple[dict, None]:
    steps = acs.optimal_update_steps(r.stats.matrix(r.block_ids[0], r.similarity), r.num_updates, r.force_last)
    return {b: steps for b in r.block_ids}, None


def _acs_blockwise(r: BlockRequest) -> tuple[dict, None]:
    """ACS per block; with `reuse` forecast it scores the forecast a skipped step will use (cosine only)."""
    if r.reuse == "forecast":
        if r.similarity != "cosine":
            raise ValueError("the forecast-aware ACS scores cosine similarity only")
        return {b: acs.optimal_forecast_steps(r.stats.matrix(b), r.stats.forecast_matrix(b), r.num_updates,
                                              r.force_last) for b in r.block_ids}, None
    return {b: acs.optimal_update_steps(r.stats.matrix(b, r.similarity), r.num_updates, r.force_last)
            for b in r.block_ids}, None


def _bac(r: BlockRequest) -> tuple[dict, dict]:
    per_block, _ = _acs_blockwise(r)
    return (acs.bubbling_union(per_block, r.stats.l1_error, r.top_n),
            {"top_n": r.top_n, "blocks": acs.top_error_blocks(r.stats.l1_error, r.top_n)})


STATIC_BLOCKS = {Method.FULL: _full, Method.UNIFORM: _uniform, Method.ACS_UNIFIED: _acs_unified,
                 Method.ACS_BLOCKWISE: _acs_blockwise, Method.BAC: _bac}


def static_blocks(method: Method, stats: CalibrationStats | None, num_steps: int, block_ids: list[str],
                  num_updates: int, top_n: int = 0, force_last: bool = False,
                  similarity: str = "cosine", reuse: str = "copy") -> tuple[dict, dict | None]:
    """(blocks -> update steps, bua section or None) for a static method (`STATIC_BLOCKS`)."""
    if method not in STATIC_BLOCKS:
        raise ValueError(f"not a static method: {method}")
    if method in ACS_METHODS and stats is None:
        raise ValueError(f"method '{method}' needs calibration statistics")
    return STATIC_BLOCKS[Method(method)](BlockRequest(stats, num_steps, block_ids, num_updates, top_n, force_last,
                                                      similarity, reuse))


@torch.inference_mode()
def teacache_threshold(policy: DiffusionPolicy, image: torch.Tensor, state: torch.Tensor, num_updates: int,
                       seed: int = 0, iterations: int = 14) -> tuple[float, float]:
    """Bisect the TeaCache threshold so that the mean number of computed steps over the observations
    (one at a time, as in deployment) is at most `num_updates`. Returns (threshold, mean computed steps)."""
    cfg = policy.cfg
    conds = [policy.encode_obs(image[i:i + 1], state[i:i + 1]) for i in range(image.shape[0])]
    g = torch.Generator().manual_seed(seed)
    noises = [torch.randn(1, cfg.horizon, cfg.action_dim, generator=g) for _ in conds]

    def mean_steps(thr: float) -> float:
        rt = TeaCacheDenoiser(policy.model, thr, policy.scheduler.timesteps)
        total = 0
        for i, (c, z) in enumerate(zip(conds, noises)):
            policy.sample(c, rt, noise=z.clone(), generator=torch.Generator().manual_seed(seed + i))
            total += len(rt.computed_steps)
        return total / len(conds)

    lo, hi = 0.0, 1.0
    while mean_steps(hi) > num_updates and hi < 1e6:
        lo, hi = hi, hi * 4
    best = (hi, mean_steps(hi))
    for _ in range(iterations):
        mid = (lo + hi) / 2
        m = mean_steps(mid)
        if m <= num_updates:
            hi, best = mid, (mid, m)
        else:
            lo = mid
    return best


def make_schedule(policy: DiffusionPolicy, method: Method, num_updates: int | None, stats: CalibrationStats | None,
                  top_n: int = 0, force_last: bool = False, image: torch.Tensor | None = None,
                  state: torch.Tensor | None = None, seed: int = 0, similarity: str = "cosine",
                  reuse: str = "copy") -> Schedule:
    """A schedule of `method` with `num_updates` per block from the calibration statistics; `reuse`: what a
    skipped block adds (copy, or forecast: see caching.py; static methods only)."""
    cfg = policy.cfg
    num_updates = cfg.num_steps if method == Method.FULL else num_updates
    if num_updates is None:
        raise ValueError(f"method '{method}' needs num_updates")
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    calibration = {"observations": stats.num_observations if stats else 0, "similarity": similarity,
                   "objective": "forecast" if reuse == "forecast" and method in PER_BLOCK_METHODS else "copy",
                   "force_last": force_last, "weights": policy.weights_id,
                   "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if method == Method.TEACACHE:
        if image is None:
            raise ValueError("teacache needs calibration observations")
        thr, mean = teacache_threshold(policy, image, state, num_updates, seed)
        calibration["observations"] = image.shape[0]
        return Schedule.create(cfg, Method.TEACACHE, {}, num_updates=num_updates,
                               teacache={"threshold": thr, "mean_updates": mean}, calibration=calibration)
    blocks, bua = static_blocks(method, stats, cfg.num_steps, cfg.block_ids, num_updates, top_n, force_last,
                                similarity, reuse)
    return Schedule.create(cfg, method, blocks, num_updates=num_updates, bua=bua,
                           calibration=calibration if method != Method.FULL else None, reuse=reuse)


@torch.inference_mode()
def shadow_checks(policy, schedules: list[Schedule], image: torch.Tensor, state: torch.Tensor,
                  seed: int = 0) -> tuple[list[list[float]], list[list[float]]]:
    """The guard's two signals at each observation (one at a time, as deployed): per schedule, the shadow
    deviation against full precision from the same noise (run once per observation for all of them) and the
    reuse error."""
    cfg = policy.cfg
    dens, full = [policy.denoiser(s, monitor=True) for s in schedules], policy.denoiser(Schedule.full(cfg))
    g = torch.Generator().manual_seed(seed)
    dev, reuse = [[] for _ in dens], [[] for _ in dens]
    for i in range(image.shape[0]):
        noise = torch.randn(1, cfg.horizon, cfg.action_dim, generator=g)
        cond = policy.encode_obs(image[i:i + 1].to(policy.device), state[i:i + 1].to(policy.device))
        gen = lambda: torch.Generator().manual_seed(seed + i)  # noqa: E731 - the same per-step noise for all
        reference_run = policy.sample(cond, full, noise.clone(), gen())
        for j, den in enumerate(dens):
            dev[j].append(shadow_deviation(policy.sample(cond, den, noise.clone(), gen()), reference_run))
            reuse[j].append(den.meter.value)
    return dev, reuse


def measure_reference(policy, schedules: list[Schedule], image: torch.Tensor, state: torch.Tensor,
                      seed: int = 0) -> list[dict]:
    """Each schedule's two signals over observations (`shadow_checks`): per schedule {"shadow_deviation":
    {median, mean, p95, observations}, "reuse_error": {mean, p95, observations}}."""
    if not schedules:
        return []
    dev, reuse = shadow_checks(policy, schedules, image, state, seed)
    out = []
    for d, r in zip(map(np.asarray, dev), map(np.asarray, reuse)):
        n = int(d.size)
        out.append({"shadow_deviation": {"statistic": SHADOW_STATISTIC, "median": float(np.median(d)),
                                         "mean": float(d.mean()),
                                         "p95": float(np.percentile(d, 95)), "observations": n},
                    "reuse_error": {"mean": float(r.mean()), "p95": float(np.percentile(r, 95)), "observations": n}})
    return out


def drop_stale_closed_loop(sched: Schedule) -> bool:
    """Remove closed-loop references measured on another shadow statistic than today's (the guard could not use
    them); True when there was one."""
    cal = sched.calibration or {}
    loop = cal.get("shadow_closed_loop")
    if loop is None or loop.get("statistic") == SHADOW_STATISTIC:
        return False
    del cal["shadow_closed_loop"]
    cal.pop("observation_closed_loop", None)  # measured on the same episodes
    return True


def add_closed_loop_reference(sched: Schedule, checks: ClosedLoopChecks, params: dict, source: str = ""):
    """The drift guard's closed-loop references (shadow deviation, observation distance) of these episodes
    written into `sched.calibration`; returns (shadow section, observation section, the CUSUM thresholds
    (shadow, observation; inf: off) and the seconds between checks at the policy_node `params`' guard settings)."""
    from ..core.settings import from_mapping
    from ..drift.guard import DriftSettings, guard_thresholds
    from ..drift.reference import (closed_loop_reference, observation_closed_loop, observation_reference,
                                   shadow_reference)
    from .runner import RATE_HZ

    c = checks
    loop = closed_loop_reference(c.deviations, c.names, c.period_s, c.solved)
    loop["success"] = sum(c.solved) / len(c.names)
    seen = observation_closed_loop(c.features, c.names, c.period_s, c.solved)
    if source:
        loop["source"] = seen["source"] = source
    sched.calibration = {**(sched.calibration or {}), "shadow_closed_loop": loop, "observation_closed_loop": seen}
    d, rate_hz = from_mapping(DriftSettings, params), float(params.get("rate_hz", RATE_HZ))
    # policy_node, and bac eval in either mode, check every drift_check_every / rate_hz s; each signal's h at
    # half the rate (two CUSUMs)
    observed = observation_reference(sched).signal if "observation" in d.drift_signals else None
    h = guard_thresholds(d, shadow_reference(sched), observed, d.drift_check_every, 1 / rate_hz,
                         loop["inference_period_s"])
    return loop, seen, h[:2], d.drift_check_every / rate_hz


@dataclass
class ClosedLoopChecks:
    """The drift guard's checks over closed-loop episodes (simulated: `sim.episode_worker.closed_loop_checks`;
    recorded: `recorded_checks`): per episode its shadow deviations and observation features, whether it
    succeeded and its name (seed or bag); the seconds between checks (robot time)."""
    deviations: list[list[float]] = field(default_factory=list)
    features: list[list[list[float]]] = field(default_factory=list)
    solved: list[bool] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    period_s: float = float("nan")


def recorded_checks(policy: DiffusionPolicy, sched: Schedule, rows: list[dict], roi=None, seed: int = 0,
                    say: Callable[[str], None] | None = None) -> ClosedLoopChecks:
    """At every chunk policy_node published in each recorded episode (index rows, `data.bags`), the observation
    it was planned from (its camera frame and joint state from the bag, cropped to `roi`) gets the guard's shadow
    check and observation features. Episodes without those observations are skipped (`say` tells)."""
    from ..data.bags import header_stamps
    from ..data.episodes import chunk_observations, load_episode
    from ..drift.reference import observation_features

    out, gaps = ClosedLoopChecks(), []
    for r in rows:
        stamps = header_stamps(r["bag_path"], "/bac/action_chunk")
        windows = chunk_observations(load_episode(r, images=True), stamps, policy.cfg, roi)
        if not windows:
            if say:
                say(f"{r['bag']}: no chunk's observation in the bag, skipped")
            continue
        image = torch.from_numpy(np.stack([w[0] for w in windows])).permute(0, 1, 4, 2, 3).float().div_(255.0)
        state = torch.from_numpy(np.stack([w[1] for w in windows]).astype(np.float32))
        (dev,), _ = shadow_checks(policy, [sched], image, state, seed)
        out.deviations.append(dev)
        out.features.append([observation_features(policy, image[i:i + 1], state[i:i + 1]).tolist()
                             for i in range(len(image))])
        out.solved.append(bool(r.get("success")))
        out.names.append(r["bag"])
        gaps.extend(np.diff(sorted(stamps)))
        if say:
            say(f"{r['bag']}: {'success' if out.solved[-1] else 'fail'}, {len(dev)} checks")
    out.period_s = float(np.median(gaps)) if gaps else float("nan")
    return out
