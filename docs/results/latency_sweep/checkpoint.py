"""Keep an unfinished sweep's episodes in git and put them back for `bac eval --resume`.

The sweep takes longer than one working session and runs/ does not outlive a checkout, so its finished episodes
are kept here, compressed (per-inference lists rounded to 1 us), with the run's arguments and its two schedules.

    python docs/results/latency_sweep/checkpoint.py save runs/i34     # -> episodes.jsonl.xz, eval_args.json
    python docs/results/latency_sweep/checkpoint.py restore runs/i34  # the run folder and runs/i34/sched back
    bac eval --resume runs/i34 --workers 2
"""
import argparse
import json
import lzma
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
ARCHIVE, ARGS = HERE / "episodes.jsonl.xz", HERE / "eval_args.json"
# the sweep's schedule folder: the shipped BAC S=7 and the S=5 of docs/results/forecast_reuse
SCHEDULES = {"bac_s7.json": ROOT / "schedules/grasp_dpt_cpu/bac_s7.json",
             "bac_s5.json": ROOT / "docs/results/forecast_reuse/schedules/bac_s5.json"}


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def save(run: Path) -> None:
    lines = (run / "episodes.jsonl").read_text().splitlines()
    kept = [lines[0]]
    for line in lines[1:]:
        try:
            episode = json.loads(line)
        except json.JSONDecodeError:  # the line being written when the run was stopped
            continue
        kept.append(json.dumps({k: _rounded(v) for k, v in episode.items()}))
    ARCHIVE.write_bytes(lzma.compress(("\n".join(kept) + "\n").encode(), preset=9))
    shutil.copyfile(run / "eval_args.json", ARGS)
    print(f"kept {len(kept) - 1} episodes in {ARCHIVE.relative_to(ROOT)} ({ARCHIVE.stat().st_size / 1e3:.0f} kB)")


def restore(run: Path) -> None:
    args = json.loads(ARGS.read_text())
    if Path(args["schedule_dir"]) != run / "sched":
        raise SystemExit(f"the sweep's schedules were in {args['schedule_dir']}: restore into its parent folder")
    if (run / "episodes.jsonl").exists():
        raise SystemExit(f"{run / 'episodes.jsonl'} exists: not overwritten")
    (run / "sched").mkdir(parents=True, exist_ok=True)
    for name, source in SCHEDULES.items():
        shutil.copyfile(source, run / "sched" / name)
    (run / "episodes.jsonl").write_bytes(lzma.decompress(ARCHIVE.read_bytes()))
    shutil.copyfile(ARGS, run / "eval_args.json")
    n = len((run / "episodes.jsonl").read_text().splitlines()) - 1
    print(f"{run}: {n} episodes back; go on with: bac eval --resume {run} --workers 2")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["save", "restore"])
    ap.add_argument("run", type=Path)
    a = ap.parse_args()
    (save if a.action == "save" else restore)(a.run)


if __name__ == "__main__":
    main()
