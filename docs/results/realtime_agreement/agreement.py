"""Paired agreement between evaluations of the same seeds: `bac eval` runs (episodes.jsonl) and `bac demo` runs
(episodes/index.jsonl), per method, with the exact McNemar test and Newcombe's interval (bac_ros.analysis.stats).

    python docs/results/realtime_agreement/agreement.py NAME=RUN_DIR [NAME=RUN_DIR ...]

Each RUN_DIR is a `bac eval` folder (each of its modes becomes NAME/<mode>) or a `bac demo` folder (NAME), or the
files kept here: *_episodes.json (a `bac eval` run's episodes) and *_index.jsonl (a `bac demo` run's index). Every
pair of evaluations is compared per method on the seeds both ran."""
import itertools
import json
import sys
from pathlib import Path

from bac_ros.analysis.stats import compare_paired


def outcomes(name: str, folder: Path) -> dict[tuple[str, str], dict[int, bool]]:
    """{(evaluation, method): {seed: success}}; methods named full or bac."""
    out: dict = {}
    if folder.suffix == ".json" or (folder / "episodes.jsonl").is_file():
        episodes = (json.loads(folder.read_text()) if folder.suffix == ".json" else
                    [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()[1:]])
        for e in episodes:
            out.setdefault((f"{name}/{e['mode']}", "full" if e["method"] == "full" else f"bac S={e['num_updates']}"),
                           {})[e["seed"]] = bool(e["success"])
    else:
        index = folder if folder.suffix == ".jsonl" else folder / "episodes" / "index.jsonl"
        for line in index.read_text().splitlines():
            e = json.loads(line)
            method = "full" if e["label"] == "full" else ("bac S=7" if e["label"] == "bac" else e["label"])
            out.setdefault((name, method), {})[e["seed"]] = bool(e["success"])
    return out


def main(args: list[str]) -> None:
    runs: dict = {}
    for arg in args:
        name, _, path = arg.partition("=")
        runs.update(outcomes(name, Path(path)))
    for method in sorted({m for _, m in runs}):
        evals = [e for e, m in runs if m == method]
        print(f"\n{method}: " + ", ".join(f"{e} {sum(runs[e, method].values())}/{len(runs[e, method])}" for e in evals))
        for a, b in itertools.combinations(evals, 2):
            seeds = sorted(runs[a, method].keys() & runs[b, method].keys())
            if not seeds:
                continue
            c = compare_paired(a, b, [runs[a, method][s] for s in seeds], [runs[b, method][s] for s in seeds])
            print(f"  {b} vs {a} on {len(seeds)} seeds: {c.success_b} vs {c.success_a}, table (both, only {a}, "
                  f"only {b}, neither) {c.table}, difference {c.difference:+.1%} [{c.ci[0]:+.1%}, {c.ci[1]:+.1%}], "
                  f"McNemar p {c.p_value:.3g}")


if __name__ == "__main__":
    main(sys.argv[1:])
