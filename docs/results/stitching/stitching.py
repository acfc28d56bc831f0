"""Stitching under latency: today's switch, prefix-conditioned sampling and temporal ensembling on the same seeds
at each emulated latency, against sync (the world waits) on those seeds. Success with the exact McNemar test
and Newcombe's interval (bac_ros.analysis.stats); smoothness at switches (the episode fields `switch_smoothness`
fills); for each latency where switch loses >= 10 points to sync, the share of that loss a stitch recovers.

    python docs/results/stitching/stitching.py SYNC_EPISODES NAME=EPISODES [NAME=EPISODES ...] > table.md

SYNC_EPISODES and each EPISODES: a `bac eval` run folder (its episodes.jsonl) or a kept *_episodes.json; the
stitch runs are `bac eval --mode realtime --latency-ms L1,L2,.. --stitch NAME` of one method."""
import json
import statistics
import sys
from pathlib import Path

from bac_ros.analysis.stats import compare_paired, mcnemar_exact


def episodes(path: Path) -> list[dict]:
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return [json.loads(line) for line in (path / "episodes.jsonl").read_text().splitlines()[1:]]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def main(args: list[str]) -> None:
    sync_eps = [e for e in episodes(Path(args[0])) if e["mode"] == "sync"]
    runs = {name: episodes(Path(path)) for name, _, path in (a.partition("=") for a in args[1:])}
    method = {(e["method"], e["num_updates"]) for eps in runs.values() for e in eps}
    assert len(method) == 1, f"one method per comparison, got {method}"
    (m, s), = method
    sync = {e["seed"]: bool(e["success"]) for e in sync_eps if (e["method"], e["num_updates"]) == (m, s)}
    label = "full" if m == "full" else f"{m} S={s}"
    latencies = sorted({e["mode"] for eps in runs.values() for e in eps}, key=lambda x: float(x.split("+")[1][:-2]))
    print(f"{label}; sync on these seeds: {sum(sync.values())}/{len(sync)}\n")
    print("| latency | stitch | success | vs switch (McNemar p) | vs sync (McNemar p) | share of the loss to sync "
          "recovered | plans' gap at a switch (rad, median) | velocity reversals per switch | jerk around "
          "switches (rad/s³, median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in latencies:
        by = {name: {e["seed"]: e for e in eps if e["mode"] == mode} for name, eps in runs.items()}
        seeds = sorted(set(sync).intersection(*(set(v) for v in by.values())))
        ref = [bool(by["switch"][k]["success"]) for k in seeds] if "switch" in by else None
        syn = [sync[k] for k in seeds]
        for name, eps in by.items():
            ok = [bool(eps[k]["success"]) for k in seeds]
            vs_switch = "-"
            if ref is not None and name != "switch":
                c = compare_paired("switch", name, ref, ok)
                vs_switch = f"{c.difference:+.0%} [{c.ci[0]:+.0%}, {c.ci[1]:+.0%}] (p {c.p_value:.2g})"
            c = compare_paired("sync", name, syn, ok)
            vs_sync = f"{c.difference:+.0%} [{c.ci[0]:+.0%}, {c.ci[1]:+.0%}] (p {c.p_value:.2g})"
            recovered = "-"
            if ref is not None and name != "switch":
                loss = sum(syn) - sum(ref)
                recovered = f"{(sum(ok) - sum(ref)) / loss:+.0%}" if loss >= 0.10 * len(seeds) else "(loss < 10 points)"
            e = [eps[k] for k in seeds]
            n_sw = sum(x.get("switches") or 0 for x in e)
            rev = sum((x.get("switch_reversals") or 0) * (x.get("switches") or 0) for x in e) / n_sw if n_sw else float("nan")
            print(f"| {mode.split('+')[1]} | {name} | {sum(ok)}/{len(ok)} | {vs_switch} | {vs_sync} | {recovered} | "
                  f"{median(x.get('switch_jump_rad') for x in e):.4f} | {rev:.3f} | "
                  f"{median(x.get('switch_jerk') for x in e):.0f} |")
    if "switch" in runs:  # every latency's pairs together: does a stitch win across the sweep?
        ref = {(e["mode"], e["seed"]): bool(e["success"]) for e in runs["switch"]}
        print()
        for name, eps in runs.items():
            if name == "switch":
                continue
            got = {(e["mode"], e["seed"]): bool(e["success"]) for e in eps}
            keys = sorted(ref.keys() & got.keys())
            only_switch = sum(ref[k] and not got[k] for k in keys)
            only_it = sum(got[k] and not ref[k] for k in keys)
            print(f"- {name} against switch over all {len(keys)} (latency, seed) pairs: {sum(got[k] for k in keys)} vs "
                  f"{sum(ref[k] for k in keys)}; won only by {name} {only_it}, only by switch {only_switch}: exact "
                  f"McNemar p {mcnemar_exact(only_switch, only_it):.2g}")


if __name__ == "__main__":
    main(sys.argv[1:])
