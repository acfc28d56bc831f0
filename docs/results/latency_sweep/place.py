"""Success against latency from a `bac eval --mode both --latency-ms ...` run folder (finished or still running:
only seeds every condition has finished count, so every point is paired), each method placed at the latency it
measures on this CPU (ONNX Runtime, one thread: `bench.json` beside this script) and on the H200 (CUDA graph,
docs/results/gpu_h200). Writes table.md and latency.png into --out.

    python docs/results/latency_sweep/place.py RUN_FOLDER --out OUT
"""
import argparse
import json
from collections import defaultdict
from pathlib import Path

from bac_ros.analysis.eval_rows import paired, place_at_latency
from bac_ros.analysis.render import plot_success_vs_latency, row_label
from bac_ros.analysis.stats import wilson_interval
from bac_ros.sim.episode_worker import split_mode

HERE = Path(__file__).resolve().parent
# the cpu config's CUDA-graph inference on the H200 (docs/results/gpu_h200/README.md); S=5 was not measured there
H200_MS = {"full S=20": 6.0, "bac S=7": 3.0}


def rows_of(run: Path) -> tuple[list[dict], int]:
    """Eval-like rows (mode, method, S, latency, success over the complete seeds) and the number of those seeds."""
    lines = (run / "episodes.jsonl").read_text().splitlines()[1:]
    by_seed = defaultdict(dict)
    for line in lines:
        try:
            e = json.loads(line)
        except json.JSONDecodeError:  # the line being written when the run was stopped
            continue
        by_seed[e["seed"]][(e["mode"], e["method"], e["num_updates"])] = bool(e["success"])
    conditions = set().union(*by_seed.values())
    seeds = sorted(s for s, got in by_seed.items() if set(got) == conditions)
    rows = []
    for mode, method, s in sorted(conditions, key=lambda c: (-1 if split_mode(c[0])[1] is None else split_mode(c[0])[1],
                                                             c[1], c[2])):
        base, latency = split_mode(mode)
        ok = [int(by_seed[seed][(mode, method, s)]) for seed in seeds]
        rows.append({"mode": base, "latency_ms": latency, "method": method, "num_updates": s, "episodes": len(ok),
                     "success_rate": sum(ok) / max(1, len(ok)), "succeeded": ok, "seed_list": seeds})
    return rows, len(seeds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, n = rows_of(Path(args.run))
    cpu = {row_label(r): r["ms"] for r in json.loads((HERE / "bench.json").read_text())}
    latencies = {label: {"this CPU": ms, **({"H200": H200_MS[label]} if label in H200_MS else {})}
                 for label, ms in cpu.items()}
    placed = place_at_latency(rows, latencies)
    labels = list(dict.fromkeys(row_label(r) for r in rows))
    sweep = sorted({r["latency_ms"] for r in rows if r["latency_ms"] is not None})
    lines = [f"{n} paired seeds per point (every method and latency on the same seeds); successes / {n}, "
             "95 % Wilson interval", "",
             "| method | sync | " + " | ".join(f"{ms:g} ms" for ms in sweep) + " |",
             "|---|---|" + "---|" * len(sweep)]
    for label in labels:
        cells = []
        for latency in [None, *sweep]:
            r = next(r for r in rows if row_label(r) == label and r["latency_ms"] == latency
                     and (latency is not None or r["mode"] == "sync"))
            k = sum(r["succeeded"])
            lo, hi = wilson_interval(k, n)
            cells.append(f"{k} ({lo:.0%}–{hi:.0%})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| method | computer | latency (ms) | success there (interpolated) |", "|---|---|---|---|"]
    for p in placed:
        rate = "outside the sweep" if p["success_rate"] is None else f"{p['success_rate']:.0%}"
        lines.append(f"| {p['label']} | {p['computer']} | {p['latency_ms']:.1f} | {rate} |")
    lines += ["", "| condition | a | b | a only | b only | difference (95 % interval) | p (exact McNemar) | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {p['mode']} | {p['a']} | {p['b']} | {p['table'][1]} | {p['table'][2]} | {p['difference']:+.0%} "
              f"({p['ci'][0]:+.0%} to {p['ci'][1]:+.0%}) | {p['p_value']:.3f} | {p['verdict']} |"
              for p in paired(rows)]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(plot_success_vs_latency(rows, out / "latency.png", placed))


if __name__ == "__main__":
    main()
