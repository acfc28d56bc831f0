"""Denoiser runtimes: one call per denoising step, same interface for plain, block-cached and TeaCache.

    d.begin(cond)                       # once per inference: observation features (B, To, F)
    eps = d.step(k, sample, timestep)   # k = 0 .. K-1

`CachedDenoiser` runs a static `Schedule`: at step k each block either recomputes its residual branch
(and stores it) or adds its stored output to the residual stream. The per-step plan is a precomputed
tuple of bools, so a reused block costs one tensor add. With the schedule's `reuse: forecast` a reused
block adds its output extrapolated linearly in the step index from its last two computed outputs
(y1 + (y1 - y0) (k - c1) / (c1 - c0), the first-order term of TaylorSeer's forecast): one multiply-add
more, and the same copy as before while a block has computed only once.

Exact work hoisting (same ops on the same inputs, so results are bit-identical to the plain model):
- once per runtime: the time token of every step and its cross-attention key/value row in every layer
  (they depend only on the fixed timestep sequence and the weights; build a new runtime after changing
  the weights);
- once per inference (`begin`): the observation tokens and their cross-attention keys/values, written into
  every step's K/V buffer, so a recompute reads a slice instead of concatenating (batch 1).
The branches themselves skip work that is the identity in eval (dropout calls) and module-call overhead
(functional layer norm and linear on the modules' own parameters), and the masks are additive, made once.
"""
from __future__ import annotations

from typing import Callable

import torch

from .model import TransformerForDiffusion
from .schedule import Method, Schedule

# recorder(step, block_index, branch_output) - for calibration and tests; None in production.
Recorder = Callable[[int, int, torch.Tensor], None]


class ReuseErrorMeter:
    """Accumulates |y - reused| / |y| over the recomputes of one inference: the drift guard's reuse-error signal
    (bac_ros/drift)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._sum: torch.Tensor | float = 0.0
        self.count = 0

    def add(self, computed: torch.Tensor, reused: torch.Tensor) -> None:
        d = computed - reused
        self._sum = self._sum + d.norm() / computed.norm().clamp_min(1e-12)
        self.count += 1

    @property
    def value(self) -> float:
        """Mean over this inference's recomputes; nan before any."""
        return float(self._sum) / self.count if self.count else float("nan")


class PlainDenoiser:
    """The uncached model, exactly as trained: everything recomputed at every step."""

    method = Method.FULL

    def __init__(self, model: TransformerForDiffusion):
        self.model = model
        self.updates = 0  # block updates in the last inference
        self._cond = None

    def begin(self, cond: torch.Tensor) -> None:
        self._cond = cond
        self.updates = 0

    def step(self, k: int, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        self.updates += 3 * len(self.model.layers)
        return self.model(sample, timestep, self._cond)


@torch.inference_mode()
def time_tables(model: TransformerForDiffusion, timesteps: torch.Tensor):
    """Per step k: the time token (1, 1, E) and, per layer, its cross-attention (k, v) row."""
    tokens = [model.time_token(t, 1) for t in timesteps]
    kv = [[layer.ca.memory_kv(tok) for layer in model.layers] for tok in tokens]
    return tokens, kv


def reused(out: torch.Tensor, slope: torch.Tensor | None, when: int, k: int) -> torch.Tensor:
    """A block's contribution at step k from its output computed at step `when`: that output (copy reuse, or k is
    `when`), else extrapolated to k with `slope` (forecast reuse)."""
    if slope is None or k == when:
        return out
    return torch.add(out, slope, alpha=k - when)


class CachedDenoiser:
    """Step k must be called with `timesteps[k]` (the scheduler's sequence the runtime was built for)."""

    def __init__(self, model: TransformerForDiffusion, schedule: Schedule, timesteps: torch.Tensor,
                 hoist: bool = True, recorder: Recorder | None = None, monitor: bool = False):
        cfg = model.cfg
        schedule.validate(cfg)
        if schedule.is_dynamic:
            raise ValueError("CachedDenoiser runs static schedules; use TeaCacheDenoiser for teacache")
        self.model, self.schedule, self.hoist, self.recorder = model, schedule, hoist, recorder
        self.method = schedule.method
        if len(timesteps) != cfg.num_steps:
            raise ValueError(f"{len(timesteps)} timesteps for a {cfg.num_steps}-step schedule")
        if hoist:
            self._time_tok, self._time_kv = time_tables(model, timesteps)
            # per layer, every step's K and V (K, 1, H, 1 + To, d): time rows fixed here, observation rows
            # written once per inference (`begin`): a recompute reads its step's slice instead of concatenating
            self._kv = []
            for li in range(len(model.layers)):
                kt = torch.stack([self._time_kv[k][li][0] for k in range(len(timesteps))])
                vt = torch.stack([self._time_kv[k][li][1] for k in range(len(timesteps))])
                shape = (*kt.shape[:3], 1 + cfg.n_obs_steps, kt.shape[-1])
                k_all, v_all = kt.new_zeros(shape), vt.new_zeros(shape)
                k_all[:, :, :, :1], v_all[:, :, :, :1] = kt, vt
                self._kv.append((k_all, v_all))
        mask = schedule.update_mask(cfg.block_ids)
        self.plan: list[tuple[bool, ...]] = [tuple(bool(u) for u in row) for row in mask]
        self.updates_per_step = [sum(row) for row in self.plan]
        self.updates = 0
        self.forecast = schedule.reuse == "forecast"
        self._cache: list[torch.Tensor | None] = [None] * len(cfg.block_ids)
        self._slope: list[torch.Tensor | None] = [None] * len(cfg.block_ids)  # forecast: change per step
        self._when = [0] * len(cfg.block_ids)  # forecast: the step each block last computed at
        self._cond = self._obs_tok = None
        self._obs_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        # monitor: the drift guard's signal, each recompute's distance from what was reused (bac_ros/drift)
        self.meter = ReuseErrorMeter() if monitor else None

    def begin(self, cond: torch.Tensor) -> None:
        self._cond = cond
        if self.meter is not None:
            self.meter.reset()
        self._cache = [None] * len(self._cache)
        self._slope = [None] * len(self._cache)
        self.updates = 0
        if self.hoist:
            self._obs_tok = self.model.obs_tokens(cond)
            self._obs_kv = [layer.ca.memory_kv(self._obs_tok) for layer in self.model.layers]
            if cond.shape[0] == 1:  # every step's cross-attention K/V, at once
                for li, (ko, vo) in enumerate(self._obs_kv):
                    self._kv[li][0][:, :, :, 1:] = ko
                    self._kv[li][1][:, :, :, 1:] = vo

    def step(self, k: int, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        m, plan = self.model, self.plan[k]
        self.updates += self.updates_per_step[k]
        if self.hoist:
            time_kv = self._time_kv[k]
            if sample.shape[0] != 1:  # tables are for batch 1; expand (a view, no copy) for calibration batches
                time_kv = [(kt.expand(sample.shape[0], -1, -1, -1), vt.expand(sample.shape[0], -1, -1, -1))
                           for kt, vt in time_kv]
        else:
            if not torch.is_tensor(timestep):
                timestep = torch.tensor(timestep)
            time_tok = m.time_token(timestep, sample.shape[0])
            obs_tok = m.obs_tokens(self._cond)
        self_mask, memory_mask = m.self_mask, m.memory_mask
        x = m.embed_sample(sample)
        j = 0
        for li, layer in enumerate(m.layers):
            if plan[j]:
                self._store(k, j, layer.sa(x, self_mask))
            x = x + self._reused(k, j)
            if plan[j + 1]:
                if self.hoist and sample.shape[0] == 1:
                    self._store(k, j + 1, layer.ca.attend(x, self._kv[li][0][k], self._kv[li][1][k], memory_mask))
                elif self.hoist:
                    kt, vt = time_kv[li]
                    ko, vo = self._obs_kv[li]
                    self._store(k, j + 1, layer.ca.attend(x, torch.cat([kt, ko], dim=2), torch.cat([vt, vo], dim=2),
                                                          memory_mask))
                else:
                    self._store(k, j + 1, layer.ca(x, time_tok, obs_tok, memory_mask))
            x = x + self._reused(k, j + 1)
            if plan[j + 2]:
                self._store(k, j + 2, layer.ffn(x))
            x = x + self._reused(k, j + 2)
            j += 3
        return m.output(x)

    def _store(self, k: int, j: int, out: torch.Tensor) -> None:
        """Block j computed `out` at step k."""
        if self.meter is not None and self._cache[j] is not None:
            self.meter.add(out, self._reused(k, j))
        if self.forecast:
            if self._cache[j] is not None:
                self._slope[j] = (out - self._cache[j]) / (k - self._when[j])
            self._when[j] = k
        self._cache[j] = out
        if self.recorder is not None:
            self.recorder(k, j, out)

    def _reused(self, k: int, j: int) -> torch.Tensor:
        """What block j adds to the residual stream at step k: its output there if it computed, else its
        last output (copy) or that extrapolated to step k (forecast)."""
        return reused(self._cache[j], self._slope[j], self._when[j], k)


class TeaCacheDenoiser:
    """TeaCache-style dynamic reuse of the whole decoder: accumulate the relative L1 change of the decoder
    input across steps; while the sum stays below `threshold`, add the last computed decoder residual
    (output - input) instead of running the layers. The first and last steps always compute.
    (TeaCache's polynomial rescaling of the change is fitted per model; it is left out here.)"""

    method = Method.TEACACHE

    def __init__(self, model: TransformerForDiffusion, threshold: float, timesteps: torch.Tensor):
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        self.model, self.threshold, self.num_steps = model, float(threshold), len(timesteps)
        self._time_tok, _ = time_tables(model, timesteps)
        self.hoist = True
        self.updates = 0
        self.computed_steps: list[int] = []

    def begin(self, cond: torch.Tensor) -> None:
        self._obs_tok = self.model.obs_tokens(cond)
        self._prev_in = self._residual = None
        self._accum = 0.0
        self.updates = 0
        self.computed_steps = []

    def step(self, k: int, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        m = self.model
        x_in = m.embed_sample(sample)
        compute = k == 0 or k == self.num_steps - 1 or self._residual is None
        if not compute:
            self._accum += float((x_in - self._prev_in).abs().mean() / self._prev_in.abs().mean().clamp_min(1e-12))
            compute = self._accum >= self.threshold
        self._prev_in = x_in
        if not compute:
            return m.output(x_in + self._residual)
        self._accum = 0.0
        self.updates += 3 * len(m.layers)
        self.computed_steps.append(k)
        time_tok = self._time_tok[k].expand(sample.shape[0], -1, -1)
        x = x_in
        for layer in m.layers:
            x = layer(x, time_tok, self._obs_tok, m.self_mask, m.memory_mask)
        self._residual = x - x_in
        return m.output(x)
