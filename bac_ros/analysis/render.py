"""Every table and plot the `bac` commands print or write: one Markdown table builder, the column sets of
the bench, eval and graph rows, and the figures (matplotlib, Agg)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from ..policy.acs import DEFAULT_TOP_N

Column = tuple[str, Callable[[dict], object], str]  # header, value of a row, format spec


def markdown(rows: list[dict], columns: list[Column]) -> str:
    """A Markdown table (also readable as plain text in a terminal); a missing or NaN value prints '-'."""
    def cell(row, get, fmt):
        try:
            v = get(row)
        except (KeyError, TypeError):
            return "-"
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return format(v, fmt)

    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r, get, fmt) for _, get, fmt in columns) + " |" for r in rows]
    return "\n".join(lines)


def method_label(row: dict) -> str:
    """The method, with its variant: Bubbling Union's n when not the default, the ACS similarity when not
    the paper's cosine, bench variants (+last, @1obs)."""
    sim, top_n = row.get("similarity", "cosine"), row.get("top_n")
    name = row["method"] + row.get("variant", "")
    if row.get("reuse") == "forecast" and "+forecast" not in name:
        name += "+forecast"
    if top_n not in (None, DEFAULT_TOP_N) and "n=" not in name:
        name += f" n={top_n}"
    return name if sim in (None, "cosine") else f"{name} ({sim})"


BENCH_COLUMNS: list[Column] = [
    ("method", method_label, ""), ("S", lambda r: r["num_updates"], ""),
    ("upd/block", lambda r: r["mean_updates"], ".1f"), ("ms", lambda r: r["ms_median"], ".2f"),
    ("Hz", lambda r: r["hz"], ".1f"), ("speedup", lambda r: r["speedup"], ".2f"),
    ("GFLOPs", lambda r: r["gflops"], ".3f"), ("action MSE", lambda r: r["action_mse"], ".2e"),
    ("action max", lambda r: r["action_max_abs"], ".2e"), ("drift ratio", lambda r: r["drift_ratio"], ".2f")]

BACKEND_COLUMNS: list[Column] = [
    ("backend", lambda r: r["backend"], ""), ("method", method_label, ""), ("S", lambda r: r["num_updates"], ""),
    ("ms", lambda r: r["ms_median"], ".2f"), ("Hz", lambda r: r["hz"], ".1f"),
    ("speedup (same backend)", lambda r: r["speedup"], ".2f"),
    ("vs eager full", lambda r: r["speedup_vs_eager_full"], ".2f"),
    ("action MSE vs eager", lambda r: r["action_mse_vs_eager"], ".1e"),
    ("built s", lambda r: r["built_s"], ".0f")]

def _with_interval(rate: float, n: int) -> str:
    """A success rate with its 95 % Wilson interval: '60% [23%, 88%]'."""
    from .stats import wilson_interval

    low, high = wilson_interval(round(rate * n), n)
    return f"{rate:.0%} [{low:.0%}, {high:.0%}]"


EVAL_COLUMNS: list[Column] = [
    ("mode", lambda r: r["mode"] + (f" +{r['latency_ms']:g} ms" if r.get("latency_ms") is not None else ""), ""),
    ("method", method_label, ""), ("S", lambda r: r["num_updates"], ""), ("episodes", lambda r: r["episodes"], "d"),
    ("success [95 % CI]", lambda r: _with_interval(r["success_rate"], r["episodes"]), ""),
    ("speedup", lambda r: r["speedup"], ".2f"),
    ("GFLOPs", lambda r: r["gflops"], ".3f"), ("inference Hz (closed loop)", lambda r: r["inference_hz"], ".1f"),
    ("action MSE vs full", lambda r: r["action_mse"], ".2e"),
    ("obs->command ms p50", lambda r: r["obs_to_command_ms"]["p50"], ".0f"),
    ("sim RT", lambda r: r["sim_realtime_factor"], ".2f"),
    ("drift ratio", lambda r: r["drift_ratio_median"], ".2f"), ("dense share", lambda r: r["dense_share"], ".0%")]

GRAPH_COLUMNS: list[Column] = [
    ("method", lambda r: r["method"], ""), ("episodes", lambda r: r["episodes"], "d"),
    ("success [95 % CI]", lambda r: _with_interval(r["success_rate"], r["episodes"]), ""),
    ("control Hz", lambda r: r["control_hz"], ".1f"),
    ("inference Hz", lambda r: r["inference_hz"], ".1f"),
    ("latency ms p50", lambda r: r["latency_ms"]["p50"], ".1f"),
    ("p95", lambda r: r["latency_ms"]["p95"], ".1f"), ("p99", lambda r: r["latency_ms"]["p99"], ".1f"),
    ("vel. reversals/s", lambda r: r["smoothness"]["zero_crossings_per_s"], ".2f"),
    ("jerk rms", lambda r: r["smoothness"]["jerk_rms"], ".1f"), ("sim RT", lambda r: r["sim_realtime_factor"], ".2f")]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def row_label(row: dict) -> str:
    """A row's method as tables and figures name it: "bac S=7", "full S=20"."""
    return f"{method_label(row)} S={row['num_updates']}"


def plot_success_vs_latency(rows: list[dict], path: str | Path, placed: list[dict] | None = None) -> Path:
    """Eval rows of emulated latencies: success rate (95 % Wilson interval) against the latency, a line per method;
    `placed` (`eval_rows.place_at_latency`): each method marked at a computer's latency."""
    from .stats import wilson_interval

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    timed = [r for r in rows if r.get("latency_ms") is not None]
    colours = {}
    for method in dict.fromkeys(row_label(r) for r in timed):
        pts = sorted((r["latency_ms"], r["success_rate"], r["episodes"]) for r in timed if row_label(r) == method)
        xs, ys, ns = zip(*pts)
        ci = [wilson_interval(round(y * n), n) for y, n in zip(ys, ns)]
        err = [[y - lo for y, (lo, _) in zip(ys, ci)], [hi - y for y, (_, hi) in zip(ys, ci)]]
        colours[method] = ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3, label=method)[0].get_color()
    markers = dict(zip(dict.fromkeys(p["computer"] for p in placed or ()), "*Dsv^"))
    for p in placed or ():
        if p["success_rate"] is not None and p["label"] in colours:
            ax.plot(p["latency_ms"], p["success_rate"], markers[p["computer"]], ms=10, color=colours[p["label"]],
                    markeredgecolor="k", label=f"{p['label']} on {p['computer']}")
    return _save_success_axes(fig, ax, "inference latency (ms of robot time, emulated)", "success rate (95 % interval)",
                              path)


def _save_success_axes(fig, ax, xlabel: str, ylabel: str, path: str | Path) -> Path:
    """A success-rate figure's labels, limits, grid and legend; written to `path` and closed."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return Path(path)


def plot_success_vs_speedup(rows: list[dict], path: str | Path) -> Path:
    """Eval rows: success rate against the wall-clock speedup of the same run, one line per method and mode."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in sorted({r["mode"] for r in rows}):
        for method in dict.fromkeys(method_label(r) for r in rows):
            pts = sorted((r["speedup"], r["success_rate"]) for r in rows
                         if method_label(r) == method and r["mode"] == mode)
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, "o-" if mode == "sync" else "s--", label=f"{method} ({mode})")
    return _save_success_axes(fig, ax, "wall-clock speedup vs full (same run)", "success rate", path)


def world_label(row: dict) -> str:
    """`calibration` for the default world, else the changed world settings."""
    world = row.get("world") or {}
    return ", ".join(f"{k}={','.join(f'{x:g}' for x in v) if isinstance(v, (list, tuple)) else v}"
                     for k, v in world.items()) or "calibration"


def plot_drift(rows: list[dict], path: str | Path) -> Path:
    """The drift guard's figure from eval rows: per world, each row's per-episode median shadow ratio
    (filled: success, open: failure; log scale, 1 = the reference's median dashed) and every row's success."""
    import numpy as np

    plt = _pyplot()
    worlds = list(dict.fromkeys(world_label(r) for r in rows))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    watched = [r for r in rows if r.get("drift_ratio_per_episode")]
    for i, r in enumerate(watched):
        y = np.asarray(r["drift_ratio_per_episode"], float)
        ok = np.asarray(r["succeeded"][:len(y)], bool)
        x = np.full(len(y), i) + np.linspace(-0.2, 0.2, len(y))
        color = f"C{worlds.index(world_label(r))}"
        ax.scatter(x[ok], y[ok], color=color, s=18)
        ax.scatter(x[~ok], y[~ok], facecolors="none", edgecolors=color, s=18)
    ax.axhline(1.0, ls="--", lw=0.8, color="grey")
    ax.set_xticks(range(len(watched)), [f"{world_label(r)}\n{method_label(r)} S={r['num_updates']} {r['drift']}"
                                        for r in watched], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("shadow deviation / calibration median\n(per-episode median)")
    ax.set_title("drift signal (filled: success, open: failure)", fontsize=9)
    labels = [f"{world_label(r)}\n{method_label(r)}{' ' + r['drift'] if r.get('drift') not in (None, 'off') else ''}"
              for r in rows]
    bx.bar(range(len(rows)), [r["success_rate"] for r in rows],
           color=[f"C{worlds.index(world_label(r))}" for r in rows])
    bx.set_xticks(range(len(rows)), labels, fontsize=6, rotation=30, ha="right")
    bx.set_ylim(0, 1.02)
    bx.set_ylabel("success")
    bx.set_title("success per row", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_update_map(schedule, path: str | Path) -> Path:
    """PNG of a static schedule's per-block update steps: rows = blocks in forward order, columns = steps."""
    import matplotlib.ticker
    import numpy as np

    plt = _pyplot()
    ids = list(schedule.blocks)
    grid = schedule.update_mask(ids).T.astype(float)
    bua = set((schedule.bua or {}).get("blocks", []))
    fig, ax = plt.subplots(figsize=(max(4, schedule.num_steps * 0.12 + 2), len(ids) * 0.22 + 1.2))
    ax.imshow(grid, aspect="auto", cmap="Greys", vmin=0, vmax=1.4, interpolation="nearest")
    ax.set_yticks(np.arange(len(ids)), [f"{b} *" if b in bua else b for b in ids], fontsize=7)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("denoising step (0 = noisiest)")
    ax.set_title(f"{schedule.label}: {int(grid.sum())} block updates of {grid.size} "
                 f"(* = bubbling-union block)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_metrics(control, latency, path: str | Path) -> Path:
    """metrics_node's logs: control frequency over time, and the two latency histograms.
    `control`: (N, 2) time, commands/s; `latency`: (M, 2) observation -> chunk, observation -> command (ms)."""
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    if len(control):
        axes[0].plot(control[:, 0] - control[0, 0], control[:, 1], lw=1)
    axes[0].set(title="control frequency", xlabel="time (s)", ylabel="commands / s")
    for ax, col, title in ((axes[1], 0, "observation -> chunk published"),
                           (axes[2], 1, "observation -> first command")):
        v = latency[:, col][np.isfinite(latency[:, col])] if len(latency) else np.array([])
        if len(v):
            ax.hist(v, bins=40)
            ax.axvline(np.median(v), color="k", ls="--", lw=1, label=f"median {np.median(v):.1f} ms")
            ax.legend()
        ax.set(title=title, xlabel="latency (ms)", ylabel="chunks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


COMPARE_COLUMNS: list[Column] = [
    ("operator / method", lambda r: r["label"], ""), ("episodes", lambda r: r["episodes"], "d"),
    ("success [95 % CI]", lambda r: f"{r['success_rate']:.0%} [{r['success_ci'][0]:.0%}, {r['success_ci'][1]:.0%}]",
     ""),
    ("median time to success s", lambda r: r["time_s"], ".1f"),
    ("success within T", lambda r: f"{r['success_within']:.0%} (T {r['within_s']:g} s)", ""),
    ("TCP path m (successes)", lambda r: r["path_m"], ".2f"), ("(all)", lambda r: r["path_m_all"], ".2f"),
    ("vel. reversals/s", lambda r: r["reversals_per_s"], ".2f"), ("jerk rms (successes)", lambda r: r["jerk_rms"], ".1f"),
    ("(all)", lambda r: r["jerk_rms_all"], ".1f"),
    ("interventions/episode", lambda r: r["interventions_per_episode"], ".2f"),
    ("steps by a person after a take-over", lambda r: r["intervention_share"], ".0%"),
    ("latency ms p50", lambda r: r["latency_ms_p50"], ".0f"), ("p95", lambda r: r["latency_ms_p95"], ".0f")]

PAIRWISE_COLUMNS: list[Column] = [
    ("B vs A", lambda r: f"{r['b']} vs {r['a']}", ""),
    ("episodes", lambda r: f"{r['n_a']} paired" if r["paired"] else f"{r['n_b']} / {r['n_a']}", ""),
    ("both / only A / only B / neither", lambda r: " / ".join(map(str, r["table"])) if r["table"] else "-", ""),
    ("success B − A [95 % CI]", lambda r: f"{r['difference']:+.1%} [{r['ci'][0]:+.1%}, {r['ci'][1]:+.1%}]", ""),
    ("test", lambda r: r["test"], ""), ("p", lambda r: r["p_value"], ".3g"),
    ("verdict at margin", lambda r: f"{r['verdict']} (−{r['margin']:.0%})", "")]


def plot_comparison(summary: list[dict], paths: dict[str, dict], path: str | Path) -> Path:
    """What a person reads at a glance: success with 95 % intervals; time to success (Kaplan-Meier: the share
    succeeded by each time, failures censored); TCP speed over each episode; the TCP's top-view path per seed,
    one line per operator, the cube where it started, an x where a person took over. `paths`: label ->
    {seed: (times (N,), TCP positions (N, 3), cube (x, y) or None, success, take-over TCP positions (k, 3))}."""
    from .recordings import tcp_speed

    plt = _pyplot()
    seeds = sorted({s for by_seed in paths.values() for s in by_seed})[:8]
    cols = max(1, len(seeds))
    fig = plt.figure(figsize=(max(11, 2.6 * cols), 7.5))
    rows = fig.add_gridspec(2, 1, height_ratios=[1, 1.1])
    top, bottom = rows[0].subgridspec(1, 3, width_ratios=[1, 1.3, 1.7]), rows[1].subgridspec(1, cols)
    colours = {label: f"C{i}" for i, label in enumerate(paths)}
    ax = fig.add_subplot(top[0, 0])
    for i, r in enumerate(summary):
        low, high = r["success_ci"]
        ax.bar(i, r["success_rate"], color=colours.get(r["label"], "grey"))
        ax.errorbar(i, r["success_rate"], yerr=[[r["success_rate"] - low], [high - r["success_rate"]]], color="k",
                    capsize=4)
    ax.set_xticks(range(len(summary)), [r["label"] for r in summary], fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="success (95 % Wilson)", title="success")
    ax = fig.add_subplot(top[0, 1])
    for r in summary:
        if r.get("survival"):
            t, p = [0.0] + r["survival"]["t"], [0.0] + r["survival"]["success"]
            ax.step(t, p, where="post", color=colours.get(r["label"], "grey"), label=r["label"])
    ax.set(ylim=(0, 1.05), xlabel="time in the episode (s)", ylabel="succeeded by then (Kaplan-Meier)",
           title="time to success")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(top[0, 2])
    for label, by_seed in paths.items():
        for k, (t, p, *_) in enumerate(by_seed.values()):
            ts, speed = tcp_speed(t, p)
            ax.plot(ts, speed, color=colours[label], lw=0.8, alpha=0.6, label=label if k == 0 else None)
    ax.set(xlabel="time in the episode (s)", ylabel="TCP speed (m/s)", title="speed profiles (resampled)")
    ax.legend(fontsize=8)
    for j, seed in enumerate(seeds):
        ax = fig.add_subplot(bottom[0, j])
        for label, by_seed in paths.items():
            if seed in by_seed:
                _, p, cube, success, taken = by_seed[seed]
                ax.plot(p[:, 1], p[:, 0], color=colours[label], lw=1.2, ls="-" if success else ":")
                if len(taken):
                    ax.plot(taken[:, 1], taken[:, 0], "x", color=colours[label], ms=9, mew=2)
                if cube is not None:
                    ax.plot(cube[1], cube[0], "s", color="firebrick", ms=7)
        ax.set(title=f"seed {seed}", xlabel="y (m)", ylabel="x (m)" if j == 0 else None)
        ax.set_aspect("equal", adjustable="datalim")
        ax.invert_xaxis()  # seen from above with the robot at the bottom: +y to the left
    fig.suptitle("top view of the TCP per seed (solid: success, dotted: failure; x: a person took over); the square "
                 "is the cube", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


SLOW_CLOCK = 0.8  # below this many robot seconds per wall second, a real-time figure is not a real arm's


def slow_clock_note(rows: list[dict], label: str, rate: str) -> str:
    """A line for the rows whose world ran below `SLOW_CLOCK` x real time (`rate`: the rows' key of robot seconds
    per wall second), '' when none did: their latency and success were measured with the policy given 1/rate
    times the robot time per inference that a real arm gives it."""
    slow = [(r[label], r[rate]) for r in rows if r.get(rate) is not None and r[rate] < SLOW_CLOCK]
    if not slow:
        return ""
    which = ", ".join(f"{name} at {x:.2f}x" for name, x in slow)
    return (f"note: the world ran below {SLOW_CLOCK}x real time ({which}): latency and success were measured with "
            "the policy given that much more robot time per inference than a real arm would give it; "
            "`bac eval --mode realtime --latency-ms L` measures them for a computer of inference time L on any machine.")


def conclusion(pairs: list[dict]) -> str:
    """One line per comparison the episodes cannot settle, with what would."""
    lines = []
    for p in pairs:
        if p["verdict"] == "too few episodes to tell":
            n = f"{p['n_a']} paired episodes" if p["paired"] else f"{p['n_b']} and {p['n_a']} episodes"
            lines.append(f"{p['b']} vs {p['a']}: {n} cannot separate the two at a {p['margin']:.0%} margin (95 % "
                         f"interval {p['ci'][0]:+.1%} to {p['ci'][1]:+.1%}); {episodes_to_tell(p)}")
    return "\n".join(lines)


def episodes_to_tell(p: dict) -> str:
    """What would settle a comparison: the episodes per side at which, if the difference held and the interval
    narrowed as 1/sqrt(n), its lower bound would clear the margin (rounded up to 50)."""
    half, gap = (p["ci"][1] - p["ci"][0]) / 2, p["difference"] + p["margin"]
    if gap <= 0:
        return "the difference itself reaches the margin: more episodes would show it inferior or equal, not better"
    n = max(p["n_a"], p["n_b"]) * (half / gap) ** 2
    n = int(math.ceil(n / 50.0) * 50)
    how = f"`bac eval --episodes {n} --workers 3`" if p["paired"] else f"about {n} episodes per side"
    return f"if the difference holds, about {n} episodes per side would ({how} in simulation)"


def pairs_text(pairs: list[dict]) -> str:
    """The pairwise table and the lines for what it cannot settle, after a blank line; '' without pairs."""
    if not pairs:
        return ""
    note = conclusion(pairs)
    return f"\n\n{markdown(pairs, PAIRWISE_COLUMNS)}" + (f"\n\n{note}" if note else "")
