"""The same seeds under two torque-loop dampings: success per method, paired (exact McNemar), from two `bac eval`
runs' episodes.jsonl. Usage: python compare.py CRITICAL_RUN DAMPED_RUN [--rows rows.json]"""
import argparse
import json
from pathlib import Path

import numpy as np

from bac_ros.analysis.stats import compare_paired


def episodes(run: Path) -> dict:
    out = {}
    for line in (run / "episodes.jsonl").read_text().splitlines():
        e = json.loads(line)
        if "seed" in e:
            out[(e["method"], e["num_updates"], e["seed"])] = e
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("critical", type=Path)
    ap.add_argument("damped", type=Path)
    ap.add_argument("--rows", type=Path, help="write the paired per-seed outcomes here")
    args = ap.parse_args()
    a, b = episodes(args.critical), episodes(args.damped)
    keys = sorted(a.keys() & b.keys())
    rows = [{"method": m, "num_updates": s, "seed": seed, "success_critical": a[m, s, seed]["success"],
             "success_damped": b[m, s, seed]["success"], "time_critical": a[m, s, seed]["time_to_success"],
             "time_damped": b[m, s, seed]["time_to_success"]} for m, s, seed in keys]
    print("| method | seeds | critical | damped | (both, only critical, only damped, neither) | McNemar p | "
          "median s to success (critical / damped, seeds both solved) |")
    print("|---|---|---|---|---|---|---|")
    for m, s in sorted({(r["method"], r["num_updates"]) for r in rows}):
        rs = [r for r in rows if (r["method"], r["num_updates"]) == (m, s)]
        c = compare_paired("critical", "damped", [r["success_critical"] for r in rs],
                           [r["success_damped"] for r in rs])
        both = [r for r in rs if r["success_critical"] and r["success_damped"]]
        t = (np.median([r["time_critical"] for r in both]), np.median([r["time_damped"] for r in both])) \
            if both else (float("nan"), float("nan"))
        print(f"| {m} S={s} | {c.n_a} | {c.success_a} | {c.success_b} | {c.table} | {c.p_value:.2f} | "
              f"{t[0]:.2f} / {t[1]:.2f} |")
    if args.rows:
        args.rows.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
