"""`PolicyRunner`: the one entry point from an observation window to a chunk, for policy_node and the evaluation
harness alike (diffusion_policy's `predict_action`, LeRobot's `select_action`): the schedule's inference on a
backend (`policy.inference`), the noise each inference starts from, and the drift guard (`bac_ros.drift`)."""
from __future__ import annotations

import copy
import dataclasses
from typing import Callable

import numpy as np
import torch

from ..drift.guard import DriftGuard, DriftMode, DriftSettings
from ..drift.guarded import GuardedInference
from ..drift.reference import reference, shadow_reference
from ..core.native_threads import start_native_thread
from .inference import Backend, Noise, Prefix, build, denoise, draw_noise, onnx_artifact
from .schedule import Schedule, find_schedule

DRIFT_MODES = tuple(DriftMode)
RATE_HZ = 30.0  # policy_node's default inference rate (its rate_hz); bac eval spaces the guard's checks by it


class PolicyRunner:
    """`select_action(images, states) -> chunk`, `settle()` after the chunk has gone out (the guard's shadow
    check, if one is due), `reset(seed)` for a new episode.

    `schedule`: the cached schedule (None: full precision); `backend`: eager, onnx or cuda-graph; `threads`:
    its intra-op threads. Noise: fresh for every inference from a generator seeded by `reset(seed)`, or with
    `fixed_noise` the noise of `seed` every time (the policy becomes a function of its observation). `drift`:
    off, watch (the guard's signal and state; default in policy_node) or guard (also `dense_schedule` while
    the signal stays high); it needs a static schedule with references, and otherwise is off."""

    def __init__(self, policy, schedule: Schedule | None, backend: Backend = Backend.EAGER, threads: int = 1,
                 seed: int = 0, fixed_noise: bool = False, drift: DriftMode = DriftMode.OFF, dense_schedule: str = "",
                 drift_settings: DriftSettings | None = None, background: bool = False,
                 on_built: Callable[[str | None], None] | None = None, inference_period_s: float | None = None,
                 keep_checks: int | None = None):
        """`background`: start on eager and build `backend` on a thread of its own (a compiled build takes a
        minute or more the first time), then switch to it; a backend already in the cache is loaded at once;
        `on_built(error or None)` is called when a background build is done. `inference_period_s`: robot seconds between
        inferences, which sets the guard's threshold (default: one chunk, as in sync evaluation; `pace`).
        `keep_checks`: the guard keeps the last this many checks (None: all)."""
        if drift not in DRIFT_MODES:
            raise ValueError(f"drift must be one of {DRIFT_MODES}, got {drift!r}")
        self.policy, self.schedule, self.fixed_noise = policy, schedule, fixed_noise
        self._spec = dict(drift=drift, dense=dense_schedule, settings=drift_settings, threads=threads,
                          period=inference_period_s, check_period=None, keep_checks=keep_checks)
        if schedule is not None and schedule.is_dynamic:  # teacache: no static graph, its own eager runtime
            backend = Backend.EAGER
        self.target, self.building = backend, False
        first = Backend.EAGER if background and backend != Backend.EAGER else backend
        self.inference = None
        if first != backend and self._built_already(policy, backend):  # loading a cached build takes seconds
            try:
                self.inference, first = self._make(policy, backend), backend
            except Exception:  # noqa: BLE001 - an unreadable cached file: the background build reports why
                self.inference = None
        if self.inference is None:
            self.inference = self._make(policy, first)
        self.backend = first
        self.generator = torch.Generator()
        self.reset(seed)
        if first != backend:
            self.building = True
            start_native_thread(self._build, "backend-build", on_built)

    def _make(self, policy, backend: str):
        s, spec = self.schedule, self._spec
        if spec["drift"] != DriftMode.OFF and s is not None and not s.is_dynamic:
            return guarded_inference(policy, s, spec["drift"], spec["dense"], spec["settings"], backend,
                                     spec["threads"], spec["period"], spec["check_period"], spec["keep_checks"])
        if s is not None and s.is_dynamic:
            return _Dynamic(policy, s)
        return build(policy, s, backend, spec["threads"])

    def _built_already(self, policy, backend: str) -> bool:
        """Every artifact `backend` needs for this runner is in the cache (ONNX; the others keep none)."""
        s, spec = self.schedule, self._spec
        if backend != Backend.ONNX:
            return False
        needed = [s]
        if spec["drift"] != DriftMode.OFF and s is not None and not s.is_dynamic:
            needed.append(None)  # the guard's shadow check runs full
            try:
                dense = _dense_schedule(spec["drift"], spec["dense"], policy.cfg)
            except (OSError, ValueError):
                return False
            needed += [dense] if dense is not None else []
        return all(onnx_artifact(policy, x).is_file() for x in needed)

    def _build(self, on_built) -> None:
        """The target backend, built on a copy of the weights (nothing is shared with the running inference),
        then swapped in between two inferences."""
        error = None
        try:
            made = self._make(copy.deepcopy(self.policy), self.target)
            if isinstance(made, GuardedInference) and isinstance(self.inference, GuardedInference):
                self.inference.replace(made.fast, made.full, made.dense)
            else:
                self.inference = made
            self.backend = self.target
        except Exception as e:  # noqa: BLE001 - the eager runtime goes on; the caller is told why
            error = f"{type(e).__name__}: {e}"
        self.building = False
        if on_built is not None:
            on_built(error)

    @property
    def guard(self) -> GuardedInference | None:
        return self.inference if isinstance(self.inference, GuardedInference) else None

    @property
    def label(self) -> str:
        return self.schedule.label if self.schedule is not None else "full"

    def reset(self, seed: int | None = None) -> None:
        """A new episode: the noise generator starts from `seed` (default: the last one)."""
        if seed is not None:
            self.seed = seed
        self.generator.manual_seed(self.seed)
        if self.guard is not None:  # each episode's guard starts afresh, so episodes are measured alike
            self.guard.reset()

    def pace(self, inference_period_s: float, check_period_s: float | None = None) -> None:
        """The robot seconds between this runner's inferences from now on, and between the drift guard's
        checks (default: every drift_check_every-th inference); they set the guard's threshold."""
        self._spec.update(period=inference_period_s, check_period=check_period_s)
        if self.guard is not None:
            self.guard.pace(inference_period_s, check_period_s)

    def noise(self) -> Noise:
        if self.fixed_noise:
            self.generator.manual_seed(self.seed)
        return draw_noise(self.policy, self.generator)

    def select_action(self, images: np.ndarray, states: np.ndarray, prefix: np.ndarray | None = None) -> np.ndarray:
        """An observation window (images (n_obs_steps, H, W, 3) uint8 RGB at the policy's size, joint states
        (n_obs_steps, 8)) -> the predicted future from the current step on, (m, 8) float32: joint targets (rad)
        and gripper width (m). `prefix` (p, 8): the first p points of that future, given (what the arm will still
        execute of the previous chunk before this one takes over): the plan is denoised to continue them and
        returns them as its first points. ValueError for an observation of the wrong shape or with non-finite
        states, or a prefix of the wrong shape or with non-finite points."""
        img = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).unsqueeze(0).float().div_(255.0)
        st = torch.from_numpy(np.asarray(states, np.float32)).unsqueeze(0)
        self.policy.check_obs(img, st)
        noise = self.noise()
        if prefix is not None and len(prefix):
            if not np.all(np.isfinite(prefix)):
                raise ValueError("prefix contains NaN or inf")
            noise = dataclasses.replace(noise, prefix=Prefix.future(self.policy.cfg, prefix))
        _, actions = self.inference(img, st, noise)
        return actions[0].numpy()

    def settle(self, check: bool = True):
        """The drift guard's pending shadow check (a full-precision inference), run after the chunk has gone
        out so it delays the next inference, not this chunk; returns the check, or None. `check=False` drops
        it (observations the guard should not judge)."""
        if not isinstance(self.inference, GuardedInference):
            return None
        return self.inference.settle() if check else self.inference.discard()


class _Dynamic:
    """A dynamic schedule (TeaCache) on the eager runtime, behind the same call as `policy.inference`'s."""

    backend = Backend.EAGER

    def __init__(self, policy, schedule: Schedule):
        self.policy, self.schedule, self.denoiser = policy, schedule, policy.denoiser(schedule)

    @torch.inference_mode()
    def __call__(self, image, state, noise: Noise):
        dev = self.policy.device
        x, a = denoise(self.policy, self.denoiser, image.to(dev), state.to(dev),
                       *(t.to(dev) for t in noise.inputs(self.policy.cfg)))
        return x.cpu(), a.cpu()


def _dense_schedule(mode: str, dense: str, cfg) -> Schedule | None:
    """The schedule the guard switches to (`guard` only; None in `watch`)."""
    return find_schedule(dense, cfg) if mode == DriftMode.GUARD else None


def guarded_inference(policy, schedule: Schedule, mode: str, dense: str = "", settings: DriftSettings | None = None,
                      backend: Backend = Backend.EAGER, threads: int = 1, inference_period_s: float | None = None,
                      check_period_s: float | None = None, keep_checks: int | None = None) -> GuardedInference:
    """`schedule`'s inference behind the drift guard: `watch` (the dense schedule never runs) or `guard`
    (`dense`: a cached schedule's name or path, as `find_schedule` reads it), on `backend`. ValueError
    (ScheduleError included) naming what is missing."""
    if mode not in (DriftMode.WATCH, DriftMode.GUARD):
        raise ValueError(f"the drift guard's mode must be watch or guard, got {mode!r}")
    dense_schedule = _dense_schedule(mode, dense, policy.cfg)
    if mode == DriftMode.GUARD and dense_schedule is None:
        raise ValueError("the guard's dense_schedule must name a cached schedule (not full)")
    for s in (schedule, dense_schedule):
        if s is not None:
            shadow_reference(s)  # a schedule without references: say so before anything is built
            reference(s, "reuse_error")
    monitor = backend == Backend.EAGER
    return GuardedInference(policy, build(policy, schedule, backend, threads, monitor),
                            build(policy, None, backend, threads),
                            None if dense_schedule is None else build(policy, dense_schedule, backend, threads, monitor),
                            DriftGuard(settings), inference_period_s, check_period_s, keep_checks)
