"""Evaluation results: markdown table and the success-vs-speedup plot."""
from __future__ import annotations

from pathlib import Path

from ..core.acs import DEFAULT_TOP_N


def label(row: dict) -> str:
    """The method, with the ACS similarity when it is not the paper's cosine."""
    sim, top_n = row.get("similarity", "cosine"), row.get("top_n")
    name = row["method"] if top_n in (None, DEFAULT_TOP_N) else f"{row['method']} n={top_n}"
    return name if sim == "cosine" else f"{name} ({sim})"


def markdown_table(rows: list[dict]) -> str:
    head = ("| mode | method | S | episodes | success | speedup | GFLOPs | inference Hz (closed loop) | "
            "action MSE vs full |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['mode']} | {label(r)} | {r['num_updates']} | {r['episodes']} | "
                     f"{r['success_rate']:.0%} | {r['speedup']:.2f}x | {r['gflops']:.3f} | {r['inference_hz']:.1f} | "
                     f"{r['action_mse']:.2e} |")
    return "\n".join(lines)


def plot_success_vs_speedup(rows: list[dict], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in sorted({r["mode"] for r in rows}):
        for method in dict.fromkeys(label(r) for r in rows):
            pts = sorted((r["speedup"], r["success_rate"]) for r in rows if label(r) == method and r["mode"] == mode)
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, "o-" if mode == "sync" else "s--", label=f"{method} ({mode})")
    ax.set_xlabel("wall-clock speedup vs full (same run)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
