"""Benchmark: full precision and schedules timed in one run, on the same observations and noise."""
from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Callable

import torch

from . import flops
from .acs import DEFAULT_TOP_N
from .caching import PlainDenoiser, TeaCacheDenoiser
from .diffusion import DiffusionPolicy
from .inference import Backend
from .schedule import Method, Schedule

ROW_KEYS = ("method", "num_updates", "ms_median", "speedup", "gflops", "action_mse", "action_max_abs")


def updates_by_kind(policy: DiffusionPolicy, denoiser) -> dict[str, float]:
    """Recomputations per block kind in the last inference of `denoiser`."""
    n_layer, k = policy.cfg.n_layer, policy.cfg.num_steps
    if isinstance(denoiser, PlainDenoiser):
        return {kind: n_layer * k for kind in ("sa", "ca", "ffn")}
    if isinstance(denoiser, TeaCacheDenoiser):
        return {kind: n_layer * len(denoiser.computed_steps) for kind in ("sa", "ca", "ffn")}
    counts: Counter = Counter()
    for b, steps in denoiser.schedule.blocks.items():
        counts[b.split(".")[1]] += len(steps)
    return dict(counts)


def variant(s: Schedule) -> str:
    """How a schedule differs from the default recipe: forecast reuse (-acs: its steps chosen for the
    forecast), forced last step, L1 similarity, one observation, Bubbling Union's n."""
    cal = s.calibration or {}
    top_n = (s.bua or {}).get("top_n")
    forecast = "+forecast-acs" if cal.get("objective") == "forecast" else "+forecast"
    return (forecast if s.reuse == "forecast" else "") + \
        ("+last" if cal.get("force_last") else "") + ("+l1" if cal.get("similarity") == "l1" else "") + \
        ("@1obs" if cal.get("observations") == 1 else "") + \
        (f" n={top_n}" if top_n not in (None, DEFAULT_TOP_N) else "")


def run_backends(policy: DiffusionPolicy, schedules: list[Schedule], image: torch.Tensor, state: torch.Tensor,
                 backends: list[Backend], repeats: int = 3, seed: int = 0, threads: int = 1,
                 progress: Callable[[], None] | None = None) -> list[dict]:
    """Full precision and each static schedule on each backend (`policy.inference`), timed in one run on the same
    observations and noise, interleaved: rows with `backend`, `ms_median`, `speedup` (against full precision on
    the same backend: like with like), `speedup_vs_eager_full`, and `action_mse_vs_eager` (against the same
    schedule on eager)."""
    from .inference import Noise, build, step_noise

    cfg = policy.cfg
    static = [None] + [s for s in schedules if s.method != Method.FULL and not s.is_dynamic]
    runners = {(b, i): build(policy, s, b, threads) for b in backends for i, s in enumerate(static)}
    if Backend.EAGER not in backends:
        runners.update({(Backend.EAGER, i): build(policy, s) for i, s in enumerate(static)})
    g = torch.Generator().manual_seed(seed)
    noises = [Noise(torch.randn(1, cfg.horizon, cfg.action_dim, generator=g),
                    step_noise(policy, torch.Generator().manual_seed(seed + 1000 + i))) for i in range(len(image))]
    inputs = [(image[i:i + 1].float() / 255.0 if image.dtype == torch.uint8 else image[i:i + 1], state[i:i + 1],
               noises[i]) for i in range(len(image))]
    times = {k: [] for k in runners}
    actions = {k: [] for k in runners}
    for r in runners.values():  # warm-up
        r(*inputs[0])
    for rep in range(repeats):
        for i, inp in enumerate(inputs):
            for k, r in runners.items():
                t0 = time.perf_counter()
                _, a = r(*inp)
                times[k].append(time.perf_counter() - t0)
                if rep == 0:
                    actions[k].append(a)
            if progress:
                progress()
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    rows = []
    for (b, i), r in runners.items():
        if b not in backends:
            continue
        a, ref = torch.cat(actions[(b, i)]), torch.cat(actions[(Backend.EAGER, i)])
        s = static[i]
        rows.append({"backend": b, "method": s.method if s is not None else Method.FULL, "variant": "" if s is None else
                     variant(s), "schedule_file": (s.source or None) if s is not None else None,
                     "num_updates": s.num_updates if s is not None else cfg.num_steps, "ms_median": ms[(b, i)],
                     "hz": 1e3 / ms[(b, i)], "speedup": ms[(b, 0)] / ms[(b, i)],
                     "speedup_vs_eager_full": ms[(Backend.EAGER, 0)] / ms[(b, i)],
                     "action_mse_vs_eager": float(((a - ref) ** 2).mean()),
                     "built_s": getattr(r, "built_s", None), "threads": threads})
    return rows


def run(policy: DiffusionPolicy, schedules: list[Schedule], image: torch.Tensor, state: torch.Tensor,
        repeats: int = 3, seed: int = 0, with_runtime_full: bool = True,
        progress: Callable[[], None] | None = None) -> list[dict]:
    """Rows of ROW_KEYS (+ `variant`, `schedule_file`, `mean_updates`, `hz`, `drift_ratio`), the `full` row
    first. `full` is the plain model; `full-runtime` (if asked) is the full schedule through the caching
    runtime: it isolates what the once-per-inference work alone buys. `drift_ratio`: a schedule's median
    shadow deviation on these observations over its calibration median (the drift guard's signal; None
    without a reference)."""
    cfg = policy.cfg
    n = image.shape[0]
    entries: list[tuple[str, int | None, object]] = [(Method.FULL, cfg.num_steps, policy.denoiser(None))]
    variants, sources = [""], [None]
    if with_runtime_full:
        entries.append(("full-runtime", cfg.num_steps, policy.denoiser(Schedule.full(cfg))))
        variants.append("")
        sources.append(None)
    for s in schedules:
        if s.method == Method.FULL:
            continue  # the same as full-runtime
        entries.append((s.method, s.num_updates, policy.denoiser(s)))
        variants.append(variant(s))
        sources.append(s.source or None)
    g = torch.Generator().manual_seed(seed)
    noises = [torch.randn(1, cfg.horizon, cfg.action_dim, generator=g) for _ in range(n)]

    def infer(i: int, den) -> torch.Tensor:
        # Same initial noise and (for DDPM) the same per-step noise for every method.
        gen = torch.Generator().manual_seed(seed + 1000 + i)
        a = policy.executable(policy.predict(image[i:i + 1], state[i:i + 1], den, noises[i].clone(), gen))
        if a.is_cuda:  # kernels run asynchronously: the time is the finished action's
            torch.cuda.synchronize(a.device)
        return a

    times: dict[int, list[float]] = {e: [] for e in range(len(entries))}
    actions: dict[int, list[torch.Tensor]] = {e: [] for e in range(len(entries))}
    updates: dict[int, list[dict]] = {e: [] for e in range(len(entries))}
    for e, (_, _, den) in enumerate(entries):  # warm-up
        infer(0, den)
    for rep in range(repeats):
        for i in range(n):
            for e, (_, _, den) in enumerate(entries):
                t0 = time.perf_counter()
                a = infer(i, den)
                times[e].append(time.perf_counter() - t0)
                if rep == 0:
                    actions[e].append(a)
                    updates[e].append(updates_by_kind(policy, den))
            if progress:
                progress()
    enc = flops.encoder_flops(policy.obs_encoder.image, cfg.encoder.image_shape, cfg.n_obs_steps)
    ref = torch.cat(actions[0])
    full_ms = statistics.median(times[0]) * 1e3
    drift = _drift_ratios(policy, [getattr(den, "schedule", None) for _, _, den in entries], image, state, seed)
    rows = []
    for e, (method, s, den) in enumerate(entries):
        a = torch.cat(actions[e])
        ms = statistics.median(times[e]) * 1e3
        mean_upd = {k: statistics.fmean(u[k] for u in updates[e]) for k in updates[e][0]}
        gfl = flops.inference_flops(cfg, mean_upd, enc, hoisted=getattr(den, "hoist", False)) / 1e9
        rows.append({"method": method, "variant": variants[e], "schedule_file": sources[e], "num_updates": s,
                     "ms_median": ms, "speedup": full_ms / ms, "gflops": gfl,
                     "action_mse": float(((a - ref) ** 2).mean()), "action_max_abs": float((a - ref).abs().max()),
                     "mean_updates": sum(mean_upd.values()) / (3 * cfg.n_layer),
                     "hz": 1e3 / ms, "drift_ratio": drift[e]})
    return rows


def _drift_ratios(policy: DiffusionPolicy, schedules: list[Schedule | None], image: torch.Tensor,
                  state: torch.Tensor, seed: int) -> list[float | None]:
    """Per entry: its schedule's median shadow deviation here over its calibration median (None without one)."""
    from .calibrate import measure_reference

    refs = [((s.calibration or {}).get("shadow_deviation") or {}).get("median") if s is not None else None
            for s in schedules]
    measured = iter(measure_reference(policy, [s for s, r in zip(schedules, refs) if r], image, state, seed))
    return [next(measured)["shadow_deviation"]["median"] / r if r else None for r in refs]


def _median_ms(fn: Callable[[], object], n: int) -> float:
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


@torch.inference_mode()
def profile(policy: DiffusionPolicy, schedules: list[Schedule], image: torch.Tensor, state: torch.Tensor,
            repeats: int = 30) -> str:
    """Where one inference's time goes: each piece timed on its own, then composed per method and set
    against the measured whole. `fixed/step` is what no schedule can skip."""
    cfg, m = policy.cfg, policy.model
    img, st = image[:1], state[:1]
    cond = policy.encode_obs(img, st)
    x = torch.randn(1, cfg.horizon, cfg.action_dim)
    mid = cfg.num_steps // 2
    t = policy.sampler.timesteps[mid]
    h = m.embed_sample(x)
    time_tok, obs_tok = m.time_token(t, 1), m.obs_tokens(cond)
    eps = m(x, t, cond)
    enc_ms = _median_ms(lambda: policy.encode_obs(img, st), repeats)
    hoist_ms = _median_ms(lambda: [layer.ca.memory_kv(m.obs_tokens(cond)) for layer in m.layers], repeats)

    def fixed():
        m.output(m.embed_sample(x) + h)
        policy.sampler.step(mid, eps, x)
        y = h
        for _ in range(3 * cfg.n_layer):
            y = y + h

    fixed_ms = _median_ms(fixed, repeats)
    obs_kv = [layer.ca.memory_kv(obs_tok) for layer in m.layers]

    time_kv = [layer.ca.memory_kv(time_tok) for layer in m.layers]

    def ca(li):
        layer = m.layers[li]
        kt, vt = time_kv[li]
        ko, vo = obs_kv[li]
        return layer.ca.attend(h, torch.cat([kt, ko], 2), torch.cat([vt, vo], 2), m.memory_mask)

    block_ms = {
        "sa": statistics.fmean(_median_ms(lambda L=L: L.sa(h, m.self_mask), repeats) for L in m.layers),
        "ca": statistics.fmean(_median_ms(lambda li=li: ca(li), repeats) for li in range(cfg.n_layer)),
        "ffn": statistics.fmean(_median_ms(lambda L=L: L.ffn(h), repeats) for L in m.layers)}
    # as the loop runs them: every block once, layer by layer, so each one's weights come after the others'
    sweep = [f for li, L in enumerate(m.layers)
             for f in (lambda L=L: L.sa(h, m.self_mask), lambda li=li: ca(li), lambda L=L: L.ffn(h))]
    round_robin_ms = _median_ms(lambda: [f() for f in sweep], repeats) / len(sweep)
    alone_ms = statistics.fmean(block_ms.values())
    one, other = torch.ones(1), torch.ones(1)
    op_us = _median_ms(lambda: [torch.add(one, other) for _ in range(100)], repeats) * 10  # µs per tiny op
    lines = [f"pieces (ms), timed alone: obs encoder {enc_ms:.3f} | obs tokens + K/V (once) {hoist_ms:.3f} | "
             f"fixed/step {fixed_ms:.3f} | per recompute: sa {block_ms['sa']:.3f}, ca {block_ms['ca']:.3f}, "
             f"ffn {block_ms['ffn']:.3f}",
             f"a recompute, mean over kinds: {alone_ms:.3f} ms alone (the same block {repeats} times), "
             f"{round_robin_ms:.3f} ms round-robin (all {len(sweep)} blocks in the loop's order): "
             f"x{round_robin_ms / alone_ms:.2f}; a tiny ATen op costs {op_us:.1f} us here",
             f"{'method':<14}{'S':>4}{'once':>8}{'fixed':>9}{'blocks':>9}{'sum':>9}{'measured':>10}{'other':>8}"
             f"{'fixed share':>13}{'ops':>7}{'ops x tiny':>12}{'op self':>9}"]
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, cfg.horizon, cfg.action_dim, generator=g)
    entries = [("full-runtime", Schedule.full(cfg))] + [(s.method, s) for s in schedules if s.method != Method.FULL]
    for name, s in entries:
        den = policy.denoiser(s)
        run = lambda: policy.predict(img, st, den, noise.clone(), torch.Generator().manual_seed(1))  # noqa: E731
        measured = _median_ms(run, max(3, repeats // 3))
        ops, op_self_ms = _aten_ops(run)
        upd = updates_by_kind(policy, den)
        once = enc_ms + hoist_ms
        fixed_total = fixed_ms * cfg.num_steps
        blocks = sum(round_robin_ms * n for n in upd.values())
        total = once + fixed_total + blocks
        lines.append(f"{name:<14}{s.num_updates or '-':>4}{once:>8.2f}{fixed_total:>9.2f}{blocks:>9.2f}{total:>9.2f}"
                     f"{measured:>10.2f}{measured - total:>8.2f}{(once + fixed_total) / measured:>12.0%}"
                     f"{ops:>7}{ops * op_us / 1e3:>12.2f}{op_self_ms:>9.2f}")
    lines.append("blocks at the round-robin cost; other = measured - sum: the loop's own Python; ops: ATen ops one "
                 "inference issues (torch.profiler); ops x tiny: their dispatch floor; op self: the ops' own time "
                 "under the profiler")
    return "\n".join(lines)


def _aten_ops(fn: Callable[[], object]) -> tuple[int, float]:
    """ATen ops one call of `fn` issues and the sum of their self CPU time (ms), from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    fn()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    return len(events), sum(e.self_cpu_time_total for e in events) / 1e3
